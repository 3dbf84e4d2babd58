"""References for the first-order linear recurrence ``h_t = a_t * h_{t-1} + b_t`` along the last dim."""
import numpy as np
import torch


def linear_scan_np(a, b, h0=None, reverse=False):
    """NumPy float64 loop over time. ``a, b (..., L)``, ``h0 (...)`` or None -> ``h (..., L)`` float64.

    ``reverse=True`` runs ``h_t = a_t * h_{t+1} + b_t`` from the end, ``h0`` being the state after the last step.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    h = np.empty(np.broadcast_shapes(a.shape, b.shape))
    state = np.zeros(h.shape[:-1]) if h0 is None else np.asarray(h0, dtype=np.float64).copy()
    L = h.shape[-1]
    steps = range(L - 1, -1, -1) if reverse else range(L)
    for t in steps:
        state = a[..., t] * state + b[..., t]
        h[..., t] = state
    return h


def linear_scan_torch(a, b, h0=None, reverse=False):
    """The same loop in PyTorch, differentiable in ``a``, ``b`` and ``h0``; computes in the inputs' dtype."""
    state = torch.zeros_like(b[..., 0]) if h0 is None else h0
    L = b.shape[-1]
    out = [None] * L
    steps = range(L - 1, -1, -1) if reverse else range(L)
    for t in steps:
        state = a[..., t] * state + b[..., t]
        out[t] = state
    if L == 0:
        return torch.empty_like(b)
    return torch.stack(out, dim=-1)
