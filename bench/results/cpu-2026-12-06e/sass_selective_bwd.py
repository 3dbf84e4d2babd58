"""The selective scan backward's inner loop (one state's pass over a chunk) read from its sm_90 SASS, no GPU needed.

Compiles ``_selective_scan_bwd_kernel`` as the rule launches it on an H100 (bf16, N 16, one channel and one warp a
program, 128-step chunks, atomics, time segments, shared sums, D, z, delta_bias, softplus; pointers aligned) with
the installed Triton through ``tests/sm90_compile.py``, disassembles it with the cuobjdump Triton carries, finds the
innermost loop holding the atomic adds and counts its instructions by kind. Run from the repository root:

    TRITON_INTERPRET=0 SSM_TRITON_SM90_FULL=1 TRITON_CACHE_DIR=$(mktemp -d) [PYTHONPATH=<triton 3.6>] \\
        python bench/results/cpu-2026-12-06e/sass_selective_bwd.py
"""
import collections
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests"))
import sm90_compile as m  # noqa: E402
import triton  # noqa: E402

from ssm_triton.kernels import selective_scan as kss  # noqa: E402

IO = ["U", "DELTA", "B", "C", "Z", "OUT", "DOUT", "DU", "DDELTA", "DZ"]
F32 = ["A", "D", "DBIAS", "H0", "LAST", "CKPT", "DLAST", "DA_PART", "DD_PART", "DBIAS_PART", "DB", "DC", "DH0",
       "SEG_H", "SEG_DT", "FINAL", "MU", "SEG_MU"]


def sass(no_gather: bool, rev_gather: bool = False):
    flags = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, B_FIXED=False, C_FIXED=False, EVEN=True,
                 BLOCK_D=1, BLOCK_L=128, BLOCK_N=16, HAS_DLAST=False, ATOMIC=True, NO_GATHER=no_gather,
                 SEGMENTED=True, SHARED=True, REV_GATHER=rev_gather, sb_l=1, sc_l=1)   # unit step strides: a launch specialises them
    ptrs = {**dict.fromkeys(IO, "*bf16"), **dict.fromkeys(F32, "*fp32")}
    return m.sass(kss.selective_scan_bwd, ptrs, flags, num_warps=1, num_stages=1, aligned=True)


def state_loop(out: str):
    """Instruction counts of the innermost loop with a ``REDG`` (the per-state loop's atomic adds)."""
    lines = out.splitlines()
    addr = lambda ln: int(re.match(r"\s+/\*([0-9a-f]+)\*/", ln).group(1), 16)  # noqa: E731
    code = [ln for ln in lines if re.match(r"\s+/\*[0-9a-f]+\*/\s+\S", ln)]
    best = None
    for ln in code:
        mm = re.search(r"BRA (0x[0-9a-f]+)", ln)
        if mm and int(mm.group(1), 16) < addr(ln):
            lo, hi = int(mm.group(1), 16), addr(ln)
            body = [b for b in code if lo <= addr(b) <= hi]
            if any("REDG" in b for b in body) and (best is None or len(body) < len(best)):
                best = body
    kinds = collections.Counter()
    for ln in best:
        mm = re.match(r"\s+/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)(\.[A-Z0-9]+)?", ln)
        kinds[mm.group(1) + (mm.group(2) or "")] += 1
    masks = collections.Counter(re.search(r"SHFL\.BFLY PT, R\d+, R\d+, (\w+)", ln).group(1) for ln in best
                                if "SHFL.BFLY" in ln)
    return kinds, masks


if __name__ == "__main__":
    for no_gather, rev_gather in ((False, False), (True, False), (False, True)):
        compiled, out = sass(no_gather, rev_gather)
        kinds, masks = state_loop(out)
        shfl = sum(v for k, v in kinds.items() if k.startswith("SHFL"))
        keep = {k: v for k, v in kinds.items() if k.startswith(("SHFL", "MUFU", "LDG", "REDG", "BAR"))}
        print(f"triton {triton.__version__} NO_GATHER={no_gather} REV_GATHER={rev_gather} {m.resources(compiled)}: state loop "
              f"{sum(kinds.values())} instructions, {shfl} shuffles {keep}; butterfly lane masks {dict(masks)}")
