"""References for Mamba-2's state-space duality (SSD) scan, the op behind ``mamba_chunk_scan_combined``.

Shapes (as in mamba_ssm): ``x, z (b, L, H, P)``; ``dt (b, L, H)``; ``A, dt_bias (H,)``; ``B, C
(b, L, G, N)`` with G dividing H (head ``h`` reads group ``h // (H // G)``); ``D (H,)`` or ``(H, P)``;
``initial_states (b, H, P, N)``; ``seq_idx (b, L)`` int, non-decreasing along each row. Per head:

    dt_t  = clamp(softplus(dt_t + dt_bias), dt_limit)   (softplus only when dt_softplus)
    h_t   = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T   state (P, N); reset to 0 where seq_idx changes
    y_t   = h_t C_t + D * x_t
    out_t = y_t * silu(z_t)                               (when z is given)

Two independent routes, held together by tests/test_ssd_reference.py: ``ssd_np``, a float64 loop over
time (the ground truth), and ``ssd_quadratic_torch``, the "attention" form the SSD paper derives, which
works under autograd (float64 gradients for the kernels' backward).
"""
import math

import numpy as np
import torch


def _step_sizes_np(dt, dt_bias, dt_softplus, dt_limit):
    dt = np.asarray(dt, dtype=np.float64)
    if dt_bias is not None:
        dt = dt + np.asarray(dt_bias, dtype=np.float64)
    if dt_softplus:
        dt = np.logaddexp(0.0, dt)
    lo, hi = dt_limit
    if lo > 0.0 or hi != math.inf:
        dt = np.clip(dt, lo, hi)
    return dt


def _skip_np(D, H, P):
    if D is None:
        return np.zeros((H, P))
    D = np.asarray(D, dtype=np.float64)
    return np.broadcast_to(D[:, None] if D.ndim == 1 else D, (H, P))


def ssd_np(x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None,
           dt_softplus=False, dt_limit=(0.0, math.inf), cu_seqlens=None):
    """NumPy float64 loop over time. Returns ``(out (b, L, H, P), final_states (b, H, P, N))`` and, when
    ``cu_seqlens (S + 1,)`` is given (batch 1, sequences packed along L), ``varlen_states (S, H, P, N)``:
    each sequence's state after its last step."""
    x = np.asarray(x, dtype=np.float64)
    bsz, L, H, P = x.shape
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    G, N = B.shape[2], B.shape[3]
    dt = _step_sizes_np(dt, dt_bias, dt_softplus, dt_limit)
    skip = _skip_np(D, H, P)
    group = np.arange(H) // (H // G)
    seq = np.zeros((bsz, L), dtype=np.int64) if seq_idx is None else np.asarray(seq_idx)
    h = np.zeros((bsz, H, P, N)) if initial_states is None else np.array(initial_states, dtype=np.float64)
    y = np.empty_like(x)
    states = np.empty((bsz, L, H, P, N))
    for t in range(L):
        if t > 0:
            h = np.where((seq[:, t] != seq[:, t - 1])[:, None, None, None], 0.0, h)
        decay = np.exp(dt[:, t] * A)                                              # (b, H)
        drive = (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, group][:, :, None, :]
        h = decay[:, :, None, None] * h + drive
        states[:, t] = h
        y[:, t] = np.einsum("bhpn,bhn->bhp", h, C[:, t, group]) + skip * x[:, t]
    if z is not None:
        zz = np.asarray(z, dtype=np.float64)
        y = y * zz / (1.0 + np.exp(-zz))
    if cu_seqlens is None:
        return y, h
    ends = np.asarray(cu_seqlens)[1:] - 1
    return y, h, states[0, ends]


def ssd_quadratic_torch(x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None,
                        dt_softplus=False, dt_limit=(0.0, math.inf)):
    """The quadratic ("attention") form, differentiable: with ``cum_t = sum_{r<=t} dt_r A``,

        y_t = sum_{s<=t, same sequence} (C_t . B_s) exp(cum_t - cum_s) dt_s x_s
              + exp(cum_t) C_t . h0          (steps of the row's first sequence only)  + D x_t

    Computes in the inputs' dtype (pass float64). Returns ``(out (b, L, H, P), final_states (b, H, P, N))``."""
    bsz, L, H, P = x.shape
    G = B.shape[2]
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = torch.nn.functional.softplus(dt)
    lo, hi = dt_limit
    if lo > 0.0 or hi != math.inf:
        dt = dt.clamp(lo, hi)
    Bh = B.repeat_interleave(H // G, dim=2)                                      # (b, L, H, N)
    Ch = C.repeat_interleave(H // G, dim=2)
    cum = torch.cumsum(dt * A, dim=1)                                           # (b, L, H)
    seq = torch.zeros(bsz, L, dtype=torch.long, device=x.device) if seq_idx is None else seq_idx.long()
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    same = (seq[:, :, None] == seq[:, None, :]) & causal                        # (b, t, s)
    gap = cum[:, :, None, :] - cum[:, None, :, :]                                # (b, t, s, H)
    # exp only where the mask keeps the pair: elsewhere the gap may be large and positive
    decay = torch.where(same[..., None], torch.exp(torch.where(same[..., None], gap, 0.0)), 0.0)
    scores = torch.einsum("bthn,bshn->btsh", Ch, Bh) * decay * dt[:, None, :, :]
    y = torch.einsum("btsh,bshp->bthp", scores, x)
    first = (seq == seq[:, :1]).to(x.dtype)                                     # (b, L)
    last_seq = (seq == seq[:, -1:]).to(x.dtype)
    to_end = torch.exp(cum[:, -1:, :] - cum) * last_seq[..., None]               # (b, L, H)
    final = torch.einsum("bsh,bshp,bshn->bhpn", to_end * dt, x, Bh)
    if initial_states is not None:
        from_start = torch.exp(cum) * first[..., None]                          # (b, L, H)
        y = y + torch.einsum("bth,bhpn,bthn->bthp", from_start, initial_states, Ch)
        # the initial state reaches the end only if the row holds one sequence
        whole = first[:, -1][:, None, None, None]
        final = final + whole * torch.exp(cum[:, -1])[:, :, None, None] * initial_states
    if D is not None:
        y = y + (D[:, None] if D.dim() == 1 else D) * x
    if z is not None:
        y = y * torch.nn.functional.silu(z)
    return y, final
