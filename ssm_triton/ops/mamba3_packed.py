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


def add_input_states(out, finals, Q, V, ADT, DT, Trap, Q_bias, Angles, Z, Input_States, cu, want_finals):
    """``out (1, L, H, P)`` and the per-sequence ``finals`` of the zero-state packed run, with each
    sequence's ``Input_States`` (``(sequences, H, S)``, ``(sequences, H, P, N)``, ``(sequences, H, N)``,
    ``(sequences, H, P)``) added (module docstring). Returns ``(out, finals or None)``."""
    theta0, h0, k_prev, v_prev = (s.float() for s in Input_States)
    _, L, H, P = V.shape
    N = Q.shape[-1]
    n_seq = cu.shape[0] - 1
    starts = cu[:-1].long()
    ids = torch.repeat_interleave(torch.arange(n_seq, device=V.device), cu[1:] - cu[:-1], output_size=L)
    lam0 = torch.sigmoid(Trap[0, :, starts].float())                                     # (H, sequences)
    e0 = ((1 - lam0) * DT[0, :, starts].float()).transpose(0, 1)                         # (sequences, H)
    h_in = h0 + e0[..., None, None] * v_prev.float()[..., :, None] * k_prev[..., None, :]  # (seq, H, P, N)

    # each step's true angle and its turned query
    steps = math.pi * torch.tanh(Angles[0].float()) * DT[0].float().transpose(0, 1)[..., None]   # (L, H, S)
    theta = (_since_start(steps, starts, ids) + theta0[ids].double()).float()
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
