"""``discretize``: continuous diagonal SSM parameters -> per-step ``(Abar, Bbar)``."""
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..kernels import discretize as _k
from ._dispatch import compiling, eager_autograd

METHODS = tuple(_k.METHODS)


def _out_dtype(delta: Tensor, A: Tensor, B: Tensor) -> torch.dtype:
    return torch.promote_types(torch.promote_types(delta.dtype, A.dtype), B.dtype)


def _forward(delta: Tensor, A: Tensor, B: Tensor, method: str) -> tuple[Tensor, Tensor]:
    return _k.discretize_forward(delta.contiguous(), A.contiguous(), B.contiguous(), method,
                                 _out_dtype(delta, A, B))


def _backward_impl(g_abar: Optional[Tensor], g_bbar: Optional[Tensor], delta: Tensor, A: Tensor, B: Tensor,
                   method: str) -> tuple[Tensor, Tensor, Tensor]:
    ga = g_abar.contiguous() if g_abar is not None else None
    gb = g_bbar.contiguous() if g_bbar is not None else None
    dd, dA, dB = _k.discretize_backward(ga, gb, delta.contiguous(), A.contiguous(), B.contiguous(), method)
    return dd, dA.to(A.dtype), dB.to(B.dtype)


def _save(ctx, inputs, output):
    delta, A, B, method = inputs
    ctx.save_for_backward(delta, A, B)
    ctx.method = method


# ---- compile route: custom ops ----

@torch.library.custom_op("ssm_triton::discretize", mutates_args=())
def _discretize_op(delta: Tensor, A: Tensor, B: Tensor, method: str) -> tuple[Tensor, Tensor]:
    return _forward(delta, A, B, method)


@_discretize_op.register_fake
def _(delta, A, B, method):
    shape = (*delta.shape, A.shape[1])
    dtype = _out_dtype(delta, A, B)
    return delta.new_empty(shape, dtype=dtype), delta.new_empty(shape, dtype=dtype)


@torch.library.custom_op("ssm_triton::discretize_backward", mutates_args=())
def _discretize_backward_op(
    g_abar: Optional[Tensor], g_bbar: Optional[Tensor], delta: Tensor, A: Tensor, B: Tensor, method: str
) -> tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(g_abar, g_bbar, delta, A, B, method)


@_discretize_backward_op.register_fake
def _(g_abar, g_bbar, delta, A, B, method):
    return torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B)


def _op_backward(ctx, g_abar, g_bbar):
    delta, A, B = ctx.saved_tensors
    if g_abar is None and g_bbar is None:
        return None, None, None, None
    return (*_discretize_backward_op(g_abar, g_bbar, delta, A, B, ctx.method), None)


_discretize_op.register_autograd(_op_backward, setup_context=_save)


# ---- eager route ----

def _eager_backward(ctx, g_abar, g_bbar):
    delta, A, B = ctx.saved_tensors
    return (*_backward_impl(g_abar, g_bbar, delta, A, B, ctx.method), None)


_discretize_eager = eager_autograd("Discretize", _forward, _save, _eager_backward)


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
    _validate.tensor("delta", delta, ndim=3, shape_doc="(batch, dim, L)")
    _validate.tensor("A", A, ndim=2, shape_doc="(dim, N)")
    _validate.tensor("B", B, ndim=3, shape_doc="(batch, N, L)")
    bsz, dim, L = delta.shape
    if A.shape[0] != dim:
        raise ValueError(f"A must have shape (dim, N) with dim = delta.shape[1] = {dim}, got {tuple(A.shape)}")
    _validate.shape("B", B, (bsz, A.shape[1], L), "(batch, N, L) from delta (batch, dim, L) and A (dim, N)")
    _validate.one_of("method", method, METHODS)
    _validate.devices(("delta", "A", "B"), (delta, A, B))
    if compiling():
        return _discretize_op(delta, A, B, method)
    return _discretize_eager(delta, A, B, method)
