"""References for Mamba-1's selective scan.

Shapes (as in mamba_ssm): ``u, delta, z (b, d, L)``; ``A (d, N)``; ``B, C`` variable ``(b, N, L)``,
grouped ``(b, G, N, L)`` (channel ``c`` reads group ``c // (d // G)``) or fixed ``(d, N)``;
``D, delta_bias (d,)``; ``initial_state (b, d, N)``. Per channel and step:

    dt    = softplus(delta + delta_bias)          (softplus only when delta_softplus)
    h_t   = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t
    y_t   = sum_n C_t[n] * h_t[n] + D * u_t
    out_t = y_t * silu(z_t)                        (when z is given)
"""
import numpy as np
import torch


def _per_channel_np(M, b, d):
    """``B`` or ``C`` as a float64 array indexed ``[batch, channel, step, n]``, or ``[channel, n]`` if fixed."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim == 2:
        return M
    if M.ndim == 3:
        M = M[:, None]
    G = M.shape[1]
    return np.repeat(np.swapaxes(M, 2, 3), d // G, axis=1)  # (b, d, L, N)


def selective_scan_np(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      initial_state=None):
    """NumPy float64 loop over time. Returns ``(out (b, d, L), last_state (b, d, N))``."""
    u = np.asarray(u, dtype=np.float64)
    dt = np.asarray(delta, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    bsz, d, L = u.shape
    if delta_bias is not None:
        dt = dt + np.asarray(delta_bias, dtype=np.float64)[:, None]
    if delta_softplus:
        dt = np.logaddexp(0.0, dt)  # log(1 + e^x), overflow-free
    Bc, Cc = _per_channel_np(B, bsz, d), _per_channel_np(C, bsz, d)
    h = np.zeros((bsz, d, A.shape[1])) if initial_state is None else np.asarray(initial_state, np.float64).copy()
    y = np.empty((bsz, d, L))
    for t in range(L):
        b_t = Bc if Bc.ndim == 2 else Bc[:, :, t]
        c_t = Cc if Cc.ndim == 2 else Cc[:, :, t]
        h = np.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * b_t
        y[:, :, t] = (h * c_t).sum(-1)
    if D is not None:
        y = y + np.asarray(D, dtype=np.float64)[:, None] * u
    if z is not None:
        zz = np.asarray(z, dtype=np.float64)
        y = y * zz / (1.0 + np.exp(-zz))
    return y, h


def _per_channel_torch(M, d):
    if M.dim() == 2:
        return M
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M.transpose(2, 3).repeat_interleave(d // M.shape[1], dim=1)  # (b, d, L, N)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, initial_state=None):
    """PyTorch loop with mamba_ssm's ``selective_scan_ref`` signature (plus ``initial_state``),
    differentiable in every tensor input; computes in float32 or wider, returns ``out`` in ``u``'s dtype."""
    dtype_in = u.dtype
    wide = torch.promote_types(torch.float32, u.dtype)
    u, dt, A = u.to(wide), delta.to(wide), A.to(wide)
    bsz, d, L = u.shape
    if delta_bias is not None:
        dt = dt + delta_bias.to(wide)[:, None]
    if delta_softplus:
        dt = torch.nn.functional.softplus(dt)
    Bc, Cc = _per_channel_torch(B.to(wide), d), _per_channel_torch(C.to(wide), d)
    h = u.new_zeros((bsz, d, A.shape[1])) if initial_state is None else initial_state.to(wide)
    ys = []
    for t in range(L):
        b_t = Bc if Bc.dim() == 2 else Bc[:, :, t]
        c_t = Cc if Cc.dim() == 2 else Cc[:, :, t]
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * b_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=2) if ys else u.new_zeros(u.shape)
    if D is not None:
        y = y + D.to(wide)[:, None] * u
    if z is not None:
        y = y * torch.nn.functional.silu(z.to(wide))
    out = y.to(dtype_in)
    return (out, h) if return_last_state else out
