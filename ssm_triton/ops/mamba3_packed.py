"""Mamba-3 SISO over packed sequences that each start from their own input states.

The chunked kernels run every packed sequence from zero states; what the input states add is then exact
arithmetic on top, in PyTorch (so autograd carries every gradient). For a sequence ``s`` starting at step
``t0`` with input states ``(theta0, h0, k~_prev, v_prev)``:

* every angle of the sequence is shifted by ``theta0``. Inside the sequence only differences of angles
  meet (``q~_t . k~_j`` under a common turn), so the zero-state outputs stand; the final angle and the final
  ``k~`` turn by ``theta0``, and so does the final state's ``N`` side (``v k~^T``);
* the state entering step ``t0`` is ``H_in = h0 + (1 - lam_t0) DT_t0 v_prev k~_prev^T`` (the trapezoid's
  previous-step term, divided by the step's decay), which adds ``exp(sum_{t0 <= r <= t} ADT_r) H_in q~_t``
  to each output before the gate, and ``exp(sum over the sequence) H_in`` to the final state, where ``q~_t``
  is turned by the sequence's true angle ``theta0 + theta_t``.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

# steps per block of the input-state term: bounds the gathered (steps, H, P, N) states in memory
_ELEMENTS = 1 << 24


def turn_pairs(x: Tensor, theta: Tensor) -> Tensor:
    """``x (..., N)`` with its interleaved pairs ``(2i, 2i + 1)``, ``i < S``, turned by ``theta (..., S)``."""
    S = theta.shape[-1]
    if S == 0:
        return x
    a, b = x[..., 0:2 * S:2], x[..., 1:2 * S:2]
    c, s = torch.cos(theta), torch.sin(theta)
    turned = torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)
    return torch.cat((turned, x[..., 2 * S:]), dim=-1)


def _since_start(x: Tensor, starts: Tensor, ids: Tensor) -> Tensor:
    """The running sum of ``x (L, ...)`` along steps, restarted at each sequence's first step (fp64)."""
    total = torch.cumsum(x.double(), dim=0)
    before = F.pad(total, (0,) * (2 * (x.dim() - 1)) + (1, 0))[starts]   # the sum before each start
    return total - before[ids]


def _sequence_ids(cu: Tensor, L: int) -> tuple[Tensor, Tensor]:
    """Each sequence's first step and each step's sequence, without a host sync."""
    n_seq = cu.shape[0] - 1
    ids = torch.repeat_interleave(torch.arange(n_seq, device=cu.device), cu[1:] - cu[:-1], output_size=L)
    return cu[:-1].long(), ids


def _angles_since_start(Angles, DT, starts, ids) -> Tensor:
    """``theta_t`` of a packed row's steps ``(L, H, S)`` (fp64), each sequence starting from zero."""
    steps = math.pi * torch.tanh(Angles[0].float()) * DT[0].float().transpose(0, 1)[..., None]
    return _since_start(steps, starts, ids)


