"""The blocks' decode steps in few launches a layer, for token-by-token generation: Mamba-2's in three,
Mamba-1's in five (its x_proj and dt_proj are two more projections of the same kind, ops/fused_step.py).

The step composed of the ops takes eight to ten launches a layer (the residual add and norm, in_proj,
the conv window, ``A = -exp(A_log)``, the state update, the gated norm, out_proj); at batch 1 each is a
few microseconds of a mostly idle GPU (H200 profile, 2026-12-02: 0.53 ms of kernels a token for the 130M
model's 24 layers, bench/results/h200-2026-12-02f/profile_decode.txt). Here a layer is:

1. ``_in_step_kernel``: [the block's ``residual += hidden`` and RMSNorm] -> in_proj, a skinny matmul that
   reads the weight once -> per output channel: ``z`` and ``dt`` stored as they come; each of ``x, B, C``
   through its causal conv window (rolled in place) and silu. A program owns whole output channels, so it
   alone touches their windows.
2. the state update (``kernels/state_update.py``) on views of that buffer, ``A`` read as ``A_log``.
3. ``_out_step_kernel``: the gated RMSNorm of ``y`` (each program recomputes the group statistics from
   ``y``, a few KB from L2) -> out_proj.

Values are rounded where the composed step rounds them (the projection's output and the norm's output
in the model's dtype), so the two agree to the accumulation order of the products.

Shapes: ``hidden (M, K)`` with ``K = d_model``; in_proj weight ``(O, K)``, ``O = 2 d_ssm + 2 G N + H``;
``conv_state (M, conv_dim, W)``, ``conv_dim = d_ssm + 2 G N``; out_proj weight ``(d_model, d_ssm)``.
"""
import os

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from .hints import multiple
from .host import cdiv, next_power_of_2
from .ssd.common import mm
from .ssd.launch import dot_for
from .tuning import TunableKernel, bucket, run_mode


