"""Stage 1: step sizes and their cumulative decay inside each chunk.

``dt_t = clamp(softplus(dt_raw + dt_bias), lo, hi)`` and ``cum_t = sum_{chunk start <= r <= t} dt_r A``,
written as ``(b, H, n_chunks * Q)`` fp32 rows, contiguous in time for the later stages. ``cum`` is
summed in fp64 and kept as two fp32 planes ``(hi, lo)`` (``CUM`` and ``CUM + lo_off``): the later
stages need ``cum_t - cum_s`` to fp32 accuracy where both are large. Steps past
``L`` get ``dt = 0``, so ``cum`` stays flat there and a chunk's last entry is its total decay.
"""
import triton
import triton.language as tl

from ..tuning import Kernel
from ..activations import softplus


@triton.jit
def softplus_clamp(raw, lo, hi, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr):
    """(dt, d dt / d raw)."""
    if SOFTPLUS:
        dt = softplus(raw)
        slope = tl.sigmoid(raw)
    else:
        dt = raw
        slope = tl.full(raw.shape, 1.0, tl.float32)
    if CLAMP:
        slope = tl.where((dt >= lo) & (dt <= hi), slope, 0.0)
        dt = tl.minimum(tl.maximum(dt, lo), hi)
    return dt, slope


@triton.jit
def raw_step(DT, DT_BIAS, bi, h, t, ok, L, SDT, HAS_BIAS: tl.constexpr):
    """``dt (b, L, H)`` (+ bias) at steps ``t`` of one (row, head); ``SDT`` the step stride (``H`` when
    contiguous; a column slice of a wider projection has its own)."""
    raw = tl.load(DT + (bi.to(tl.int64) * L + t) * SDT + h, mask=ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += tl.load(DT_BIAS + h).to(tl.float32)
    return raw


@triton.jit
def chunk_row(L, H, Q: tl.constexpr):
    """A (chunk, batch row x head) program's ``(chunk, bh, batch row, head, steps, steps < L)``."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    t = c * Q + tl.arange(0, Q)
    return c, bh, bh // H, bh % H, t, t < L


@triton.jit
def store_cum(CUM, lo_off, at, cum):
    """Store an fp64 within-chunk sum ``cum`` at offsets ``at`` as its two fp32 planes (``hi`` at ``CUM``, the
    remainder at ``CUM + lo_off``), as ``common.cum_at`` reads them back."""
    cum_hi = cum.to(tl.float32)
    tl.store(CUM + at, cum_hi)
    tl.store(CUM + lo_off + at, (cum - cum_hi.to(tl.float64)).to(tl.float32))


@triton.jit
def _dt_cumsum_kernel(DT, DT_BIAS, A, DTP, CUM, L, H, SDT, Lp, lo_off, lo, hi,
                      HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr, Q: tl.constexpr,
                      A_LOG: tl.constexpr = False):
    _, bh, bi, h, t, ok = chunk_row(L, H, Q)
    dt, _ = softplus_clamp(raw_step(DT, DT_BIAS, bi, h, t, ok, L, SDT, HAS_BIAS), lo, hi, SOFTPLUS, CLAMP)
    dt = tl.where(ok, dt, 0.0)
    a = tl.load(A + h).to(tl.float32)
    if A_LOG:   # A given as the module's A_log (A = -exp(A_log))
        a = -tl.exp(a)
    cum = tl.cumsum((dt * a).to(tl.float64), axis=0)
    row = bh.to(tl.int64) * Lp + t
    tl.store(DTP + row, dt)
    store_cum(CUM, lo_off, row, cum)


dt_cumsum_kernel = Kernel(_dt_cumsum_kernel, flags=dict(HAS_BIAS="DT_BIAS"))
