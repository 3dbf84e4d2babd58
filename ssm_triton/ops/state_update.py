"""``selective_state_update``: one decode step, drop-in for mamba_ssm's function of that name."""
from typing import Optional

import torch
from torch import Tensor

from .. import _runtime, _validate
from ..kernels import state_update as _k
from . import _plans
from ._spec import OpSpec, build

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_STATE = 256


def _heads(state, x, dt, A, B, C, D, z, dt_bias):
    """A single-head call's tensors as multi-head views (a head axis of size 1; strides, stride 0 included,
    kept); a multi-head call's as they are."""
    if state.dim() != 3:
        return state, x, dt, A, B, C, D, z, dt_bias
    head = lambda t: t.unsqueeze(1) if t is not None else None  # noqa: E731
    first = lambda t: t.unsqueeze(0) if t is not None else None  # noqa: E731
    return head(state), head(x), head(dt), first(A), head(B), head(C), first(D), head(z), first(dt_bias)


def _run(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, a_is_log):
    out = _k.state_update(*_heads(state, x, dt, A, B, C, D, z, dt_bias), dt_softplus, state_batch_indices,
                          a_is_log=a_is_log)
    return out.squeeze(1) if state.dim() == 3 else out


_state_update = build(OpSpec(
    "selective_state_update", "state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor?, "
    "z: Tensor?, dt_bias: Tensor?, dt_softplus: bool, state_batch_indices: Tensor?, a_is_log: bool", outputs=("out",),
    mutates=("state",), forward=lambda **a: (_run(**a),),
    fake=lambda state, x, **_: (torch.empty(x.shape, dtype=x.dtype, device=x.device),)))


def _check(name, t, shape, doc, dtypes=IO_DTYPES):
    if t is None:
        return
    _validate.tensor(name, t, ndim=len(shape), dtypes=dtypes, shape_doc=doc)
    _validate.shape(name, t, shape, doc)


def _check_call(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, a_name="A"):
    """Every check of ``selective_state_update``; returns ``state_batch_indices`` (a CPU copy moved over).
    ``a_name``: how errors name ``A`` (``A_log`` for :func:`state_update_from_log`)."""
    _validate.tensor("state", state, dtypes=IO_DTYPES, shape_doc="(cache, d, N) or (cache, H, P, N)")
    if state.dim() not in (3, 4):
        raise ValueError(f"state must be (cache, d, N) or (cache, H, P, N), got shape {tuple(state.shape)}")
    single = state.dim() == 3
    N = state.shape[-1]
    if not 1 <= N <= MAX_STATE:
        raise ValueError(f"state has N = {N} states (its last dim); between 1 and {MAX_STATE} are supported")
    if single:
        _validate.tensor("x", x, ndim=2, dtypes=IO_DTYPES, shape_doc="(batch, d)")
        bsz, d = x.shape
        _check("dt", dt, (bsz, d), "(batch, d)")
        _check(a_name, A, (d, N), "(d, N)")
        _check("B", B, (bsz, N), "(batch, N)")
        _check("C", C, (bsz, N), "(batch, N)")
        _check("D", D, (d,), "(d,)")
        _check("z", z, (bsz, d), "(batch, d)")
        _check("dt_bias", dt_bias, (d,), "(d,)")
        inner = (d, N)
    else:
        _validate.tensor("x", x, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, H, P)")
        bsz, H, P = x.shape
        _check("dt", dt, (bsz, H, P), "(batch, H, P)")
        _check(a_name, A, (H, P, N), "(H, P, N)")
        _validate.tensor("B", B, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, G, N)")
        G = B.shape[1]
        if G < 1 or H % G:
            raise ValueError(f"B has G = {G} groups (dim 1 of (batch, G, N)), which must divide H = {H}")
        _check("B", B, (bsz, G, N), "(batch, G, N)")
        _check("C", C, (bsz, G, N), "(batch, G, N) as B")
        _check("D", D, (H, P), "(H, P)")
        _check("z", z, (bsz, H, P), "(batch, H, P)")
        _check("dt_bias", dt_bias, (H, P), "(H, P)")
        inner = (H, P, N)
    if tuple(state.shape[1:]) != inner:
        raise ValueError(f"state must have shape (cache, {', '.join(map(str, inner))}) to match x and A, "
                         f"got {tuple(state.shape)}")
    _validate.flag("dt_softplus", dt_softplus)
    tensors = (state, x, dt, A, B, C, D, z, dt_bias)
    _validate.devices(("state", "x", "dt", a_name, "B", "C", "D", "z", "dt_bias"), tensors)
    if state_batch_indices is None:
        if state.shape[0] != bsz:
            raise ValueError(f"state has {state.shape[0]} cache rows but the batch has {bsz}; pass "
                             "state_batch_indices to use some rows of a larger cache")
    else:
        _check("state_batch_indices", state_batch_indices, (bsz,), "(batch,)", dtypes=(torch.int32, torch.int64))
        # no host sync: serving systems call the step with device-resident slots, under graph capture too
        idx = state_batch_indices
        _validate.on_device("state_batch_indices", (idx >= 0) & (idx < state.shape[0]),
                            f"must be rows of the cache, in [0, {state.shape[0]}); got values outside it")
        if idx.device.type == "cpu":   # a CPU copy: checked at once, distinctness too, then moved over
            if idx.unique().numel() != idx.numel():
                raise ValueError(f"state_batch_indices must be distinct rows of the cache, got {idx.tolist()[:16]}")
            state_batch_indices = idx.to(state.device)
    return state_batch_indices


