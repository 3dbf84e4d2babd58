"""The selective scan forward's inner loop (one state's pass over a chunk) read from its sm_90 SASS, no GPU needed.

Compiles ``_selective_scan_fwd_kernel`` as the inference forward runs at b1 d1536 L2048 N16 bf16 on an H100 (one
channel and one warp a program, 512-step chunks, no checkpoints, D, z, delta_bias, softplus; pointers aligned) with
each AHEAD and chunk, disassembles it with the cuobjdump Triton carries, finds the innermost loop holding the
exponentials and counts its instructions by kind. Run from the repository root:

    TRITON_INTERPRET=0 SSM_TRITON_SM90_FULL=1 TRITON_CACHE_DIR=$(mktemp -d) [PYTHONPATH=<triton 3.6>] \\
        python bench/results/cpu-2026-12-06g/sass_selective_fwd.py
"""
import collections
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests"))
import sm90_compile as m  # noqa: E402
import triton  # noqa: E402

from ssm_triton.kernels import selective_scan as kss  # noqa: E402

IO = ["U", "DELTA", "B", "C", "Z", "OUT"]
F32 = ["A", "D", "DBIAS", "H0", "LAST", "CKPT", "SEG_H", "SEG_DT", "FINAL"]


def sass(block_l: int, ahead: int, ckpt: bool = False, unroll: int = 1):
    flags = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_H0=False, B_FIXED=False, C_FIXED=False,
                 STORE_CKPT=ckpt, EVEN=True, BLOCK_D=1, BLOCK_L=block_l, BLOCK_N=16, CKPT_L=128 if ckpt else block_l,
                 SEGMENTED=False, AHEAD=ahead, UNROLL=unroll, sb_l=1, sc_l=1)
    ptrs = {**dict.fromkeys(IO, "*bf16"), **dict.fromkeys(F32, "*fp32")}
    return m.sass(kss.selective_scan_fwd, ptrs, flags, num_warps=1, num_stages=1, aligned=True)


def state_loop(out: str):
    """Instruction counts of the state loop: of the innermost loops with ``MUFU.EX2`` (one a step and state), the one
    with the most (an unrolled body over its remainder loop)."""
    addr = lambda ln: int(re.match(r"\s+/\*([0-9a-f]+)\*/", ln).group(1), 16)  # noqa: E731
    code = [ln for ln in out.splitlines() if re.match(r"\s+/\*[0-9a-f]+\*/\s+\S", ln)]
    loops = []
    for ln in code:
        mm = re.search(r"BRA (0x[0-9a-f]+)", ln)
        if mm and int(mm.group(1), 16) < addr(ln):
            loops.append((int(mm.group(1), 16), addr(ln)))
    best = None
    for lo, hi in loops:
        if any(lo <= a and b <= hi and (a, b) != (lo, hi) for a, b in loops):
            continue   # not innermost
        if True:
            body = [b for b in code if lo <= addr(b) <= hi]
            ex2 = sum("MUFU.EX2" in b for b in body)
            # the loop with the most exponentials (an unrolled body over a remainder loop), then the smallest
            if ex2 and (best is None or (ex2, -len(body)) > best[0]):
                best = ((ex2, -len(body)), body)
    best = best[1] if best else None
    kinds = collections.Counter()
    for ln in best or []:
        mm = re.match(r"\s+/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)(\.[A-Z0-9]+)?", ln)
        kinds[mm.group(1) + (mm.group(2) or "")] += 1
    return kinds, best


if __name__ == "__main__":
    for block_l, ahead, unroll in ((512, 0, 1), (512, 2, 1), (256, 2, 1), (512, 0, 2), (512, 2, 2), (256, 2, 2)):
        compiled, out = sass(block_l, ahead, unroll=unroll)
        kinds, body = state_loop(out)
        total = sum(kinds.values())
        steps = kinds["MUFU.EX2"]   # a lane's steps times the states a pass of the loop does
        top = dict(kinds.most_common(14))
        print(f"triton {triton.__version__} BLOCK_L={block_l} AHEAD={ahead} UNROLL={unroll} {m.resources(compiled)}: state loop {total} "
              f"instructions, {total / steps:.1f} a step and state ({steps // (block_l // 32)} states a pass, each lane "
              f"{block_l // 32} steps): {top}")
        if os.environ.get("DUMP") == f"{block_l}-{ahead}":
            print("\n".join(body))
