"""Divisibility hints for strides Triton's specialization cannot see.

Triton marks an integer argument divisible by 16 (or equal to 1) and knows nothing of any other: a step stride of
3352 elements (the Mamba2 130M model's in_proj width, 24 heads past a multiple of 16) reads as divisibility 1,
and every load addressed through it compiles to one 2-byte access a lane instead of 16-byte vectors (the causal
conv reading its channels in place from in_proj: 128 ``ld.global.b16`` against 18 ``ld.global.v4.b32``, sm_90,
triton 3.6). A kernel that takes ``ALIGN``, the power of two (at most 16) the host found dividing the stride,
rewrites the stride as ``stride // ALIGN * ALIGN``, whose divisibility the compiler's analysis derives.
``Kernel(..., hints={"SXL_A": "SXL"})`` fills ``SXL_A`` in from ``SXL`` at every launch (``tuning.py``,
``host.pow2_divisor``).
"""
import triton
import triton.language as tl


@triton.jit
def multiple(stride, ALIGN: tl.constexpr):
    """``stride`` (which the launch found divisible by ``ALIGN``) in a form the compiler knows is a multiple of it."""
    if ALIGN > 1:
        stride = stride // ALIGN * ALIGN
    return stride
