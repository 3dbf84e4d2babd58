"""Activations the kernels share, with the derivatives their backward passes need."""
import triton
import triton.language as tl


@triton.jit
def softplus(x):
    """``log(1 + exp(x))``; ``x`` itself above 20, where the two agree in fp32 and exp would overflow soon. Below
    ``exp(x) = 0.01`` a series in ``e = exp(x)`` (to ``e^4``; the next term is below fp32's rounding there): in fp32
    ``1 + e`` keeps no digit of an ``e`` under 6e-8, so the logarithm gave 0 for ``x < -16.6`` and a few correct
    digits only near it, where ``torch.nn.functional.softplus`` keeps the relative precision."""
    e = tl.exp(tl.minimum(x, 20.0))
    small = e * (1.0 - e * (0.5 - e * (0.3333333333 - 0.25 * e)))
    return tl.where(x > 20.0, x, tl.where(e < 0.01, small, tl.log(1.0 + e)))


@triton.jit
def silu_and_slope(z):
    """``(silu(z), d silu / dz)``."""
    s = tl.sigmoid(z)
    return z * s, s * (1.0 + z * (1.0 - s))
