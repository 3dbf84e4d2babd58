"""``discretize``: continuous diagonal SSM parameters -> per-step ``(Abar, Bbar)``."""
import torch
from torch import Tensor

from .. import _validate
from ..kernels import discretize as _k
from . import _plans
from ._spec import OpSpec, build

METHODS = tuple(_k.METHODS)


def _out_dtype(delta: Tensor, A: Tensor, B: Tensor) -> torch.dtype:
    return torch.promote_types(torch.promote_types(delta.dtype, A.dtype), B.dtype)


def _forward(delta: Tensor, A: Tensor, B: Tensor, method: str) -> tuple[Tensor, Tensor]:
    return _k.discretize_forward(delta.contiguous(), A.contiguous(), B.contiguous(), method,
                                 _out_dtype(delta, A, B))


def _fake(delta, A, B, method):
    shape = (*delta.shape, A.shape[1])
    dtype = _out_dtype(delta, A, B)
    return delta.new_empty(shape, dtype=dtype), delta.new_empty(shape, dtype=dtype)


def _backward(saved, grads):
    ga, gb = (g.contiguous() if g is not None else None for g in (grads["Abar"], grads["Bbar"]))
    delta, A, B = saved["delta"], saved["A"], saved["B"]
    dd, dA, dB = _k.discretize_backward(ga, gb, delta.contiguous(), A.contiguous(), B.contiguous(), saved["method"])
    return dict(delta=dd, A=dA, B=dB)


_discretize = build(OpSpec(
    "discretize", "delta: Tensor, A: Tensor, B: Tensor, method: str", outputs=("Abar", "Bbar"),
    forward=_forward, fake=_fake, grads=("delta", "A", "B"), grad_outputs=("Abar", "Bbar"),
    saves=("delta", "A", "B"), backward=_backward))


def discretize(delta: Tensor, A: Tensor, B: Tensor, method: str = "zoh") -> tuple[Tensor, Tensor]:
    """Discretize a diagonal SSM with a per-step ``delta``.

    With ``z = delta * A``:

    * ``"zoh"`` (zero-order hold, exact for diagonal ``A``): ``Abar = exp(z)``,
      ``Bbar = (exp(z) - 1) / A * B``, finite and accurate as ``A -> 0`` (limit ``delta * B``);
    * ``"mamba"`` (Mamba's simplification): ``Abar = exp(z)``, ``Bbar = delta * B``;
    * ``"bilinear"`` (Tustin): ``Abar = (1 + z/2) / (1 - z/2)``, ``Bbar = delta * B / (1 - z/2)``.

    Args:
        delta: ``(batch, dim, L)`` step sizes.
        A: ``(dim, N)`` diagonal state matrix (real; negative for a stable system).
        B: ``(batch, N, L)`` input matrix per step.
        method: ``"zoh"``, ``"mamba"`` or ``"bilinear"``.

    Returns:
        ``(Abar, Bbar)``, each ``(batch, dim, L, N)``, in the promoted dtype of the inputs
        (fp32 when ``A`` is fp32, as in Mamba). Differentiable in ``delta``, ``A`` and ``B``.
    """
    tensors = (delta, A, B)
    plan, plan_key = _plans.lookup(_PLANS, tensors, (method,))
    if plan:   # made after a call of this very signature passed the checks
        return tuple(plan(tensors))
    _validate.tensor("delta", delta, ndim=3, shape_doc="(batch, dim, L)")
    _validate.tensor("A", A, ndim=2, shape_doc="(dim, N)")
    _validate.tensor("B", B, ndim=3, shape_doc="(batch, N, L)")
    bsz, dim, L = delta.shape
    if A.shape[0] != dim:
        raise ValueError(f"A must have shape (dim, N) with dim = delta.shape[1] = {dim}, got {tuple(A.shape)}")
    _validate.shape("B", B, (bsz, A.shape[1], L), "(batch, N, L) from delta (batch, dim, L) and A (dim, N)")
    _validate.one_of("method", method, METHODS)
    _validate.devices(("delta", "A", "B"), (delta, A, B))
    out = _discretize(delta, A, B, method)
    _plans.remember(_PLANS, plan_key, lambda: _k.forward_plan(delta, A, B, method, _out_dtype(delta, A, B)))
    return out


# calls that record no graph: one bound launch per input signature (ops/_plans.py)
_PLANS = _plans.Plans()
