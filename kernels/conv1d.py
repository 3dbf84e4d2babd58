"""Causal depthwise conv1d (Mamba's block), forward and backward, and its rolling-state update.

``x (b, d, L)`` with any strides (channel-first rows, or channel-last as a column slice of a projection
hands it: the tile's order follows whichever stride is 1), ``weight (d, W)`` with ``W <= 4``. A program owns ``BLOCK_D`` channels and
``BLOCK_L`` steps of a row and reads its ``W`` shifted windows of ``x`` straight from memory (the
overlap hits L1/L2); ``seq_idx`` zeroes the taps that reach into an earlier packed sequence.

Backward in two passes: the first recomputes the pre-activation, writes ``dpre`` (fp32) and the
program's partial ``dweight`` / ``dbias``; the second gathers ``dx[t] = sum_k w[k] dpre[t + W - 1 - k]``.
The update kernel appends ``x`` to ``conv_state`` (dropping its oldest entries) and returns the
outputs of the new steps; all of a program's reads come before its writes (a barrier between).
"""
import torch
import triton
import triton.language as tl

from .activations import silu_and_slope
from .hints import multiple
from .host import cdiv, next_power_of_2
from .tuning import Launch, OneLaunch, TunableKernel, bucket, interpreted_tile


@triton.jit
def _tile(dim, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    """A (step block, channel block, row) program's row, channels, their mask and steps."""
    ds = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    return tl.program_id(2), ds, ds < dim, tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)


@triton.jit
def _tap(X, SEQ, row_x, row_s, t, shift, ok, seq_t, L, SXL, HAS_SEQ: tl.constexpr):
    """``x[t - shift]`` for ``(BLOCK_D, BLOCK_L)``, 0 before the row or across a sequence boundary; ``row_x``
    the channels' offsets in ``X``, ``SXL`` its step stride."""
    src = t - shift
    valid = (src >= 0) & (t < L)
    if HAS_SEQ:
        valid &= tl.load(SEQ + row_s + src, mask=valid, other=-1) == seq_t
    return tl.load(X + row_x[:, None] + src.to(tl.int64)[None, :] * SXL, mask=ok & valid[None, :],
                   other=0.0).to(tl.float32)


