"""``mamba_chunk_scan_combined``: Mamba-2's SSD chunked scan, drop-in for mamba_ssm's function of that name."""
import math
from typing import Optional

import torch
from torch import Tensor

from .. import _runtime, _validate
from ..kernels.ssd import bwd_dt as _dt
from ..kernels.ssd import fused as _fused
from ..kernels.ssd import launch as _k
from ._layout import contiguous, records_graph, step_strided
from . import _plans
from ._spec import OpSpec, build, compiling

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
INDEX_DTYPES = (torch.int32, torch.int64)
MAX_DIM = 256
CHUNK_SIZES = (16, 32, 64, 128, 256)


def _forward(x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, cu_seqlens, chunk_size, dt_softplus, lo, hi,
             want_varlen, deterministic, for_backward=True):
    out, final, varlen, saved = _k.ssd_forward(
        x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens, dt_softplus, (lo, hi),
        want_varlen=want_varlen, for_backward=for_backward)
    # custom ops return tensors: absent outputs are empty, a fresh one each (outputs may not alias)
    return (out, final, varlen if varlen is not None else x.new_empty(0), saved.dtp, saved.cum, saved.hs,
            saved.y if saved.y is not None else x.new_empty(0))


def _inference(x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, cu_seqlens, chunk_size, dt_softplus, lo, hi,
               want_varlen, deterministic):
    """No backward to come: the one-launch forward where it applies, and only the outputs the caller reads."""
    return _k.ssd_inference(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens,
                            dt_softplus, (lo, hi), want_varlen)


