"""The linear scan's kernels' static sm_90 instruction counts (whole kernel, triton 3.6) at the rule's tiles: 16 rows x
128 steps with 4 warps, 1 row x 2048 steps with 8 (the backward plain and with REV_GATHER). Run from the repository root
as the selective scan's readers (``TRITON_INTERPRET=0 SSM_TRITON_SM90_FULL=1 ... PYTHONPATH=<triton 3.6>``)."""
import os
import re
import sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests"))
import sm90_compile as m  # noqa: E402
import triton.language as tl  # noqa: E402
from ssm_triton.kernels import scan as ks  # noqa: E402


def count(kernel, ptrs, flags, warps):
    c, out = m.sass(kernel, ptrs, flags, num_warps=warps, num_stages=1, aligned=True)
    code = [ln for ln in out.splitlines() if re.match(r"\s+/\*[0-9a-f]+\*/\s+\S", ln)]
    return m.resources(c), len(code)


for io in ("*bf16", "*fp32"):
    for R, Lb, w in ((16, 128, 4), (1, 2048, 8)):
        f = dict(HAS_H0=True, REVERSE=False, ACC=tl.float32, BLOCK_R=R, BLOCK_L=Lb)
        print(io, R, Lb, w, "fwd", count(ks.scan_fwd, dict.fromkeys(["A", "B", "H", "H0"], io), f, w),
              "bwd", count(ks.scan_bwd, dict.fromkeys(["G", "A", "H", "H0", "DA", "DB", "DH0"], io), {**f, "ALIGNED": False}, w),
              "bwd REV_GATHER", count(ks.scan_bwd, dict.fromkeys(["G", "A", "H", "H0", "DA", "DB", "DH0"], io), {**f, "ALIGNED": False, "REV_GATHER": True}, w))