_PASSED = _validate.Passed()


def selective_state_update(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, z: Optional[Tensor] = None, dt_bias: Optional[Tensor] = None,
                           dt_softplus: bool = False, state_batch_indices: Optional[Tensor] = None) -> Tensor:
    """One decode step: ``state = exp(dt A) state + dt B x`` in place, returns ``out = (state . C + D x) silu(z)``
    (``dt = softplus(dt + dt_bias)`` when ``dt_softplus``).

    Single-head (Mamba-1): ``state (cache, d, N)``, ``x, dt, z (b, d)``, ``A (d, N)``, ``B, C (b, N)``,
    ``D, dt_bias (d,)``. Multi-head (Mamba-2): ``state (cache, H, P, N)``, ``x, dt, z (b, H, P)``,
    ``A (H, P, N)``, ``B, C (b, G, N)`` (G dividing H), ``D, dt_bias (H, P)``. Any strides, stride-0
    broadcasts included (Mamba-2 passes ``dt``, ``A``, ``D``, ``dt_bias`` expanded from one value per head).
    ``state`` fp32 / bf16 / fp16, updated where it lies; arithmetic in fp32; N <= 256.

    ``state_batch_indices (b,)`` int: row ``i`` of the batch reads and writes cache row
    ``state_batch_indices[i]``; no other row changes. Without it the cache has exactly ``b`` rows. The
    indices must be distinct and in range. They are checked without a host sync, so the step can be
    captured in a CUDA graph: outside capture by an asynchronous device-side assertion (an index out of
    range fails at the next synchronisation and, like any device-side assert, leaves the process's CUDA
    context unusable), and the kernel never reads or writes a row out of range (its output row is NaN).
    A CPU tensor of indices is checked at once (a ``ValueError``, distinctness included) and copied over.

    Returns ``out``, shaped like ``x``, in ``x``'s dtype. Not differentiable: call it under
    ``torch.no_grad()`` when its inputs require grad.
    """
    return _step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, False)


def state_update_from_log(state: Tensor, x: Tensor, dt: Tensor, A_log: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor] = None, z: Optional[Tensor] = None, dt_bias: Optional[Tensor] = None,
                          dt_softplus: bool = False) -> Tensor:
    """:func:`selective_state_update` with ``A = -exp(A_log)`` taken inside the kernel: the blocks' composed
    steps pass their module's ``A_log`` (expanded to ``A``'s shape, any strides) instead of launching three
    PyTorch kernels a layer for ``-exp(A_log.float())`` (in a replayed 130M Mamba-2 LM step at 16 rows, ~3.7 us of
    a layer's ~29, H200 2026-12-04c's profile). Same shapes, checks and result otherwise; no cache indices."""
    return _step(state, x, dt, A_log, B, C, D, z, dt_bias, dt_softplus, None, True)


def _step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, a_is_log):
    tensors = (state, x, dt, A, B, C, D, z, dt_bias)
    plan, plan_key = None, None
    flags = (dt_softplus, a_is_log, _runtime.INTERPRET)
    if state_batch_indices is None:
        plan, plan_key = _plans.lookup(_PLANS, tensors, flags)
    if plan:   # made after a call of this very signature passed the checks
        return plan(tensors)[0]
    # the indices are checked by value on every call; the rest once per signature
    key = None if state_batch_indices is not None else _validate.signature(tensors, flags)
    if _PASSED.get(key) is None:
        state_batch_indices = _check_call(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices,
                                          "A_log" if a_is_log else "A")
        _PASSED.put(key, True)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError("selective_state_update is not differentiable (it updates state in place); "
                           "call it under torch.no_grad()")
    args = (state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, a_is_log)
    out = _state_update(*args)[0]
    _plans.remember(_PLANS, plan_key, lambda: _plan(tensors, dt_softplus, a_is_log, x.shape))
    return out


# calls without cache indices: one bound launch per input signature (ops/_plans.py); the indices are checked
# by value each call, so calls with them keep the normal path
_PLANS = _plans.Plans()


def _plan(tensors, dt_softplus, a_is_log, out_shape):
    """The step as an op plan (single-head calls through the multi-head views ``_run`` takes)."""
    return _k.update_plan(*_heads(*tensors), dt_softplus, out_shape, a_is_log)
