"""References for discretizing a diagonal SSM: ``delta (b, d, L)``, ``A (d, N)``, ``B (b, N, L)`` ->
``Abar, Bbar`` each ``(b, d, L, N)``. See ``ssm_triton.discretize`` for the three methods."""
import numpy as np
import torch

METHODS = ("zoh", "mamba", "bilinear")


def discretize_np(delta, A, B, method="zoh"):
    """NumPy float64, one formula per method, element by element through broadcasting."""
    dt = np.asarray(delta, dtype=np.float64)[..., None]          # (b, d, L, 1)
    a = np.asarray(A, dtype=np.float64)[None, :, None, :]        # (1, d, 1, N)
    bm = np.swapaxes(np.asarray(B, dtype=np.float64), 1, 2)[:, None]  # (b, 1, L, N)
    z = dt * a
    if method == "zoh":
        abar = np.exp(z)
        safe_a = np.where(a == 0, 1.0, a)
        # (exp(dt A) - 1) / A, whose limit at A = 0 is dt
        k = np.where(a == 0, dt, np.expm1(z) / safe_a)
    elif method == "mamba":
        abar = np.exp(z)
        k = np.broadcast_to(dt, z.shape)
    elif method == "bilinear":
        abar = (1 + z / 2) / (1 - z / 2)
        k = dt / (1 - z / 2)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return abar, k * bm


def discretize_torch(delta, A, B, method="zoh"):
    """PyTorch version of :func:`discretize_np`, differentiable in ``delta``, ``A`` and ``B``."""
    dt = delta[..., None]
    a = A[None, :, None, :]
    bm = B.transpose(1, 2)[:, None]
    z = dt * a
    if method == "zoh":
        abar = torch.exp(z)
        # k = (exp(delta A) - 1) / A: autograd then gets its delta-derivative as exactly exp(z).
        # Two spellings that look better are wrong far from 0: delta * expm1(z) / z cancels two
        # ~1/z terms, and torch's expm1 backward, grad * (expm1(z) + 1), is 0 once expm1 rounds
        # to -1. Near A = 0 a Taylor polynomial of delta * phi1(z), error < 1e-18 for |z| < 1e-2,
        # stands in for the 0/0 and for the cancellation in exp(z) - 1.
        small = z.abs() < 1e-2
        a_safe = torch.where(small, torch.ones_like(a), a)
        series = 1 + z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z * (1 / 120 + z * (1 / 720 + z / 5040)))))
        k = torch.where(small, dt * series, (torch.exp(z) - 1) / a_safe)
    elif method == "mamba":
        abar = torch.exp(z)
        k = dt.expand_as(z)
    elif method == "bilinear":
        abar = (1 + z / 2) / (1 - z / 2)
        k = dt / (1 - z / 2)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return abar, k * bm
