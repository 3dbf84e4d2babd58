"""The state update's kernel (Mamba-2's form) and probe_state_bw.py's probe compiled for sm_90 offline: SASS counts of each
(run with triton 3.6 on PYTHONPATH and TRITON_INTERPRET=0)."""
import os, sys, re, collections
sys.argv.append("--resources")
ROOT = os.path.dirname(os.path.abspath(__file__)) + "/../../.."
sys.path.insert(0, ROOT + "/tests"); sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sm90_compile as sc
from ssm_triton.kernels import state_update as ksu
from probe_state_bw import _probe

def count(s):
    ops = collections.Counter()
    for line in s.splitlines():
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_.]+)", line)
        if m:
            ops[m.group(2)] += 1
    return ops

bf = "*bf16"; f32 = "*fp32"
ptrs = dict(S=f32, X=bf, DT=bf, A=f32, B=bf, C=bf, D=f32, Z=bf, DT_BIAS=f32, IDX="*i64", OUT=bf, DT_W=bf, NORM_W=f32, SS=f32)
cx = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_IDX=False, A_PER_HEAD=True, DT_PER_HEAD=True,
          A_LOG=False, PDL=False, BLOCK_P=32, BLOCK_N=128, DT_LOW=False, HAS_NORM=False, s_n=1, x_p=1, z_p=1, o_p=1, b_n=1, c_n=1)
c, s = sc.sass(ksu.state_update_kernel, ptrs, cx, aligned=True, num_warps=4)
o = count(s)
print("op   ", sum(o.values()), {k: v for k, v in o.items() if k.startswith(("LDG", "STG", "BAR", "MUFU", "SHFL", "IMAD.WIDE", "LEA"))}, sc.resources(c).strip()[:60])
class K: pass
k = K(); k.fn = _probe; k.flags = ()
pp = {n: f32 for n in "S A D BIAS".split()}; pp.update({n: bf for n in "X DT Z B C OUT".split()})
c2, s2 = sc.sass(k, pp, dict(BLOCK_P=32, BLOCK_N=128, BAR=False, CG=False, PERSIST=False, ROWS_FIRST=False), aligned=True, num_warps=4)
o2 = count(s2)
print("probe", sum(o2.values()), {k: v for k, v in o2.items() if k.startswith(("LDG", "STG", "BAR", "MUFU", "SHFL", "IMAD.WIDE", "LEA"))}, sc.resources(c2).strip()[:60])

