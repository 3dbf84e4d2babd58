"""The backward's pair stages: the gradients that need the ``(t, s)`` pairs inside each chunk.

With ``dy`` the gradient of the pre-gate output, ``ds_c`` that of chunk ``c``'s end state (from the
reversed state passing), ``M_ts`` the causal, same-sequence mask, ``E_ts = M_ts exp(cum_t - cum_s)``
(per head) and ``W_st = E_ts dt_s (dy_t . x_s)``:

* ``_dx_dd_kernel`` (rows ``s``, one head): ``v_s = sum_t (C_t.B_s) E_ts dy_t + w_s exp(cum_end - cum_s) ds_c B_s``,
  ``dx_s = dt_s v_s + D dy_s``; for the step sizes ``x_s.v_s`` (the direct ``d dt_s``) and
  ``U_s = dt_s x_s.(state part of v_s)``.
* ``_db_dc_pairs_kernel`` (rows ``s``, walking ``t >= s``): ``dB_s = sum_t (sum_h W_st) C_t + sum_h w_s dt_s exp(..) ds_c^T x_s``.
  The heads' ``W`` are added before the product with ``C``: one ``tl.dot`` per pair of blocks, not one
  per head. It also sums ``T_ts = (C_t.B_s) W_st`` over ``t`` (into ``cs[s]``) and over ``s`` (into
  ``rs[t]``), per head, with fp32 atomics.
* ``_dc_states_kernel`` (rows ``t``, walking ``s <= t``): ``dC_t = sum_s (sum_h W_st) B_s + sum_h exp(cum_t) h_enter^T dy_t``,
  and the gradient of ``cum_t`` through the entering state's term. It runs first and stores its part; by default
  ``_db_dc_pairs_kernel`` then adds the pair part ``W^T B_s`` to ``dC`` with fp32 atomics as it goes (it holds
  ``W`` already); in deterministic mode this kernel walks the pairs itself.

Only ``rs - cs`` is ever used (``bwd_dt.decay_grad``), so the diagonal ``T_tt``, which both would hold and
which dominates both when decays are strong, is left out of both: what remains are pairs ``s < t``, each
carrying at least one step's decay, so their sums have no large part to cancel and a tile's are taken in
fp32, then added across tiles and heads with fp64 atomics. (Until 2026-12-04 every ``T`` was converted to
fp64 and summed whole, a 64x64 fp64 tile per head and pair of blocks, to make the diagonals cancel exactly.)
``_db_dc_pairs_kernel`` / ``_dc_states_kernel`` programs loop over ``HEADS`` heads of one group and write one fp32
partial per head block.
"""
import triton
import triton.language as tl

from .common import chunk_bounds, cum_at, mm, row_block
from ..tuning import Kernel


@triton.jit
def _rows(PTR, step, h, S, P, ps, ok, p_ok):
    """``(rows, BLOCK_P)`` of a ``(b, L, H, P)`` tensor whose step stride is ``S`` (``H P`` when contiguous; a column
    slice of a wider buffer, the split-conv block's conv output, has its own) and batch stride ``L S``."""
    return tl.load(PTR + (step * S + h * P)[:, None] + ps[None, :], mask=ok[:, None] & p_ok[None, :], other=0.0)


@triton.jit
def _group_rows(PTR, step, g, S, N, ns, ok, n_ok):
    """``(rows, BLOCK_N)`` of a ``(b, L, G, N)`` tensor of step stride ``S`` (``G N`` when contiguous)."""
    return tl.load(PTR + (step * S + g * N)[:, None] + ns[None, :], mask=ok[:, None] & n_ok[None, :], other=0.0)