@triton.jit
def _pre_activation(X, Wt, BIAS, SEQ, bi, ds, d_ok, t, dim, L, SXB, SXD, SXL, W: tl.constexpr,
                    HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    row_x = bi.to(tl.int64) * SXB + ds.to(tl.int64) * SXD
    row_s = bi.to(tl.int64) * L
    ok = d_ok[:, None] & (t < L)[None, :]
    seq_t = 0
    if HAS_SEQ:
        seq_t = tl.load(SEQ + row_s + t, mask=t < L, other=-2)
    acc = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(BIAS + ds, mask=d_ok, other=0.0).to(tl.float32)[:, None]
    for k in tl.static_range(W):
        w = tl.load(Wt + ds * W + k, mask=d_ok, other=0.0).to(tl.float32)
        acc += w[:, None] * _tap(X, SEQ, row_x, row_s, t, W - 1 - k, ok, seq_t, L, SXL, HAS_SEQ)
    return acc, row_x, row_s, ok, seq_t


@triton.jit
def _conv_fwd_kernel(
    X, Wt, BIAS, SEQ, OUT,            # pointers: X, OUT (b, dim, L); Wt (dim, W); BIAS (dim,), SEQ (b, L) or None
    dim, L,                           # sizes
    SXB, SXD, SXL, SOB, SOD, SOL,     # the strides of X and OUT
    W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, SXB_A: tl.constexpr = 1, SXD_A: tl.constexpr = 1,
    SXL_A: tl.constexpr = 1, SOB_A: tl.constexpr = 1, SOD_A: tl.constexpr = 1, SOL_A: tl.constexpr = 1,
):
    # the strides' divisors (hints.py): in_proj's column slices, odd lengths
    SXB, SXD, SXL = multiple(SXB, SXB_A), multiple(SXD, SXD_A), multiple(SXL, SXL_A)
    SOB, SOD, SOL = multiple(SOB, SOB_A), multiple(SOD, SOD_A), multiple(SOL, SOL_A)
    bi, ds, d_ok, t = _tile(dim, BLOCK_D, BLOCK_L)
    pre, _, _, ok, _ = _pre_activation(X, Wt, BIAS, SEQ, bi, ds, d_ok, t, dim, L, SXB, SXD, SXL, W, HAS_BIAS,
                                       HAS_SEQ, BLOCK_D, BLOCK_L)
    if SILU:
        pre = pre * tl.sigmoid(pre)
    at = (bi.to(tl.int64) * SOB + ds.to(tl.int64) * SOD)[:, None] + t.to(tl.int64)[None, :] * SOL
    tl.store(OUT + at, pre.to(OUT.dtype.element_ty), mask=ok)


@triton.jit
def _conv_bwd_pre_kernel(
    X, Wt, BIAS, SEQ, DOUT,           # pointers: the forward's inputs (BIAS, SEQ may be None), DOUT (b, dim, L)
    DPRE, DW_PART, DB_PART,           # outputs: the pre-activation's gradient (contiguous), fp32 partials
    dim, L,                           # sizes
    SXB, SXD, SXL, SOB, SOD, SOL,     # the strides of X and DOUT
    W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, SXB_A: tl.constexpr = 1, SXD_A: tl.constexpr = 1,
    SXL_A: tl.constexpr = 1, SOB_A: tl.constexpr = 1, SOD_A: tl.constexpr = 1, SOL_A: tl.constexpr = 1,
):
    SXB, SXD, SXL = multiple(SXB, SXB_A), multiple(SXD, SXD_A), multiple(SXL, SXL_A)
    SOB, SOD, SOL = multiple(SOB, SOB_A), multiple(SOD, SOD_A), multiple(SOL, SOL_A)
    bi, ds, d_ok, t = _tile(dim, BLOCK_D, BLOCK_L)
    pre, row_x, row_s, ok, seq_t = _pre_activation(X, Wt, BIAS, SEQ, bi, ds, d_ok, t, dim, L, SXB, SXD, SXL, W,
                                                   HAS_BIAS, HAS_SEQ, BLOCK_D, BLOCK_L)
    at = (bi.to(tl.int64) * SOB + ds.to(tl.int64) * SOD)[:, None] + t.to(tl.int64)[None, :] * SOL
    dpre = tl.load(DOUT + at, mask=ok, other=0.0).to(tl.float32)
    if SILU:
        _, slope = silu_and_slope(pre)
        dpre = dpre * slope
    tl.store(DPRE + ((bi.to(tl.int64) * dim + ds) * L)[:, None] + t[None, :], dpre, mask=ok)
    part = ((tl.program_id(2) * tl.num_programs(0) + tl.program_id(0)).to(tl.int64) * dim + ds) * W
    for k in tl.static_range(W):
        xs = _tap(X, SEQ, row_x, row_s, t, W - 1 - k, ok, seq_t, L, SXL, HAS_SEQ)
        tl.store(DW_PART + part + k, tl.sum(dpre * xs, axis=1), mask=d_ok)
    if HAS_BIAS:
        tl.store(DB_PART + (tl.program_id(2) * tl.num_programs(0) + tl.program_id(0)).to(tl.int64) * dim + ds,
                 tl.sum(dpre, axis=1), mask=d_ok)


@triton.jit
def _conv_bwd_dx_kernel(
    DPRE, Wt, SEQ, DX,                # pointers (SEQ may be None); DPRE contiguous
    dim, L,                           # sizes
    SXB, SXD, SXL,                    # the strides of DX (those of the forward's x)
    W: tl.constexpr, HAS_SEQ: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    SXB_A: tl.constexpr = 1, SXD_A: tl.constexpr = 1, SXL_A: tl.constexpr = 1,
):
    SXB, SXD, SXL = multiple(SXB, SXB_A), multiple(SXD, SXD_A), multiple(SXL, SXL_A)
    bi, ds, d_ok, s = _tile(dim, BLOCK_D, BLOCK_L)
    row_x = (bi.to(tl.int64) * dim + ds) * L
    row_s = bi.to(tl.int64) * L
    seq_s = 0
    if HAS_SEQ:
        seq_s = tl.load(SEQ + row_s + s, mask=s < L, other=-2)
    acc = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    for k in tl.static_range(W):
        t = s + (W - 1 - k)                       # the output step whose tap k reads x[s]
        valid = (t < L) & (s < L)
        if HAS_SEQ:
            valid &= tl.load(SEQ + row_s + t, mask=valid, other=-1) == seq_s
        w = tl.load(Wt + ds * W + k, mask=d_ok, other=0.0).to(tl.float32)
        acc += w[:, None] * tl.load(DPRE + row_x[:, None] + t[None, :], mask=d_ok[:, None] & valid[None, :], other=0.0)
    at = (bi.to(tl.int64) * SXB + ds.to(tl.int64) * SXD)[:, None] + s.to(tl.int64)[None, :] * SXL
    tl.store(DX + at, acc.to(DX.dtype.element_ty), mask=d_ok[:, None] & (s < L)[None, :])


@triton.jit
def _conv_update_kernel(
    X, STATE, Wt, BIAS, OUT,          # pointers: X (b, dim, L) and STATE (b, dim, S), any strides; OUT contiguous
    dim, L, S,                        # sizes
    s_b, s_d, s_s,                    # the state's strides
    x_b, x_d, x_l,                    # x's: a decode step reads its channels in place from in_proj's output row
    W: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_L: tl.constexpr, x_b_A: tl.constexpr = 1,
):
    """``x (b, d, L)``; the state's last ``S`` entries of ``concat(state, x)`` become the new state."""
    x_b = multiple(x_b, x_b_A)
    bi = tl.program_id(1)
    ds = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = ds < dim
    row_x = (bi.to(tl.int64) * dim + ds) * L
    x_row = X + bi.to(tl.int64) * x_b + ds.to(tl.int64) * x_d
    state = STATE + bi.to(tl.int64) * s_b + ds.to(tl.int64)[:, None] * s_d
    # outputs: step t reads concat positions S + t - W + 1 + k
    t = tl.arange(0, BLOCK_L)
    t_ok = t < L
    acc = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(BIAS + ds, mask=d_ok, other=0.0).to(tl.float32)[:, None]
    for k in tl.static_range(W):
        pos = S + t - (W - 1) + k
        from_state = tl.load(state + pos[None, :] * s_s, mask=d_ok[:, None] & (t_ok & (pos < S) & (pos >= 0))[None, :],
                             other=0.0).to(tl.float32)
        from_x = tl.load(x_row[:, None] + (pos - S)[None, :] * x_l, mask=d_ok[:, None] & (t_ok & (pos >= S))[None, :],
                         other=0.0).to(tl.float32)
        w = tl.load(Wt + ds * W + k, mask=d_ok, other=0.0).to(tl.float32)
        acc += w[:, None] * (from_state + from_x)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    # the new state: position j holds concat[j + L]
    j = tl.arange(0, BLOCK_S)
    src = j + L
    j_ok = j < S
    old = tl.load(state + src[None, :] * s_s, mask=d_ok[:, None] & (j_ok & (src < S))[None, :], other=0.0)
    new = tl.load(x_row[:, None] + (src - S)[None, :] * x_l, mask=d_ok[:, None] & (j_ok & (src >= S))[None, :],
                  other=0.0).to(old.dtype)
    tl.debug_barrier()  # every read of the old state is done before any write
    tl.store(state + j[None, :] * s_s, tl.where((src < S)[None, :], old, new), mask=d_ok[:, None] & j_ok[None, :])
    tl.store(OUT + row_x[:, None] + t[None, :], acc.to(OUT.dtype.element_ty), mask=d_ok[:, None] & t_ok[None, :])


def _blocks(dim, L, mode):
    if mode.interpreted:   # at least 4 channels by 8 steps, at most half of each (``interpreted_tile``)
        return interpreted_tile(dim, 4), interpreted_tile(L, 8)
    return 16, min(256, max(16, next_power_of_2(L)))


def _rule(problem, mode):
    """16 channels by up to 256 steps, four warps (the H100 forward ran at 78% of the copy bandwidth
    with it, 2026-11-25); channel-last rows (``problem[5]``), whose channels lie side by side, 64 channels
    by up to 64 steps (not tuned yet: the tuner's alternatives decide)."""
    bd, bl = _blocks(problem[1], problem[2], mode)
    if len(problem) > 5 and problem[5] and not mode.interpreted:
        bd, bl = 64, min(bl, 64)
    return dict(BLOCK_D=bd, BLOCK_L=bl, num_warps=1 if mode.interpreted else 4)


def _channel_alternatives(problem, mode):
    """Wider and narrower channel tiles and eight warps (the step tile fixed: it sizes a scratch buffer
    in the backward's first pass)."""
    return [dict(BLOCK_D=32), dict(num_warps=8), dict(BLOCK_D=32, num_warps=8), dict(BLOCK_D=8)]


def _alternatives(problem, mode):
    bl = _rule(problem, mode)["BLOCK_L"]
    return _channel_alternatives(problem, mode) + [dict(BLOCK_D=8, BLOCK_L=min(512, 2 * bl)),
                                                   dict(BLOCK_D=32, BLOCK_L=max(16, bl // 2))]


def _key(problem):
    bsz, dim, L, *rest = problem
    return (bucket(bsz * dim), bucket(L), *rest)


def _grid(problem, kw):
    bsz, dim, L = problem[:3]
    return (cdiv(L, kw["BLOCK_L"]), cdiv(dim, kw["BLOCK_D"]), bsz)


_X_HINTS = dict(SXB_A="SXB", SXD_A="SXD", SXL_A="SXL")
_STEP_HINTS = dict(_X_HINTS, SOB_A="SOB", SOD_A="SOD", SOL_A="SOL")
conv1d_fwd = TunableKernel("conv1d_fwd", _conv_fwd_kernel, rule=_rule, alternatives=_alternatives, key=_key,
                           grid=_grid, flags=dict(HAS_BIAS="BIAS", HAS_SEQ="SEQ"), hints=_STEP_HINTS)
conv1d_bwd_pre = TunableKernel("conv1d_bwd_pre", _conv_bwd_pre_kernel, rule=_rule, alternatives=_channel_alternatives,
                               key=_key, grid=_grid, fixed=("BLOCK_L",), flags=dict(HAS_BIAS="BIAS", HAS_SEQ="SEQ"),
                               hints=_STEP_HINTS)
conv1d_bwd_dx = TunableKernel("conv1d_bwd_dx", _conv_bwd_dx_kernel, rule=_rule, alternatives=_alternatives, key=_key,
                              grid=_grid, flags=dict(HAS_SEQ="SEQ"), hints=_X_HINTS)


def _update_rule(problem, mode):
    """32 channels a program, four warps (also under the interpreter, where each program costs ~0.1 s and the
    LM tests step hundreds of channels; tests/test_configs.py crosses channel tiles with every candidate)."""
    return dict(BLOCK_D=32, num_warps=1) if mode.interpreted else dict(BLOCK_D=32, num_warps=4)


def _update_alternatives(problem, mode):
    """64, 16 and 128 channels."""
    return [dict(BLOCK_D=64), dict(BLOCK_D=16), dict(BLOCK_D=128, num_warps=8)]


# the state is updated in place: the tuner restores it around each timed run
conv1d_update = TunableKernel("conv1d_update", _conv_update_kernel, rule=_update_rule, alternatives=_update_alternatives,
                              key=_key, grid=lambda p, kw: (cdiv(p[1], kw["BLOCK_D"]), p[0]), restore=("STATE",),
                              flags=dict(HAS_BIAS="BIAS"), hints=dict(x_b_A="x_b"))


def channel_last(x) -> bool:
    """Whether ``x (b, d, L)`` lies channel-last in memory (a transposed ``(b, L, d)`` or a slice of one)."""
    return x.shape[1] > 1 and x.stride(1) == 1 and x.stride(2) != 1


def like(x, dtype=None):
    """A new ``(b, d, L)`` tensor laid out as ``x``: channel-last (a transposed contiguous ``(b, L, d)``) or
    contiguous. The op's fake output follows the same rule."""
    if channel_last(x):
        return torch.empty((x.shape[0], x.shape[2], x.shape[1]), device=x.device,
                           dtype=dtype or x.dtype).transpose(1, 2)
    return torch.empty(x.shape, device=x.device, dtype=dtype or x.dtype)


def conv_forward(x, weight, bias, seq_idx, silu):
    """``x (b, d, L)`` any strides; the output is laid out as :func:`like` says."""
    out = like(x)
    problem, args = _forward_launch(x, weight, bias, seq_idx, silu, out.stride())
    conv1d_fwd.launch(problem, **args, OUT=out)
    return out


def _forward_launch(x, weight, bias, seq_idx, silu, out_strides) -> tuple[tuple, dict]:
    """The forward's tuning problem and its arguments but the output, shared by the launch and its plan."""
    bsz, dim, L = x.shape
    W = weight.shape[1]
    args = dict(X=x, Wt=weight, BIAS=bias, SEQ=seq_idx, dim=dim, L=L, SXB=x.stride(0), SXD=x.stride(1),
                SXL=x.stride(2), SOB=out_strides[0], SOD=out_strides[1], SOL=out_strides[2], W=W, SILU=silu)
    return (bsz, dim, L, W, x.dtype, channel_last(x)), args


def forward_plan(x, weight, bias, seq_idx, silu) -> "OneLaunch | None":
    """:func:`conv_forward` as an op plan (``ssm_triton/ops/_plans.py``), ``plan((x, weight, bias, seq_idx)) ->
    [out]``, for tensors of these shapes, strides and dtypes; None for a channel-last ``x`` (whose output is
    laid out channel-last, which the plan's contiguous allocation is not)."""
    if channel_last(x):
        return None
    bsz, dim, L = x.shape
    problem, args = _forward_launch(x, weight, bias, seq_idx, silu, (dim * L, L, 1))
    names = ("X", "Wt", "BIAS", "SEQ")
    take = tuple(i for i, t in enumerate((x, weight, bias, seq_idx)) if t is not None)
    launch = Launch(conv1d_fwd, problem, dict(args, OUT=None), tuple(names[i] for i in take) + ("OUT",))
    return OneLaunch(launch, take, ((tuple(x.shape), x.dtype),), x.device)


def conv_backward(dout, x, weight, bias, seq_idx, silu, dx_out=None):
    """Returns ``(dx, dweight (d, W) fp32, dbias (d,) fp32 or None)``; ``dx`` laid out as ``x``, or written into
    ``dx_out (b, d, L)`` (any strides: a slice of the caller's gradient buffer)."""
    bsz, dim, L = x.shape
    W = weight.shape[1]
    problem = (bsz, dim, L, W, x.dtype, channel_last(x))
    hit = conv1d_bwd_pre.resolve(problem)
    n_lt = cdiv(L, (hit[0] if hit else conv1d_bwd_pre.space(problem)[0])["BLOCK_L"])   # BLOCK_L is never tuned
    dpre = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    dw_part = torch.empty((bsz * n_lt, dim, W), device=x.device, dtype=torch.float32)
    db_part = torch.empty((bsz * n_lt, dim), device=x.device, dtype=torch.float32)
    conv1d_bwd_pre.launch(problem, X=x, Wt=weight, BIAS=bias, SEQ=seq_idx, DOUT=dout, DPRE=dpre, DW_PART=dw_part,
                          DB_PART=db_part, dim=dim, L=L, SXB=x.stride(0), SXD=x.stride(1), SXL=x.stride(2),
                          SOB=dout.stride(0), SOD=dout.stride(1), SOL=dout.stride(2), W=W, SILU=silu)
    dx = like(x) if dx_out is None else dx_out
    conv1d_bwd_dx.launch(problem, DPRE=dpre, Wt=weight, SEQ=seq_idx, DX=dx, dim=dim, L=L, SXB=dx.stride(0),
                         SXD=dx.stride(1), SXL=dx.stride(2), W=W)
    return dx, dw_part.sum(0), db_part.sum(0) if bias is not None else None


def update_plan(x, conv_state, weight, bias, silu, out_shape) -> OneLaunch:
    """:func:`conv_update` as an op plan (``ssm_triton/ops/_plans.py``), ``plan((x, conv_state, weight, bias))
    -> [out]`` with ``out`` of ``out_shape`` (the caller's ``x``, of ``x (b, d, L)``'s layout), for tensors of
    these shapes, strides and dtypes."""
    bsz, dim, L = x.shape
    S = conv_state.shape[-1]
    args = dict(X=x, STATE=conv_state, Wt=weight, BIAS=bias, OUT=None, dim=dim, L=L, S=S, s_b=conv_state.stride(0),
                s_d=conv_state.stride(1), s_s=conv_state.stride(2), x_b=x.stride(0), x_d=x.stride(1),
                x_l=x.stride(2), W=weight.shape[1], SILU=silu,
                BLOCK_S=next_power_of_2(S), BLOCK_L=next_power_of_2(L))
    take = (0, 1, 2, 3) if bias is not None else (0, 1, 2)
    launch = Launch(conv1d_update, (bsz, dim, L, S, x.dtype, conv_state.dtype), args,
                    ("X", "STATE", "Wt", "BIAS", "OUT") if bias is not None else ("X", "STATE", "Wt", "OUT"))
    return OneLaunch(launch, take, ((tuple(out_shape), x.dtype),), x.device)


def conv_update(x, conv_state, weight, bias, silu):
    """``x (b, d, L)`` and ``conv_state (b, d, S)`` any strides (the state updated in place); ``out (b, d, L)``
    contiguous."""
    bsz, dim, L = x.shape
    S = conv_state.shape[-1]
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    W = weight.shape[1]
    conv1d_update.launch((bsz, dim, L, S, x.dtype, conv_state.dtype), X=x, STATE=conv_state, Wt=weight, BIAS=bias,
                         OUT=out, dim=dim, L=L, S=S, s_b=conv_state.stride(0), s_d=conv_state.stride(1),
                         s_s=conv_state.stride(2), x_b=x.stride(0), x_d=x.stride(1), x_l=x.stride(2), W=W, SILU=silu,
                         BLOCK_S=next_power_of_2(S),
                         BLOCK_L=next_power_of_2(L))
    return out
