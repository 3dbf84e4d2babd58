"""The one-launch SSD forward (MODE 2, b1 L2048's tiles) compiled for sm_90 offline with SSM_PROBE_ABL's parts dropped (a copy
of the tree rewritten by ablate_fused.py on PYTHONPATH, triton 3.6 before it, TRITON_INTERPRET=0): SASS counts."""
import os, sys, re, collections
sys.argv.append("--resources")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)) + "/../../../tests")
import sm90_compile as sc
import triton.language as tl
from ssm_triton.kernels.ssd import fused as F
ints = {}
ptr = {n: "*bf16" for n in ("X", "B", "C", "Z", "OUT", "KEEP_Y")}
ptr.update({n: "*fp32" for n in ("DT_BIAS", "A", "D", "H0", "FINAL", "SEG_STATE", "SEG_DECAY", "ADT", "DIAG", "KEEP_DT", "KEEP_CUM", "KEEP_HS")})
ptr["DT"] = "*bf16"
q, bp, bn = int(os.environ.get("Q", 32)), int(os.environ.get("BP", 64)), 128
cx = dict(HAS_BIAS=True, SOFTPLUS=True, CLAMP=False, HAS_D=True, D_PER_CHANNEL=False, HAS_Z=False, HAS_H0=False,
          HAS_FINAL=True, Q=q, BLOCK_P=bp, BLOCK_N=bn, DOT=tl.bfloat16, STATE_T=False, MODE=int(os.environ.get("MODE", 2)),
          CARRIED=False, STEPS_GIVEN=False, HAS_DIAG=False, RANKS=1, KEEP=False, KQ=1, AHEAD=True, A_LOG=False)
c, s = sc.sass(F.ssd_fused_fwd_kernel, ptr, cx, aligned=True, num_warps=int(os.environ.get("W", 4)), num_stages=int(os.environ.get("ST", 2)))
ops = collections.Counter()
for line in s.splitlines():
    m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_.]+)", line)
    if m:
        ops[m.group(2).split(".")[0]] += 1
keys = ["HGMMA", "HMMA", "BAR", "SHFL", "MUFU", "LDS", "STS", "LDSM", "LDG", "STG", "LDGSTS", "DADD", "DFMA", "DMUL", "F2F", "FFMA", "FMUL"]
print(f"ABL={F.ABL.value if hasattr(F.ABL,'value') else F.ABL} total {sum(ops.values())}", " ".join(f"{k}={ops[k]}" for k in keys), "|", sc.resources(c).strip()[:120])
