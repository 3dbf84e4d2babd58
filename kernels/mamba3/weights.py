"""Mamba-3 MIMO's per-step weights from ``DT`` and ``Trap`` (``(b, H, L)``), forward and backward, one launch each.

With ``lam = sigmoid(Trap)``::

    gamma_t  = lam_t DT_t                    (the in-step weight)
    e_next_t = (1 - lam_{t+1}) DT_{t+1}      (0 at a row's last step and, in a packed row, a sequence's)
    scale_t  = gamma_t + e_next_t            (what the stages give every pseudo-step of step t)

Why a kernel: as PyTorch ops these were eight launches forward (cast, sigmoid, two products, a shifted slice, a
pad, a sum, a mask) and about ten backward, each costing a GPU host several microseconds for a few kilobytes.
"""
import torch
import triton
import triton.language as tl

from ..host import cdiv
from ..tuning import Kernel, run_mode


@triton.jit
def _weights_kernel(DT, TRAP, SEQ, GAMMA, ENEXT, SCALE, L, HAS_SEQ: tl.constexpr, BLOCK_T: tl.constexpr):
    """A program per (block of steps, row x head); ``SEQ (L,)`` the packed row's sequence index."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row = tl.program_id(1).to(tl.int64) * L
    ok = t < L
    nxt = t + 1 < L
    if HAS_SEQ:
        nxt = nxt & (tl.load(SEQ + t + 1, mask=nxt, other=-1) == tl.load(SEQ + t, mask=ok, other=-2))
    dt = tl.load(DT + row + t, mask=ok, other=0.0).to(tl.float32)
    lam = tl.sigmoid(tl.load(TRAP + row + t, mask=ok, other=0.0).to(tl.float32))
    dt_n = tl.load(DT + row + t + 1, mask=nxt, other=0.0).to(tl.float32)
    lam_n = tl.sigmoid(tl.load(TRAP + row + t + 1, mask=nxt, other=0.0).to(tl.float32))
    g = lam * dt
    e = tl.where(nxt, dt_n * (1.0 - lam_n), 0.0)
    tl.store(GAMMA + row + t, g, mask=ok)
    tl.store(ENEXT + row + t, e, mask=ok)
    tl.store(SCALE + row + t, g + e, mask=ok)


@triton.jit
def _weights_bwd_kernel(DT, TRAP, SEQ, DG, DE, DS, DDT, DTRAP, L, HAS_SEQ: tl.constexpr, HAS_DG: tl.constexpr,
                        HAS_DE: tl.constexpr, HAS_DS: tl.constexpr, BLOCK_T: tl.constexpr):
    """``DDT``, ``DTRAP`` (in ``DT``'s and ``Trap``'s dtypes) from the outputs' gradients, any of them absent:
    step ``t``'s own weight takes ``d gamma_t + d scale_t``, its ``e_t`` what reached ``e_next_{t-1}``."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row = tl.program_id(1).to(tl.int64) * L
    ok = t < L
    prv = ok & (t >= 1)
    if HAS_SEQ:
        prv = prv & (tl.load(SEQ + t - 1, mask=prv, other=-1) == tl.load(SEQ + t, mask=ok, other=-2))
    own = tl.zeros([BLOCK_T], dtype=tl.float32)
    back = tl.zeros([BLOCK_T], dtype=tl.float32)
    if HAS_DG:
        own += tl.load(DG + row + t, mask=ok, other=0.0).to(tl.float32)
    if HAS_DS:
        own += tl.load(DS + row + t, mask=ok, other=0.0).to(tl.float32)
        back += tl.load(DS + row + t - 1, mask=prv, other=0.0).to(tl.float32)
    if HAS_DE:
        back += tl.load(DE + row + t - 1, mask=prv, other=0.0).to(tl.float32)
    dt = tl.load(DT + row + t, mask=ok, other=0.0).to(tl.float32)
    lam = tl.sigmoid(tl.load(TRAP + row + t, mask=ok, other=0.0).to(tl.float32))
    ddt = own * lam + back * (1.0 - lam)
    dtrap = (own - back) * dt * lam * (1.0 - lam)
    tl.store(DDT + row + t, ddt.to(DDT.dtype.element_ty), mask=ok)
    tl.store(DTRAP + row + t, dtrap.to(DTRAP.dtype.element_ty), mask=ok)


weights_kernel = Kernel(_weights_kernel, flags=dict(HAS_SEQ="SEQ"))
weights_bwd_kernel = Kernel(_weights_bwd_kernel, flags=dict(HAS_SEQ="SEQ", HAS_DG="DG", HAS_DE="DE", HAS_DS="DS"))


def _block(device, L: int) -> int:
    """Steps per program: up to 1024; 4 in the interpreter, so tests cross blocks."""
    return 4 if run_mode(device).interpreted else min(1024, triton.next_power_of_2(max(L, 16)))


def step_weights(DT, Trap, seq=None):
    """``DT``, ``Trap`` ``(b, H, L)`` (any float dtype), ``seq`` ``(1, L)`` int32 or None -> ``(gamma, e_next,
    scale)``, each ``(b, H, L)`` fp32."""
    b, H, L = DT.shape
    DT, Trap = DT.contiguous(), Trap.contiguous()
    # three allocations, not views of one: an op's outputs may not alias one another
    gamma, e_next, scale = (torch.empty((b, H, L), device=DT.device, dtype=torch.float32) for _ in range(3))
    bt = _block(DT.device, L)
    weights_kernel((cdiv(L, bt), b * H), DT=DT, TRAP=Trap, SEQ=seq, GAMMA=gamma, ENEXT=e_next, SCALE=scale, L=L,
                   BLOCK_T=bt)
    return gamma, e_next, scale


def step_weights_backward(d_gamma, d_e_next, d_scale, DT, Trap, seq=None):
    """The gradients of :func:`step_weights` (any of the three None) -> ``(dDT, dTrap)`` in ``DT``'s and ``Trap``'s
    dtypes."""
    b, H, L = DT.shape
    DT, Trap = DT.contiguous(), Trap.contiguous()
    c = lambda g: g.contiguous() if g is not None else None   # noqa: E731
    ddt, dtrap = torch.empty_like(DT), torch.empty_like(Trap)
    bt = _block(DT.device, L)
    weights_bwd_kernel((cdiv(L, bt), b * H), DT=DT, TRAP=Trap, SEQ=seq, DG=c(d_gamma), DE=c(d_e_next),
                       DS=c(d_scale), DDT=ddt, DTRAP=dtrap, L=L, BLOCK_T=bt)
    return ddt, dtrap