def _fake(x, B, z, cu_seqlens, chunk_size, want_varlen, **_):
    bsz, L, H, P = x.shape
    N = B.shape[3]
    nc = -(-L // chunk_size)
    f32 = dict(dtype=torch.float32, device=x.device)
    varlen = x.new_empty((cu_seqlens.shape[0] - 1, H, P, N), **f32) if want_varlen else x.new_empty(0)
    return (torch.empty_like(x), x.new_empty((bsz, H, P, N), **f32), varlen,
            x.new_empty((bsz, H, nc * chunk_size), **f32), x.new_empty((2, bsz, H, nc * chunk_size), **f32),
            x.new_empty((bsz, H, nc, P, N), dtype=_k.make_plan(x, N, chunk_size).torch_dot, device=x.device),
            torch.empty_like(x) if z is not None else x.new_empty(0))


_INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")


def _backward(saved, grads):
    x = saved["x"]
    dout = grads["out"] if grads["out"] is not None else torch.zeros_like(x)
    dfinal = grads["final"]
    y = saved["y"]
    kept = _k.Saved(saved["dtp"], saved["cum"], saved["hs"], y if y.numel() > 0 else None)
    g = _k.ssd_backward(dout.contiguous(), dfinal.contiguous() if dfinal is not None else None, kept,
                        *(saved[n] for n in ("x", "dt", "A", "B", "C")), saved["chunk_size"],
                        *(saved[n] for n in ("D", "z", "dt_bias", "initial_states", "seq_idx")),
                        saved["dt_softplus"], (saved["lo"], saved["hi"]), deterministic=saved["deterministic"])
    return dict(zip(_INPUTS, g))


def _route(x) -> tuple:
    """What beyond the arguments picks a call's launches: the route and segment switches and, for fp32 inputs, the
    matmul precision (asked only for those: a microsecond of this CPU's time, several of a GPU host's). The op
    plans' key and the replays' key both hold it (a replay keyed without the segment switches once served a
    segmented call a whole-row recording)."""
    return (_k.FUSED, _k.FUSED_TRAIN, _k.OWN_FUSED, _k.ADJ_FUSED, _k.WALK_BWD, _k.WALK_SEGMENTS, _k.WALK_KQ,
            _k.WALK_SUB, _k.WALK_STAGES, _k.WALK_WARPS, _k.WALK_MAXNREG, _k.WALK_AHEAD, _k.WALK_FREC, _k.WALK_MERGE,
            _dt.GATE_ROWS, _dt.GATE_TILE, _dt.GATE_WARPS,
            _fused.SEGMENTS, _fused.ALIGN, _fused.CARRY, _k.INF_CHUNK,
            _k.SCAN_TILES, _k.SCAN_LONGEST_FIRST, _k.SCAN_SPLIT, _k.SCAN_MAXNREG, _k.STATE_TILES, _k.DX_SPLIT,
            _k.precision_key(x.dtype) if isinstance(x, torch.Tensor) else None)


_ssd = build(OpSpec(
    "ssd", "x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor?, z: Tensor?, dt_bias: Tensor?, "
    "initial_states: Tensor?, seq_idx: Tensor?, cu_seqlens: Tensor?, chunk_size: int, dt_softplus: bool, "
    "lo: float, hi: float, want_varlen: bool, deterministic: bool",
    outputs=("out", "final", "varlen", "dtp", "cum", "hs", "y"), forward=_forward, fake=_fake, grads=_INPUTS,
    grad_outputs=("out", "final"), saves=(*_INPUTS, "seq_idx", "dtp", "cum", "hs", "y"), backward=_backward,
    inference=_inference, switches=_route))


_PASSED = _validate.Passed()


def _check(name, t, shape, shape_doc, dtypes=IO_DTYPES):
    if t is None:
        return
    _validate.tensor(name, t, ndim=len(shape), dtypes=dtypes, shape_doc=shape_doc)
    _validate.shape(name, t, shape, shape_doc)


def _validate_all(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens, dt_softplus,
                  dt_limit, return_final_states, return_varlen_states, deterministic):
    _validate.tensor("x", x, ndim=4, dtypes=IO_DTYPES, shape_doc="(batch, L, H, P)")
    bsz, L, H, P = x.shape
    if L < 1 or H < 1 or P < 1 or bsz < 1:
        raise ValueError(f"x (batch, L, H, P) must have every size at least 1, got {tuple(x.shape)}")
    if P > MAX_DIM:
        raise ValueError(f"x has head dimension P = {P}; at most {MAX_DIM} is supported")
    _check("dt", dt, (bsz, L, H), "(batch, L, H)")
    _check("A", A, (H,), "(H,)")
    _validate.tensor("B", B, ndim=4, dtypes=IO_DTYPES, shape_doc="(batch, L, G, N)")
    G, N = B.shape[2], B.shape[3]
    _validate.heads_and_state("B", "G", "groups", G, H, N, "(batch, L, G, N)", MAX_DIM)
    _check("B", B, (bsz, L, G, N), "(batch, L, G, N)")
    _check("C", C, (bsz, L, G, N), "(batch, L, G, N) as B")
    if D is not None:
        _validate.tensor("D", D, dtypes=IO_DTYPES, shape_doc="(H,) or (H, P)")
        if tuple(D.shape) not in ((H,), (H, P)):
            raise ValueError(f"D must have shape (H,) = {(H,)} or (H, P) = {(H, P)}, got {tuple(D.shape)}")
    _check("z", z, (bsz, L, H, P), "(batch, L, H, P) as x")
    _check("dt_bias", dt_bias, (H,), "(H,)")
    _check("initial_states", initial_states, (bsz, H, P, N), "(batch, H, P, N)")
    _check("seq_idx", seq_idx, (bsz, L), "(batch, L)", dtypes=INDEX_DTYPES)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}, got {chunk_size!r}")
    for name, v in (("dt_softplus", dt_softplus), ("return_final_states", return_final_states),
                    ("return_varlen_states", return_varlen_states), ("deterministic", deterministic)):
        _validate.flag(name, v)
    try:
        lo, hi = (float(v) for v in dt_limit)
    except (TypeError, ValueError):
        raise TypeError(f"dt_limit must be a pair of floats (lo, hi), got {dt_limit!r}") from None
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"dt_limit must satisfy lo <= hi, got {dt_limit!r}")
    if return_varlen_states and cu_seqlens is None:
        raise ValueError("return_varlen_states=True needs cu_seqlens")
    if cu_seqlens is not None:
        _validate.tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=INDEX_DTYPES, shape_doc="(num_sequences + 1,)")
        if bsz != 1:
            raise ValueError(f"cu_seqlens packs sequences along L of a single row; x must have batch 1, got {bsz}")
        if cu_seqlens.shape[0] < 2:
            raise ValueError(f"cu_seqlens must have at least 2 entries (0 and L), got shape {tuple(cu_seqlens.shape)}")
        # on the device, without a host sync (the call can be captured in a CUDA graph); the kernels
        # clamp what they read into the row either way
        ok = torch.cat([cu_seqlens[:1] == 0, cu_seqlens[-1:] == L, cu_seqlens[1:] > cu_seqlens[:-1]])
        _validate.on_device("cu_seqlens", ok, f"must rise strictly from 0 to L = {L} (one entry per sequence "
                            "boundary)")
    # a CPU cu_seqlens is checked at once (above) and moved to x's device by the caller
    cu = cu_seqlens if cu_seqlens is not None and cu_seqlens.device.type != "cpu" else None
    _validate.devices(("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states", "seq_idx", "cu_seqlens"),
                      (x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, cu))
    return lo, hi


