"""Offline (no GPU): the SSD chunk scan's loop bodies in sm_90 SASS, plain against the split decay
(``SSM_TRITON_SCAN_SPLIT``), at the 130M Mamba2 prefill's tiles (64x64 steps, 4 warps, 2 stages, the deferred norm).
Run from /tmp with triton 3.6 on the path: ``PYTHONPATH=/tmp/t36:<repo> TRITON_INTERPRET=0 python sass_loops.py``.
Prints each loop's instructions, MUFU and wgmma counts (one warp's, one iteration)."""
import os, sys, re
os.environ["SSM_TRITON_SM90_FULL"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests"))
import sm90_compile as sc
import triton.language as tl
from ssm_triton.kernels.ssd import chunk_scan as cs

def loops(sass):
    lines = [ln for ln in sass.splitlines() if re.match(r"\s*/\*[0-9a-f]{4}\*/", ln)]
    addr = [int(re.match(r"\s*/\*([0-9a-f]{4})\*/", ln).group(1), 16) for ln in lines]
    out = []
    for i, ln in enumerate(lines):
        if "BRA" in ln:
            tgt = re.search(r"0x([0-9a-f]+)", ln.split("BRA")[1])
            if tgt:
                t = int(tgt.group(1), 16)
                if t < addr[i]:
                    body = [l for a, l in zip(addr, lines) if t <= a <= addr[i]]
                    out.append((len(body), sum("MUFU" in l for l in body), sum("HGMMA" in l or "HMMA" in l for l in body)))
    return out

ptr = {n: "*bf16" for n in ("X", "B", "C", "Z", "Y", "OUT", "HS", "NORM_W")}
ptr.update({n: "*fp32" for n in ("CB", "DTP", "CUM", "D", "DIAG", "SS")})
ptr["SEQ"] = "*i32"
base = dict(HAS_D=True, D_PER_CHANNEL=False, HAS_DIAG=False, HAS_Z=True, HAS_SEQ=False, STORE_Y=False, Q=256,
            BLOCK_P=64, BLOCK_N=128, DOT=tl.bfloat16, HAS_NORM=True, SX_A=8, SC_A=8, SZ_A=8, BLOCK_M=64, BLOCK_K=64)
for split, cap in ((False, None), (True, None), (True, 168)):
    c, sass = sc.sass(cs.chunk_scan_kernel, ptr, dict(base, SPLIT_DECAY=split), num_warps=4, num_stages=2,
                      aligned=True, unaligned=("SX", "SC", "SZ"), maxnreg=cap)
    print("split" if split else "plain", cap, sc.resources(c), "loops (instrs, mufu, mma):", loops(sass), flush=True)
