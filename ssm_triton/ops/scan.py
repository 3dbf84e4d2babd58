"""``linear_scan``: the first-order linear recurrence ``h_t = a_t * h_{t-1} + b_t``."""
import math
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..kernels import scan as _k
from ._dispatch import compiling, eager_autograd


def _rows(x: Tensor) -> Tensor:
    if x.dim() == 2 and x.is_contiguous():  # the common case costs nothing on the host
        return x
    # explicit row count: reshape(-1, 0) is ambiguous for empty sequences
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1]).contiguous()


def _forward(a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool) -> Tensor:
    h0_rows = h0.reshape(-1).contiguous() if h0 is not None else None
    h = _k.scan_forward(_rows(a), _rows(b), h0_rows, reverse)
    return h if h.shape == b.shape else h.view(b.shape)


def _backward_impl(grad: Tensor, a: Tensor, h: Tensor, h0: Optional[Tensor], reverse: bool):
    h0_rows = h0.reshape(-1).contiguous() if h0 is not None else None
    da, db, dh0 = _k.scan_backward(_rows(grad.to(h.dtype)), _rows(a), _rows(h), h0_rows, reverse)
    if da.shape != a.shape:
        da, db = da.view(a.shape), db.view(h.shape)
    return da, db, (dh0.view(h0.shape) if h0 is not None else None)


def _save(ctx, inputs, output):
    a, _, h0, reverse = inputs
    ctx.save_for_backward(a, output, h0)
    ctx.reverse = reverse


# ---- compile route: custom ops ----

@torch.library.custom_op("ssm_triton::linear_scan", mutates_args=())
def _linear_scan_op(a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool) -> Tensor:
    return _forward(a, b, h0, reverse)


@_linear_scan_op.register_fake
def _(a, b, h0, reverse):
    return torch.empty_like(b, memory_format=torch.contiguous_format)


@torch.library.custom_op("ssm_triton::linear_scan_backward", mutates_args=())
def _linear_scan_backward_op(
    grad: Tensor, a: Tensor, h: Tensor, h0: Optional[Tensor], reverse: bool
) -> tuple[Tensor, Tensor, Tensor]:
    da, db, dh0 = _backward_impl(grad, a, h, h0, reverse)
    return da, db, (dh0 if dh0 is not None else h.new_empty(0))  # custom ops cannot return None


@_linear_scan_backward_op.register_fake
def _(grad, a, h, h0, reverse):
    dh0 = torch.empty_like(h0) if h0 is not None else h.new_empty(0)
    return torch.empty_like(a), torch.empty_like(h), dh0


def _op_backward(ctx, grad):
    a, h, h0 = ctx.saved_tensors
    da, db, dh0 = _linear_scan_backward_op(grad, a, h, h0, ctx.reverse)
    return da, db, (dh0 if h0 is not None else None), None


_linear_scan_op.register_autograd(_op_backward, setup_context=_save)


# ---- eager route ----

def _eager_backward(ctx, grad):
    a, h, h0 = ctx.saved_tensors
    return (*_backward_impl(grad, a, h, h0, ctx.reverse), None)


_linear_scan_eager = eager_autograd("LinearScan", _forward, _save, _eager_backward)


def linear_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None, reverse: bool = False) -> Tensor:
    """First-order linear recurrence along the last dim, as a parallel associative scan.

    ``h_t = a_t * h_{t-1} + b_t`` for ``t = 0 .. L-1`` with ``h_{-1} = h0`` (zero when None).
    With ``reverse=True`` it runs from the end: ``h_t = a_t * h_{t+1} + b_t`` with ``h_L = h0``.

    Args:
        a: ``(..., L)`` decay coefficients; float32, bfloat16, float16 or float64.
        b: ``(..., L)`` inputs, same shape and dtype as ``a``.
        h0: optional ``(...)`` state outside the sequence on the side it starts; any float dtype.
        reverse: run from the last step to the first.

    Returns:
        ``h (..., L)`` in the dtype of ``b``; arithmetic is fp32 (fp64 for fp64 inputs).
        Differentiable in ``a``, ``b`` and ``h0``.
    """
    _validate.tensor("a", a, min_ndim=1, shape_doc="(..., L)")
    _validate.tensor("b", b, min_ndim=1, shape_doc="(..., L)")
    _validate.shape("b", b, a.shape, "a.shape (..., L)")
    _validate.same_dtype(("a", "b"), (a, b))
    if h0 is not None:
        _validate.tensor("h0", h0, shape_doc="(...) = a.shape[:-1]")
        _validate.shape("h0", h0, a.shape[:-1], "a.shape[:-1]")
    _validate.flag("reverse", reverse)
    _validate.devices(("a", "b", "h0"), (a, b, h0))
    if compiling():
        return _linear_scan_op(a, b, h0, reverse)
    return _linear_scan_eager(a, b, h0, reverse)