@triton.jit
def _block_input(HID, RES, rows, kk, ok, h_m, r_m, HAS_RES: tl.constexpr):
    """``hidden + residual`` of rows x columns ``kk``, in fp32."""
    u = tl.load(HID + rows[:, None] * h_m + kk[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_RES:
        u += tl.load(RES + rows[:, None] * r_m + kk[None, :], mask=ok, other=0.0).to(tl.float32)
    return u


@triton.jit
def _norm_input(HID, RES, RES_OUT, rows, kk, ok, h_m, r_m, K, HAS_RES: tl.constexpr, STORE: tl.constexpr, first):
    """What the block's RMSNorm reads, in fp32: ``hidden + residual`` rounded to the kept residual's dtype (stored
    as ``RES_OUT`` with ``STORE`` by the programs for which ``first`` holds: one a row), then to the hidden dtype."""
    kept = _block_input(HID, RES, rows, kk, ok, h_m, r_m, HAS_RES).to(RES_OUT.dtype.element_ty)
    if STORE:
        if first:
            tl.store(RES_OUT + rows[:, None] * K + kk[None, :], kept, mask=ok)
    return kept.to(tl.float32).to(HID.dtype.element_ty).to(tl.float32)


@triton.jit
def _tile(M, O, BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr):
    """A program's rows (int64) and output columns, which of them are real, and the reduction lanes."""
    rows = (tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.program_id(0) * BLOCK_O + tl.arange(0, BLOCK_O)
    return rows, rows < M, cols, cols < O, tl.arange(0, BLOCK_K)


@triton.jit
def _weights(WPTR, cols, o_ok, kk, K, BLOCK_M: tl.constexpr):
    """The weight's tile for reduction lanes ``kk`` (rows ``cols`` of a row-major ``(O, K)``):
    ``(BLOCK_O, BLOCK_K)`` for the matrix-vector form (up to 4 rows a program), ``(BLOCK_K, BLOCK_O)`` for the
    tensor-core form. Independent of the previous kernel's output: loaded a tile ahead of its use, the first
    one before the kernel waits on its predecessor (PDL)."""
    k_ok = kk < K
    if BLOCK_M <= 4:
        w = tl.load(WPTR + cols.to(tl.int64)[:, None] * K + kk[None, :], mask=o_ok[:, None] & k_ok[None, :], other=0.0)
    else:
        w = tl.load(WPTR + cols.to(tl.int64)[None, :] * K + kk[:, None], mask=k_ok[:, None] & o_ok[None, :], other=0.0)
    return w


@triton.jit
def _rows_times(x, w):
    """``x (R, BLOCK_K)`` times ``w (BLOCK_O, BLOCK_K)`` transposed, in fp32 FMAs: ``(R, BLOCK_O)``."""
    return tl.sum(x.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :], axis=2)


@triton.jit
def _product(acc, part, x, w, DOT: tl.constexpr, BLOCK_M: tl.constexpr):
    """``x (BLOCK_M, BLOCK_K)`` times a tile of :func:`_weights`, transposed. Over 4 rows: a tensor-core
    product into ``acc``. One row (a matrix-vector product): fp32 products summed per lane into ``part
    (BLOCK_O, BLOCK_K)``, reduced once at the end, so that narrow column blocks give many programs, each
    streaming its weight rows without a tile shape the tensor cores impose; 2-4 rows: fp32 FMAs reduced
    per tile into ``acc`` (each weight tile serves every row of the program)."""
    if BLOCK_M == 1:
        part += w.to(tl.float32) * x.to(tl.float32)
    elif BLOCK_M <= 4:
        acc += _rows_times(x, w)
    else:
        acc += mm(x, w, DOT)
    return acc, part


@triton.jit
def _products_done(acc, part, BIAS, cols, o_ok, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr):
    """The projection ``(BLOCK_M, BLOCK_O)`` in fp32: the matrix-vector form's lanes summed, the bias added."""
    if BLOCK_M == 1:
        acc = tl.sum(part, axis=1)[None, :]
    if HAS_BIAS:
        acc += _bias_row(BIAS, cols, o_ok, HAS_BIAS, BLOCK_O)
    return acc


@triton.jit
def _project(x, w, DOT: tl.constexpr, BLOCK_M: tl.constexpr):
    """``x (BLOCK_M, BLOCK_K)`` times one whole-reduction tile of :func:`_weights`: ``(BLOCK_M, BLOCK_O)`` fp32."""
    if BLOCK_M == 1:
        return tl.sum(w.to(tl.float32) * x.to(tl.float32), axis=1)[None, :]
    elif BLOCK_M <= 4:
        return _rows_times(x, w)
    else:
        return mm(x, w, DOT)


@triton.jit
def _bias_row(BIAS, cols, o_ok, HAS_BIAS: tl.constexpr, BLOCK_O: tl.constexpr):
    """``(1, BLOCK_O)`` fp32: the bias of columns ``cols``, or zeros."""
    if HAS_BIAS:
        return tl.load(BIAS + cols, mask=o_ok, other=0.0).to(tl.float32)[None, :]
    else:
        return tl.zeros([1, BLOCK_O], dtype=tl.float32)


@triton.jit
def _after_predecessor(PDL: tl.constexpr, HOLD: tl.constexpr):
    """With programmatic dependent launch (``PDL``): wait until the previous kernel's writes are visible, and
    let the next kernel be scheduled (before the wait, or with ``HOLD`` after it). Everything before this call
    must not read what that kernel writes.

    ``HOLD`` bounds how far the chain of a step's launches runs ahead: the state update reads its state before
    waiting, and that state is the previous step's update's output, four or two launches back. A kernel that
    lets its dependents start only after its own wait has seen its predecessor finish, and so every launch
    before that one; the kernel before each state update holds (the input projection: ``x_proj`` and
    ``dt_proj`` in Mamba-1), so the update never reads a state still being written (a race seen on the H200
    under load, 2026-12-03: a Mamba-1 decode off by 1e-4 on a first run only)."""
    if PDL:
        if HOLD:
            gdc_wait()
            gdc_launch_dependents()
        else:
            gdc_launch_dependents()
            gdc_wait()


@triton.jit
def _one_tile_in(HID, RES, NORM_W, RES_OUT, WIN, BIN, CONV_W, CONV_B, CONV_S, ZX, rows, m_ok, cols, o_ok, ks, K,
                 conv_lo, conv_dim, eps, h_m, r_m, cs_b, cs_c, cs_w, first, HAS_NORM: tl.constexpr, HAS_RES: tl.constexpr,
                 HAS_BIN: tl.constexpr, HAS_CONV: tl.constexpr, HAS_CONV_B: tl.constexpr, W: tl.constexpr,
                 DOT: tl.constexpr, PDL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr):
    """:func:`_in_step_kernel`'s columns ``cols`` of rows ``rows`` with the whole reduction in one tile (``ks``
    covers ``K``): ``(BLOCK_M, BLOCK_O)`` fp32, the projection rounded to ``ZX``'s dtype, the conv channels among
    the columns through their windows (rolled in place) and silu; ``RES_OUT`` stored where ``first`` holds (one
    program a row). Everything that does not depend on the predecessor is loaded before the wait (PDL, holding its
    dependents until after it)."""
    dt_in = HID.dtype.element_ty
    k_ok = ks < K
    w = _weights(WIN, cols, o_ok, ks, K, BLOCK_M)
    bias = _bias_row(BIN, cols, o_ok, HAS_BIN, BLOCK_O)
    if HAS_NORM:
        nw = tl.load(NORM_W + ks, mask=k_ok, other=0.0).to(tl.float32)
    if HAS_CONV:
        taps, tap_last, conv_b = _conv_taps(CONV_W, CONV_B, cols, conv_lo, conv_dim, HAS_CONV_B, W)
    _after_predecessor(PDL, True)
    if HAS_CONV:
        window = _conv_window_load(CONV_S, rows, cols, m_ok, conv_lo, conv_dim, cs_b, cs_c, cs_w, W)
    ok = m_ok[:, None] & k_ok[None, :]
    if HAS_NORM:
        u = _norm_input(HID, RES, RES_OUT, rows, ks, ok, h_m, r_m, K, HAS_RES, True, first)
        rstd = 1.0 / tl.sqrt(tl.sum(u * u, axis=1) / K + eps)
        x = (u * rstd[:, None] * nw[None, :]).to(dt_in)
    else:
        x = tl.load(HID + rows[:, None] * h_m + ks[None, :], mask=ok, other=0.0)
    out = (_project(x, w, DOT, BLOCK_M) + bias).to(ZX.dtype.element_ty).to(tl.float32)
    if HAS_CONV:
        out = _conv_window(out, window, taps, tap_last, conv_b, CONV_S, rows, cols, m_ok, conv_lo, conv_dim,
                           cs_b, cs_c, cs_w, W)
    return out


@triton.jit
def _in_step_kernel(
    HID, RES, NORM_W, RES_OUT, WIN, BIN, CONV_W, CONV_B, CONV_S, ZX,   # pointers (RES, NORM_W, RES_OUT, BIN, CONV_B may be None)
    M, K: tl.constexpr, O, conv_lo, conv_dim, eps,                       # sizes (conv_lo: the first conv channel's column); the norm's epsilon
    h_m, r_m, cs_b, cs_c, cs_w,                                          # row strides of HID, RES; the conv state's strides
    HAS_NORM: tl.constexpr, HAS_RES: tl.constexpr, HAS_BIN: tl.constexpr, HAS_CONV: tl.constexpr,
    HAS_CONV_B: tl.constexpr, W: tl.constexpr, DOT: tl.constexpr, PDL: tl.constexpr, AHEAD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, O_A: tl.constexpr = 1,
):
    """``ZX (M, O)`` in the weight's dtype: the projection, its columns ``conv_lo + [0, conv_dim)`` through
    their conv windows and silu (Mamba-2: ``[z | silu(conv(x, B, C)) | dt]``); ``RES_OUT (M, K)``
    contiguous: ``hidden + residual`` (written by the programs of the first column block). Without
    ``HAS_CONV`` a plain projection (Mamba-1's x_proj and dt_proj).

    ``BLOCK_K >= K`` (``K`` is a constexpr for this choice): the whole reduction is one tile, and every
    load that does not depend on the predecessor (the weight tile, the norm's weight, the bias, the conv
    taps) is issued before the wait, the rest (the input rows and the conv windows) together after it:
    the step is a chain of dependent memory round trips at batch 1, and this keeps it to about two."""
    O = multiple(O, O_A)   # ZX's row stride (hints.py): Mamba2's in_proj width is 24 heads past a multiple of 16
    rows, m_ok, cols, o_ok, ks = _tile(M, O, BLOCK_M, BLOCK_O, BLOCK_K)
    dt_in = HID.dtype.element_ty
    if BLOCK_K >= K:
        out = _one_tile_in(HID, RES, NORM_W, RES_OUT, WIN, BIN, CONV_W, CONV_B, CONV_S, ZX, rows, m_ok, cols, o_ok, ks,
                           K, conv_lo, conv_dim, eps, h_m, r_m, cs_b, cs_c, cs_w, tl.program_id(0) == 0, HAS_NORM, HAS_RES, HAS_BIN, HAS_CONV,
                           HAS_CONV_B, W, DOT, PDL, BLOCK_M, BLOCK_O)
    else:
        if AHEAD:   # the first tile, read before waiting (PDL)
            w = _weights(WIN, cols, o_ok, ks, K, BLOCK_M)
        if HAS_CONV:
            taps, tap_last, conv_b = _conv_taps(CONV_W, CONV_B, cols, conv_lo, conv_dim, HAS_CONV_B, W)
        _after_predecessor(PDL, True)
        if HAS_CONV:
            window = _conv_window_load(CONV_S, rows, cols, m_ok, conv_lo, conv_dim, cs_b, cs_c, cs_w, W)
        if HAS_NORM:
            sq = tl.zeros([BLOCK_M], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                kk = k0 + ks
                ok = m_ok[:, None] & (kk < K)[None, :]
                u = _norm_input(HID, RES, RES_OUT, rows, kk, ok, h_m, r_m, K, HAS_RES, True,
                                    tl.program_id(0) == 0)
                sq += tl.sum(u * u, axis=1)
            rstd = 1.0 / tl.sqrt(sq / K + eps)
        acc = tl.zeros([BLOCK_M, BLOCK_O], dtype=tl.float32)
        part = tl.zeros([BLOCK_O, BLOCK_K], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + ks
            k_ok = kk < K
            ok = m_ok[:, None] & k_ok[None, :]
            if AHEAD:   # a tile ahead (the first was read before waiting)
                w_next = _weights(WIN, cols, o_ok, kk + BLOCK_K, K, BLOCK_M)
            else:
                w = _weights(WIN, cols, o_ok, kk, K, BLOCK_M)
            if HAS_NORM:
                u = _norm_input(HID, RES, RES_OUT, rows, kk, ok, h_m, r_m, K, HAS_RES, False, False)
                nw = tl.load(NORM_W + kk, mask=k_ok, other=0.0).to(tl.float32)
                x = (u * rstd[:, None] * nw[None, :]).to(dt_in)
            else:
                x = tl.load(HID + rows[:, None] * h_m + kk[None, :], mask=ok, other=0.0)
            acc, part = _product(acc, part, x, w, DOT, BLOCK_M)
            if AHEAD:
                w = w_next
        acc = _products_done(acc, part, BIN, cols, o_ok, HAS_BIN, BLOCK_M, BLOCK_O)
        out = acc.to(ZX.dtype.element_ty).to(tl.float32)   # the projection's output, rounded as the composed step's
        if HAS_CONV:
            out = _conv_window(out, window, taps, tap_last, conv_b, CONV_S, rows, cols, m_ok, conv_lo, conv_dim,
                               cs_b, cs_c, cs_w, W)
    tl.store(ZX + rows[:, None] * O + cols[None, :], out.to(ZX.dtype.element_ty), mask=m_ok[:, None] & o_ok[None, :])


@triton.jit
def _conv_channels(cols, conv_lo, conv_dim):
    """Which of ``cols`` are conv channels, and their channel index (0 elsewhere)."""
    is_conv = (cols >= conv_lo) & (cols < conv_lo + conv_dim)
    return is_conv, tl.where(is_conv, cols - conv_lo, 0).to(tl.int64)


@triton.jit
def _conv_taps(CONV_W, CONV_B, cols, conv_lo, conv_dim, HAS_CONV_B: tl.constexpr, W: tl.constexpr):
    """The conv channels' taps: ``(BLOCK_O, 4)`` for window slots 1..W-1 (the old values that stay; slot
    ``j`` of the tile is tap ``j - 1``), the last tap ``(BLOCK_O,)`` (it meets the new value), the bias."""
    tl.static_assert(W <= 4, "the fused step's conv window holds at most 4 taps")
    is_conv, ch = _conv_channels(cols, conv_lo, conv_dim)
    js = tl.arange(0, 4)
    t_ok = is_conv[:, None] & (js >= 1)[None, :] & (js < W)[None, :]
    taps = tl.load(CONV_W + ch[:, None] * W + (js - 1)[None, :], mask=t_ok, other=0.0).to(tl.float32)
    tap_last = tl.load(CONV_W + ch * W + (W - 1), mask=is_conv, other=0.0).to(tl.float32)
    conv_b = tl.zeros_like(tap_last)
    if HAS_CONV_B:
        conv_b = tl.load(CONV_B + ch, mask=is_conv, other=0.0).to(tl.float32)
    return taps, tap_last, conv_b


@triton.jit
def _conv_window_load(CONV_S, rows, cols, m_ok, conv_lo, conv_dim, cs_b, cs_c, cs_w, W: tl.constexpr):
    """The old window slots 1..W-1 of the conv channels among ``cols``: ``(BLOCK_M, BLOCK_O, 4)`` (slot 0,
    the one that drops out, and slots past W read as 0)."""
    is_conv, ch = _conv_channels(cols, conv_lo, conv_dim)
    js = tl.arange(0, 4)
    ok = (m_ok[:, None] & is_conv[None, :])[:, :, None] & ((js >= 1) & (js < W))[None, None, :]
    ptr = CONV_S + rows[:, None, None] * cs_b + ch[None, :, None] * cs_c + js[None, None, :] * cs_w
    return tl.load(ptr, mask=ok, other=0.0)


@triton.jit
def _conv_window(v, window, taps, tap_last, conv_b, CONV_S, rows, cols, m_ok, conv_lo, conv_dim, cs_b, cs_c, cs_w,
                 W: tl.constexpr):
    """The conv channels among ``cols``: the window ``[old[1:], v]`` against the channel's taps, then silu,
    the window stored back rolled; the other columns' ``v`` as it is. ``window`` and the taps come from
    :func:`_conv_window_load` and :func:`_conv_taps`."""
    is_conv, ch = _conv_channels(cols, conv_lo, conv_dim)
    y = tl.sum(window.to(tl.float32) * taps[None, :, :], axis=2) + tap_last[None, :] * v + conv_b[None, :]
    y = y * tl.sigmoid(y)
    # A program's tiles are smaller than its thread block, so each window element is held by several
    # threads: every one of them must have read the old window before any stores the rolled one
    tl.debug_barrier()
    js = tl.arange(0, 4)
    c_ok = m_ok[:, None] & is_conv[None, :]
    ptr = CONV_S + rows[:, None, None] * cs_b + ch[None, :, None] * cs_c + (js - 1)[None, None, :] * cs_w
    tl.store(ptr, window, mask=c_ok[:, :, None] & ((js >= 1) & (js < W))[None, None, :])
    win = CONV_S + rows[:, None] * cs_b + ch[None, :] * cs_c
    tl.store(win + (W - 1) * cs_w, v.to(CONV_S.dtype.element_ty), mask=c_ok)
    return tl.where(is_conv[None, :], y, v)


@triton.jit
def _gated_input(Y, ZX, rows, kk, ok, d_ssm, zx_m, HAS_NORM: tl.constexpr, GATE_FIRST: tl.constexpr,
                 CG: tl.constexpr = False):
    """What the norm normalises: ``y * silu(z)`` when the gate comes first, else ``y``; plus ``z``. ``CG``: read
    from L2 (written by other programs of the same launch)."""
    if CG:
        y = tl.load(Y + rows[:, None] * d_ssm + kk[None, :], mask=ok, other=0.0, cache_modifier=".cg").to(tl.float32)
    else:
        y = tl.load(Y + rows[:, None] * d_ssm + kk[None, :], mask=ok, other=0.0).to(tl.float32)
    z = tl.zeros_like(y)
    if HAS_NORM:
        if CG:
            z = tl.load(ZX + rows[:, None] * zx_m + kk[None, :], mask=ok, other=0.0, cache_modifier=".cg")
        else:
            z = tl.load(ZX + rows[:, None] * zx_m + kk[None, :], mask=ok, other=0.0)
        z = z.to(tl.float32)
        if GATE_FIRST:
            y = y * z * tl.sigmoid(z)
    return y, z


@triton.jit
def _out_tile_loads(WOUT, BOUT, NORM_W, cols, o_ok, ks, d_ssm, HAS_NORM: tl.constexpr, HAS_BOUT: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr):
    """What :func:`_one_tile_out` reads that no earlier launch writes: the weight's tile, the bias, the norm's
    weight (zeros without the norm)."""
    w = _weights(WOUT, cols, o_ok, ks, d_ssm, BLOCK_M)
    bias = _bias_row(BOUT, cols, o_ok, HAS_BOUT, BLOCK_O)
    nw = tl.zeros([ks.shape[0]], dtype=tl.float32)
    if HAS_NORM:
        nw = tl.load(NORM_W + ks, mask=ks < d_ssm, other=0.0).to(tl.float32)
    return w, bias, nw


@triton.jit
def _one_tile_out(Y, ZX, w, bias, nw, rows, m_ok, ks, d_ssm, group_size, eps, zx_m, dt_out: tl.constexpr,
                  HAS_NORM: tl.constexpr, GATE_FIRST: tl.constexpr, DOT: tl.constexpr, BLOCK_M: tl.constexpr,
                  CG: tl.constexpr = False):
    """``(BLOCK_M, BLOCK_O)`` fp32: ``norm(y, z)`` of rows ``rows`` (each group's statistics from the rows in
    registers, ``ks`` covering ``d_ssm``) times the tile ``w`` of :func:`_out_tile_loads`, plus the bias. ``CG``: as
    :func:`_gated_input`'s."""
    u, z = _gated_input(Y, ZX, rows, ks, m_ok[:, None] & (ks < d_ssm)[None, :], d_ssm, zx_m, HAS_NORM, GATE_FIRST, CG)
    if HAS_NORM:
        sq = u * u
        scale = tl.zeros_like(u)
        for lo in range(0, d_ssm, group_size):
            inside = ((ks >= lo) & (ks < lo + group_size))[None, :]
            s = tl.sum(tl.where(inside, sq, 0.0), axis=1)
            scale = tl.where(inside, (1.0 / tl.sqrt(s / group_size + eps))[:, None], scale)
        u = u * scale * nw[None, :]
        if not GATE_FIRST:
            u = u * z * tl.sigmoid(z)
    # the norm's output in the model's dtype, as out_proj reads it
    return _project(u.to(dt_out), w, DOT, BLOCK_M) + bias


@triton.jit
def _out_step_kernel(
    Y, ZX, NORM_W, WOUT, BOUT, OUT,         # pointers (NORM_W, BOUT may be None)
    M, d_ssm: tl.constexpr, group_size, d_model, eps, zx_m,
    HAS_NORM: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BOUT: tl.constexpr, DOT: tl.constexpr, PDL: tl.constexpr,
    AHEAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
    zx_m_A: tl.constexpr = 1,
):
    """``OUT (M, d_model) = norm(y, z) @ WOUT.T (+ BOUT)``; without the norm ``y`` is already gated.
    ``BLOCK_K >= d_ssm``: one tile, the weight, the norm's weight and the bias read before the wait, each
    group's statistics from the rows in registers (see :func:`_in_step_kernel`)."""
    zx_m = multiple(zx_m, zx_m_A)
    rows, m_ok, cols, o_ok, ks = _tile(M, d_model, BLOCK_M, BLOCK_O, BLOCK_K)
    dt_out = OUT.dtype.element_ty
    if BLOCK_K >= d_ssm:
        w, bias, nw = _out_tile_loads(WOUT, BOUT, NORM_W, cols, o_ok, ks, d_ssm, HAS_NORM, HAS_BOUT, BLOCK_M, BLOCK_O)
        _after_predecessor(PDL, False)
        acc = _one_tile_out(Y, ZX, w, bias, nw, rows, m_ok, ks, d_ssm, group_size, eps, zx_m, dt_out, HAS_NORM,
                            GATE_FIRST, DOT, BLOCK_M)
    else:
        if AHEAD:   # the first tile of the first group, read before waiting (PDL)
            w = _weights(WOUT, cols, o_ok, ks, d_ssm, BLOCK_M)
        _after_predecessor(PDL, False)
        acc = tl.zeros([BLOCK_M, BLOCK_O], dtype=tl.float32)
        part = tl.zeros([BLOCK_O, BLOCK_K], dtype=tl.float32)
        for lo in range(0, d_ssm, group_size):
            if HAS_NORM:
                sq = tl.zeros([BLOCK_M], dtype=tl.float32)
                for k0 in range(0, group_size, BLOCK_K):
                    kk = lo + k0 + ks
                    ok = m_ok[:, None] & (k0 + ks < group_size)[None, :]
                    u, _ = _gated_input(Y, ZX, rows, kk, ok, d_ssm, zx_m, HAS_NORM, GATE_FIRST)
                    sq += tl.sum(u * u, axis=1)
                rstd = 1.0 / tl.sqrt(sq / group_size + eps)
            for k0 in range(0, group_size, BLOCK_K):
                kk = lo + k0 + ks
                k_ok = k0 + ks < group_size
                ok = m_ok[:, None] & k_ok[None, :]
                if AHEAD:   # a tile ahead: this group's next, else the next group's first (the columns run on)
                    nxt = tl.where(k0 + BLOCK_K < group_size, kk + BLOCK_K, lo + group_size + ks)
                    w_next = _weights(WOUT, cols, o_ok, nxt, d_ssm, BLOCK_M)
                else:
                    w = _weights(WOUT, cols, o_ok, kk, d_ssm, BLOCK_M)
                u, z = _gated_input(Y, ZX, rows, kk, ok, d_ssm, zx_m, HAS_NORM, GATE_FIRST)
                if HAS_NORM:
                    u = u * rstd[:, None] * tl.load(NORM_W + kk, mask=k_ok, other=0.0).to(tl.float32)[None, :]
                    if not GATE_FIRST:
                        u = u * z * tl.sigmoid(z)
                # the norm's output in the model's dtype, as out_proj reads it
                acc, part = _product(acc, part, u.to(dt_out), w, DOT, BLOCK_M)
                if AHEAD:
                    w = w_next
        acc = _products_done(acc, part, BOUT, cols, o_ok, HAS_BOUT, BLOCK_M, BLOCK_O)
    tl.store(OUT + rows[:, None] * d_model + cols[None, :], acc.to(dt_out), mask=m_ok[:, None] & o_ok[None, :])


# Programmatic dependent launch (Hopper on): each launch of a step lets the next one be scheduled at once,
# and that one streams its first weight tile (or its state) while waiting for its predecessor's writes.
# On the H200 (2026-12-03, 130M Mamba2 LM, replayed step, same process) it took the one-row step from
# 0.384 to 0.350 ms, but the four-row step from 0.564 to 0.598 ms; memcheck clean, tests pass with it on.
# So by default (``PDL_ENABLED = None``) steps up to the block's measured row count use it
# (ops/fused_step.py's ``PDL_ROWS``: Mamba-2 one row, Mamba-1 four); ``SSM_TRITON_PDL=1`` (or True here)
# uses it for every step, ``SSM_TRITON_PDL=0`` (or False) for none.
_PDL_ENV = os.environ.get("SSM_TRITON_PDL", "").strip()
PDL_ENABLED: bool | None = None if _PDL_ENV == "" else _PDL_ENV != "0"
_capable: dict = {}


def pdl_enabled(device, rows: int = 1, auto_rows: int = 1) -> bool:
    """Whether the fused steps' launches of ``rows`` rows on ``device`` are programmatic dependent launches;
    by default (``PDL_ENABLED`` None) up to ``auto_rows`` rows (the block's measured limit, ops/fused_step.py)."""
    if PDL_ENABLED is False or (PDL_ENABLED is None and rows > auto_rows):
        return False
    if device.type != "cuda" or run_mode(device).interpreted:
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _capable:
        _capable[index] = torch.cuda.get_device_capability(index)[0] >= 9
    return _capable[index]


# The matrix-vector form reads the whole reduction as one tile up to this many weight elements a program
# (16K: 32 KB of bf16, 128 registers a thread at 4 warps), so that a step's loads are issued together
ONE_TILE_ELEMENTS = 16384


def _rows_tile(K: int) -> dict | None:
    """The matrix-vector form over several rows a program with the whole reduction in one tile: 4 rows
    (2 for the longest reductions) and as many columns as keep the fp32 products at ``ONE_TILE_ELEMENTS``
    (eight warps: 64 registers a thread); None past 4096."""
    block_k = next_power_of_2(max(16, K))
    if block_k * 4 > ONE_TILE_ELEMENTS:
        return None
    rows = 4 if ONE_TILE_ELEMENTS // (4 * block_k) >= 2 else 2
    return dict(BLOCK_M=rows, BLOCK_O=max(2, ONE_TILE_ELEMENTS // (rows * block_k)), BLOCK_K=block_k, num_warps=8)


def _rule(problem, mode):
    """Up to 4 rows: one row a program, the matrix-vector product, column blocks of 2-4 programs an SM
    (the weight is read once: the step is bound by how many reads are in flight), the whole reduction one
    tile where it fits (``K`` up to 4096); more rows: tensor-core tiles of up to 64 rows, one column block
    an SM, 256 deep (H200 2026-12-04d, 16 rows, in a CUDA graph: the norm and projection of Mamba-2's in_proj
    9.9 us against 38 for the 4-row matrix-vector form, which stays among the tuner's candidates with its
    2-row variant; the out_proj with the gated norm: 12.1 us over 2 rows a program, one tile, 16.3 tensor-core
    tiles; `bench/results/h200-2026-12-04d/`). Under the interpreter small blocks so tests cross them: one row a program
    up to 2 rows, 2 rows a program up to 4, tensor-core tiles past that (every form runs there;
    reductions up to 32 in one tile, longer ones looped)."""
    M, O = problem[0], problem[1]
    if mode.interpreted:   # the weight read a tile ahead, the form whose tile bookkeeping can go wrong
        if M <= 4:
            return dict(BLOCK_M=1 if M <= 2 else 2, BLOCK_O=16, BLOCK_K=32, AHEAD=True, num_warps=1)
        return dict(BLOCK_M=16, BLOCK_O=64, BLOCK_K=32, AHEAD=True, num_warps=1)
    K = problem[2]
    rows = _rows_tile(K)
    if M <= 4:
        block_o = max(4, min(64, next_power_of_2(max(1, O // (3 * mode.sm_count)))))
        if rows is not None:   # one tile
            block_k = rows["BLOCK_K"]
            block_o = min(block_o, ONE_TILE_ELEMENTS // block_k)
        else:
            block_k = 512
        kw = dict(BLOCK_M=1, BLOCK_O=block_o, BLOCK_K=block_k, num_warps=4)
    else:
        kw = _tensor_core_tile(M, O, mode)
    kw["AHEAD"] = bool(problem[-1])   # with PDL the first tile is read before waiting: the rest follow a tile ahead
    if problem[-1]:                    # programmatic dependent launch
        kw["launch_pdl"] = True
    return kw


def _tensor_core_tile(M: int, O: int, mode) -> dict:
    block_o = max(16, min(128, next_power_of_2(max(1, O // mode.sm_count))))
    return dict(BLOCK_M=max(16, min(64, next_power_of_2(M))), BLOCK_O=block_o, BLOCK_K=256, num_warps=4)


def _alternatives(problem, mode):
    """Half and twice the column block, other reduction blocks (the looped form among them), other warp
    and stage counts, the weight read a tile ahead or not; over one row, the other multi-row forms."""
    kw = _rule(problem, mode)
    M, K = problem[0], problem[2]
    bm = kw["BLOCK_M"]
    one_tile = kw["BLOCK_K"] >= K
    alts = [dict(BLOCK_O=max(4 if bm == 1 else 2 if bm <= 4 else 16, kw["BLOCK_O"] // 2)),
            dict(BLOCK_O=kw["BLOCK_O"] * 2), dict(BLOCK_K=max(16, kw["BLOCK_K"] // 2)), dict(num_warps=8),
            dict(num_warps=4 if bm != 1 and bm <= 4 else 2), dict(num_stages=1)]
    if not one_tile:
        alts.append(dict(AHEAD=not kw["AHEAD"]))
    if bm == 1:   # tensor-core tiles past 256 deep outgrow shared memory with fp32 operands and 3 stages
        if one_tile:   # the looped form of the rule before one tile (H200 2026-12-03: 512 deep, a tile ahead)
            alts.append(dict(BLOCK_K=min(512, max(16, kw["BLOCK_K"] // 2)), AHEAD=True))
        else:
            alts += [dict(BLOCK_K=kw["BLOCK_K"] * 2), dict(BLOCK_K=kw["BLOCK_K"] * 2, num_warps=8)]
    rows = _rows_tile(K)
    if M > 1 and rows is not None and bm == 1:   # several rows a program
        alts.append(rows)
    if M > 4 and rows is not None and bm > 4:   # the multi-row matrix-vector form, over 4 and 2 rows
        alts += [rows, dict(rows, BLOCK_M=2, BLOCK_O=rows["BLOCK_O"] * (4 if rows["BLOCK_M"] == 4 else 2))]
    if M > 1 and bm <= 4:   # the tensor-core form
        alts.append(dict(_tensor_core_tile(M, problem[1], mode), BLOCK_K=min(256, kw["BLOCK_K"])))
    if 1 < bm <= 4 and rows is not None:   # two rows a program, twice the columns
        alts.append(dict(rows, BLOCK_M=2, BLOCK_O=rows["BLOCK_O"] * (2 if rows["BLOCK_M"] == 4 else 1)))
    return alts


def _key(problem):
    return (bucket(problem[0]), *problem[1:])


def _grid(problem, kw):
    return (cdiv(problem[1], kw["BLOCK_O"]), cdiv(problem[0], kw["BLOCK_M"]))


in_step_kernel = TunableKernel("mamba2_in_step", _in_step_kernel, rule=_rule, alternatives=_alternatives, key=_key,
                               grid=_grid, restore=("CONV_S",),
                               flags=dict(HAS_RES="RES", HAS_NORM="NORM_W", HAS_BIN="BIN", HAS_CONV="CONV_W",
                                          HAS_CONV_B="CONV_B"), hints=dict(O_A="O"))
out_step_kernel = TunableKernel("mamba2_out_step", _out_step_kernel, rule=_rule, alternatives=_alternatives,
                                key=_key, grid=_grid, flags=dict(HAS_NORM="NORM_W", HAS_BOUT="BOUT"),
                                hints=dict(zx_m_A="zx_m"))


def in_step_args(hidden, residual, norm_weight, eps, residual_dtype, weight, bias, conv_weight, conv_bias, conv_state,
                 conv_lo, zx, res_out, pdl):
    """``(problem, launch arguments)`` of :func:`in_step` writing into ``zx`` and ``res_out`` (the fused
    steps' plans, ``ops/fused_step.py``, bind them once). ``hidden`` and ``residual`` are read as rows
    ``(M, K)`` through their first stride: a contiguous ``(M, 1, K)`` serves as it is."""
    M, K = hidden.shape[0], weight.shape[1]
    O = weight.shape[0]
    conv_dim, W = conv_weight.shape if conv_weight is not None else (0, 1)
    cs_b, cs_c, cs_w = conv_state.stride() if conv_state is not None else (0, 0, 0)
    problem = (M, O, K, weight.dtype, norm_weight is not None, residual is not None, W, pdl)
    return problem, dict(
        HID=hidden, RES=residual, NORM_W=norm_weight, RES_OUT=res_out, WIN=weight, BIN=bias,
        CONV_W=conv_weight, CONV_B=conv_bias, CONV_S=conv_state, ZX=zx, M=M, K=K, O=O, conv_lo=conv_lo,
        conv_dim=conv_dim, eps=float(eps), h_m=hidden.stride(0), r_m=residual.stride(0) if residual is not None else 0,
        cs_b=cs_b, cs_c=cs_c, cs_w=cs_w, W=W, DOT=dot_for(weight.dtype), PDL=pdl)


def in_step(hidden, residual, norm_weight, eps, residual_dtype, weight, bias, conv_weight=None, conv_bias=None,
            conv_state=None, conv_lo=0, config=None, pdl=None):
    """``hidden (M, K)`` (rows contiguous) -> ``(zx (M, O) in weight's dtype, residual_out (M, K) or None)``.
    With ``norm_weight`` the input is ``rmsnorm(hidden + residual) * norm_weight`` (``residual`` may be None)
    and ``residual_out`` the sum in ``residual_dtype``; without it the input is ``hidden`` as given. With
    ``conv_weight (conv_dim, W)`` the columns from ``conv_lo`` on go through the conv windows of
    ``conv_state (M, conv_dim, W)``, rolled in place. ``pdl``: a programmatic dependent launch (default:
    :func:`pdl_enabled`'s choice for ``M`` rows)."""
    M, K = hidden.shape
    zx = torch.empty((M, weight.shape[0]), device=hidden.device, dtype=weight.dtype)
    res_out = (torch.empty((M, K), device=hidden.device, dtype=residual_dtype) if norm_weight is not None else None)
    problem, args = in_step_args(hidden, residual, norm_weight, eps, residual_dtype, weight, bias, conv_weight,
                                 conv_bias, conv_state, conv_lo, zx, res_out,
                                 pdl_enabled(hidden.device, M) if pdl is None else pdl)
    in_step_kernel.launch(problem, config, **args)
    return zx, res_out


def out_step_args(y, zx, norm_weight, eps, group_size, gate_first, weight, bias, out, pdl):
    """``(problem, launch arguments)`` of :func:`out_step` writing into ``out`` (contiguous ``(M, d_model)``
    rows; a contiguous ``(M, 1, d_model)`` serves)."""
    M, d_ssm = y.shape[0], weight.shape[1]
    d_model = weight.shape[0]
    group_size = group_size if norm_weight is not None else d_ssm
    problem = (M, d_model, d_ssm, group_size, weight.dtype, norm_weight is not None, gate_first, pdl)
    return problem, dict(
        Y=y, ZX=zx, NORM_W=norm_weight, WOUT=weight, BOUT=bias, OUT=out, M=M, d_ssm=d_ssm,
        group_size=group_size, d_model=d_model, eps=float(eps), zx_m=zx.stride(0), GATE_FIRST=gate_first,
        DOT=dot_for(weight.dtype), PDL=pdl)


def out_step(y, zx, norm_weight, eps, group_size, gate_first, weight, bias, config=None, pdl=None):
    """``y (M, d_ssm)`` contiguous, ``zx`` from :func:`in_step` (``z`` its first ``d_ssm`` columns) ->
    ``(M, d_model)`` in ``weight``'s dtype: ``rmsnorm_gated(y, z) @ weight.T + bias`` (no norm when
    ``norm_weight`` is None: ``y`` is then the gated output)."""
    out = torch.empty((y.shape[0], weight.shape[0]), device=y.device, dtype=weight.dtype)
    problem, args = out_step_args(y, zx, norm_weight, eps, group_size, gate_first, weight, bias, out,
                                  pdl_enabled(y.device, y.shape[0]) if pdl is None else pdl)
    out_step_kernel.launch(problem, config, **args)
    return out