def mamba_chunk_scan_combined(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int,
                              D: Optional[Tensor] = None, z: Optional[Tensor] = None, dt_bias: Optional[Tensor] = None,
                              initial_states: Optional[Tensor] = None, seq_idx: Optional[Tensor] = None,
                              cu_seqlens: Optional[Tensor] = None, dt_softplus: bool = False,
                              dt_limit: tuple[float, float] = (0.0, math.inf), return_final_states: bool = False,
                              return_varlen_states: bool = False, *, deterministic: Optional[bool] = None):
    """Mamba-2's SSD scan by chunks (the state-space-duality algorithm). Per head ``h`` and step ``t``:

    ``dt_t = clamp(softplus(dt_t + dt_bias), *dt_limit)`` (softplus when ``dt_softplus``),
    ``state_t = exp(dt_t A) state_{t-1} + dt_t x_t B_t^T`` (``(P, N)``, reset where ``seq_idx`` changes),
    ``y_t = state_t C_t + D x_t``, ``out_t = y_t * silu(z_t)``.

    Args:
        x: ``(batch, L, H, P)``, fp32 / bf16 / fp16, P <= 256.  dt: ``(batch, L, H)``.  A: ``(H,)``.
        B, C: ``(batch, L, G, N)``, G dividing H (head ``h`` reads group ``h // (H // G)``), N <= 256.
        chunk_size: 16, 32, 64, 128 or 256 (tiles the work; the result does not depend on it).
        D: ``(H,)`` or ``(H, P)``.  z: ``(batch, L, H, P)`` gate.  dt_bias: ``(H,)``.
        initial_states: ``(batch, H, P, N)``, the state before step 0 (of the row's first sequence).
        seq_idx: ``(batch, L)`` int, non-decreasing along each row: sequences packed in a row, the
            state restarts from zero where it changes.
        cu_seqlens: ``(S + 1,)`` int, the boundaries of ``S`` sequences packed in a batch-1 row; it
            implies ``seq_idx`` when that is not given (if both are given they must agree). Checked
            without a host sync (the call can be captured in a CUDA graph): on the GPU by an
            asynchronous device-side assertion, which fails at the next synchronisation and, like any
            device-side assert, leaves the process's CUDA context unusable; the kernels clamp what they
            read either way. A CPU tensor is checked at once (a ``ValueError``) and copied over.
        return_final_states: also return the state after the last step, ``(batch, H, P, N)`` fp32.
        return_varlen_states: also return each packed sequence's last state, ``(S, H, P, N)`` fp32
            (not differentiable).
        deterministic: keyword only. The backward adds ``dC``'s pair part with fp32 atomics by default;
            ``True`` makes a second pass over the pairs instead (slower). ``None`` follows
            ``torch.are_deterministic_algorithms_enabled()``.

    Returns:
        ``out (batch, L, H, P)`` in ``x``'s dtype, then ``final_states`` and/or ``varlen_states`` when
        asked, in that order. Differentiable in x, dt, A, B, C, D, z, dt_bias and initial_states.
    """
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    tensors = (x, dt, A, B, C, D, z, dt_bias, initial_states)
    plain = (chunk_size, dt_softplus, dt_limit, return_final_states, return_varlen_states, deterministic,
             _runtime.INTERPRET)
    plan, plan_key = None, None
    # torch.compile first: its tracer is not to meet the capture query (a graph break under fullgraph)
    if cu_seqlens is None and seq_idx is None and not return_varlen_states and not compiling() and not (
            isinstance(x, torch.Tensor) and x.is_cuda and torch.cuda.is_current_stream_capturing()):
        plan, plan_key = _plans.lookup(_PLANS, tensors, (*plain, *_route(x)))
    if plan:   # made after a call of this very signature passed the checks
        made = plan(tensors)   # [out, final], or [out] where the final state is not asked for
        return (made[0], made[1]) if return_final_states else made[0]
    # cu_seqlens is checked by value on every call; the rest once per signature
    key = None if cu_seqlens is not None else _validate.signature((*tensors, seq_idx), plain)
    limits = _PASSED.get(key)
    if limits is None:
        limits = _validate_all(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens,
                               dt_softplus, dt_limit, return_final_states, return_varlen_states, deterministic)
        _PASSED.put(key, limits)
    lo, hi = limits
    if cu_seqlens is not None and cu_seqlens.device != x.device:
        cu_seqlens = cu_seqlens.to(x.device)
    if cu_seqlens is not None and seq_idx is None:
        seq_idx = _k.seq_idx_from_cu_seqlens(cu_seqlens, x.shape[1])
    c = lambda t: t.contiguous() if t is not None else None  # noqa: E731
    # x, dt, B and C are read in place where their step stride is one (projection slices, ops/_layout.py), forward
    # and backward; z too by a call that keeps nothing for a backward (the gate's backward reads it contiguous)
    s = step_strided
    sz = c if records_graph(x, dt, A, B, C, D, z, dt_bias, initial_states) else step_strided
    args = (s(x), s(dt), c(A), s(B), s(C), c(D), sz(z), c(dt_bias), c(initial_states), c(seq_idx),
            c(cu_seqlens) if return_varlen_states else None, chunk_size, dt_softplus, lo, hi, return_varlen_states,
            deterministic)
    out, final, varlen, *_ = _ssd(*args)
    _plans.remember(_PLANS, plan_key, lambda: _plan(tensors, dt_softplus, (lo, hi), return_final_states))
    extra = ([final] if return_final_states else []) + ([varlen] if return_varlen_states else [])
    return (out, *extra) if extra else out


