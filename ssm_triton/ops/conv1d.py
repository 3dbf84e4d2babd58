"""``causal_conv1d_fn`` and ``causal_conv1d_update``: drop-ins for the causal-conv1d package's functions."""
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..kernels import conv1d as _k
from . import _plans
from ._spec import OpSpec, build

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
ACTIVATIONS = (None, "silu", "swish")
WIDTHS = (2, 3, 4)


def _backward(saved, grads):
    x, weight, bias, seq_idx = saved["x"], saved["weight"], saved["bias"], saved["seq_idx"]
    dx, dw, db = _k.conv_backward(grads["out"], x, weight, bias, seq_idx, saved["silu"])   # any strides
    return dict(x=dx, weight=dw, bias=db)


_conv = build(OpSpec(
    "causal_conv1d", "x: Tensor, weight: Tensor, bias: Tensor?, seq_idx: Tensor?, silu: bool", outputs=("out",),
    forward=lambda x, weight, bias, seq_idx, silu: (_k.conv_forward(x, weight, bias, seq_idx, silu),),
    fake=lambda x, weight, bias, seq_idx, silu: (_k.like(x),), grads=("x", "weight", "bias"),
    grad_outputs=("out",), saves=("x", "weight", "bias", "seq_idx"), backward=_backward))

_update = build(OpSpec(
    "causal_conv1d_update", "x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor?, silu: bool",
    outputs=("out",), mutates=("conv_state",),
    forward=lambda x, conv_state, weight, bias, silu: (_k.conv_update(x, conv_state, weight, bias, silu),),
    fake=lambda x, conv_state, weight, bias, silu: (torch.empty(x.shape, dtype=x.dtype, device=x.device),)))


def _check_weight(weight, bias, dim):
    _validate.tensor("weight", weight, ndim=2, dtypes=IO_DTYPES, shape_doc="(dim, width)")
    if weight.shape[0] != dim or weight.shape[1] not in WIDTHS:
        raise ValueError(f"weight must have shape (dim, width) with dim = {dim} and width in {WIDTHS}, "
                         f"got {tuple(weight.shape)}")
    if bias is not None:
        _validate.tensor("bias", bias, ndim=1, dtypes=IO_DTYPES, shape_doc="(dim,)")
        _validate.shape("bias", bias, (dim,), "(dim,)")


def _silu(activation) -> bool:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation is not None


def causal_conv1d_fn(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, seq_idx: Optional[Tensor] = None,
                     activation: Optional[str] = None) -> Tensor:
    """Causal depthwise conv1d: ``out[b, d, t] = act(bias[d] + sum_k weight[d, k] x[b, d, t - W + 1 + k])``.

    Args:
        x: ``(batch, dim, L)`` fp32 / bf16 / fp16.  weight: ``(dim, W)``, W in 2..4.  bias: ``(dim,)``.
        seq_idx: ``(batch, L)`` int32, non-decreasing: the window does not reach into an earlier sequence.
        activation: None, ``"silu"`` or ``"swish"``.
    Returns ``(batch, dim, L)`` in ``x``'s dtype; differentiable in x, weight and bias. ``x`` may have any
    strides; a channel-last ``x`` (``x.stride(1) == 1``, e.g. ``xBC.transpose(1, 2)`` of a projection's
    columns) is read in place and gives a channel-last output (contiguous once transposed back), as
    causal-conv1d's channel-last layout does.
    """
    tensors = (x, weight, bias, seq_idx)
    plan, plan_key = _plans.lookup(_FWD_PLANS, tensors, (activation,))
    if plan:   # made after a call of this very signature passed the checks
        return plan(tensors)[0]
    _validate.tensor("x", x, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, dim, L)")
    bsz, dim, L = x.shape
    _check_weight(weight, bias, dim)
    if seq_idx is not None:
        _validate.tensor("seq_idx", seq_idx, ndim=2, dtypes=(torch.int32,), shape_doc="(batch, L)")
        _validate.shape("seq_idx", seq_idx, (bsz, L), "(batch, L)")
    silu = _silu(activation)
    _validate.devices(("x", "weight", "bias", "seq_idx"), (x, weight, bias, seq_idx))
    c = lambda t: t.contiguous() if t is not None else None  # noqa: E731
    args = (x, c(weight), c(bias), c(seq_idx), silu)   # the kernels take x's strides
    out = _conv(*args)[0]
    plain = all(t is None or t.is_contiguous() for t in (weight, bias, seq_idx))
    _plans.remember(_FWD_PLANS, plan_key, lambda: plain and _k.forward_plan(*args))
    return out