@triton.jit
def _pair_decay(CUM, lo_off, row, s, t, s_ok, t_ok, seq_s, seq_t, HAS_SEQ: tl.constexpr):
    """``E (s, t)``: ``exp(cum_t - cum_s)`` where ``s <= t`` in one sequence, else 0."""
    keep = (t[None, :] >= s[:, None]) & t_ok[None, :] & s_ok[:, None]
    if HAS_SEQ:
        keep &= seq_t[None, :] == seq_s[:, None]
    cum_s, cum_s_lo = cum_at(CUM, lo_off, row, s)
    cum_t, cum_t_lo = cum_at(CUM, lo_off, row, t)
    gap = (cum_t[None, :] - cum_s[:, None]) + (cum_t_lo[None, :] - cum_s_lo[:, None])
    return tl.exp(tl.where(keep, gap, float("-inf")))


@triton.jit
def _to_end(CUM, lo_off, row, s, end):
    """``exp(cum_end - cum_s)``."""
    cum_s, cum_s_lo = cum_at(CUM, lo_off, row, s)
    cum_end, cum_end_lo = cum_at(CUM, lo_off, row, end)
    return tl.exp((cum_end - cum_s) + (cum_end_lo - cum_s_lo))


@triton.jit
def _tiles(r0, L, P, N, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    """A program's ``BLOCK_M`` steps from ``r0``, its channels and states, and their masks."""
    r = r0 + tl.arange(0, BLOCK_M)
    ps = tl.arange(0, BLOCK_P)
    ns = tl.arange(0, BLOCK_N)
    return r, r < L, ps, ps < P, ns, ns < N


@triton.jit
def _head_block(bhb, H, G, HEADS):
    """(batch row, head block, its group, head blocks per row) of program index ``bhb`` over ``HEADS`` heads."""
    n_hb = H // HEADS
    hb = bhb % n_hb
    return bhb // n_hb, hb, (hb * HEADS) // (H // G), n_hb


@triton.jit
def _pair_weight(X, DY, DTP, CUM, lo_off, row, h, H, P, SX, ps, p_ok, s, t, s_ok, t_ok, step_s, step_t, seq_s, seq_t,
                 HAS_SEQ: tl.constexpr, DOT: tl.constexpr):
    """One head's ``W (s, t) = E_ts dt_s (dy_t . x_s)`` (``dy`` contiguous, ``x`` of step stride ``SX``)."""
    decay = _pair_decay(CUM, lo_off, row, s, t, s_ok, t_ok, seq_s, seq_t, HAS_SEQ)
    xdy = mm(_rows(X, step_s, h, SX, P, ps, s_ok, p_ok), tl.trans(_rows(DY, step_t, h, H * P, P, ps, t_ok, p_ok)), DOT)
    return xdy * decay * tl.load(DTP + row + s)[:, None]


@triton.jit
def _pair_weight_after(X, DY, DTP, CUM, lo_off, row, h, H, P, SX, ps, p_ok, s, t, s_ok, t_ok, step_s, step_t, seq_s,
                       seq_t, r, HAS_SEQ: tl.constexpr, DOT: tl.constexpr):
    """:func:`_pair_weight` where every ``t`` comes after every ``s`` (``s <= r < t``): the decay as a row weight
    ``e^{cum_r - cum_s}`` and a column weight ``e^{cum_t - cum_r}``, both at most 1, instead of an exp and a causal
    mask per pair."""
    cum_s, cum_s_lo = cum_at(CUM, lo_off, row, s)
    cum_t, cum_t_lo = cum_at(CUM, lo_off, row, t)
    cum_r, cum_r_lo = cum_at(CUM, lo_off, row, r)
    to_r = tl.where(s_ok, tl.exp((cum_r - cum_s) + (cum_r_lo - cum_s_lo)) * tl.load(DTP + row + s), 0.0)
    from_r = tl.where(t_ok, tl.exp((cum_t - cum_r) + (cum_t_lo - cum_r_lo)), 0.0)
    xdy = mm(_rows(X, step_s, h, SX, P, ps, s_ok, p_ok), tl.trans(_rows(DY, step_t, h, H * P, P, ps, t_ok, p_ok)), DOT)
    w = xdy * to_r[:, None] * from_r[None, :]
    if HAS_SEQ:
        w = tl.where(seq_t[None, :] == seq_s[:, None], w, 0.0)
    return w


@triton.jit
def _pairs_tile(X, C, DY, DTP, CUM, RS, CS, DC_PART, SEQ, cb_chunk, lo_off, bi, hb, n_hb, g, H, P, N, SX, SC, L, Q,
                start, end, t0, r, s, s_ok, step_s, seq_s, b_s, ps, p_ok, ns, n_ok, HEADS, db, Lp,
                ATOMIC_DC: tl.constexpr, HAS_SEQ: tl.constexpr, AFTER: tl.constexpr, BLOCK_K: tl.constexpr,
                DOT: tl.constexpr):
    """One ``BLOCK_K`` slice of ``t`` for :func:`_db_dc_pairs_kernel`'s block of ``s``: the heads' ``W``, their
    ``T`` sums, ``dB``'s part (returned added to ``db``) and ``dC``'s (atomics). ``AFTER``: the slice lies wholly
    after the block's last step ``r`` (:func:`_pair_weight_after`, no diagonal to leave out)."""
    t = t0 + tl.arange(0, BLOCK_K)
    t_ok = t <= end
    step_t = bi.to(tl.int64) * L + t
    seq_t = _seq(SEQ, step_t, t_ok, -2, HAS_SEQ)
    cb = tl.load(cb_chunk + (t - start)[None, :] * Q + (s - start)[:, None], mask=t_ok[None, :], other=0.0)
    wsum = tl.zeros([s.shape[0], BLOCK_K], dtype=tl.float32)
    for i in range(HEADS):
        h = hb * HEADS + i
        row = (bi * H + h).to(tl.int64) * Lp
        if AFTER:
            wgt = _pair_weight_after(X, DY, DTP, CUM, lo_off, row, h, H, P, SX, ps, p_ok, s, t, s_ok, t_ok, step_s,
                                     step_t, seq_s, seq_t, r, HAS_SEQ, DOT)
            pair = cb * wgt
        else:
            wgt = _pair_weight(X, DY, DTP, CUM, lo_off, row, h, H, P, SX, ps, p_ok, s, t, s_ok, t_ok, step_s, step_t,
                               seq_s, seq_t, HAS_SEQ, DOT)
            pair = tl.where(t[None, :] > s[:, None], cb * wgt, 0.0)   # T without its diagonal (see above)
        wsum += wgt
        tl.atomic_add(CS + row + s, tl.sum(pair, axis=1).to(tl.float64), mask=s_ok, sem="relaxed")
        tl.atomic_add(RS + row + t, tl.sum(pair, axis=0).to(tl.float64), mask=t_ok, sem="relaxed")
    db += mm(wsum, _group_rows(C, step_t, g, SC, N, ns, t_ok, n_ok), DOT)
    if ATOMIC_DC:  # the same weights give dC's pair part: no second pass over the pairs
        tl.atomic_add(DC_PART + ((step_t * n_hb + hb) * N)[:, None] + ns[None, :],
                      mm(tl.trans(wsum), b_s, DOT), mask=t_ok[:, None] & n_ok[None, :], sem="relaxed")
    return db


@triton.jit
def _seq(SEQ, step, ok, other, HAS_SEQ: tl.constexpr):
    if HAS_SEQ:
        return tl.load(SEQ + step, mask=ok, other=other)
    return (step * 0).to(tl.int32)


@triton.jit
def skip_grads(dx, dy, x, D, DIAG, DDIAG, row, s, s_ok, h, P, ps, p_ok,
               HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_DIAG: tl.constexpr, dyx=None):
    """``dx`` of steps ``s`` plus what the terms that skip the scan send back (``diag_s x_s``: ``diag_s dy_s``, its
    gradient ``dy_s . x_s`` stored at ``DDIAG``; ``D x_s``: ``D dy_s``); ``dy, x (steps, BLOCK_P)`` fp32; ``dyx``
    the sums ``dy_s . x_s`` where the caller took them already (with others, in one reduction)."""
    if HAS_DIAG:
        dx += tl.load(DIAG + row + s)[:, None] * dy
        if dyx is None:
            tl.store(DDIAG + row + s, tl.sum(dy * x, axis=1), mask=s_ok)
        else:
            tl.store(DDIAG + row + s, dyx, mask=s_ok)
    if HAS_D:
        if D_PER_CHANNEL:
            dx += tl.load(D + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :] * dy
        else:
            dx += tl.load(D + h).to(tl.float32) * dy
    return dx


@triton.jit
def _dx_dd_kernel(
    # pointers
    X, B, CB, DY, DTP, CUM, ADJ, D, DIAG, SEQ, DX, DD_PART, DDIAG, US, XV,
    # sizes, and the step strides of x, B and dx (the rest contiguous)
    L, H, G, P, N, Lp, nc, lo_off, SX, SB, SDX,
    # meta-parameters
    HAS_D: tl.constexpr, HAS_DD: tl.constexpr, D_PER_CHANNEL: tl.constexpr, ATOMIC_DD: tl.constexpr,
    HAS_DIAG: tl.constexpr,
    HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT: tl.constexpr, SPLIT_DECAY: tl.constexpr = False,
):
    s0, c, bh, bi, h, g = row_block(H, G, Q, BLOCK_M)
    start, end, _ = chunk_bounds(c, L, Q)
    cb_chunk = CB + ((bi.to(tl.int64) * G + g) * nc + c) * Q * Q
    s, s_ok, ps, p_ok, ns, n_ok = _tiles(s0, L, P, N, BLOCK_M, BLOCK_P, BLOCK_N)
    row = bh.to(tl.int64) * Lp
    step_s = bi.to(tl.int64) * L + s
    seq_s = _seq(SEQ, step_s, s_ok, -1, HAS_SEQ)
    v = tl.zeros([BLOCK_M, BLOCK_P], dtype=tl.float32)
    t_last = end + 1
    if SPLIT_DECAY:
        # the slices wholly after this block: e^{cum_t - cum_s} = e^{cum_t - cum_r} e^{cum_r - cum_s} at its last step
        # r, both factors at most 1 (r < t <= end: r is a real step): a column weight of (C B^T)^T, then a row weight
        # of the sum; BLOCK_K exps a slice, not BLOCK_M BLOCK_K, and no causal mask
        diag_end = s0 + tl.cdiv(BLOCK_M, BLOCK_K) * BLOCK_K
        r = s0 + BLOCK_M - 1
        cum_r, cum_r_lo = cum_at(CUM, lo_off, row, r)
        for t0 in range(diag_end, end + 1, BLOCK_K):
            t = t0 + tl.arange(0, BLOCK_K)
            t_ok = t <= end
            step_t = bi.to(tl.int64) * L + t
            cum_t, cum_t_lo = cum_at(CUM, lo_off, row, t)
            w = tl.where(t_ok, tl.exp((cum_t - cum_r) + (cum_t_lo - cum_r_lo)), 0.0)
            cb = tl.load(cb_chunk + (t - start)[None, :] * Q + (s - start)[:, None], mask=t_ok[None, :], other=0.0)
            cbw = cb * w[None, :]
            if HAS_SEQ:
                cbw = tl.where(_seq(SEQ, step_t, t_ok, -2, HAS_SEQ)[None, :] == seq_s[:, None], cbw, 0.0)
            v += mm(cbw, _rows(DY, step_t, h, H * P, P, ps, t_ok, p_ok), DOT)
        cum_s, cum_s_lo = cum_at(CUM, lo_off, row, s)
        # a block that runs past its chunk's end walked nothing here (its r is no step: padding's cum)
        v *= tl.where(r <= end, tl.exp((cum_r - cum_s) + (cum_r_lo - cum_s_lo)), 1.0)[:, None]
        t_last = tl.minimum(diag_end, end + 1)
    for t0 in range(s0, t_last, BLOCK_K):
        t = t0 + tl.arange(0, BLOCK_K)
        t_ok = t <= end
        step_t = bi.to(tl.int64) * L + t
        decay = _pair_decay(CUM, lo_off, row, s, t, s_ok, t_ok, seq_s, _seq(SEQ, step_t, t_ok, -2, HAS_SEQ), HAS_SEQ)
        cb = tl.load(cb_chunk + (t - start)[None, :] * Q + (s - start)[:, None], mask=t_ok[None, :], other=0.0)
        v += mm(cb * decay, _rows(DY, step_t, h, H * P, P, ps, t_ok, p_ok), DOT)
    # through chunk c's end state
    ds = tl.load(ADJ + ((bh.to(tl.int64) * nc + c) * P + ps[None, :]) * N + ns[:, None],
                 mask=n_ok[:, None] & p_ok[None, :], other=0.0)                           # (N, P)
    in_end_seq = s_ok
    if HAS_SEQ:
        in_end_seq &= seq_s == tl.load(SEQ + bi.to(tl.int64) * L + end)
    dt_s = tl.load(DTP + row + s)
    w = tl.where(in_end_seq, _to_end(CUM, lo_off, row, s, end), 0.0)
    vs = mm(_group_rows(B, step_s, g, SB, N, ns, s_ok, n_ok), ds, DOT) * w[:, None]
    v += vs
    x32 = _rows(X, step_s, h, SX, P, ps, s_ok, p_ok).to(tl.float32)
    tl.store(US + row + s, tl.sum(x32 * vs, axis=1) * dt_s, mask=s_ok)
    tl.store(XV + row + s, tl.sum(x32 * v, axis=1), mask=s_ok)
    dx = dt_s[:, None] * v
    if HAS_D or HAS_DIAG:
        dy32 = _rows(DY, step_s, h, H * P, P, ps, s_ok, p_ok).to(tl.float32)
        dx = skip_grads(dx, dy32, x32, D, DIAG, DDIAG, row, s, s_ok, h, P, ps, p_ok, HAS_D, D_PER_CHANNEL, HAS_DIAG)
    if HAS_DD:
        dd = tl.sum(dy32 * x32, axis=0)
        if not ATOMIC_DD:   # deterministic algorithms: a partial per row block, summed afterwards in order
            tl.store(DD_PART + ((tl.program_id(0).to(tl.int64) * tl.num_programs(1) + bh) * P) + ps, dd, mask=p_ok)
        elif D_PER_CHANNEL:   # added into dD itself (zeroed): no partials, no sum launched after
            tl.atomic_add(DD_PART + h * P + ps, dd, mask=p_ok)
        else:
            tl.atomic_add(DD_PART + h, tl.sum(dd, axis=0))
    tl.store(DX + (step_s * SDX + h * P)[:, None] + ps[None, :], dx.to(DX.dtype.element_ty),
             mask=s_ok[:, None] & p_ok[None, :])


@triton.jit
def _db_dc_pairs_kernel(
    # pointers
    X, B, C, CB, DY, DTP, CUM, ADJ, SEQ, DB_PART, DC_PART, RS, CS,
    # sizes, and the step strides of x, B, C and DB_PART (the rest contiguous)
    L, H, G, P, N, Lp, nc, lo_off, SX, SB, SC, SDB, HEADS,
    # meta-parameters
    ATOMIC_DC: tl.constexpr, HAS_SEQ: tl.constexpr, HEAVY_FIRST: tl.constexpr, Q: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr,
    SPLIT_DECAY: tl.constexpr = False,
):
    if HEAVY_FIRST:
        # grid (chunks x rows x head blocks, row blocks a chunk): the blocks that walk the most of their chunk's
        # pairs (the first of each chunk walks all of it) are dispatched first, so the last wave is short work.
        # Blocks past the end of a short last chunk find nothing to walk and store nothing.
        c = tl.program_id(0) % nc
        s0 = c * Q + tl.program_id(1) * BLOCK_M
        bi, hb, g, n_hb = _head_block(tl.program_id(0) // nc, H, G, HEADS)
    else:
        s0 = tl.program_id(0) * BLOCK_M
        c = s0 // Q
        bi, hb, g, n_hb = _head_block(tl.program_id(1), H, G, HEADS)
    start, end, _ = chunk_bounds(c, L, Q)
    cb_chunk = CB + ((bi.to(tl.int64) * G + g) * nc + c) * Q * Q
    s, s_ok, ps, p_ok, ns, n_ok = _tiles(s0, L, P, N, BLOCK_M, BLOCK_P, BLOCK_N)
    step_s = bi.to(tl.int64) * L + s
    seq_s = _seq(SEQ, step_s, s_ok, -1, HAS_SEQ)
    b_s = _group_rows(B, step_s, g, SB, N, ns, s_ok, n_ok)
    db = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    t_last = end + 1
    r = s0 + BLOCK_M - 1
    if SPLIT_DECAY:   # the slices wholly after the block's last step r (a real step wherever one runs)
        diag_end = s0 + tl.cdiv(BLOCK_M, BLOCK_K) * BLOCK_K
        for t0 in range(diag_end, end + 1, BLOCK_K):
            db = _pairs_tile(X, C, DY, DTP, CUM, RS, CS, DC_PART, SEQ, cb_chunk, lo_off, bi, hb, n_hb, g, H, P, N,
                             SX, SC, L, Q, start, end, t0, r, s, s_ok, step_s, seq_s, b_s, ps, p_ok, ns, n_ok, HEADS,
                             db, Lp, ATOMIC_DC, HAS_SEQ, True, BLOCK_K, DOT)
        t_last = tl.minimum(diag_end, end + 1)
    for t0 in range(s0, t_last, BLOCK_K):
        db = _pairs_tile(X, C, DY, DTP, CUM, RS, CS, DC_PART, SEQ, cb_chunk, lo_off, bi, hb, n_hb, g, H, P, N, SX,
                         SC, L, Q, start, end, t0, r, s, s_ok, step_s, seq_s, b_s, ps, p_ok, ns, n_ok, HEADS, db, Lp,
                         ATOMIC_DC, HAS_SEQ, False, BLOCK_K, DOT)
    # through chunk c's end state
    in_end_seq = s_ok
    if HAS_SEQ:
        in_end_seq &= seq_s == tl.load(SEQ + bi.to(tl.int64) * L + end)
    for i in range(HEADS):
        h = hb * HEADS + i
        bh = bi * H + h
        row = bh.to(tl.int64) * Lp
        ds = tl.load(ADJ + ((bh.to(tl.int64) * nc + c) * P + ps[:, None]) * N + ns[None, :],
                     mask=p_ok[:, None] & n_ok[None, :], other=0.0)                       # (P, N)
        w = tl.where(in_end_seq, _to_end(CUM, lo_off, row, s, end), 0.0) * tl.load(DTP + row + s)
        db += mm(_rows(X, step_s, h, SX, P, ps, s_ok, p_ok), ds, DOT) * w[:, None]
    # fp32 partials per head block, or dB itself in B's dtype where a program's heads are its group's (the launcher's
    # choice: no cast launched after)
    tl.store(DB_PART + (step_s * SDB + hb * N)[:, None] + ns[None, :], db.to(DB_PART.dtype.element_ty),
             mask=s_ok[:, None] & n_ok[None, :])


@triton.jit
def _dc_states_kernel(
    # pointers
    X, B, C, DY, DTP, CUM, HS, SEQ, DC_PART, INTER,
    # sizes, and the step strides of x, B and C (the rest contiguous)
    L, H, G, P, N, Lp, nc, lo_off, SX, SB, SC, HEADS,
    # meta-parameters
    PAIRS: tl.constexpr, HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr,
):
    t0 = tl.program_id(0) * BLOCK_M
    c = t0 // Q
    bi, hb, g, n_hb = _head_block(tl.program_id(1), H, G, HEADS)
    start, _, prev = chunk_bounds(c, L, Q)
    t, t_ok, ps, p_ok, ns, n_ok = _tiles(t0, L, P, N, BLOCK_M, BLOCK_P, BLOCK_N)
    step_t = bi.to(tl.int64) * L + t
    c_t = _group_rows(C, step_t, g, SC, N, ns, t_ok, n_ok)
    seq_t = _seq(SEQ, step_t, t_ok, -1, HAS_SEQ)
    in_prev_seq = t_ok
    if HAS_SEQ:
        in_prev_seq &= seq_t == tl.load(SEQ + bi.to(tl.int64) * L + prev)
    dc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    # through the state entering the chunk
    for i in range(HEADS):
        h = hb * HEADS + i
        bh = bi * H + h
        row = bh.to(tl.int64) * Lp
        enter = tl.load(HS + ((bh.to(tl.int64) * nc + c) * P + ps[:, None]) * N + ns[None, :],
                        mask=p_ok[:, None] & n_ok[None, :], other=0.0)                    # (P, N)
        scale = tl.where(in_prev_seq, tl.exp(tl.load(CUM + row + t)), 0.0)
        dyh = mm(_rows(DY, step_t, h, H * P, P, ps, t_ok, p_ok), enter, DOT) * scale[:, None]
        tl.store(INTER + row + t, tl.sum(dyh * c_t.to(tl.float32), axis=1), mask=t_ok)
        dc += dyh
    # the pairs, unless _db_dc_pairs_kernel already added them to DC_PART
    for s0 in range(start, tl.minimum(t0 + BLOCK_M, L) if PAIRS else start, BLOCK_K):
        s = s0 + tl.arange(0, BLOCK_K)
        s_ok = s < L
        step_s = bi.to(tl.int64) * L + s
        seq_s = _seq(SEQ, step_s, s_ok, -2, HAS_SEQ)
        wsum = tl.zeros([BLOCK_K, BLOCK_M], dtype=tl.float32)                             # (s, t)
        for i in range(HEADS):
            h = hb * HEADS + i
            row = (bi * H + h).to(tl.int64) * Lp
            wsum += _pair_weight(X, DY, DTP, CUM, lo_off, row, h, H, P, SX, ps, p_ok, s, t, s_ok, t_ok, step_s, step_t,
                                 seq_s, seq_t, HAS_SEQ, DOT)
        dc += mm(tl.trans(wsum), _group_rows(B, step_s, g, SB, N, ns, s_ok, n_ok), DOT)
    # stored, not added: this kernel runs before _db_dc_pairs_kernel, whose atomics then add the pairs (no zero fill
    # of DC_PART, nor a read of it: 0.12 + ~0.13 ms of Mamba-3's backward at B8 L4096 H32, where DC_PART is per head)
    tl.store(DC_PART + ((step_t * n_hb + hb) * N)[:, None] + ns[None, :], dc, mask=t_ok[:, None] & n_ok[None, :])


dx_dd_kernel = Kernel(_dx_dd_kernel, flags=dict(HAS_D="D", HAS_DD="DD_PART", HAS_DIAG="DIAG", HAS_SEQ="SEQ"))
db_dc_pairs_kernel = Kernel(_db_dc_pairs_kernel, flags=dict(HAS_SEQ="SEQ"))
dc_states_kernel = Kernel(_dc_states_kernel, flags=dict(HAS_SEQ="SEQ"))