# calls that record no graph and take the one-launch forward: one bound launch per input signature
# (ops/_plans.py)
_PLANS = _plans.Plans()


def _plan(tensors, dt_softplus, dt_limit, final, a_log=False):
    """The one-launch forward's op plan where the inputs reach the kernel as they are, else None; ``final``: it
    also returns the final state (the key holds ``return_final_states``); ``a_log``: ``A`` is ``log(-A)``."""
    x, dt, A, B, C, D, z, dt_bias, initial_states = tensors
    if any(step_strided(t) is not t for t in (x, dt, B, C, z)) or any(
            t is not None and not t.is_contiguous() for t in (A, D, dt_bias, initial_states)):
        return None
    return _k.inference_plan(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, dt_limit, final, a_log)


_LOG_PLANS = _plans.Plans()


def chunk_scan_from_log(x: Tensor, dt: Tensor, A_log: Tensor, B: Tensor, C: Tensor, chunk_size: int,
                        D: Optional[Tensor] = None, z: Optional[Tensor] = None, dt_bias: Optional[Tensor] = None,
                        initial_states: Optional[Tensor] = None, seq_idx: Optional[Tensor] = None,
                        dt_softplus: bool = False, dt_limit=(0.0, float("inf")), return_final_states: bool = False):
    """:func:`mamba_chunk_scan_combined` of ``A = -exp(A_log)`` (``A_log (H,)``, as ``Mamba2`` keeps it), the
    exponential taken inside the kernels: a call that keeps nothing for a backward makes no PyTorch launches for
    ``A`` (a cast, an ``exp`` and a negation: three kernels a layer of an LM's prefill). Where a gradient is asked
    for, or under ``torch.compile``, it is the public op with ``A`` computed in PyTorch. Returns as the public op
    (``out``, or ``(out, final_states)``)."""
    tensors = (x, dt, A_log, B, C, D, z, dt_bias, initial_states)
    if records_graph(*tensors):
        return mamba_chunk_scan_combined(x, dt, -torch.exp(A_log.float()), B, C, chunk_size, D=D, z=z,
                                         dt_bias=dt_bias, initial_states=initial_states, seq_idx=seq_idx,
                                         dt_softplus=dt_softplus, dt_limit=dt_limit,
                                         return_final_states=return_final_states)
    plain = (chunk_size, dt_softplus, dt_limit, return_final_states, False, False, _runtime.INTERPRET)
    plan, plan_key = None, None
    if seq_idx is None and not (x.is_cuda and torch.cuda.is_current_stream_capturing()):
        plan, plan_key = _plans.lookup(_LOG_PLANS, tensors, (*plain, *_route(x)))
    if plan:
        made = plan(tensors)
        return (made[0], made[1]) if return_final_states else made[0]
    key = _validate.signature((*tensors, seq_idx), plain)
    limits = _PASSED.get(key)
    if limits is None:
        limits = _validate_all(x, dt, A_log, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, None,
                               dt_softplus, dt_limit, return_final_states, False, False)
        _PASSED.put(key, limits)
    c, s = contiguous, step_strided
    out, final, _ = _k.ssd_inference(s(x), s(dt), c(A_log), s(B), s(C), chunk_size, c(D), s(z), c(dt_bias),
                                     c(initial_states), c(seq_idx), None, dt_softplus, limits, False, a_log=True)
    _plans.remember(_LOG_PLANS, plan_key, lambda: _plan(tensors, dt_softplus, limits, return_final_states, True))
    return (out, final) if return_final_states else out
