"""Reference for one decode step, the op behind mamba_ssm's ``selective_state_update``.

Layouts (as in mamba_ssm): single-head ``state (b, d, N)``, ``x, dt, z (b, d)``, ``A (d, N)``,
``B, C (b, N)``, ``D, dt_bias (d,)``; multi-head ``state (b, H, P, N)``, ``x, dt, z (b, H, P)``,
``A (H, P, N)``, ``B, C (b, G, N)`` (head ``h`` reads group ``h // (H // G)``), ``D, dt_bias (H, P)``.
With ``state_batch_indices (b,)`` the state is a cache of any number of rows and row ``i`` of the
batch uses cache row ``state_batch_indices[i]``. Per channel:

    dt    = softplus(dt + dt_bias)         (softplus only when dt_softplus)
    state = exp(dt A) * state + dt * B * x
    out   = state . C + D x,   then * silu(z)
"""
import numpy as np


def selective_state_update_np(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False,
                              state_batch_indices=None):
    """NumPy float64. Returns ``(out, new_state)``; ``new_state`` is the whole cache, with the rows the
    batch does not index unchanged."""
    state = np.array(state, dtype=np.float64)
    single = state.ndim == 3
    cache = state[:, None] if single else state
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if single else x                                              # (b, H, P)
    dt = np.asarray(dt, dtype=np.float64)
    dt = dt[:, None] if single else dt
    A = np.asarray(A, dtype=np.float64)
    A = A[None] if single else A                                                 # (H, P, N)
    B = np.asarray(B, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    B, C = (B[:, None], C[:, None]) if single else (B, C)                        # (b, G, N)
    H, G = x.shape[1], B.shape[1]
    group = np.arange(H) // (H // G)
    if dt_bias is not None:
        bias = np.asarray(dt_bias, dtype=np.float64)
        dt = dt + (bias[None] if single else bias)
    if dt_softplus:
        dt = np.logaddexp(0.0, dt)
    rows = np.arange(x.shape[0]) if state_batch_indices is None else np.asarray(state_batch_indices)
    h = cache[rows]                                                               # (b, H, P, N)
    h = np.exp(dt[..., None] * A) * h + (dt * x)[..., None] * B[:, group][:, :, None, :]
    out = np.einsum("bhpn,bhn->bhp", h, C[:, group])
    if D is not None:
        skip = np.asarray(D, dtype=np.float64)
        out = out + (skip[None] if single else skip) * x
    if z is not None:
        zz = np.asarray(z, dtype=np.float64)
        zz = zz[:, None] if single else zz
        out = out * zz / (1.0 + np.exp(-zz))
    cache = cache.copy()
    cache[rows] = h
    if single:
        return out[:, 0], cache[:, 0]
    return out, cache
