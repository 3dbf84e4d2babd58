"""How the op layer hands tensors to the launchers.

A column slice of a wider projection (``x``, ``B``, ``C``, ``dt``, ``z`` cut from ``in_proj``'s output) is
contiguous past its step dimension but strides over the columns it skips. The inference kernels take such a
tensor in place, with its step stride, and a call that records no graph passes it so; a copy to contiguous
memory is a full pass over the tensor (six of them a Mamba2 layer cost 1.5 ms of a 4.1 ms prefill of the
130M model on the H200, 2026-12-02). Calls whose backward will read the tensor again keep it contiguous.
"""
from __future__ import annotations

import os

import torch

from ._spec import compiling

# the block functions' and the blocks' training calls as one autograd node each (split_conv_whole.py,
# inner_whole.py, mamba3_block.py); "0" composes the ops instead (each its own node), as before 2026-12-05
ONE_NODE = os.environ.get("SSM_TRITON_ONE_NODE", "1").strip() != "0"


def one_node(*tensors) -> bool:
    """Whether a block function's or a block's call takes its one-node training op: it records a graph
    (:func:`records_graph`) and ``ONE_NODE`` is on. Under autocast the caller casts the matmuls' operands itself and
    runs the op with autocast off (:func:`lowp`), or composes the ops."""
    return ONE_NODE and records_graph(*tensors)


def lowp(t):
    """Autocast's dtype for ``t``'s device where autocast is on there, else None. A one-node op would see its
    matmuls cast forward but not backward (the engine runs a backward outside autocast), and its replays would be
    keyed by the uncast arguments while the launches saw autocast's dtype: a block casts what autocast would (the
    projections' operands, as autograd nodes of their own) and calls the op with autocast off."""
    dev = t.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None


def autocast_off(t):
    """A context with autocast off on ``t``'s device (the one-node ops run their pieces in the dtypes they are given)."""
    return torch.autocast(t.device.type, enabled=False)


def cast(dtype, *tensors) -> tuple:
    """Each tensor in ``dtype`` (None stays None; ``dtype`` None: as they are)."""
    if dtype is None:
        return tensors
    return tuple(t.to(dtype) if t is not None else None for t in tensors)


def records_graph(*tensors) -> bool:
    """Whether the call will keep tensors for a backward (the op's autograd route), or is being compiled."""
    return compiling() or (torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors))


def step_strided(t):
    """``t (batch, L, ...)`` as the inference kernels take it: itself when everything past dim 1 is contiguous
    and the batch stride is ``L`` steps (the kernels address ``(b L + t) stride + inner``), else a contiguous
    copy (or, for one step, a view whose step stride is the batch stride). None stays None."""
    if t is None or t.dim() < 2 or t.is_contiguous():
        return t
    expect = 1
    for size, stride in zip(reversed(t.shape[2:]), reversed(t.stride()[2:])):
        if size > 1 and stride != expect:
            return t.contiguous()
        expect *= size
    if t.shape[0] > 1 and t.stride(0) != t.shape[1] * t.stride(1):
        if t.shape[1] == 1:   # a single step's stride is arbitrary: take the batch stride as it
            return t.as_strided(t.shape, (t.stride(0), t.stride(0), *t.stride()[2:]))
        return t.contiguous()
    return t


def contiguous(t):
    """``t`` contiguous (None stays None); asking first is cheaper than ``contiguous()``'s dispatch for the
    parameters, which nearly always are."""
    return t if t is None or t.is_contiguous() else t.contiguous()


def own(t):
    """``t`` contiguous and not a view of another tensor an op returns (a custom op's outputs may not alias one
    another): a copy where ``t`` is strided, else a clone."""
    return t.contiguous() if not t.is_contiguous() else t.clone()
