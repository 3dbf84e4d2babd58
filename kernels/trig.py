"""Cosine and sine for Mamba-3's rotations, at the accuracy of fp32 angles and a fraction of libdevice's cost.

libdevice's ``cosf`` / ``sinf`` reduce any argument exactly (a slow path for large ones) and evaluate polynomials:
tens of instructions an element, and Mamba-3's prep kernels turn every rotated pair of every head of every step
(SISO at B8 L4096 H32, 33.5 M angles a pass, each turned in the forward and again in the backward). Here the angle
is first reduced to ``[-pi, pi]`` (``2 pi`` in two parts, Cody-Waite, so the reduction adds no error worth naming
for the angles these kernels hold: reduced mod ``2 pi`` per block, plus a block's increments), then the SFU's
``cos.approx`` / ``sin.approx`` take it: PTX documents their absolute error as at most ``2^-20.5`` (7e-7) on that
range, the size of fp32's own rounding of an angle near ``2 pi`` (ulp 4.8e-7). The reference package uses the
same instructions without the reduction and keeps its angles in bf16; ours stay fp32 end to end.

They are on by default on GPUs (:data:`FAST`; ``SSM_TRITON_FAST_TRIG=0`` turns them off); in the interpreter (no
PTX there) libdevice's forms run, so the CPU tests check the math and the GPU tests the approximations, each against
the float64 references.
"""
import os

import triton
import triton.language as tl

from .tuning import interpreting

# on by default since the Mamba-3 GPU tests passed with it (H100, 2026-12-06: 34 tests of test_mamba3.py and
# test_mamba3_block.py, ci profile). H100, SISO B8 L4096 H32 bf16: the prep forward 0.378 -> 0.337-0.339 ms (12-05f,
# 12-06) and, in 64-step blocks, its backward 1.151 -> 1.046-1.053 (12-06, two processes: libdevice's cos/sin do
# bound it there; at 16 steps they did not, 1.295 -> 1.299). "0" turns them off; read once per process (a
# compile-time constant of the kernels)
FAST = tl.constexpr(not interpreting() and os.environ.get("SSM_TRITON_FAST_TRIG", "1") != "0")


@triton.jit
def _reduced(th):
    """``th - 2 pi round(th / 2 pi)``, in ``[-pi, pi]``: ``2 pi = 6.28125 + 0.00193530717958...``, the first part
    exact in 8 bits, so ``n`` times it is exact for any ``n`` below ``2^16``."""
    n = tl.floor(th * 0.15915494309189535 + 0.5)
    return (th - n * 6.28125) - n * 0.0019353071795864769


@triton.jit
def cos_sin(th):
    """``(cos th, sin th)`` of an fp32 tile."""
    if not FAST:
        return tl.cos(th), tl.sin(th)
    else:
        r = _reduced(th)
        c = tl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=f,f", [r], dtype=tl.float32, is_pure=True, pack=1)
        s = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=f,f", [r], dtype=tl.float32, is_pure=True, pack=1)
        return c, s

