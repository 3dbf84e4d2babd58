"""Activations the kernels share, with the derivatives their backward passes need."""
import triton
import triton.language as tl


@triton.jit
def softplus(x):
    """``log(1 + exp(x))``; ``x`` itself above 20, where the two agree in fp32 and exp would overflow soon."""
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def silu_and_slope(z):
    """``(silu(z), d silu / dz)``."""
    s = tl.sigmoid(z)
    return z * s, s * (1.0 + z * (1.0 - s))
