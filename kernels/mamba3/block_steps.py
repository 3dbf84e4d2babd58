"""The ``Mamba3`` block's step sizes for a call with no backward to come, in one launch: from in_proj's output rows
``(b, L, ...)`` (the ``dd_dt``, ``dd_A`` and ``trap`` columns read in place), ``DT = softplus(dd_dt + dt_bias)``,
``ADT = min(-softplus(dd_A), -A_floor) DT`` and ``Trap``, each written ``(b, H, L)`` fp32 as the scans read them;
with a ``MASK (b, L)`` (left padding) ``DT`` and ``ADT`` are zero where it is 0. Composed in PyTorch the same took
about eleven launches (two casts, two softplus, a negation, a clamp, an add, a product, three transposing copies)."""
import torch
import triton
import triton.language as tl

from ..activations import softplus
from ..host import cdiv, next_power_of_2
from ..tuning import Kernel


@triton.jit
def _block_steps_kernel(PROJ, DT_BIAS, MASK, DT, ADT, TRAP, L, H, s_b, s_l, col_dt, col_a, col_trap, a_floor,
                        HAS_MASK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_H: tl.constexpr):
    bi = tl.program_id(1)
    t = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    h = tl.arange(0, BLOCK_H)
    ok = (t < L)[:, None] & (h < H)[None, :]
    at = PROJ + bi.to(tl.int64) * s_b + t.to(tl.int64)[:, None] * s_l + h[None, :]
    dd_dt = tl.load(at + col_dt, mask=ok, other=0.0).to(tl.float32)
    dd_a = tl.load(at + col_a, mask=ok, other=0.0).to(tl.float32)
    trap = tl.load(at + col_trap, mask=ok, other=0.0).to(tl.float32)
    dt = softplus(dd_dt + tl.load(DT_BIAS + h, mask=h < H, other=0.0).to(tl.float32)[None, :])
    if HAS_MASK:   # a zero step neither decays, adds, turns the angle nor weighs its input
        keep = tl.load(MASK + bi.to(tl.int64) * L + t, mask=t < L, other=0) != 0
        dt = tl.where(keep[:, None], dt, 0.0)
    adt = tl.minimum(-softplus(dd_a), -a_floor) * dt
    out = (bi.to(tl.int64) * H + h[None, :]) * L + t[:, None]   # (b, H, L): steps contiguous
    tl.store(DT + out, dt, mask=ok)
    tl.store(ADT + out, adt, mask=ok)
    tl.store(TRAP + out, trap, mask=ok)


block_steps_kernel = Kernel(_block_steps_kernel, flags=dict(HAS_MASK="MASK"))


def block_steps(proj: torch.Tensor, col_dt: int, col_a: int, col_trap: int, H: int, dt_bias: torch.Tensor,
                a_floor: float, mask: torch.Tensor | None = None):
    """``(DT, ADT, Trap)``, each ``(b, H, L)`` fp32 contiguous, from ``proj (b, L, C)`` whose last dimension is
    contiguous (its columns ``col_dt``, ``col_a``, ``col_trap`` start ``H`` each); ``mask (b, L)`` int32 or None."""
    b, L, _ = proj.shape
    made = [torch.empty((b, H, L), device=proj.device, dtype=torch.float32) for _ in range(3)]
    block_h = max(2, next_power_of_2(H))
    block_l = max(16, min(128, 4096 // block_h))
    block_steps_kernel((cdiv(L, block_l), b), PROJ=proj, DT_BIAS=dt_bias, MASK=mask, DT=made[0], ADT=made[1],
                       TRAP=made[2], L=L, H=H, s_b=proj.stride(0), s_l=proj.stride(1), col_dt=col_dt, col_a=col_a,
                       col_trap=col_trap, a_floor=float(a_floor), BLOCK_L=block_l, BLOCK_H=block_h)
    return made
