"""Mamba-1's fused selective scan, forward and backward; public as `ssm_triton.selective_scan_fn`.

One program owns a batch row and ``BLOCK_D`` channels and walks time in chunks of ``BLOCK_L`` steps.
A chunk's inputs are loaded once into registers as ``(BLOCK_D, BLOCK_L)``: the step size (bias,
softplus), then for each state in turn the discretization ``exp(dt A)`` and ``dt B u``, a
``tl.associative_scan`` over time and the ``C`` contraction summed into ``y``; then ``D u`` and the
``silu(z)`` gate. Only ``out``, the last state and one state per chunk (``ckpt``, the state entering
each chunk, for a backward that recomputes instead of storing) reach memory; the ``(b, d, L, N)``
states never do.

``B`` and ``C`` arrive as ``(b, G, N, L)`` (variable, ``G = 1`` for the ungrouped layout) or
``(d, N)`` (fixed). ``BLOCK_D`` divides the channels per group, so a program reads one group.
"""
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .activations import softplus
from .host import cdiv, next_power_of_2, prev_power_of_2
from .scan import first_order_combine, fold_in
from .tuning import Launch, OneLaunch, TunableKernel, bucket, interpreted_tile, run_mode

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _bc_row(M, bi, gi, ds, d_ok, n, t, t_ok, s_b, s_g, s_n, s_l, FIXED: tl.constexpr, EVEN: tl.constexpr):
    """State ``n`` of ``B`` or ``C``: ``(1, BLOCK_L)`` along time when variable, ``(BLOCK_D, 1)`` per channel
    when fixed. ``EVEN``: the chunks tile ``L`` exactly, so the time mask (a select per element in the
    innermost loop) is dropped. One return after the branch: Triton checks every return's shape, even
    under a constexpr ``if``."""
    if FIXED:
        row = tl.load(M + ds * s_n + n, mask=d_ok, other=0.0)[:, None]
    elif EVEN:
        row = tl.load(M + bi.to(tl.int64) * s_b + gi * s_g + n * s_n + t * s_l)[None, :]
    else:
        row = tl.load(M + bi.to(tl.int64) * s_b + gi * s_g + n * s_n + t * s_l, mask=t_ok, other=0.0)[None, :]
    return row.to(tl.float32)


@triton.jit
def _step_size(DELTA, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(dt, d dt / d delta) for the given steps; zero where masked."""
    return _step_given_slope(tl.load(DELTA + offs, mask=mask, other=0.0), mask, bias, HAS_BIAS, SOFTPLUS)


@triton.jit
def _step_given_slope(pre, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """:func:`_step_size` from ``delta`` already loaded (in its dtype)."""
    pre = pre.to(tl.float32)
    if HAS_BIAS:
        pre += bias[:, None]
    if SOFTPLUS:
        dt = softplus(pre)
        slope = tl.sigmoid(pre)
    else:
        dt = pre
        slope = tl.full(pre.shape, 1.0, tl.float32)
    return tl.where(mask, dt, 0.0), slope


@triton.jit
def _state_rows(A, B, C, ds, d_ok, n, N, bi, gi, t, t_ok, sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
                B_FIXED: tl.constexpr, C_FIXED: tl.constexpr, EVEN: tl.constexpr):
    """State ``n``'s ``A`` column (as stored) and ``B``, ``C`` rows (:func:`_bc_row`) for the chunk's steps ``t``."""
    a = tl.load(A + ds * N + n, mask=d_ok, other=0.0)
    b = _bc_row(B, bi, gi, ds, d_ok, n, t, t_ok, sb_b, sb_g, sb_n, sb_l, B_FIXED, EVEN)
    c = _bc_row(C, bi, gi, ds, d_ok, n, t, t_ok, sc_b, sc_g, sc_n, sc_l, C_FIXED, EVEN)
    return a, b, c


@triton.jit
def _a_of(a, A_LOG: tl.constexpr):
    """``A`` in fp32 from what ``A`` holds: ``A`` itself, or with ``A_LOG`` the module's ``A_log`` (``A =
    -exp(A_log)``, taken here rather than in three PyTorch launches a layer of an inference call)."""
    a = a.to(tl.float32)
    if A_LOG:
        a = -tl.exp(a)
    return a


@triton.jit
def _chunk_rows(U, DELTA, DOUT, Z, offs, mask, HAS_DOUT: tl.constexpr, HAS_Z: tl.constexpr):
    """A chunk's ``u``, ``delta`` and, where asked, ``dout``, ``z``, as stored (zeros where masked or not asked)."""
    u = tl.load(U + offs, mask=mask, other=0.0)
    delta = tl.load(DELTA + offs, mask=mask, other=0.0)
    dout = tl.zeros(u.shape, dtype=u.dtype)
    zz = tl.zeros(u.shape, dtype=u.dtype)
    if HAS_DOUT:
        dout = tl.load(DOUT + offs, mask=mask, other=0.0)
    if HAS_Z:
        zz = tl.load(Z + offs, mask=mask, other=0.0)
    return u, delta, dout, zz


@triton.jit
def _with_state_before(a_l, b_l, pa_l, pb_l, a_r, b_r, pa_r, pb_r):
    """First-order combine that also carries the map to the state before the last step: a segment maps
    an entering state ``h`` to ``a h + b`` after it and to ``pa h + pb`` before its last step. Scanned
    over ``(decay, drive, 1, 0)`` it gives ``h_t`` and ``h_{t-1}`` together, with no shift across lanes."""
    return a_l * a_r, a_r * b_l + b_r, pa_r * a_l, pa_r * b_l + pb_r


@triton.jit
def _pick(x, idx, i):
    """Column ``i`` of ``x (rows, cols)`` as a ``(rows,)`` vector; ``idx`` is ``arange(cols)``."""
    return tl.sum(tl.where(idx[None, :] == i, x, 0.0), axis=1)


@triton.jit
def _put(x, idx, i, col):
    """``x`` with column ``i`` replaced by ``col (rows,)``."""
    return tl.where(idx[None, :] == i, col[:, None], x)


@triton.jit
def _bc_grad(dst, t_ok, grad, acc, ns, n, FIXED: tl.constexpr, ATOMIC: tl.constexpr):
    """State ``n``'s share of ``dB`` or ``dC`` from ``grad (BLOCK_D, BLOCK_L)``: summed over time into
    column ``n`` of ``acc (BLOCK_D, BLOCK_N)`` when fixed (returned), else summed over the program's
    channels and added atomically, or stored as this program's partial, at ``dst`` (time-indexed)."""
    if FIXED:
        acc = _put(acc, ns, n, _pick(acc, ns, n) + tl.sum(grad, axis=1))
    elif ATOMIC:
        tl.atomic_add(dst, tl.sum(grad, axis=0), mask=t_ok, sem="relaxed")
    else:
        tl.store(dst, tl.sum(grad, axis=0), mask=t_ok)
    return acc


