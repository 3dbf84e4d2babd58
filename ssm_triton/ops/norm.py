"""``rmsnorm_fn``: the gated RMSNorm of Mamba-2's block, drop-in for mamba_ssm's function of that name."""
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..kernels import norm as _k
from ._dispatch import compiling, eager_autograd

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_GROUP = 65536


def _rows(t):
    return t.reshape(-1, t.shape[-1]).contiguous() if t is not None else None


def _forward(x, weight, bias, z, eps, group_size, norm_before_gate):
    y, rstd = _k.rmsnorm_forward(_rows(x), weight.contiguous(), bias.contiguous() if bias is not None else None,
                                 _rows(z), eps, group_size, gate_first=z is not None and not norm_before_gate)
    return y.view(x.shape), rstd


def _save(ctx, inputs, output):
    x, weight, bias, z, eps, group_size, norm_before_gate = inputs
    ctx.save_for_backward(x, weight, bias, z, output[1])
    ctx.flags = (eps, group_size, norm_before_gate)
    ctx.mark_non_differentiable(output[1])


def _backward_impl(dy, x, weight, bias, z, rstd, eps, group_size, norm_before_gate):
    dx, dw, db, dz = _k.rmsnorm_backward(_rows(dy.to(x.dtype)), _rows(x), weight.contiguous(),
                                         bias.contiguous() if bias is not None else None, _rows(z), rstd, eps, group_size,
                                         gate_first=z is not None and not norm_before_gate)
    return (dx.view(x.shape), dw.to(weight.dtype), db.to(bias.dtype) if db is not None else None,
            dz.view(z.shape) if dz is not None else None)


@torch.library.custom_op("ssm_triton::rmsnorm", mutates_args=())
def _rmsnorm_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], z: Optional[Tensor], eps: float, group_size: int,
                norm_before_gate: bool) -> tuple[Tensor, Tensor]:
    return _forward(x, weight, bias, z, eps, group_size, norm_before_gate)


@_rmsnorm_op.register_fake
def _(x, weight, bias, z, eps, group_size, norm_before_gate):
    rows = x.numel() // x.shape[-1]
    return torch.empty_like(x), x.new_empty((rows, x.shape[-1] // group_size), dtype=torch.float32)


@torch.library.custom_op("ssm_triton::rmsnorm_backward", mutates_args=())
def _rmsnorm_backward_op(dy: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], z: Optional[Tensor],
                         rstd: Tensor, eps: float, group_size: int, norm_before_gate: bool) -> list[Tensor]:
    grads = _backward_impl(dy, x, weight, bias, z, rstd, eps, group_size, norm_before_gate)
    return [g if g is not None else x.new_empty(0) for g in grads]


@_rmsnorm_backward_op.register_fake
def _(dy, x, weight, bias, z, rstd, eps, group_size, norm_before_gate):
    return [torch.empty_like(t) if t is not None else x.new_empty(0) for t in (x, weight, bias, z)]


def _op_backward(ctx, dy, _drstd):
    x, weight, bias, z, rstd = ctx.saved_tensors
    g = _rmsnorm_backward_op(dy, x, weight, bias, z, rstd, *ctx.flags)
    return (g[0], g[1], g[2] if bias is not None else None, g[3] if z is not None else None, None, None, None)


_rmsnorm_op.register_autograd(_op_backward, setup_context=_save)


def _eager_backward(ctx, dy, _drstd):
    x, weight, bias, z, rstd = ctx.saved_tensors
    return (*_backward_impl(dy, x, weight, bias, z, rstd, *ctx.flags), None, None, None)


_rmsnorm_eager = eager_autograd("RMSNormGated", _forward, _save, _eager_backward)


def rmsnorm_fn(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, z: Optional[Tensor] = None,
               eps: float = 1e-6, group_size: Optional[int] = None, norm_before_gate: bool = True) -> Tensor:
    """Gated RMSNorm over groups of ``group_size`` features of the last dim (all ``D`` by default).

    ``norm_before_gate=True``: ``y = rmsnorm(x) * weight + bias``, then ``* silu(z)``;
    ``False`` (Mamba-2's block): ``y = rmsnorm(x * silu(z)) * weight + bias``.

    Args:
        x: ``(..., D)`` fp32 / bf16 / fp16.  z: optional gate shaped like ``x``.
        weight, bias: ``(D,)``.  group_size: divides ``D`` (at most 65536).
    Returns ``y`` shaped like ``x`` in its dtype; differentiable in x, weight, bias and z.
    """
    _validate.tensor("x", x, min_ndim=1, dtypes=IO_DTYPES, shape_doc="(..., D)")
    D = x.shape[-1]
    _validate.tensor("weight", weight, ndim=1, dtypes=IO_DTYPES, shape_doc="(D,)")
    _validate.shape("weight", weight, (D,), "(D,)")
    if bias is not None:
        _validate.tensor("bias", bias, ndim=1, dtypes=IO_DTYPES, shape_doc="(D,)")
        _validate.shape("bias", bias, (D,), "(D,)")
    if z is not None:
        _validate.tensor("z", z, dtypes=IO_DTYPES, shape_doc="shaped like x")
        _validate.shape("z", z, x.shape, "shaped like x")
    group_size = D if group_size is None else group_size
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 or D % group_size:
        raise ValueError(f"group_size must be a positive int dividing D = {D}, got {group_size!r}")
    if group_size > MAX_GROUP:
        raise ValueError(f"group_size = {group_size} is above the supported {MAX_GROUP}")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    _validate.flag("norm_before_gate", norm_before_gate)
    _validate.devices(("x", "weight", "bias", "z"), (x, weight, bias, z))
    args = (x, weight, bias, z, float(eps), group_size, norm_before_gate)
    y, _ = _rmsnorm_op(*args) if compiling() else _rmsnorm_eager(*args)
    return y
