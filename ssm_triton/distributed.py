"""Context parallelism: one sequence split along time across the ranks of a ``torch.distributed`` group.

Rank ``r`` holds the ``r``-th of ``W`` equal, contiguous slices (rank order = time order). The state-space
form makes the split cheap: a slice changes the state only through its total decay ``g_r`` and the state
``s_r`` it ends in when it starts from zero, so

1. each rank scans its slice from a zero state, keeping ``(g_r, s_r)`` (a ``(b, H, P, N)`` state and a
   ``(b, H)`` decay for the SSD);
2. the ranks all-gather those pairs (the only communication: ``W`` states, not activations);
3. each rank folds the pairs of the ranks before it into the state entering its slice,
   ``h_0 = initial_states``, ``h_{k+1} = g_k h_k + s_k``, and scans its slice again from ``h_r``.

The second scan is what makes the outputs exact (it equals adding ``C_t exp(cum_t) h_r`` to each
output); rank 0 without ``initial_states`` skips it. The backward runs through the same steps: autograd
through both scans and the fold, and the exchange's backward sums each pair's gradient over the ranks
that used it (one all-reduce). Every collective is supported by gloo (CPU) and NCCL (GPU).

Launch with ``torchrun --nproc-per-node W script.py`` and ``torch.distributed.init_process_group()``.
"""
import math
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from .ops.scan import linear_scan
from .ops.ssd import mamba_chunk_scan_combined


class _Exchange(torch.autograd.Function):
    """All-gather along a new leading dim; the backward all-reduces the gathered gradient and keeps this
    rank's slot (the gradient of a rank's pair is the sum of what every rank did with it)."""

    @staticmethod
    def forward(ctx, t, group):
        ctx.group = group
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, t.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[dist.get_rank(ctx.group)], None


class _After(torch.autograd.Function):
    """Identity on ``out`` that also hangs ``gathered`` in its graph, with a zero gradient. Rank 0's
    output does not depend on the exchange (its entering state is ``initial_states`` or zero), but its
    backward must still take part in the exchange's all-reduce: otherwise the other ranks' all-reduce
    would pair with whatever collective rank 0 runs next."""

    @staticmethod
    def forward(ctx, out, gathered):
        ctx.save_for_backward(gathered)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        (gathered,) = ctx.saved_tensors
        return grad, torch.zeros_like(gathered)


def _exchange_pairs(decay: Tensor, state: Tensor, group):
    """One all-gather of every rank's (decay, state): ``(W, *decay.shape)``, ``(W, *state.shape)``, and
    the gathered tensor itself."""
    flat = torch.cat([decay.reshape(-1), state.reshape(-1).to(decay.dtype)])
    gathered = _Exchange.apply(flat, group)
    W = gathered.shape[0]
    return (gathered[:, :decay.numel()].reshape(W, *decay.shape),
            gathered[:, decay.numel():].reshape(W, *state.shape), gathered)


