"""``linear_scan``: the first-order linear recurrence ``h_t = a_t * h_{t-1} + b_t``."""
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..kernels import scan as _k
from . import _plans
from ._spec import OpSpec, build


def _rows(x: Optional[Tensor]) -> Optional[Tensor]:
    # the kernels read (R, L) rows of any contiguous (..., L) tensor by its address: no reshape, no view (each a
    # PyTorch call of several microseconds on a GPU's host, replayed or not)
    return x if x is None or x.is_contiguous() else x.contiguous()


def _forward(a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool) -> tuple[Tensor]:
    return (_k.scan_forward(_rows(a), _rows(b), _rows(h0), reverse),)


def _backward(saved, grads):
    a, h, h0 = saved["a"], saved["h"], saved["h0"]
    g = grads["h"]
    g = g if g.dtype == h.dtype else g.to(h.dtype)
    da, db, dh0 = _k.scan_backward(_rows(g), _rows(a), h, _rows(h0), saved["reverse"])   # h: the forward's output
    return dict(a=da, b=db, h0=dh0)


_linear_scan = build(OpSpec(
    "linear_scan", "a: Tensor, b: Tensor, h0: Tensor?, reverse: bool", outputs=("h",), forward=_forward,
    fake=lambda a, b, h0, reverse: (torch.empty_like(b, memory_format=torch.contiguous_format),),
    grads=("a", "b", "h0"), grad_outputs=("h",), saves=("a", "h", "h0"), like=dict(b="h"), backward=_backward))


def _validate_all(a, b, h0, reverse) -> None:
    _validate.tensor("a", a, min_ndim=1, shape_doc="(..., L)")
    _validate.tensor("b", b, min_ndim=1, shape_doc="(..., L)")
    _validate.shape("b", b, a.shape, "a.shape (..., L)")
    _validate.same_dtype(("a", "b"), (a, b))
    if h0 is not None:
        _validate.tensor("h0", h0, shape_doc="(...) = a.shape[:-1]")
        _validate.shape("h0", h0, a.shape[:-1], "a.shape[:-1]")
    _validate.flag("reverse", reverse)
    _validate.devices(("a", "b", "h0"), (a, b, h0))


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
    tensors = (a, b, h0)
    plan, plan_key = _plans.lookup(_PLANS, tensors, (reverse,))
    if plan:   # made after a call of this very signature passed the checks
        return plan(tensors)[0]
    # the checks read shapes, dtypes and devices only: once per signature (a call that records a graph has no plan)
    key = _validate.signature(tensors, (reverse,))
    if _PASSED.get(key) is None:
        _validate_all(a, b, h0, reverse)
        _PASSED.put(key, True)
    h = _linear_scan(a, b, h0, reverse)[0]
    plain = all(t is None or t.is_contiguous() for t in tensors)   # no copy on the way to the kernel
    _plans.remember(_PLANS, plan_key, lambda: plain and _k.scan_plan(a, b, h0, reverse))
    return h


# calls that record no graph: one bound launch per input signature (ops/_plans.py)
_PLANS = _plans.Plans()
_PASSED = _validate.Passed()