@triton.jit
def _state_or_zero(P, state_off, dn_ok, PRESENT: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """A ``(BLOCK_D, BLOCK_N)`` fp32 state read from ``P``, or zeros when the caller passed none."""
    if PRESENT:
        state = tl.load(P + state_off, mask=dn_ok, other=0.0).to(tl.float32)
    else:
        state = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    return state


@triton.jit
def _chunk(row, i, lane, d_ok, L, BLOCK_L: tl.constexpr):
    """Chunk ``i``'s steps ``t``, their masks and the ``(BLOCK_D, BLOCK_L)`` offsets into ``(b, d, L)`` tensors."""
    t = i * BLOCK_L + lane
    t_ok = t < L
    return t, t_ok, d_ok[:, None] & t_ok[None, :], row[:, None] + t[None, :]


@triton.jit
def _ckpt_offsets(bi, dim, ds, n_chunks, i, N, ns):
    """Where chunk ``i``'s entering state lives in ``ckpt (b, d, n_chunks, N)``."""
    return ((bi.to(tl.int64) * dim + ds[:, None]) * n_chunks + i) * N + ns[None, :]


@triton.jit
def _channels(dim, per_group, BLOCK_D: tl.constexpr):
    """A program's batch row, channel block, channels, their group and which channels are real."""
    bi = tl.program_id(0)
    pd = tl.program_id(1)
    ds = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    return bi, pd, ds, (pd * BLOCK_D) // per_group, ds < dim


@triton.jit
def _state_tile(bi, ds, d_ok, dim, N, BLOCK_N: tl.constexpr):
    """The program's ``(BLOCK_D, BLOCK_N)`` states: their indices, mask and offsets in a ``(b, dim, N)`` tensor."""
    ns = tl.arange(0, BLOCK_N)
    return ns, d_ok[:, None] & (ns < N)[None, :], (bi.to(tl.int64) * dim + ds[:, None]) * N + ns[None, :]


@triton.jit
def _per_channel(PTR, ds, d_ok, PRESENT: tl.constexpr, BLOCK_D: tl.constexpr):
    """A ``(dim,)`` parameter's values for the program's channels, zeros when it is absent."""
    if PRESENT:
        return tl.load(PTR + ds, mask=d_ok, other=0.0).to(tl.float32)
    return tl.zeros([BLOCK_D], dtype=tl.float32)


@triton.jit
def _selective_scan_fwd_kernel(
    # pointers (D, Z, DBIAS, H0 may be None; SEG_H, SEG_DT, FINAL only when SEGMENTED)
    U, DELTA, A, B, C, D, Z, DBIAS, H0, OUT, LAST, CKPT, SEG_H, SEG_DT, FINAL,
    # sizes
    dim, L, N, per_group, n_ckpt, n_seg, seg_l,
    # strides of B and C as (batch, group, state, step)
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    # meta-parameters
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, B_FIXED: tl.constexpr, C_FIXED: tl.constexpr, STORE_CKPT: tl.constexpr,
    EVEN: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
    CKPT_L: tl.constexpr, SEGMENTED: tl.constexpr, AHEAD: tl.constexpr = 0, UNROLL: tl.constexpr = 1,
    A_LOG: tl.constexpr = False,
):
    """Per chunk of ``BLOCK_L`` steps the ``(BLOCK_D, BLOCK_L)`` inputs are loaded once; the states are
    then walked one at a time, each a scan along time, and their ``C`` contractions summed into ``y``.
    Time is the tensors' contiguous axis, so the scan runs mostly inside each thread (as mamba_ssm's
    CUDA kernel arranges it); scanning a (channels, time, states) tile, whose time axis Triton spread
    across lanes and warps, was ~3x slower on the H100.

    Each state is carried from chunk to chunk through ``LAST`` (global memory, cached): the lane of the
    chunk's last step stores it, and one barrier per chunk makes it visible to the program's other
    threads. Extracting it from the scan as a register value takes a cross-lane reduction per state
    and chunk; on the H100 the memory carry took the forward from 1.24 to 1.01 ms (L 2048, 512 steps
    per chunk). The same masked stores write a checkpoint every ``CKPT_L`` steps (the backward's
    chunk), so the forward's chunk can be longer than the backward's.

    ``SEGMENTED``: the third program axis splits time into ``n_seg`` segments of ``seg_l`` steps,
    for problems with too few channels to fill the GPU (off on GPUs for now: ``plan_segment_l``). A
    segment starts from the state the segments before it leave, composed from their
    summaries (``_selective_scan_fwd_summary_kernel``): ``h <- exp(A sum dt) h + h_from_zero``. Each
    segment carries its state in its own row of ``LAST (b, d, n_seg, N)``; the last one copies its
    final state to ``FINAL``.

    ``AHEAD`` (loads in flight while the scans compute; with few channels a program each SM holds too few warps
    to hide a load's latency behind other warps): 1 reads the next state's ``B``, ``C`` rows, carry and ``A``
    while a state scans, and the chunk's ``z`` before its states; 2 also the next chunk's ``u`` and ``delta``
    while a chunk's states scan."""
    bi, pd, ds, gi, d_ok = _channels(dim, per_group, BLOCK_D)
    ns, dn_ok, state_off = _state_tile(bi, ds, d_ok, dim, N, BLOCK_N)
    bias = _per_channel(DBIAS, ds, d_ok, HAS_BIAS, BLOCK_D)
    skip = _per_channel(D, ds, d_ok, HAS_D, BLOCK_D)
    lane = tl.arange(0, BLOCK_L)
    seg = tl.program_id(2)
    seg_row = (bi.to(tl.int64) * dim + ds) * n_seg
    chan_n = (seg_row + seg) * N      # this segment's carry row in LAST
    carry_off = chan_n[:, None] + ns[None, :]
    h = _state_or_zero(H0, state_off, dn_ok, HAS_H0, BLOCK_D, BLOCK_N)
    if SEGMENTED:
        a2 = _a_of(tl.load(A + ds[:, None] * N + ns[None, :], mask=dn_ok, other=0.0), A_LOG) * LOG2E
        for k in range(seg):
            total = tl.load(SEG_DT + seg_row + k, mask=d_ok, other=0.0)
            h = tl.exp2(a2 * total[:, None]) * h + tl.load(SEG_H + (seg_row + k)[:, None] * N + ns[None, :],
                                                           mask=dn_ok, other=0.0)
    tl.store(LAST + carry_off, h, mask=dn_ok)
    tl.debug_barrier()
    row = (bi.to(tl.int64) * dim + ds) * L
    carry_ok = d_ok[:, None] & (lane == BLOCK_L - 1)[None, :]
    SPLIT: tl.constexpr = BLOCK_L // CKPT_L
    n_chunks = tl.cdiv(L, BLOCK_L)
    if SEGMENTED:   # seg_l is a multiple of BLOCK_L
        first = seg * (seg_l // BLOCK_L)
        end = tl.minimum(first + seg_l // BLOCK_L, n_chunks)
    else:
        first = 0
        end = n_chunks
    if AHEAD >= 2:
        t, t_ok, ok, offs = _chunk(row, first, lane, d_ok, L, BLOCK_L)
        u_nx, dl_nx, no_dout, no_z = _chunk_rows(U, DELTA, None, None, offs, ok, False, False)
    for i in range(first, end):
        t, t_ok, ok, offs = _chunk(row, i, lane, d_ok, L, BLOCK_L)
        if AHEAD >= 2:   # this chunk's u, delta were read during the last one; the next one's now
            u, dl = u_nx, dl_nx
            _, _, ok_nx, offs_nx = _chunk(row, i + 1, lane, d_ok, tl.minimum(L, end * BLOCK_L), BLOCK_L)
            u_nx, dl_nx, no_dout, no_z = _chunk_rows(U, DELTA, None, None, offs_nx, ok_nx, False, False)
        else:
            u, dl, no_dout, no_z = _chunk_rows(U, DELTA, None, None, offs, ok, False, False)
        u = u.to(tl.float32)
        # padding steps get dt = 0: exp(0) = 1 and no input, the identity step
        dt, _ = _step_given_slope(dl, ok, bias, HAS_BIAS, SOFTPLUS)
        if HAS_Z and AHEAD >= 1:
            zz = tl.load(Z + offs, mask=ok, other=0.0).to(tl.float32)
        if STORE_CKPT:
            # the state entering this chunk, then the one after each CKPT_L steps inside it
            tl.store(CKPT + _ckpt_offsets(bi, dim, ds, n_ckpt, i * SPLIT, N, ns),
                     tl.load(LAST + carry_off, mask=dn_ok), mask=dn_ok)
            ck = i * SPLIT + lane // CKPT_L + 1
            ck_off = ((bi.to(tl.int64) * dim + ds[:, None]) * n_ckpt + ck[None, :]) * N
            ck_ok = d_ok[:, None] & ((lane % CKPT_L == CKPT_L - 1) & (lane < BLOCK_L - 1) & (ck < n_ckpt))[None, :]
        dtu = dt * u
        y = skip[:, None] * u
        if AHEAD >= 1:
            h_nx = tl.load(LAST + chan_n, mask=d_ok, other=0.0)
            a_nx, b_nx, c_nx = _state_rows(A, B, C, ds, d_ok, 0, N, bi, gi, t, t_ok, sb_b, sb_g, sb_n, sb_l, sc_b,
                                           sc_g, sc_n, sc_l, B_FIXED, C_FIXED, EVEN)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            if AHEAD >= 1:   # state n's rows came in during state n - 1's scan; n + 1's now (the last one again)
                h_n, a_n, b_n, c_n = h_nx, a_nx, b_nx, c_nx
                nn = tl.minimum(n + 1, N - 1)
                h_nx = tl.load(LAST + chan_n + nn, mask=d_ok, other=0.0)
                a_nx, b_nx, c_nx = _state_rows(A, B, C, ds, d_ok, nn, N, bi, gi, t, t_ok, sb_b, sb_g, sb_n, sb_l,
                                               sc_b, sc_g, sc_n, sc_l, B_FIXED, C_FIXED, EVEN)
            else:
                h_n = tl.load(LAST + chan_n + n, mask=d_ok, other=0.0)
                a_n, b_n, c_n = _state_rows(A, B, C, ds, d_ok, n, N, bi, gi, t, t_ok, sb_b, sb_g, sb_n, sb_l, sc_b,
                                            sc_g, sc_n, sc_l, B_FIXED, C_FIXED, EVEN)
            # exp(dt A) as exp2(dt A log2 e), the scale folded into A once per state rather than per step
            a2_n = _a_of(a_n, A_LOG) * LOG2E
            decay = tl.exp2(dt * a2_n[:, None])
            _, hs = tl.associative_scan((decay, fold_in(decay, dtu * b_n, h_n[:, None], lane[None, :] == 0)), 1,
                                        first_order_combine)
            y += hs * c_n
            tl.store(LAST + chan_n[:, None] + n + 0 * lane[None, :], hs, mask=carry_ok)
            if STORE_CKPT and SPLIT > 1:
                tl.store(CKPT + ck_off + n, hs, mask=ck_ok)
        tl.debug_barrier()  # the carries stored above are read by other threads in the next chunk
        if HAS_Z:
            if AHEAD == 0:
                zz = tl.load(Z + offs, mask=ok, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=ok)
    if SEGMENTED:
        if seg == n_seg - 1:
            tl.store(FINAL + state_off, tl.load(LAST + carry_off, mask=dn_ok), mask=dn_ok)


@triton.jit
def _selective_scan_fwd_summary_kernel(
    U, DELTA, A, B, DBIAS, SEG_H, SEG_DT,
    dim, L, N, per_group, n_seg, seg_l,
    sb_b, sb_g, sb_n, sb_l,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, B_FIXED: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr, A_LOG: tl.constexpr = False,
):
    """What segment ``program_id(2)`` (any but the last, so all its steps are real) does to a state:
    ``SEG_DT (b, d, n_seg)`` its summed step size, by which a state entering it decays as
    ``exp(A sum dt)``, and ``SEG_H (b, d, n_seg, N)`` the state it leaves from a zero start,
    ``sum_t exp(A sum_{s>t} dt_s) dt_t B_t u_t``. A sum, not a scan: per state one ``exp`` and a
    reduction per step, the decay after each step from a reverse cumulative sum of the step sizes
    that all states share."""
    bi, pd, ds, gi, d_ok = _channels(dim, per_group, BLOCK_D)
    seg = tl.program_id(2)
    ns = tl.arange(0, BLOCK_N)
    dn_ok = d_ok[:, None] & (ns < N)[None, :]
    bias = _per_channel(DBIAS, ds, d_ok, HAS_BIAS, BLOCK_D)
    lane = tl.arange(0, BLOCK_L)
    a2 = _a_of(tl.load(A + ds[:, None] * N + ns[None, :], mask=dn_ok, other=0.0), A_LOG) * LOG2E
    row = (bi.to(tl.int64) * dim + ds) * L
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    total = tl.zeros([BLOCK_D], dtype=tl.float32)
    for i in range(seg * (seg_l // BLOCK_L), (seg + 1) * (seg_l // BLOCK_L)):
        t, t_ok, ok, offs = _chunk(row, i, lane, d_ok, L, BLOCK_L)
        u = tl.load(U + offs, mask=ok, other=0.0).to(tl.float32)
        dt, _ = _step_size(DELTA, offs, ok, bias, HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        after = tl.cumsum(dt, axis=1, reverse=True) - dt   # the step sizes after each step, in this chunk
        chunk_dt = tl.sum(dt, axis=1)
        fresh = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        for n in range(N):
            a2_n = _a_of(tl.load(A + ds * N + n, mask=d_ok, other=0.0), A_LOG) * LOG2E
            b_n = _bc_row(B, bi, gi, ds, d_ok, n, t, t_ok, sb_b, sb_g, sb_n, sb_l, B_FIXED, True)
            fresh = _put(fresh, ns, n, tl.sum(tl.exp2(after * a2_n[:, None]) * dtu * b_n, axis=1))
        h = tl.exp2(a2 * chunk_dt[:, None]) * h + fresh
        total += chunk_dt
    out_row = (bi.to(tl.int64) * dim + ds) * n_seg + seg
    tl.store(SEG_H + out_row[:, None] * N + ns[None, :], h, mask=dn_ok)
    tl.store(SEG_DT + out_row, total, mask=d_ok)


@triton.jit
def _selective_scan_bwd_kernel(
    # pointers: inputs (D, Z, DBIAS, DLAST may be None), then gradients and partial sums (DZ iff Z)
    U, DELTA, A, B, C, D, Z, DBIAS, CKPT, DOUT, DLAST,
    DU, DDELTA, DZ, DA_PART, DD_PART, DBIAS_PART, DB, DC, DH0, MU, SEG_MU, SEG_DT,
    # sizes (n_seg time segments of seg_chunks chunks each)
    dim, L, N, per_group, n_dblocks, n_groups, n_seg, seg_chunks,
    # strides of B and C as (batch, group, state, step)
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    # meta-parameters
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr, B_FIXED: tl.constexpr, C_FIXED: tl.constexpr, ATOMIC: tl.constexpr,
    EVEN: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
    SEGMENTED: tl.constexpr, NO_GATHER: tl.constexpr = False, SHARED: tl.constexpr = False,
    REV_GATHER: tl.constexpr = False, AHEAD: tl.constexpr = 0, UNROLL: tl.constexpr = 1,
):
    """Walks the chunks from the last to the first and, inside one, the states one at a time: each
    state's values are recomputed from the chunk's checkpoint by the forward's scan, and its adjoint
    ``lam_t = dy_t C_t + exp(dt_{t+1} A) lam_{t+1}`` comes from a reverse scan of the same form. The
    next step's decay is this step's shifted by one lane (``tl.gather``), not a second ``exp``; what
    enters from the chunk after is ``mu = exp(dt A) lam`` at that chunk's first step, added to the last
    step's ``dy C``. ``h_{t-1}`` is ``h_t`` shifted the same way, where scanning ``(a, b)`` pairs that
    also carry the composition of all but the last step took twice the scan's work. The states and the
    adjoint are carried between chunks through memory (``CKPT``, ``MU``), as in the forward.
    Sums over the channels of a group (``dB``, ``dC`` when they vary with time) are added atomically
    into fp32 buffers when ``ATOMIC``, else written as per-program partials the launcher adds up in a
    fixed order (deterministic). Sums over the batch (``dA``, ``dD``, ``delta_bias``, fixed ``B``/``C``)
    are always per-program partials.

    ``NO_GATHER``: no ``tl.gather`` (which Triton lowers as a general permutation, ~k^2 shuffles for k
    steps a thread): ``h_{t-1}`` comes out of the forward scan itself (:func:`_with_state_before`) and
    the next step's decay from the next step's size, read one element on (an ``exp`` more a state).

    The adjoint's reverse scan is most of this loop's shuffles under triton 3.6 (the GPU machine's): it reverses
    the lanes of each input and of the result with five butterfly shuffles a register, 60 of a state's 101 per
    128-step chunk at sm_90, where triton 3.9 takes one (53 in all); tried and not kept (more shuffles at 3.6):
    the chunk read from its end and scanned forward (the reversed loads take another layout: 51 shuffle-ups and
    shared-memory conversions), and the scan in two levels, runs of a thread's steps then across the runs
    (``bench/results/cpu-2026-12-06e/``). ``REV_GATHER`` (with ``tl.gather``, ``BLOCK_L > 1``): the adjoint's
    inputs read backwards by ``tl.gather`` (the next step's decay and the reversal in one), scanned forward, the
    result put back in time order by one more gather; Triton lowers each as a few index shuffles a register.

    ``SEGMENTED``: the third program axis splits time into ``n_seg`` segments of ``seg_chunks`` chunks,
    walked side by side (for rows of few channels: :func:`plan_backward_segment_l`). A segment starts from the adjoint
    the segments after it send back, composed from their summaries
    (``_selective_scan_bwd_summary_kernel``): ``mu <- exp(A sum dt) mu + mu_from_zero``, from the last
    state's gradient. Each segment carries ``mu`` in its own row of ``MU (b, d, n_seg, N)`` and writes its
    own rows of the per-program partials (``DA_PART``, a fixed ``DB``/``DC``: ``(b, d, n_seg, N)``;
    ``DD_PART``, ``DBIAS_PART``: ``(b, d, n_seg)``), which the launcher adds up; the first segment copies
    its last ``mu`` to ``DH0``. Unsegmented, ``MU`` is ``DH0`` and ``n_seg`` is 1.

    ``SHARED`` (with ``ATOMIC``, ``B`` and ``C`` varying with time): every batch row and segment adds its ``dA``,
    ``dD`` and ``delta_bias`` sums atomically into the same rows, ``DA_PART (d, N)``, ``DD_PART (d,)``,
    ``DBIAS_PART (d,)``, zeroed by the launcher (in the one buffer that holds ``dB``, ``dC``): no partials left to
    add up after the launch, which cost a PyTorch sum each (several microseconds of a GPU's host apiece).

    ``AHEAD``, as in the forward: 1 reads the next state's ``B``, ``C`` rows, checkpoint, carried adjoint and ``A``
    while a state computes; 2 also the next chunk's (the one before in time) ``u``, ``delta``, ``dout``, ``z``
    while a chunk's states compute."""
    bi, pd, ds, gi, d_ok = _channels(dim, per_group, BLOCK_D)
    ns, dn_ok, state_off = _state_tile(bi, ds, d_ok, dim, N, BLOCK_N)
    bias = _per_channel(DBIAS, ds, d_ok, HAS_BIAS, BLOCK_D)
    skip = _per_channel(D, ds, d_ok, HAS_D, BLOCK_D)
    lane = tl.arange(0, BLOCK_L)
    seg = tl.program_id(2)
    seg_row = (bi.to(tl.int64) * dim + ds) * n_seg
    chan_n = (seg_row + seg) * N      # this segment's rows of MU and DA_PART (the state's rows when unsegmented)
    seg_off = chan_n[:, None] + ns[None, :]
    tl.static_assert(not SHARED or (ATOMIC and not B_FIXED and not C_FIXED))
    sum_n = ds * N if SHARED else chan_n   # where this program's dA sums go
    # mu (what enters each chunk from the one after) is carried in MU and the dA sums in DA_PART, as the
    # forward carries its states in LAST; it starts as the last state's gradient, carried back through the
    # segments after this one
    mu = _state_or_zero(DLAST, state_off, dn_ok, HAS_DLAST, BLOCK_D, BLOCK_N)
    if SEGMENTED:
        a2 = tl.load(A + ds[:, None] * N + ns[None, :], mask=dn_ok, other=0.0).to(tl.float32) * LOG2E
        for j in range(0, n_seg - 1 - seg):
            k = n_seg - 1 - j
            total = tl.load(SEG_DT + seg_row + k, mask=d_ok, other=0.0)
            mu = tl.exp2(a2 * total[:, None]) * mu + tl.load(SEG_MU + (seg_row + k)[:, None] * N + ns[None, :],
                                                             mask=dn_ok, other=0.0)
    tl.store(MU + seg_off, mu, mask=dn_ok)
    if not SHARED:
        tl.store(DA_PART + seg_off, tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32), mask=dn_ok)
    tl.debug_barrier()
    g_bfix = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_cfix = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    g_bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    row = (bi.to(tl.int64) * dim + ds) * L
    n_chunks = tl.cdiv(L, BLOCK_L)
    # step t's lane reads step t+1's decay; the last lane its own (unused: what follows it is in MU)
    next_lane = tl.broadcast_to(tl.minimum(lane + 1, BLOCK_L - 1)[None, :], [BLOCK_D, BLOCK_L])
    last_lane = lane[None, :] == BLOCK_L - 1
    prev_lane = tl.broadcast_to(tl.maximum(lane - 1, 0)[None, :], [BLOCK_D, BLOCK_L])
    # REV_GATHER: lane j reads step BLOCK_L - 1 - j, and the next step's decay from the step after that
    rev_lane = tl.broadcast_to((BLOCK_L - 1 - lane)[None, :], [BLOCK_D, BLOCK_L])
    rev_next = tl.broadcast_to(tl.minimum(BLOCK_L - lane, BLOCK_L - 1)[None, :], [BLOCK_D, BLOCK_L])
    first_lane = lane[None, :] == 0
    first_ok = d_ok[:, None] & (lane == 0)[None, :]
    # where this program's dB / dC rows go: its group's rows (atomic) or its own partial rows
    if ATOMIC:
        bc_row0 = (bi.to(tl.int64) * n_groups + gi) * N * L
    else:
        bc_row0 = (bi.to(tl.int64) * n_dblocks + pd) * N * L
    if SEGMENTED:
        first = seg * seg_chunks
        end = tl.minimum(first + seg_chunks, n_chunks)
    else:
        first = 0
        end = n_chunks
    if AHEAD >= 2:
        t, t_ok, ok, offs = _chunk(row, end - 1, lane, d_ok, L, BLOCK_L)
        u_nx, dl_nx, do_nx, z_nx = _chunk_rows(U, DELTA, DOUT, Z, offs, ok, True, HAS_Z)
    for j in range(0, end - first):
        i = end - 1 - j
        t, t_ok, ok, offs = _chunk(row, i, lane, d_ok, L, BLOCK_L)
        ckpt_n = CKPT + ((bi.to(tl.int64) * dim + ds) * n_chunks + i) * N
        if AHEAD >= 2:   # this chunk's inputs came in during the one after it; the one before's now
            u, dl, dout, zz = u_nx, dl_nx, do_nx, z_nx
            before = d_ok[:, None] & (t >= (first + 1) * BLOCK_L)[None, :]   # chunk i - 1 is this segment's
            u_nx, dl_nx, do_nx, z_nx = _chunk_rows(U, DELTA, DOUT, Z, offs - BLOCK_L, before, True, HAS_Z)
        else:
            u, dl, dout, zz = _chunk_rows(U, DELTA, DOUT, Z, offs, ok, True, HAS_Z)
        u = u.to(tl.float32)
        dt, slope = _step_given_slope(dl, ok, bias, HAS_BIAS, SOFTPLUS)
        dout = dout.to(tl.float32)
        zz = zz.to(tl.float32)
        if HAS_Z:
            sig = tl.sigmoid(zz)
            dy = dout * zz * sig
        else:
            dy = dout
        dtu = dt * u
        if NO_GATHER:   # step t + 1's size; the chunk's last lane reads the next chunk's first (unused there)
            next_ok = d_ok[:, None] & (t + 1 < L)[None, :]
            dt_next, _ = _step_size(DELTA, offs + 1, next_ok, bias, HAS_BIAS, SOFTPLUS)
        y = skip[:, None] * u
        dx = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)    # sum_n lam B: d/d(dt u)
        d_dt = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)  # sum_n lam A exp(dt A) h_{t-1}
        if AHEAD >= 1:
            a_nx, b_nx, c_nx = _state_rows(A, B, C, ds, d_ok, 0, N, bi, gi, t, t_ok, sb_b, sb_g, sb_n, sb_l, sc_b,
                                           sc_g, sc_n, sc_l, B_FIXED, C_FIXED, EVEN)
            h_nx = tl.load(ckpt_n, mask=d_ok, other=0.0)
            mu_nx = tl.load(MU + chan_n, mask=d_ok, other=0.0)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            if AHEAD >= 1:   # state n's came in during state n - 1; n + 1's now (the last one's again)
                a_n, b_n, c_n, h_enter, mu_n = a_nx, b_nx, c_nx, h_nx, mu_nx
                nn = tl.minimum(n + 1, N - 1)
                a_nx, b_nx, c_nx = _state_rows(A, B, C, ds, d_ok, nn, N, bi, gi, t, t_ok, sb_b, sb_g, sb_n, sb_l,
                                               sc_b, sc_g, sc_n, sc_l, B_FIXED, C_FIXED, EVEN)
                h_nx = tl.load(ckpt_n + nn, mask=d_ok, other=0.0)
                mu_nx = tl.load(MU + chan_n + nn, mask=d_ok, other=0.0)
            else:
                a_n, b_n, c_n = _state_rows(A, B, C, ds, d_ok, n, N, bi, gi, t, t_ok, sb_b, sb_g, sb_n, sb_l, sc_b,
                                            sc_g, sc_n, sc_l, B_FIXED, C_FIXED, EVEN)
                h_enter = tl.load(ckpt_n + n, mask=d_ok, other=0.0)
                mu_n = tl.load(MU + chan_n + n, mask=d_ok, other=0.0)
            a_n = a_n.to(tl.float32)
            h_enter = h_enter[:, None]
            a2_n = a_n * LOG2E
            decay = tl.exp2(dt * a2_n[:, None])
            drive = dtu * b_n
            # decay_t h_{t-1}, with h_{t-1} itself: not h_t - drive_t, which loses all precision when
            # the decay is tiny (test_dA_is_accurate_when_the_state_decays...)
            if NO_GATHER:
                a_cum, b_cum, pa_cum, pb_cum = tl.associative_scan(
                    (decay, drive, tl.full(decay.shape, 1.0, tl.float32), tl.zeros(decay.shape, tl.float32)), 1,
                    _with_state_before)
                hs = a_cum * h_enter + b_cum
                h_prev = pa_cum * h_enter + pb_cum
            else:
                _, hs = tl.associative_scan((decay, fold_in(decay, drive, h_enter, first_lane)), 1, first_order_combine)
                if BLOCK_L > 1:   # shifted in from the lane before
                    h_prev = tl.where(first_lane, h_enter, tl.gather(hs, prev_lane, 1))
                else:
                    h_prev = h_enter
            carried = decay * h_prev
            y += hs * c_n
            g = dy * c_n + tl.where(last_lane, mu_n[:, None], 0.0)
            if REV_GATHER and not NO_GATHER and BLOCK_L > 1:   # the scan run forward over the chunk read backwards
                _, lam_rev = tl.associative_scan((tl.gather(decay, rev_next, 1), tl.gather(g, rev_lane, 1)), 1,
                                                 first_order_combine)
                lam = tl.gather(lam_rev, rev_lane, 1)
            else:
                if NO_GATHER:
                    decay_next = tl.exp2(dt_next * a2_n[:, None])
                elif BLOCK_L > 1:  # a one-lane gather gave garbage on the H100 (triton 3.6)
                    decay_next = tl.gather(decay, next_lane, 1)
                else:
                    decay_next = decay
                _, lam = tl.associative_scan((decay_next, g), 1, first_order_combine, reverse=True)
            tl.store(MU + chan_n[:, None] + n + 0 * lane[None, :], decay * lam, mask=first_ok)
            dx += lam * b_n
            d_dt += lam * a_n[:, None] * carried
            g_a = tl.sum(lam * dt * carried, axis=1)
            if ATOMIC:  # unless SHARED only this program adds here, in order: the sum is the same on every run
                tl.atomic_add(DA_PART + sum_n + n, g_a, mask=d_ok, sem="relaxed")
            else:  # no atomics at all: a load and a store, the barrier keeping every thread's load first
                g_a += tl.load(DA_PART + chan_n + n, mask=d_ok, other=0.0)
                tl.debug_barrier()
                tl.store(DA_PART + chan_n + n, g_a, mask=d_ok)
            g_bfix = _bc_grad(DB + bc_row0 + n * L + t, t_ok, lam * dtu, g_bfix, ns, n, B_FIXED, ATOMIC)
            g_cfix = _bc_grad(DC + bc_row0 + n * L + t, t_ok, dy * hs, g_cfix, ns, n, C_FIXED, ATOMIC)
        if HAS_Z:
            tl.store(DZ + offs, (dout * y * sig * (1.0 + zz * (1.0 - sig))).to(DZ.dtype.element_ty), mask=ok)
        d_delta = tl.where(ok, (dx * u + d_dt) * slope, 0.0)
        tl.store(DDELTA + offs, d_delta.to(DDELTA.dtype.element_ty), mask=ok)
        tl.store(DU + offs, (dx * dt + dy * skip[:, None]).to(DU.dtype.element_ty), mask=ok)
        g_skip += tl.sum(dy * u, axis=1)
        g_bias += tl.sum(d_delta, axis=1)
        tl.debug_barrier()  # this chunk's carries, stored by one lane, are read by all in the next
    # after the walk MU holds mu at the segment's first step, the adjoint carried back through it: at the first
    # segment's, the initial state's gradient
    if SHARED:
        tl.atomic_add(DD_PART + ds, g_skip, mask=d_ok, sem="relaxed")
        tl.atomic_add(DBIAS_PART + ds, g_bias, mask=d_ok, sem="relaxed")
    else:
        tl.store(DD_PART + seg_row + seg, g_skip, mask=d_ok)
        tl.store(DBIAS_PART + seg_row + seg, g_bias, mask=d_ok)
    if B_FIXED:
        tl.store(DB + seg_off, g_bfix, mask=dn_ok)
    if C_FIXED:
        tl.store(DC + seg_off, g_cfix, mask=dn_ok)
    if SEGMENTED:
        if seg == 0:   # the last chunk's barrier made every lane's mu visible
            tl.store(DH0 + state_off, tl.load(MU + seg_off, mask=dn_ok, other=0.0), mask=dn_ok)


@triton.jit
def _selective_scan_bwd_summary_kernel(
    DELTA, A, C, Z, DBIAS, DOUT, SEG_MU, SEG_DT,
    dim, L, N, per_group, n_seg, seg_chunks,
    sc_b, sc_g, sc_n, sc_l,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, C_FIXED: tl.constexpr,
    EVEN: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """What the backward's segment ``program_id(2) + 1`` (any but the first: nothing before the first takes
    its adjoint) sends back to the segments before it: ``SEG_DT (b, d, n_seg)`` its summed step size, by which
    an adjoint entering it from the end decays as ``exp(A sum dt)``, and ``SEG_MU (b, d, n_seg, N)`` the
    adjoint it leaves at its start from a zero one at its end, the gradient of the state entering it,
    ``sum_t exp(A sum_{start <= s <= t} dt_s) dy_t C_t`` with ``dy = dout silu(z)``. A sum, not a scan, as
    the forward's summary: per state one ``exp`` and a reduction per step. ``BLOCK_L`` is the backward's
    chunk (the segments are whole chunks of it); ``EVEN``: they tile ``L`` exactly."""
    bi, pd, ds, gi, d_ok = _channels(dim, per_group, BLOCK_D)
    seg = tl.program_id(2) + 1
    ns = tl.arange(0, BLOCK_N)
    dn_ok = d_ok[:, None] & (ns < N)[None, :]
    bias = _per_channel(DBIAS, ds, d_ok, HAS_BIAS, BLOCK_D)
    lane = tl.arange(0, BLOCK_L)
    row = (bi.to(tl.int64) * dim + ds) * L
    mu = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    before = tl.zeros([BLOCK_D], dtype=tl.float32)   # the step sizes of the segment's chunks walked so far
    first = seg * seg_chunks
    for i in range(first, tl.minimum(first + seg_chunks, tl.cdiv(L, BLOCK_L))):
        t, t_ok, ok, offs = _chunk(row, i, lane, d_ok, L, BLOCK_L)
        dt, _ = _step_size(DELTA, offs, ok, bias, HAS_BIAS, SOFTPLUS)
        dy = tl.load(DOUT + offs, mask=ok, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(Z + offs, mask=ok, other=0.0).to(tl.float32)
            dy = dy * zz * tl.sigmoid(zz)
        upto = tl.cumsum(dt, axis=1) + before[:, None]   # the step sizes from the segment's start to each step
        for n in range(N):
            a2_n = tl.load(A + ds * N + n, mask=d_ok, other=0.0).to(tl.float32) * LOG2E
            c_n = _bc_row(C, bi, gi, ds, d_ok, n, t, t_ok, sc_b, sc_g, sc_n, sc_l, C_FIXED, EVEN)
            # padding steps have dy = 0 (dout masked)
            mu = _put(mu, ns, n, _pick(mu, ns, n) + tl.sum(tl.exp2(upto * a2_n[:, None]) * dy * c_n, axis=1))
        before += tl.sum(dt, axis=1)
    out_row = (bi.to(tl.int64) * dim + ds) * n_seg + seg
    tl.store(SEG_MU + out_row[:, None] * N + ns[None, :], mu, mask=dn_ok)
    tl.store(SEG_DT + out_row, before, mask=d_ok)


def _as_groups(M: torch.Tensor) -> tuple[torch.Tensor, bool, tuple[int, int, int, int]]:
    """(tensor, fixed?, strides (batch, group, n, l)) for B or C in any of the three layouts."""
    if M.dim() == 2:
        return M, True, (0, 0, M.stride(0), 0)
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M, False, tuple(M.stride())


def _layout(dim, B, C):
    Bg, b_fixed, sb = _as_groups(B)
    Cg, c_fixed, sc = _as_groups(C)
    groups = 1
    for M, fixed in ((Bg, b_fixed), (Cg, c_fixed)):
        if not fixed:
            groups = max(groups, M.shape[1])
    return Bg, b_fixed, sb, Cg, c_fixed, sc, groups, dim // groups


def default_block_d(groups: int, per_group: int, dim: int, mode, limit: int = 1) -> int:
    """Channels per program: a power of two up to ``limit``, dividing the channels per group when there
    are several groups (a program reads one group). Under the interpreter at least 4, so tests cover several
    rows, and at most half the channels (``interpreted_tile``: the blocks' tests spent most of their time in
    this scan's programs)."""
    limit = interpreted_tile(dim, 4) if mode.interpreted else limit
    if groups == 1:
        return min(limit, next_power_of_2(dim))
    block = 1
    while block * 2 <= limit and per_group % (block * 2) == 0:
        block *= 2
    return block


def plan_block_l(L: int, mode=None) -> int:
    """Steps per checkpoint, which is the backward's chunk: a pure function of ``L`` and the mode, so
    fake (meta) kernels can size the checkpoints. Short under the interpreter so that tests cross
    several chunks. On the H100 (bench/sweep_selective.py, 2026-11-25, b8 d4096 L2048 N16 bf16) the
    backward was fastest at 128 steps with one warp: 4.66 ms, against 4.75 at 256 and 5.86 at 64
    (measured on a version that took ``h_{t-1}`` as ``h_t - dt B u``; the exact shift it uses now costs
    ~0.3 ms more). ``SSM_TRITON_SS_CHUNK`` sets the GPU's (a power of two, 32 to 512) for an A/B: since the reversed
    adjoint scan (``REV_GATHER``), 256 steps take 58 sm_90 instructions a step and state in the backward's loop
    against 67.5 at 128, at 243 registers against 96 (triton 3.6, 2026-12-06; untimed)."""
    mode = mode or run_mode()
    return max(1, min(next_power_of_2(max(L, 1)), 16 if mode.interpreted else GPU_CHUNK))


def _gpu_chunk() -> int:
    word = os.environ.get("SSM_TRITON_SS_CHUNK", "").strip()
    if not word:
        return 128
    value = int(word)
    if value < 32 or value > 512 or value & (value - 1):
        raise ValueError(f"SSM_TRITON_SS_CHUNK must be a power of two from 32 to 512, got {word!r}")
    return value


GPU_CHUNK = _gpu_chunk()


def plan_forward_block_l(L: int, ckpt_l: int, mode) -> int:
    """The forward's chunk: a multiple of the checkpoint interval ``ckpt_l`` (its masked stores write the
    checkpoints inside it). Longer chunks amortise the per-state work of each chunk: on the H100 (same
    shape, one warp, a checkpoint every 128 steps) 512-step chunks took 1.06 ms, 256 1.39, 128 1.47 and
    1024 1.50; without checkpoints 512 took 0.97 ms. Under the interpreter
    twice the checkpoint interval, so tests write checkpoints from inside a chunk."""
    target = 2 * ckpt_l if mode.interpreted else 512
    return max(ckpt_l, min(next_power_of_2(max(L, 1)), target))


def checkpoint_shape(u: torch.Tensor, A: torch.Tensor) -> tuple[int, ...]:
    bsz, dim, L = u.shape
    return (bsz, dim, max(cdiv(L, plan_block_l(L)), 1), A.shape[1])


def _block_d_ok(block_d: int, groups: int, per_group: int, dim: int) -> bool:
    if groups > 1:
        return per_group % block_d == 0
    return block_d <= next_power_of_2(dim)


class ScanProblem(NamedTuple):
    """What the selective scan's rules, keys and grids read."""
    bsz: int
    dim: int
    L: int
    N: int
    groups: int
    per_group: int
    ckpt_l: int
    b_fixed: bool
    c_fixed: bool
    flag: bool          # forward: checkpoints stored; backward: deterministic
    dtype: torch.dtype
    seg_l: int = 0      # forward: steps per time segment when time is split across programs (0: not split)


def plan_segment_l(bsz: int, dim: int, L: int, ckpt_l: int, mode) -> int:
    """Steps per time segment of the forward (0: time is not split), a power of two that the forward's
    chunks divide. The unsplit forward runs one program per channel and batch row, each walking all
    ``L`` steps: with fewer than ``SPLIT_BELOW`` of them most of the GPU idles. Splitting time aims at
    ``SPLIT_TARGET`` programs, with segments of at least ``MIN_SEGMENT`` steps. The split costs a
    second pass over the inputs (the summaries): on the H200 (2026-12-03, eager calls, which at these
    sizes time the host as much as the GPU) it lost at 1536 channels and more (b1 L2048: 82 us at
    512-step segments against 71 unsplit) and won at 768 (65 against 117); replayed (H100, 2026-12-06) it lost
    at 768 too, hence off on GPUs (``SPLIT_BELOW = 0``); ``seg_l`` of :func:`selective_scan_forward` asks for it.
    Under the interpreter: 4 checkpoint intervals from 8 of them on, so that the long-sequence tests take this
    path."""
    return _segment_l(bsz * dim, L, ckpt_l, mode, SPLIT_BELOW, SPLIT_TARGET, MIN_SEGMENT)


def _segment_l(programs: int, L: int, ckpt_l: int, mode, below: int, target: int, least: int) -> int:
    """The time segments' steps for ``programs`` channel rows: none from ``below`` rows on; else a power of two of
    at least ``least`` steps (and ``ckpt_l``) aiming at ``target`` programs, none if that is the whole row. Under
    the interpreter 4 checkpoint intervals from 8 of them on."""
    if mode.interpreted:
        return 4 * ckpt_l if L >= 8 * ckpt_l else 0
    if programs >= below:
        return 0
    want = cdiv(target, programs)
    seg = max(ckpt_l, least, prev_power_of_2(max(L // want, 1)))
    return seg if seg < L else 0


# off on GPUs: replayed from CUDA graphs it lost at every shape timed (H100, 2026-12-06, sweep_selective segments:
# b1 d1536 L2048 49.9 us whole against 72.1 in 512-step segments, L8192 267.6 against 306.2, d768 36.8 against
# 43.3, d4096 130.6 against 182.4): the forward's time grows with the channels, so it is not latency-bound there
SPLIT_BELOW = 0
SPLIT_TARGET = 8192
MIN_SEGMENT = 512


def plan_backward_segment_l(bsz: int, dim: int, L: int, ckpt_l: int, mode) -> int:
    """Steps per time segment of the backward (0: not split), a power of two and a multiple of its chunk
    ``ckpt_l``. The unsplit backward walks all ``L`` steps in one program per channel (or two) and batch row
    (b1 d1536 L2048 N16 bf16 on the H100, 2026-12-06: 0.326 ms of the fwd+bwd's 0.392 ms of kernels, 768 one-warp
    programs). Splitting time costs a summary pass over ``dout``, ``z``, ``delta`` and
    ``C`` of every segment but the first and a sum of the partials over the segments; it aims at
    ``BWD_SPLIT_TARGET`` programs with segments of at least ``BWD_MIN_SEGMENT`` steps, where fewer than
    ``BWD_SPLIT_BELOW`` channel rows would walk (``SSM_TRITON_SS_BWD_SPLIT`` sets it; 0 never splits). Measured on
    the H100 (2026-12-06, ``sweep_selective bwd_segments``, the backward alone replayed from CUDA graphs, bf16 N16,
    tuned): b1 d1536 L2048 376 -> 348 us in 512-step segments (256: 354, 1024: 423), L8192 1418 -> 1250 (256 to
    2048: 1250-1307), b2 d1536 L2048 795 -> 618; b1 d4096 L2048 lost (806 -> 825), so 4096 channel rows and more
    stay whole. Nsight Compute of the segmented walk (H100, 2026-12-06, b1 d1536 L2048, the rule's tiles): 316 us,
    6144 one-warp programs at 123 registers (a quarter of the warps an SM can hold), 1.87 instructions a cycle, L1 69%
    and L2 43% busy (the atomic adds), DRAM 3%: bound by the instructions it issues more than by the atomics;
    mamba_ssm's CUDA backward took 285 us there at 1.49 a cycle (168 registers, 128-thread blocks).
    Under the interpreter: 4 chunks from 8 of them on, so that the long-sequence tests take this path."""
    return _segment_l(bsz * dim, L, ckpt_l, mode, BWD_SPLIT_BELOW, BWD_SPLIT_TARGET, BWD_MIN_SEGMENT)


BWD_SPLIT_BELOW = int(os.environ.get("SSM_TRITON_SS_BWD_SPLIT", "4096") or 0)
BWD_SPLIT_TARGET = 32768   # with BWD_MIN_SEGMENT: 512-step segments at the measured shapes, their best
BWD_MIN_SEGMENT = 512



def _fwd_rule(p: ScanProblem, mode):
    """One channel, one warp, ``plan_forward_block_l`` (at most a segment)."""
    tile = plan_forward_block_l(p.L, p.ckpt_l, mode)
    if p.seg_l:
        tile = min(tile, p.seg_l)
    return dict(BLOCK_D=default_block_d(p.groups, p.per_group, p.dim, mode), BLOCK_L=tile, EVEN=p.L % tile == 0,
                num_warps=1)


def _fwd_alternatives(p: ScanProblem, mode):
    """The runners-up of the H100 sweep (2026-11-25): two channels and two warps, two warps, half and
    twice the chunk; the loads ahead (``FWD_AHEAD``) and the state loop unrolled (``FWD_UNROLL``)."""
    rule = _fwd_rule(p, mode)
    tile = rule["BLOCK_L"]
    out = []
    for alt in (dict(BLOCK_D=2, num_warps=2), dict(num_warps=2), dict(BLOCK_D=2, BLOCK_L=tile // 2),
                dict(BLOCK_L=tile * 2), *FWD_AHEAD, *([dict(BLOCK_L=tile // 2, AHEAD=2)] if FWD_AHEAD else []),
                *FWD_UNROLL):
        kw = {**rule, **alt}
        if kw["BLOCK_L"] < p.ckpt_l or kw["BLOCK_L"] % p.ckpt_l or kw["BLOCK_L"] > max(tile, 1024):
            continue
        if p.seg_l and p.seg_l % kw["BLOCK_L"]:
            continue
        if _block_d_ok(kw["BLOCK_D"], p.groups, p.per_group, p.dim):
            out.append({**kw, "EVEN": p.L % kw["BLOCK_L"] == 0})
    return out


# The forward's loads ahead (``AHEAD`` in the kernel; sm_90, triton 3.6, bf16 N16 512-step chunks without
# checkpoints: 118 registers, 128 with 1, 168 with 2, no spill). H100, 2026-12-06 (bench/results/h100-2026-12-06f,
# each setting tuned in its own process): the inference forward at b1 d1536 L2048 bf16 0.0767 -> 0.0670 ms (mamba_ssm's
# CUDA 0.0702 in the same process), the tuner taking AHEAD 2; b8 d4096 unchanged (0.969); the training forward (with
# checkpoints) kept the rule: with checkpoints AHEAD costs registers (sm_90, 512-step chunks: 123, 183 with 1, 255 with
# 2, past a wave of one-warp programs at b1 d1536), so half-length chunks with AHEAD 2 (99) join them, untimed.
# ``SSM_TRITON_SS_FWD_AHEAD=0`` leaves them out
FWD_AHEAD = [dict(AHEAD=1), dict(AHEAD=2), dict(BLOCK_D=2, num_warps=2, AHEAD=1)] if os.environ.get(
    "SSM_TRITON_SS_FWD_AHEAD", "1").strip() not in ("", "0") else []

# The forward's state loop unrolled by two (``UNROLL``): two states' scans in one basic block, independent chains
# the scheduler can interleave, where a program's single warp otherwise waits on each scan's dependent steps (b1 d1536:
# ~12 one-warp programs an SM). sm_90, triton 3.6, 512-step chunks without checkpoints: 118 -> 104 registers, 233
# with AHEAD 2 (bench/results/cpu-2026-12-06g). Untimed: candidates for the tuner; ``SSM_TRITON_SS_FWD_UNROLL=0``
# leaves them out
FWD_UNROLL = [dict(UNROLL=2), dict(UNROLL=2, AHEAD=1)] if os.environ.get(
    "SSM_TRITON_SS_FWD_UNROLL", "1").strip() not in ("", "0") else []


def _bwd_rule(p: ScanProblem, mode):
    # deterministic partials take one (N, L) slice per program: more channels per program keep them
    # smaller (H100 sweep, 2026-11-25, 128-step chunks: 8.3 ms at 2 channels, 8.5 at 4, against 4.66 ms
    # with atomics at 1)
    return dict(BLOCK_D=default_block_d(p.groups, p.per_group, p.dim, mode, limit=2 if p.flag else 1), num_warps=1)


def _bwd_alternatives(p: ScanProblem, mode):
    """With atomics: one or two channels, one or two warps, and four or eight channels over two or four warps
    (a quarter of the atomic adds into ``dB``, ``dC`` per channel, the same elements a thread; candidates since
    2026-12-06: the tuned segmented backward's time did not move with them, 348.7 against 348 us at b1 d1536
    L2048); the gather-free, reversed-gather, loads-ahead and unrolled forms (below). Deterministic: the rule
    only, so that the result is the same from run to run and machine to machine."""
    if p.flag:
        return []
    alts = [dict(num_warps=2)]
    if _block_d_ok(2, p.groups, p.per_group, p.dim):
        alts += [dict(BLOCK_D=2), dict(BLOCK_D=2, num_warps=2)]
    alts += [dict(BLOCK_D=bd, num_warps=w) for bd, w in ((4, 2), (8, 4))
             if _block_d_ok(bd, p.groups, p.per_group, p.dim)]
    gather = [{}, *alts]
    if GATHER_FREE_TUNED:
        alts += [dict(a, NO_GATHER=True) for a in gather]
    if REV_GATHER_TUNED:
        alts += [dict(a, REV_GATHER=True) for a in gather]
    if BWD_AHEAD_TUNED:
        alts += [dict(NO_GATHER=ng, AHEAD=k) for ng in (False, True)[:1 + GATHER_FREE_TUNED] for k in (1, 2)]
        if REV_GATHER_TUNED:   # the pair not yet timed together (12-06f timed each beside the other's absence)
            alts += [dict(REV_GATHER=True, AHEAD=k) for k in (1, 2)]
    if BWD_UNROLL_TUNED:
        alts += [dict(UNROLL=2), *([dict(REV_GATHER=True, UNROLL=2)] if REV_GATHER_TUNED else [])]
    return alts


# The gather-free backward (``NO_GATHER``) is among the tuner's candidates since the H200 (2026-12-03,
# bench/diag_selective_tuning.py, one machine, two processes, tuned afresh): fwd+bwd 0.877 against 1.198 ms
# at b1 d1536 L2048 and 5.771 against 5.981 ms at b8 d4096 L2048 (bf16, N 16), the tuner picking it at both;
# memcheck clean. ``SSM_TRITON_GATHER_FREE=0`` leaves it out.
GATHER_FREE_TUNED = os.environ.get("SSM_TRITON_GATHER_FREE", "1").strip() not in ("", "0")

# The adjoint's scan over the chunk read backwards through tl.gather (``REV_GATHER``; at sm_90 with triton 3.6 a
# state's pass over a chunk 323 -> 270 instructions, 101 -> 49 shuffles, bench/results/cpu-2026-12-06e): among the
# tuner's candidates since the H100 timed it (2026-12-06, bench/results/h100-2026-12-06f, each setting tuned in its own
# process): b8 d4096 L2048 bf16 fwd+bwd 5.45 -> 5.01 ms, the tuner taking it there (without loads ahead); b1 d1536
# kept the gather-free form with loads ahead. GPU tests and memcheck clean. ``SSM_TRITON_SS_REV_GATHER=0`` leaves it out.
REV_GATHER_TUNED = os.environ.get("SSM_TRITON_SS_REV_GATHER", "1").strip() not in ("", "0")


# The backward's loads ahead (``AHEAD``, as the forward's), one channel a program (H100, 2026-12-06,
# bench/results/h100-2026-12-06f, each setting tuned in its own process, without REV_GATHER: b8 d4096 L2048 bf16
# fwd+bwd 5.82 -> 5.45 ms, the tuner taking AHEAD 2; b1 d1536 0.421 -> 0.420, taken there too);
# ``SSM_TRITON_SS_BWD_AHEAD=0`` leaves them out
BWD_AHEAD_TUNED = os.environ.get("SSM_TRITON_SS_BWD_AHEAD", "1").strip() not in ("", "0")

# The backward's state loop unrolled by two (``UNROLL``, as the forward's): two states' scans in one basic block for
# the scheduler to interleave (sm_90, triton 3.6, REV_GATHER, 128-step chunks: 96 registers and a 16-byte stack ->
# 109 and none; bench/results/cpu-2026-12-06g). Untimed candidates; ``SSM_TRITON_SS_BWD_UNROLL=0`` leaves them out
BWD_UNROLL_TUNED = os.environ.get("SSM_TRITON_SS_BWD_UNROLL", "1").strip() not in ("", "0")


def _key(p: ScanProblem):
    return (bucket(p.bsz * p.dim), bucket(p.L), p.N, p.groups > 1, p.b_fixed, p.c_fixed, p.flag, str(p.dtype),
            p.seg_l)


def _segments(p: ScanProblem) -> int:
    return cdiv(p.L, p.seg_l) if p.seg_l else 1


def _grid(p: ScanProblem, kw):
    return (p.bsz, cdiv(p.dim, kw["BLOCK_D"]), _segments(p))


def _summary_rule(p: ScanProblem, mode):
    """One channel, one warp, the segment in chunks of the largest power of two that divides it, at
    most 512 steps (32 interpreted)."""
    return dict(BLOCK_D=default_block_d(p.groups, p.per_group, p.dim, mode),
                BLOCK_L=min(p.seg_l & -p.seg_l, 32 if mode.interpreted else 512), num_warps=1)


def _summary_alternatives(p: ScanProblem, mode):
    alts = [dict(num_warps=2), dict(num_warps=4)]
    chunk = _summary_rule(p, mode)["BLOCK_L"]
    if chunk >= 256:
        alts.append(dict(BLOCK_L=chunk // 2))
    return alts


def _summary_grid(p: ScanProblem, kw):
    return (p.bsz, cdiv(p.dim, kw["BLOCK_D"]), _segments(p) - 1)


def _bwd_summary_rule(p: ScanProblem, mode):
    """The backward's summary: one channel, one warp, the backward's chunk (the segments are whole chunks)."""
    return dict(BLOCK_D=default_block_d(p.groups, p.per_group, p.dim, mode), num_warps=1)


def _bwd_summary_alternatives(p: ScanProblem, mode):
    return [dict(num_warps=2)] + ([dict(BLOCK_D=2)] if _block_d_ok(2, p.groups, p.per_group, p.dim) else [])


_OPTIONAL = dict(HAS_D="D", HAS_Z="Z", HAS_BIAS="DBIAS")
selective_scan_fwd = TunableKernel("selective_scan_fwd", _selective_scan_fwd_kernel, rule=_fwd_rule,
                                   alternatives=_fwd_alternatives, key=_key, grid=_grid,
                                   flags=dict(_OPTIONAL, HAS_H0="H0"))
selective_scan_fwd_summary = TunableKernel("selective_scan_fwd_summary", _selective_scan_fwd_summary_kernel,
                                           rule=_summary_rule, alternatives=_summary_alternatives, key=_key,
                                           grid=_summary_grid, flags=dict(HAS_BIAS="DBIAS"))
# dB / dC accumulate atomically when they vary with time, and dA, dD, delta_bias's sums too where shared (SHARED):
# the tuner re-zeroes them between runs (a fixed B or C, the deterministic partials and unshared sums are written
# whole or zeroed by the kernel, so re-zeroing them costs nothing wrong)
selective_scan_bwd_summary = TunableKernel("selective_scan_bwd_summary", _selective_scan_bwd_summary_kernel,
                                           rule=_bwd_summary_rule, alternatives=_bwd_summary_alternatives, key=_key,
                                           grid=_summary_grid, flags=dict(HAS_Z="Z", HAS_BIAS="DBIAS"))
selective_scan_bwd = TunableKernel("selective_scan_bwd", _selective_scan_bwd_kernel, rule=_bwd_rule,
                                   alternatives=_bwd_alternatives, key=_key, grid=_grid,
                                   zero=("DB", "DC", "DA_PART", "DD_PART", "DBIAS_PART"),
                                   flags=dict(_OPTIONAL, HAS_DLAST="DLAST"))


def _strides_b(sb) -> dict:
    return dict(zip(("sb_b", "sb_g", "sb_n", "sb_l"), sb))


def _strides_bc(sb, sc) -> dict:
    return dict(_strides_b(sb), **dict(zip(("sc_b", "sc_g", "sc_n", "sc_l"), sc)))


def selective_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, block_l=None,
                           store_ckpt=True, config=None, seg_l=None, a_log=False):
    """Contiguous inputs as in ``reference.selective_scan``. Returns ``(out (b, d, L) in u's dtype,
    last_state (b, d, N) fp32, ckpt (b, d, n_ckpt, N) fp32, block_l)``: a checkpoint, the state entering
    it, every ``block_l`` steps. With ``store_ckpt=False`` (no backward to come) ``ckpt`` is empty.
    ``block_l`` (the checkpoint interval) and ``config`` (launch keywords: ``BLOCK_D``, ``BLOCK_L`` the
    forward's chunk, a multiple of ``block_l``, ``num_warps``) override the tuned choice (tests and the
    config sweep use them); so does ``seg_l``, the steps per time segment (0: time not split; else a
    multiple of ``block_l`` and of the forward's chunk), over ``plan_segment_l``. ``a_log``: ``A`` holds
    ``log(-A)`` (the module's ``A_log``; a call with no backward to come)."""
    bsz, dim, L = u.shape
    N = A.shape[1]
    block_l = block_l or plan_block_l(L)
    if config is not None and "BLOCK_L" in config:
        if config["BLOCK_L"] % block_l:
            raise ValueError(f"the forward's chunk ({config['BLOCK_L']}) must be a multiple of the checkpoint "
                             f"interval ({block_l})")
        config = {**config, "EVEN": L % config["BLOCK_L"] == 0}
    n_ckpt = cdiv(L, block_l)
    out = torch.empty_like(u)
    last = torch.empty((bsz, dim, N), device=u.device, dtype=torch.float32)
    ckpt_shape = (bsz, dim, max(n_ckpt, 1), N) if store_ckpt else (0,)
    ckpt = torch.empty(ckpt_shape, device=u.device, dtype=torch.float32)
    if L == 0:
        last.copy_(initial_state if initial_state is not None else torch.zeros_like(last))
        return out, last, ckpt, block_l
    if seg_l is None:
        seg_l = plan_segment_l(bsz, dim, L, block_l, run_mode(u.device))
    elif seg_l and (seg_l % block_l or seg_l >= L):
        raise ValueError(f"a time segment ({seg_l} steps) must be a multiple of the checkpoint interval "
                         f"({block_l}) and shorter than the sequence ({L})")
    if seg_l and config is not None and seg_l % config.get("BLOCK_L", 1):
        raise ValueError(f"a time segment ({seg_l} steps) must be a multiple of the forward's chunk "
                         f"({config['BLOCK_L']})")
    problem, Bg, Cg, sb, sc = _forward_problem(u, A, B, C, block_l, store_ckpt, seg_l)
    n_seg = _segments(problem)
    carry, seg_h, seg_dt = last, None, None
    if seg_l:
        carry = torch.empty((bsz, dim, n_seg, N), device=u.device, dtype=torch.float32)
        seg_h = torch.empty((bsz, dim, n_seg, N), device=u.device, dtype=torch.float32)
        seg_dt = torch.empty((bsz, dim, n_seg), device=u.device, dtype=torch.float32)
        selective_scan_fwd_summary.launch(
            problem, None, U=u, DELTA=delta, A=A, B=Bg, DBIAS=delta_bias, SEG_H=seg_h, SEG_DT=seg_dt, dim=dim,
            L=L, N=N, per_group=problem.per_group, n_seg=n_seg, seg_l=seg_l, **_strides_b(sb),
            SOFTPLUS=delta_softplus, B_FIXED=problem.b_fixed, BLOCK_N=next_power_of_2(N), A_LOG=a_log)
    selective_scan_fwd.launch(problem, config, **_fwd_args(
        problem, u, delta, A, Bg, Cg, D, z, delta_bias, initial_state, out, carry, ckpt, seg_h, seg_dt,
        last if seg_l else None, sb, sc, delta_softplus, n_ckpt, n_seg, a_log))
    return out, last, ckpt, block_l


def _forward_problem(u, A, B, C, block_l: int, store_ckpt: bool, seg_l: int):
    """The forward's tuning problem and B, C as the kernel reads them: ``(problem, Bg, Cg, B's strides, C's)``."""
    bsz, dim, L = u.shape
    Bg, b_fixed, sb, Cg, c_fixed, sc, groups, per_group = _layout(dim, B, C)
    problem = ScanProblem(bsz, dim, L, A.shape[1], groups, per_group, block_l, b_fixed, c_fixed, store_ckpt, u.dtype,
                          seg_l)
    return problem, Bg, Cg, sb, sc


def _fwd_args(p: ScanProblem, u, delta, A, Bg, Cg, D, z, delta_bias, initial_state, out, carry, ckpt, seg_h, seg_dt,
              final, sb, sc, delta_softplus, n_ckpt, n_seg, a_log=False) -> dict:
    """The forward kernel's arguments (all but the tuned keywords)."""
    return dict(U=u, DELTA=delta, A=A, B=Bg, C=Cg, D=D, Z=z, DBIAS=delta_bias, H0=initial_state, OUT=out, LAST=carry,
                CKPT=ckpt, SEG_H=seg_h, SEG_DT=seg_dt, FINAL=final, dim=p.dim, L=p.L, N=p.N, per_group=p.per_group,
                n_ckpt=n_ckpt, n_seg=n_seg, seg_l=p.seg_l, **_strides_bc(sb, sc), SOFTPLUS=delta_softplus,
                B_FIXED=p.b_fixed, C_FIXED=p.c_fixed, STORE_CKPT=p.flag, BLOCK_N=next_power_of_2(p.N),
                CKPT_L=p.ckpt_l, SEGMENTED=bool(p.seg_l), A_LOG=a_log)


def forward_plan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                 a_log: bool = False) -> "OneLaunch | None":
    """The inference forward (no checkpoints, time not split) of these inputs as a :class:`~.tuning.OneLaunch`
    op plan, ``plan((u, delta, A, B, C, D, z, delta_bias, initial_state)) -> [out, last_state]``, for inputs
    taken as :func:`selective_scan_forward` takes them (contiguous, B and C as the op layer passes them); None
    where the forward is not one plain launch (an empty sequence, time split across programs)."""
    bsz, dim, L = u.shape
    N = A.shape[1]
    if L == 0:
        return None
    block_l = plan_block_l(L)
    if plan_segment_l(bsz, dim, L, block_l, run_mode(u.device)):
        return None
    problem, _, _, sb, sc = _forward_problem(u, A, B, C, block_l, False, 0)
    ckpt = torch.empty((0,), device=u.device, dtype=torch.float32)   # never written without checkpoints
    names = ("U", "DELTA", "A", "B", "C", "D", "Z", "DBIAS", "H0")
    take = tuple(i for i, t in enumerate((u, delta, A, B, C, D, z, delta_bias, initial_state)) if t is not None)
    # B and C go as given: the kernel reads their addresses, and the grouped views share them
    args = _fwd_args(problem, u, delta, A, B, C, D, z, delta_bias, initial_state, None, None, ckpt, None, None, None,
                     sb, sc, delta_softplus, cdiv(L, block_l), 1, a_log)
    launch = Launch(selective_scan_fwd, problem, args, tuple(names[i] for i in take) + ("OUT", "LAST"))
    return OneLaunch(launch, take, ((u.shape, u.dtype), ((bsz, dim, N), torch.float32)), u.device)


def selective_scan_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, ckpt, block_l,
                            deterministic=False, config=None, seg_l=None, bc_dtype=None):
    """Gradients of :func:`selective_scan_forward` given ``dout (b, d, L)`` and ``dlast (b, d, N)`` or None.
    Returns ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state)``; the sums are fp32, except a
    time-varying ``dB``, ``dC`` when ``bc_dtype`` is given: in that dtype (both cast in one call where they share a
    buffer).
    ``deterministic``: no atomics; a time-varying dB / dC then costs fp32 partials of
    ``(b, d / block_d, N, L)`` each. ``config`` (``BLOCK_D``, ``num_warps``) overrides the tuned choice;
    ``seg_l`` the steps per time segment walked side by side (0: not split; else a multiple of ``block_l``),
    over :func:`plan_backward_segment_l`."""
    bsz, dim, L = u.shape
    N = A.shape[1]
    if seg_l is None:
        seg_l = plan_backward_segment_l(bsz, dim, L, block_l, run_mode(u.device))
    elif seg_l and (seg_l % block_l or seg_l >= L):
        raise ValueError(f"a time segment ({seg_l} steps) must be a multiple of the checkpoint interval "
                         f"({block_l}) and shorter than the sequence ({L})")
    Bg, b_fixed, sb, Cg, c_fixed, sc, groups, per_group = _layout(dim, B, C)
    problem = ScanProblem(bsz, dim, L, N, groups, per_group, block_l, b_fixed, c_fixed, deterministic, u.dtype,
                          seg_l)
    # the deterministic partials are sized by the channel block: the launch below resolves the same
    # keywords (the deterministic backward is never tuned)
    hit = selective_scan_bwd.resolve(problem, config)
    n_dblocks = cdiv(dim, (hit[0] if hit else selective_scan_bwd.space(problem)[0])["BLOCK_D"])
    n_seg = _segments(problem)
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    # per segment: the carried adjoint, the partial sums over time (one segment: the plain shapes)
    rows = (bsz, dim, n_seg, N) if seg_l else (bsz, dim, N)
    dh0 = torch.empty((bsz, dim, N), **f32)
    mu = torch.empty(rows, **f32) if seg_l else dh0
    # atomic dB, dC (time-varying) in one zeroed buffer; where segments, or the batch rows of a problem small enough
    # to be host-bound, would leave partials of dA, dD and delta_bias to add up, their sums are added atomically into
    # its head (SHARED): one PyTorch call in place of up to five (two zero fills, three sums), each several
    # microseconds of a GPU's host. H100, 2026-12-06 (bench, no peers, alternating with the code before): b1 d1536
    # L2048 bf16 fwd+bwd 0.4389-0.4396 -> 0.4241-0.4264 ms, host 372-421 -> 322-365 us; shared across the batch at b8
    # d4096 (every batch row adding into the same dA rows) 5.779-5.783 -> 5.797-5.799, so large batches keep partials
    joint = not deterministic and not b_fixed and not c_fixed
    shared = joint and (bool(seg_l) or (bsz > 1 and bsz * dim < BWD_SPLIT_BELOW))
    if joint:
        head = dim * (N + 2) if shared else 0
        pair, span = bsz * groups * N * L, _round_up(bsz * groups * N * L, 4)
        at = _round_up(head, 4)   # 16-byte aligned views: the kernels' pointer specialisation

        def halves(t, off):   # dB and dC, (b, N, L) or (b, G, N, L), from their places in t
            return t[off:off + pair].view(B.shape), t[off + span:off + span + pair].view(C.shape)

        buf = torch.zeros(at + 2 * span, **f32)
        db, dc = halves(buf, at)
    if shared:   # dA, dD, ddelta_bias returned as views of it: they hold its 8 N L bytes a batch row (the pair's)
        da_part = buf[:dim * N].view(dim, N)
        dd_part, dbias_part = buf[dim * N:dim * (N + 1)], buf[dim * (N + 1):head]
    else:
        da_part = torch.empty(rows, **f32)
        dd_part = torch.empty(rows[:-1], **f32)
        dbias_part = torch.empty(rows[:-1], **f32)

    def bc_buffer(fixed):
        if fixed:
            return torch.empty(rows, **f32)
        return torch.empty((bsz, n_dblocks, N, L), **f32)   # deterministic partials

    if not joint:
        db, dc = bc_buffer(b_fixed), bc_buffer(c_fixed)
    if L == 0:
        zeros = lambda x: torch.zeros_like(x) if x is not None else None
        dh0 = dlast.float() if dlast is not None else torch.zeros((bsz, dim, N), **f32)
        return (du, ddelta, zeros(A), zeros(B), zeros(C), zeros(D), dz, zeros(delta_bias), dh0)
    seg_mu = seg_dt = None
    if seg_l:
        seg_mu = torch.empty((bsz, dim, n_seg, N), **f32)
        seg_dt = torch.empty((bsz, dim, n_seg), **f32)
        selective_scan_bwd_summary.launch(
            problem, None, DELTA=delta, A=A, C=Cg, Z=z, DBIAS=delta_bias, DOUT=dout, SEG_MU=seg_mu,
            SEG_DT=seg_dt, dim=dim, L=L, N=N, per_group=per_group, n_seg=n_seg, seg_chunks=seg_l // block_l,
            **dict(zip(("sc_b", "sc_g", "sc_n", "sc_l"), sc)), SOFTPLUS=delta_softplus, C_FIXED=c_fixed,
            EVEN=L % block_l == 0, BLOCK_L=block_l, BLOCK_N=next_power_of_2(N))
    selective_scan_bwd.launch(
        problem, config, U=u, DELTA=delta, A=A, B=Bg, C=Cg, D=D, Z=z, DBIAS=delta_bias, CKPT=ckpt, DOUT=dout,
        DLAST=dlast, DU=du, DDELTA=ddelta, DZ=dz, DA_PART=da_part, DD_PART=dd_part, DBIAS_PART=dbias_part, DB=db,
        DC=dc, DH0=dh0, MU=mu, SEG_MU=seg_mu, SEG_DT=seg_dt, dim=dim, L=L, N=N, per_group=per_group,
        n_dblocks=n_dblocks, n_groups=groups, n_seg=n_seg, seg_chunks=seg_l // block_l if seg_l else 1,
        **_strides_bc(sb, sc), SOFTPLUS=delta_softplus, B_FIXED=b_fixed, C_FIXED=c_fixed, ATOMIC=not deterministic,
        EVEN=L % block_l == 0, BLOCK_L=block_l, BLOCK_N=next_power_of_2(N), SEGMENTED=bool(seg_l), SHARED=shared)
    if joint and bc_dtype is not None and bc_dtype != torch.float32:
        db, dc = halves(buf[at:].to(bc_dtype), 0)   # one cast for the two
    segs = (lambda part: part.sum(2)) if seg_l else (lambda part: part)   # the segments' partials added up
    # the partials over batch rows and segments added up (shared sums are whole already)
    total = (lambda part: part) if shared else (lambda part: _batch_sum(segs(part)))

    def reduce_bc(buf, fixed, M):
        if fixed:
            return total(buf)                                     # (d, N)
        if joint:
            return buf                                            # (b, N, L) or (b, G, N, L), made above
        return buf.view(bsz, groups, n_dblocks // groups, N, L).sum(2).view(M.shape)

    return (du, ddelta, total(da_part), reduce_bc(db, b_fixed, B), reduce_bc(dc, c_fixed, C),
            total(dd_part) if D is not None else None, dz, total(dbias_part) if delta_bias is not None else None, dh0)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _batch_sum(part):
    """The per-batch partials summed over the batch; one batch's are a view (no launch: small backward
    calls are host-bound, each launch costing several microseconds of host time)."""
    return part[0] if part.shape[0] == 1 else part.sum(0)