def _check_layout(group, named: dict) -> None:
    """Every rank holds tensors of the same shapes (so equal slices): gathered and compared on every
    rank, so that bad use raises the same error everywhere instead of hanging in a later collective."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("context parallelism needs torch.distributed.init_process_group() first")
    meta = []
    for name, t in named.items():
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
        shape = list(t.shape) if t is not None else []
        if len(shape) > 6:
            raise ValueError(f"{name} has {len(shape)} dims; at most 6 are supported here")
        # the grad flag too: a rank whose inputs need no grad would skip the backward's all-reduce
        meta += [len(shape)] + shape + [-1] * (6 - len(shape)) + [int(t is not None and t.requires_grad)]
    dev = next(t for t in named.values() if t is not None).device
    if dist.get_backend(group) == "nccl" and dev.type != "cuda":
        raise ValueError(f"the NCCL backend needs CUDA tensors; got tensors on {dev}")
    mine = torch.tensor(meta, dtype=torch.int64, device=dev)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(every, mine, group=group)
    for r, other in enumerate(every):
        if not torch.equal(other, mine):
            def shapes(m):
                m, out, i = m.tolist(), {}, 0
                for name in named:
                    n = m[i]
                    out[name] = tuple(m[i + 1:i + 1 + n]) + (("requires_grad",) if m[i + 7] else ())
                    i += 8
                return out
            raise ValueError(f"every rank must hold an equal, contiguous slice with the same shapes (and the "
                             f"same requires_grad): rank "
                             f"{dist.get_rank(group)} has {shapes(mine)}, rank {r} has {shapes(other)}")


def _fold(decays: Tensor, states: Tensor, h0: Optional[Tensor], rank: int):
    """``decays (W, *d)``, ``states (W, *d, ...)``: the state entering slice ``rank`` and the one leaving
    the last slice, from ``h0`` (zero when None)."""
    h = torch.zeros_like(states[0]) if h0 is None else h0.to(states.dtype)
    entering = None
    for k in range(states.shape[0]):
        if k == rank:
            entering = h
        g = decays[k].reshape(decays[k].shape + (1,) * (states[k].dim() - decays[k].dim()))
        h = g * h + states[k]
    return entering, h


def cp_linear_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None, group=None) -> Tensor:
    """``linear_scan`` over a sequence split along the last dim across ``group``'s ranks.

    ``a, b (..., L_r)``: this rank's slice (every rank the same shape); ``h0 (...)`` the state before the
    whole sequence, given on every rank or on none (only rank 0's is used). Returns this rank's slice of
    ``h (..., L_r)``, as ``linear_scan`` over the whole sequence would. Differentiable in a, b, h0.
    """
    _check_layout(group, {"a": a, "b": b, "h0": h0})
    rank = dist.get_rank(group)
    local = linear_scan(a, b)
    decay = torch.prod(a.to(torch.promote_types(a.dtype, torch.float32)), dim=-1)
    decays, states, gathered = _exchange_pairs(decay, local[..., -1], group)
    entering, _ = _fold(decays, states, h0, rank)
    out = local if rank == 0 and h0 is None else linear_scan(a, b, h0=entering.to(b.dtype))
    return _After.apply(out, gathered)


def _step_sizes(dt, dt_bias, dt_softplus, dt_limit):
    dt = dt.float() + (dt_bias.float() if dt_bias is not None else 0.0)
    if dt_softplus:
        dt = F.softplus(dt)
    lo, hi = dt_limit
    return dt.clamp(min=lo, max=hi) if (lo > 0.0 or hi != math.inf) else dt


def cp_mamba_chunk_scan_combined(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int,
                                 D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                                 dt_bias: Optional[Tensor] = None, dt_softplus: bool = False,
                                 dt_limit=(0.0, math.inf), initial_states: Optional[Tensor] = None,
                                 return_final_states: bool = False, group=None):
    """``mamba_chunk_scan_combined`` over a sequence split along time across ``group``'s ranks.

    Every rank passes its slice ``x, z (b, L_r, H, P)``, ``dt (b, L_r, H)``, ``B, C (b, L_r, G, N)`` (equal
    ``L_r`` on every rank) and the same ``A, dt_bias (H,)``, ``D``; ``initial_states (b, H, P, N)`` is the
    state before the whole sequence (only rank 0's is used). Returns this rank's slice of the one-device
    ``out (b, L_r, H, P)``, and with ``return_final_states`` the state after the whole sequence
    ``(b, H, P, N)``, the same on every rank. Differentiable in every tensor input. Pass
    ``initial_states`` on every rank or on none, with the same ``requires_grad`` everywhere: shapes and
    grad flags are compared across ranks, and a mismatch raises the same ``ValueError`` on every rank.
    """
    _check_layout(group, {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D, "z": z, "dt_bias": dt_bias,
                          "initial_states": initial_states})
    rank = dist.get_rank(group)
    kw = dict(D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus, dt_limit=dt_limit)
    first = rank == 0 and initial_states is None
    out, local = mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, return_final_states=True,
                                           **(kw if first else dict(kw, D=None, z=None)))
    # the slice's total decay per (batch, head): exp(A sum_t dt_t) with the step sizes the scan used
    decay = torch.exp(A.float() * _step_sizes(dt, dt_bias, dt_softplus, dt_limit).sum(dim=1))
    decays, states, gathered = _exchange_pairs(decay, local, group)
    entering, final = _fold(decays, states, initial_states, rank)
    if not first:
        out = mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, initial_states=entering, **kw)
    out = _After.apply(out, gathered)
    return (out, final) if return_final_states else out
