"""``rmsnorm_fn``: the gated RMSNorm of Mamba-2's block, drop-in for mamba_ssm's function of that name."""
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..kernels import norm as _k
from ._layout import records_graph
from .norm_defer import Deferred
from . import _plans
from ._spec import OpSpec, build

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_GROUP = 65536


def _rows(t):
    return t.reshape(-1, t.shape[-1]).contiguous() if t is not None else None


def _strided_rows(t):
    """``t (..., F)`` as ``(R, F)`` rows, each contiguous, any row stride (the forward kernel takes it): a
    slice of a projection's columns (Mamba2's ``z``) is read in place."""
    if t is None:
        return None
    rows = t.reshape(-1, t.shape[-1])
    return rows if rows.stride(-1) == 1 or rows.shape[-1] == 1 else rows.contiguous()


def _forward(x, weight, bias, z, eps, group_size, norm_before_gate):
    y, rstd = _k.rmsnorm_forward(_strided_rows(x), weight.contiguous(),
                                 bias.contiguous() if bias is not None else None, _strided_rows(z), eps, group_size,
                                 gate_first=z is not None and not norm_before_gate)
    return y.view(x.shape), rstd


def _fake(x, weight, bias, z, eps, group_size, norm_before_gate):
    rows = x.numel() // x.shape[-1]
    return x.new_empty(x.shape), x.new_empty((rows, x.shape[-1] // group_size), dtype=torch.float32)


def _backward(saved, grads):
    x, weight, bias, z = saved["x"], saved["weight"], saved["bias"], saved["z"]
    dx, dw, db, dz = _k.rmsnorm_backward(
        _rows(grads["y"].to(x.dtype)), _rows(x), weight.contiguous(), bias.contiguous() if bias is not None else None,
        _rows(z), saved["rstd"], saved["eps"], saved["group_size"],
        gate_first=z is not None and not saved["norm_before_gate"])
    return dict(x=dx.view(x.shape), weight=dw, bias=db, z=dz.view(z.shape) if dz is not None else None)


_rmsnorm = build(OpSpec(
    "rmsnorm", "x: Tensor, weight: Tensor, bias: Tensor?, z: Tensor?, eps: float, group_size: int, "
    "norm_before_gate: bool", outputs=("y", "rstd"), forward=_forward, fake=_fake,
    grads=("x", "weight", "bias", "z"), grad_outputs=("y",), saves=("x", "weight", "bias", "z", "rstd"),
    backward=_backward))


def add_rmsnorm(x, residual: Optional[Tensor], weight: Tensor, eps: float, residual_dtype: torch.dtype):
    """A pre-norm block's ``residual = x + residual`` (``x`` alone when None), in ``residual_dtype``, and
    ``rmsnorm(residual.to(x.dtype)) * weight``, in one pass: ``(normed, residual)``. For calls that keep
    nothing for a backward (the LM's inference); the result equals the two steps' (the same roundings).

    Args: ``x (..., D)``, or a Mamba2 layer's output with its gated norm deferred (``norm_defer.Deferred``, whose
    scale the kernel applies to ``x`` in fp32 first); ``residual`` shaped like ``x`` or None; ``weight (D,)`` in
    ``x``'s dtype."""
    scale = None
    if isinstance(x, Deferred):
        ss = x.ss.reshape(-1, x.ss.shape[-1])
        scale, x = (ss.contiguous(), x.dim, x.eps), x.raw
    if records_graph(x, residual, weight):
        raise RuntimeError("add_rmsnorm has no backward: call it under torch.no_grad()")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual must be shaped like x {tuple(x.shape)}, got {tuple(residual.shape)}")
    D = x.shape[-1]
    _validate.shape("weight", weight, (D,), "(D,)")
    rows = x.reshape(-1, D).contiguous()
    res_out = torch.empty(rows.shape, device=x.device, dtype=residual_dtype)
    res_in = residual.reshape(-1, D).contiguous() if residual is not None else None
    y, _ = _k.rmsnorm_forward(rows, weight.contiguous(), None, None, eps, D, False, residual=res_in,
                              res_out=res_out, scale=scale)
    return y.view(x.shape), res_out.view(x.shape)


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
    tensors = (x, weight, bias, z)
    plan, plan_key = _plans.lookup(_PLANS, tensors, (eps, group_size, norm_before_gate))
    if plan:   # made after a call of this very signature passed the checks
        return plan(tensors)[0]
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
    y = _rmsnorm(*args)[0]
    _plans.remember(_PLANS, plan_key, lambda: _plan(x, weight, bias, z, eps, group_size, norm_before_gate))
    return y


# calls that record no graph: one bound launch per input signature (ops/_plans.py)
_PLANS = _plans.Plans()


def _plan(x, weight, bias, z, eps, group_size, norm_before_gate):
    """The forward's op plan where ``x`` and ``z`` reach the kernel as row views of themselves (no copy) and
    the weights are contiguous, else None."""
    rows = _strided_rows(x)
    zrows = _strided_rows(z)
    if rows.data_ptr() != x.data_ptr() or (z is not None and zrows.data_ptr() != z.data_ptr()) or any(
            t is not None and not t.is_contiguous() for t in (weight, bias)) or rows.numel() == 0:
        return None
    return _k.rmsnorm_plan(rows, weight, bias, zrows, eps, group_size, z is not None and not norm_before_gate,
                           x.shape)