def packed_final_states(v: Tensor, k: Tensor, scale: Tensor, adt: Tensor, cu: Tensor) -> Tensor:
    """Each packed sequence's final ssm state from zero states, ``(sequences, H, P, N)`` fp32:
    ``sum_{j in s} exp(cs_end - cs_j) scale_j sum_r v_{j,r} k_{j,r}^T``, built in PyTorch so that gradients flow
    from it (the kernels' backward takes none from a packed row's final ssm states). ``v (L, R, H, P)``,
    ``k (L, R, H, N)`` (turned), ``scale (L, H)`` (``lam_j DT_j`` plus the next step's share, zero at a
    sequence's last step), ``adt (L, H)``; ``R`` is 1 for SISO, the rank for MIMO."""
    L, R, H, P = v.shape
    N = k.shape[-1]
    starts, ids = _sequence_ids(cu, L)
    ends = cu[1:].long() - 1
    cs = _since_start(adt, starts, ids)                                                           # (L, H) fp64
    weighted = v * (torch.exp(cs[ends][ids] - cs) * scale).float()[:, None, :, None]
    state = v.new_zeros((cu.shape[0] - 1, H, P, N), dtype=torch.float32)
    block = max(1, _ELEMENTS // (R * H * P * N))
    for t in range(0, L, block):
        state = state.index_add(0, ids[t:t + block], torch.einsum("lrhp,lrhn->lhpn", weighted[t:t + block],
                                                                   k[t:t + block]))
    return state


def final_ssm(K, V, ADT, DT, Trap, K_bias, Angles, cu) -> Tensor:
    """SISO's :func:`packed_final_states` from the op's inputs (``k~`` turned from each sequence's start)."""
    _, L, H, P = V.shape
    starts, ids = _sequence_ids(cu, L)
    ends = cu[1:].long() - 1
    lam = torch.sigmoid(Trap[0].float()).transpose(0, 1)                                          # (L, H)
    dt = DT[0].float().transpose(0, 1)
    nxt = F.pad((1 - lam[1:]) * dt[1:], (0, 0, 0, 1))                  # the next step's share of step j
    nxt = torch.where((torch.arange(L, device=V.device) == ends[ids])[:, None], 0.0, nxt)
    k = turn_pairs(K[0].float().repeat_interleave(H // K.shape[2], dim=1) + K_bias.float(),
                   _angles_since_start(Angles, DT, starts, ids).float())                         # (L, H, N)
    return packed_final_states(V[0].float()[:, None], k[:, None], lam * dt + nxt,
                               ADT[0].float().transpose(0, 1), cu)


def add_input_states(out, finals, Q, V, ADT, DT, Trap, Q_bias, Angles, Z, Input_States, cu, want_finals):
    """``out (1, L, H, P)`` and the per-sequence ``finals`` of the zero-state packed run, with each
    sequence's ``Input_States`` (``(sequences, H, S)``, ``(sequences, H, P, N)``, ``(sequences, H, N)``,
    ``(sequences, H, P)``) added (module docstring). Returns ``(out, finals or None)``."""
    theta0, h0, k_prev, v_prev = (s.float() for s in Input_States)
    _, L, H, P = V.shape
    N = Q.shape[-1]
    starts, ids = _sequence_ids(cu, L)
    lam0 = torch.sigmoid(Trap[0, :, starts].float())                                     # (H, sequences)
    e0 = ((1 - lam0) * DT[0, :, starts].float()).transpose(0, 1)                         # (sequences, H)
    h_in = h0 + e0[..., None, None] * v_prev.float()[..., :, None] * k_prev[..., None, :]  # (seq, H, P, N)

    # each step's true angle and its turned query
    theta = (_angles_since_start(Angles, DT, starts, ids) + theta0[ids].double()).float()        # (L, H, S)
    q = Q[0].float().repeat_interleave(H // Q.shape[2], dim=1) + Q_bias.float()                  # (L, H, N)
    q_turned = turn_pairs(q, theta)
    decay = torch.exp(_since_start(ADT[0].float().transpose(0, 1), starts, ids)).float()         # (L, H)

    block = max(1, _ELEMENTS // (H * P * N))
    extra = torch.cat([torch.einsum("lhpn,lhn->lhp", h_in[ids[t:t + block]], q_turned[t:t + block])
                       for t in range(0, L, block)]) * decay[..., None]                          # (L, H, P)
    if Z is not None:
        extra = extra * F.silu(Z[0].float())
    out = (out.float() + extra[None]).to(out.dtype)
    if not want_finals:
        return out, None
    theta_f, ssm_f, k_f, v_f = finals
    ends = cu[1:].long() - 1
    total = decay[ends]                                                                          # (seq, H)
    theta_f = torch.remainder(theta_f + theta0, 2 * math.pi)
    k_f = turn_pairs(k_f, theta0)
    ssm_f = turn_pairs(ssm_f, theta0[:, :, None, :]) + total[..., None, None] * h_in
    return out, (theta_f, ssm_f, k_f, v_f)