def causal_conv1d_update(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                         activation: Optional[str] = None) -> Tensor:
    """Decode steps: appends ``x`` to ``conv_state`` in place (its oldest entries drop out) and returns the
    new steps' outputs. ``x (batch, dim)`` or ``(batch, dim, L)``; ``conv_state (batch, dim, S)`` with
    ``S >= W - 1``, any strides; returns ``out`` shaped like ``x``. Not differentiable."""
    tensors = (x, conv_state, weight, bias)
    plan, plan_key = _plans.lookup(_UPDATE_PLANS, tensors, (activation,))
    if plan:   # made after a call of this very signature passed the checks
        return plan(tensors)[0]
    _validate.tensor("x", x, dtypes=IO_DTYPES, shape_doc="(batch, dim) or (batch, dim, L)")
    if x.dim() not in (2, 3):
        raise ValueError(f"x must be (batch, dim) or (batch, dim, L), got shape {tuple(x.shape)}")
    bsz, dim = x.shape[:2]
    _check_weight(weight, bias, dim)
    _validate.tensor("conv_state", conv_state, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, dim, state_len)")
    W = weight.shape[1]
    if conv_state.shape[:2] != (bsz, dim) or conv_state.shape[2] < W - 1:
        raise ValueError(f"conv_state must have shape (batch, dim, state_len) = ({bsz}, {dim}, >= {W - 1}), "
                         f"got {tuple(conv_state.shape)}")
    silu = _silu(activation)
    _validate.devices(("x", "conv_state", "weight", "bias"), (x, conv_state, weight, bias))
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, conv_state, weight, bias)):
        raise RuntimeError("causal_conv1d_update is not differentiable (it updates conv_state in place); "
                           "call it under torch.no_grad()")
    x3 = x[..., None] if x.dim() == 2 else x   # read through its strides: a slice of in_proj's row needs no copy
    args = (x3, conv_state, weight.contiguous(), bias.contiguous() if bias is not None else None, silu)
    out = _update(*args)[0]
    plain = weight.is_contiguous() and (bias is None or bias.is_contiguous())
    _plans.remember(_UPDATE_PLANS, plan_key,
                    lambda: plain and _k.update_plan(x3, conv_state, weight, bias, silu, x.shape))
    return out[..., 0] if x.dim() == 2 else out


# forwards that record no graph, and steps: one bound launch per input signature (ops/_plans.py)
_FWD_PLANS = _plans.Plans()
_UPDATE_PLANS = _plans.Plans()


def split_conv(zxbcdt: Tensor, conv1d_weight: Tensor, conv1d_bias: Optional[Tensor], seq_idx: Optional[Tensor],
               activation: Optional[str], dim: int, ngroups: int, N: int, H: int, d_mlp: int = 0) -> tuple:
    """Mamba-2's in_proj output ``zxbcdt (b, L, 2 d_mlp + 2 dim + 2 G N + H)`` cut into ``(z0, x0, z, x, B, C, dt)``
    (column views), its ``xBC`` columns through :func:`causal_conv1d_fn` first (``x, B, C`` views of the conv's
    channel-last output)."""
    z0, x0, z, xBC, dt = torch.split(zxbcdt, [d_mlp, d_mlp, dim, dim + 2 * ngroups * N, H], dim=-1)
    xBC = causal_conv1d_fn(xBC.transpose(1, 2), conv1d_weight, conv1d_bias, seq_idx=seq_idx,
                           activation=activation).transpose(1, 2)
    x, B, C = torch.split(xBC, [dim, ngroups * N, ngroups * N], dim=-1)
    return z0, x0, z, x, B, C, dt
