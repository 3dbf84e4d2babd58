"""The backward of an SSD whose every head has its own keys and queries (``G = H``: Mamba-3's rotated ``k~, q~``,
SISO and MIMO's rank-steps) in one launch: each program owns one (batch row, head) and walks its chunks in
reverse, carrying the gradient of the state leaving the chunk (``dh``, ``(P, N)`` fp32) in registers.

Forward, per chunk (``cs`` the within-chunk sum of the decays, ``E_ts = exp(cs_t - cs_s)`` for ``s <= t``,
``w_s = exp(cs_end - cs_s)``, ``S_ts = q_t . k_s``, ``H_in`` the entering state)::

    y_t   = sum_{s <= t} E_ts S_ts scale_s x_s + exp(cs_t) H_in q_t  (+ diag_t x_t + D x_t)
    H_out = exp(cs_end) H_in + sum_s w_s scale_s x_s k_s^T

Backward, with ``g = dy`` and ``GX_ts = g_t . x_s``: ``v_s = sum_t E_ts S_ts g_t + w_s dh k_s``,
``dx_s = scale_s v_s``, ``d scale_s = x_s . v_s``; ``dS = E GX scale`` gives ``dq = dS k + exp(cs) g H_in`` and
``dk = dS^T q + w scale x dh``; the entering state's gradient is ``exp(cs_end) dh + sum_t exp(cs_t) g_t q_t^T``.
The decay ``a_r`` of step ``r`` (``cs_t = sum_{r <= t} a_r``) gets, as ``bwd_dt.decay_grad`` sums it from the
staged kernels' rows: the pairs that straddle ``r`` (``sum_{t >= r, s < r}`` of ``E S scale GX``, here a prefix
over ``s`` of each row summed over ``t >= r``: no cancelling terms), the entering state's terms of the steps from
``r`` on, the chunk-state terms of the steps before ``r``, and the carried state's ``exp(cs_end) <dh, H_in>``.

A chunk of ``Q`` steps is walked in blocks of ``SUB`` (``Q`` or ``Q / 2``: ``launch.walk_block``), each with its own
entering state (the second half's made from the first half's steps): the ``(t, s)`` tiles of 32 steps keep the
program's registers near one block's (sm_90 spills 0.6-0.7 KB a thread there, 2.9 KB with 64-step tiles).

What it replaces: the adjoint sums and the reversed state passing (``(b, H, chunks, P, N)`` fp32 sums and
states stored and read back), ``k q^T`` per chunk, the dx, dB and dC pair stages with their fp64 atomic row sums,
and the decay's gradient kernel: about nine launches, each a pass over the chunk's tiles. The price is
parallelism: ``b H`` programs, each walking ``L / Q`` chunks in order (mamba_ssm's Mamba-3 backward is built the
same way). Few (row, head) pairs cut their rows into segments walked side by side (``launch.walk_segments``):
``_walk_sums_kernel`` first gives each segment but the first its carry from ``dh = 0`` (``A``, ``(P, N)``) and its
total decay, and each walking program starts from the later segments' parts carried back to its end. ``launch.walks``
takes the walk where its programs fill the GPU's waves (``SSM_TRITON_WALK_BWD``: 1 on, 0 off).

Tried and taken out (H100, 2026-12-06, ``bench/results/h100-2026-12-06``): x, dy, k, q and the entering states read
and dx, dk, dq written through tensor descriptors made on the device, as mamba_ssm's Mamba-3 backward reads its
tiles. At sm_90 it cut the spill stack (2848 -> 1104 bytes a thread with 64-step blocks, which then take wgmma
tiles; 520 -> 400 with 32-step blocks, which take mma.sync), yet the kernel ran slower: 4.25 ms with 64-step blocks
and ~3.5 with 32 against 2.58 (MIMO's fwd+bwd 31.9 against 27.3); with two pipelining stages 3.24 (64-step blocks)
and 4.85 (32) against 2.56 (H200, 2026-12-06, ``bench/results/h200-2026-12-06``).

Where a block's time goes (H100, 2026-12-06, ``bench/results/h100-2026-12-06b``, each part dropped in turn from a
2.37 ms walk): the decay's gradient 0.74 ms (its carried-state term alone 0.24, a (P, N) product summed across the
warps), dk 0.18, the end state's part of dx 0.17, the pairs' decay sums 0.13, the second half's entering state 0.10,
dq 0.03. What a block is once compiled (sm_90, triton 3.6, 32-step blocks, P64 N128 bf16, 8 warps): 8 mma.sync
products and 2 wgmma (the carry and the second half's entering state), 16 copies through shared memory for the
products' operands, 13 layout conversions, 7 reductions across lanes (the carried-state term's two, the
entering-state term, x . v, x . v_s, dy . x, the decay's tile) and one scan (the straddling prefix): 60 barriers.
"""
import triton
import triton.language as tl

from .bwd_pairs import skip_grads
from .common import add3, as_dot, cum_at, mm
from ..tuning import Kernel

# FREC's running scalar: fp32's rounding unit, and the error bound beside |f| past which f is summed directly
FP32_EPS = tl.constexpr(2.0 ** -24)
FREC_TOL = tl.constexpr(2.0 ** -16)


@triton.jit
def _decay(hi, lo, causal):
    """``E (t, s) = exp(cs_t - cs_s)`` where ``s <= t``, else 0, from ``cs``'s (hi, lo) planes."""
    gap = (hi[:, None] - hi[None, :]) + (lo[:, None] - lo[None, :])
    return tl.exp(tl.where(causal, gap, float("-inf")))


@triton.jit
def _carry(dh, g, e, e_end, q, DOT: tl.constexpr):
    """The gradient of the state entering a block from ``dh``, the leaving one's: ``exp(cs_end) dh + sum_t exp(cs_t)
    g_t q_t^T`` (``g (SUB, P)`` fp32, ``e = exp(cs_t)`` zero past the row)."""
    return e_end * dh + mm(tl.trans(g * e[:, None]), q, DOT)


@triton.jit
def _grad_in(DY, step, h, SDY, P, ps, mask):
    """The gradient of the scan's output for steps ``step`` (``(steps, BLOCK_P)`` fp32)."""
    return tl.load(DY + (step * SDY + h * P)[:, None] + ps[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _block_start(CUM, lo_off, row, blk, Q: tl.constexpr, SUB: tl.constexpr):
    """Block ``blk``'s chunk, first step, and the decay sum its steps count from as ``(hi, lo)``: the step before
    it inside the chunk, or zero at a chunk's start."""
    c = blk // (Q // SUB)
    t0 = blk * SUB
    b_hi = tl.sum(tl.zeros([2], dtype=tl.float32), axis=0)
    b_lo = b_hi + 0.0
    if Q > SUB:
        if t0 > c * Q:
            b_hi, b_lo = cum_at(CUM, lo_off, row, t0 - 1)
    return c, t0, b_hi, b_lo


@triton.jit
def _tiles(X, DY, K, QQ, bi, h, t0, live, L, H, P, N, SX, SDY, ps, ns, SUB: tl.constexpr):
    """The block of ``SUB`` steps from ``t0``'s ``x, dy (SUB, BLOCK_P)`` and ``k, q (SUB, BLOCK_N)`` as stored (zeros
    past the row, and everywhere where ``live``, a ``(SUB,)`` tile, is false)."""
    t = t0 + tl.arange(0, SUB)
    ok = (t < L) & live
    step = bi.to(tl.int64) * L + t
    xp_ok = ok[:, None] & (ps < P)[None, :]
    xn_ok = ok[:, None] & (ns < N)[None, :]
    x = tl.load(X + (step * SX + h * P)[:, None] + ps[None, :], mask=xp_ok, other=0.0)
    g = tl.load(DY + (step * SDY + h * P)[:, None] + ps[None, :], mask=xp_ok, other=0.0)
    kq_at = (step * H + h)[:, None] * N + ns[None, :]
    return x, g, tl.load(K + kq_at, mask=xn_ok, other=0.0), tl.load(QQ + kq_at, mask=xn_ok, other=0.0)


@triton.jit
def _block(X, K, QQ, DY, DTP, CUM, D, DIAG, DX, DK, DQ, XV, DDIAG, DA, dh, dd, enter, x, g, k, q, b_hi, b_lo, t0,
           bi, h, bh, row, L, H, P, N, lo_off, SX, SDY, ps, ns, big_g, g_err, direct,
           HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_DD: tl.constexpr, HAS_DIAG: tl.constexpr,
           SUB: tl.constexpr, DOT: tl.constexpr, LOADED: tl.constexpr, FREC: tl.constexpr, MERGE: tl.constexpr):
    """One block of ``SUB`` steps from ``t0`` whose entering state is ``enter`` ``(P, N)`` and whose decays count
    from ``cum = b_hi + b_lo`` (the step before the block; zeros at a chunk's start): its gradients stored, and
    ``(dh, dd, G)`` carried to the block before. ``FREC``: the carried state's decay term ``f = exp(cs_end) <dh,
    H_in>`` from ``G = <dh, H_out>`` (``big_g``) less the block state's part, ``sum_s us_s``, except where ``direct``
    (the segment's first block walked) or where the difference's error bound (``g_err``, carried with ``G``) passes
    ``FREC_TOL |f|``; ``G`` for the block before is ``<dh_in, H_in> = f + sum_t ehq_t``. Its tiles ``x, g = dy, k,
    q`` (``_tiles``) are given where ``LOADED``, else loaded here (the loads after the entering state is made: sm_90's
    spill stack 520 bytes a thread, against 608-1088 with them issued before it, triton 3.6). ``MERGE``: ``dh`` cast to the cores' dtype once for its two
    products, and the three sums over a step's P columns (x . v, x . v_s, dy . x) in one reduction; sm_90, triton
    3.6: 54 barriers a block against 60, a 632-byte spill stack against 680 (not yet timed)."""
    ts = tl.arange(0, SUB)
    causal = ts[None, :] <= ts[:, None]   # (t, s): s <= t
    strict = ts[None, :] < ts[:, None]
    p_ok = ps < P
    n_ok = ns < N
    t = t0 + ts
    ok = t < L
    step = bi.to(tl.int64) * L + t
    xp_ok = ok[:, None] & p_ok[None, :]
    xn_ok = ok[:, None] & n_ok[None, :]
    if LOADED:
        x = x.to(tl.float32)
        g = g.to(tl.float32)
    else:
        x = tl.load(X + (step * SX + h * P)[:, None] + ps[None, :], mask=xp_ok, other=0.0).to(tl.float32)
        g = _grad_in(DY, step, h, SDY, P, ps, xp_ok)
    kq_at = (step * H + h)[:, None] * N + ns[None, :]
    if not LOADED:
        k = tl.load(K + kq_at, mask=xn_ok, other=0.0)
        q = tl.load(QQ + kq_at, mask=xn_ok, other=0.0)
    hi, lo = cum_at(CUM, lo_off, row, t)
    # the block's last step, in the padded row (cum is flat past L: an empty block passes dh on unchanged)
    hi_e, lo_e = cum_at(CUM, lo_off, row, t0 + SUB - 1)
    scale = tl.load(DTP + row + t)
    e = tl.where(ok, tl.exp((hi - b_hi) + (lo - b_lo)), 0.0)         # exp(cs_t)
    w = tl.where(ok, tl.exp((hi_e - hi) + (lo_e - lo)), 0.0)         # exp(cs_end - cs_s)
    e_end = tl.exp((hi_e - b_hi) + (lo_e - b_lo))
    # what reads the entering state first, so it is not held through the pair tiles (sm_90, triton 3.6: a spill
    # stack of 576-728 bytes a thread against 744-848 with these two after them; tests/sm90_compile.py --resources)
    gh = mm(g, enter, DOT)                                           # (t, N): H_in^T g_t
    if FREC:
        f = e_end * 0.0
    else:
        f = e_end * tl.sum(tl.sum(dh * enter.to(tl.float32), axis=1), axis=0)   # the carried state's part of d a
    # (t, s) tiles are made where they are used and dropped after (E again rather than held: exps are cheap,
    # registers are not: a program holds dh and the entering state, (P, N) each)
    es = _decay(hi, lo, causal) * mm(q, tl.trans(k), DOT)            # E S (t, s)
    v = mm(tl.trans(es), g, DOT)                                     # (s, P), the pairs' part
    gx = mm(g, tl.trans(x), DOT)                                     # (t, s)
    # the decay's pair part, d a_r += sum_{t >= r, s < r} pm (t, s), the pairs that straddle r: C (t, r) = sum_{s < r}
    # pm (t, s) here, summed over t >= r below (no cancelling terms: it was the pairs' row sums less their column
    # sums, reversed prefix in fp64, two scans whose layout changes cost ~0.07 ms of 2.37, H100 2026-12-06)
    pm = tl.where(strict, es * gx * scale[None, :], 0.0)
    straddle = tl.cumsum(pm, axis=1) - pm
    ds = gx * _decay(hi, lo, causal) * scale[None, :]                # dS (t, s)
    # dq, and the entering state's part of the decay
    tl.store(DQ + kq_at, (mm(ds, k, DOT) + e[:, None] * gh).to(DQ.dtype.element_ty), mask=xn_ok)
    ehq = e * tl.sum(gh * q.to(tl.float32), axis=1)
    # dk
    if MERGE:   # one cast, one copy through shared memory for both products
        dhb = as_dot(dh, DOT)
    else:
        dhb = dh
    tl.store(DK + kq_at, (mm(tl.trans(ds), q, DOT) + (w * scale)[:, None] * mm(x, dhb, DOT)).to(DK.dtype.element_ty),
             mask=xn_ok)
    # dx, and the chunk state's part of the decay
    vs = w[:, None] * mm(k, tl.trans(dhb), DOT)                      # (s, P): through the end state
    v += vs
    if MERGE:   # one reduction across the lanes for three sums (each a pass through shared memory, with barriers)
        xv, xvs, dyx = tl.reduce((x * v, x * vs, g * x), 1, add3)
        tl.store(XV + row + t, xv, mask=ok)
        us = scale * xvs
        dx = skip_grads(scale[:, None] * v, g, x, D, DIAG, DDIAG, row, t, ok, h, P, ps, p_ok, HAS_D, D_PER_CHANNEL,
                        HAS_DIAG, dyx)
    else:
        tl.store(XV + row + t, tl.sum(x * v, axis=1), mask=ok)
        us = scale * tl.sum(x * vs, axis=1)
        dx = skip_grads(scale[:, None] * v, g, x, D, DIAG, DDIAG, row, t, ok, h, P, ps, p_ok, HAS_D, D_PER_CHANNEL,
                        HAS_DIAG)
    if HAS_DD:
        dd += tl.sum(g * x, axis=0)
    tl.store(DX + (step * H + h)[:, None] * P + ps[None, :], dx.to(DX.dtype.element_ty), mask=xp_ok)
    # d a_r: the pairs and entering-state terms from r on, the block state's terms before r, the carried state's f
    if FREC:
        # the difference cancels where the block's state outweighs the carried one (strong decays): its rounding,
        # eps |G| a block, is then large beside f and would not decay with it. g_err bounds the error G carries; f is
        # summed directly where that bound passes FREC_TOL |f| (so f keeps ~5 digits, as the direct sum's)
        sum_us = tl.sum(us, axis=0)
        f_run = big_g - sum_us
        err_run = g_err + FP32_EPS * (tl.abs(big_g) + tl.abs(sum_us))
        if direct or err_run > FREC_TOL * tl.abs(f_run):
            f = e_end * tl.sum(tl.sum(dh * enter.to(tl.float32), axis=1), axis=0)
            err_run = f * 0.0
        else:
            f = f_run
        sum_ehq = tl.sum(ehq, axis=0)
        big_g = f + sum_ehq
        g_err = err_run + FP32_EPS * (tl.abs(f) + tl.abs(sum_ehq))
    # one (t, r) tile summed over t: the straddling pairs and the entering-state terms where t >= r, the block
    # state's where t < r
    d_a = tl.sum(tl.where(causal, straddle + ehq[:, None], us[:, None]), axis=0) + f
    tl.store(DA + bh.to(tl.int64) * L + t, d_a, mask=ok)
    return _carry(dh, g, e, e_end, q, DOT), dd, big_g, g_err


@triton.jit
def _walk_sums_kernel(DY, QQ, CUM, SEG_A, SEG_DEC, L, H, P, N, Lp, nc, lo_off, SDY, cps, nseg,
                      Q: tl.constexpr, SUB: tl.constexpr, BLOCK_P: tl.constexpr,
                      BLOCK_N: tl.constexpr, DOT: tl.constexpr):
    """Segment ``j + 1``'s part of the state gradient entering it from its end, ``A (P, N)`` fp32, and its total
    decay ``exp(sum a)``: the walk's carry over the segment's blocks from ``dh = 0``. Program (row x head, j)."""
    bh = tl.program_id(0)
    seg = tl.program_id(1) + 1
    bi = bh // H
    h = bh % H
    ps = tl.arange(0, BLOCK_P)
    ns = tl.arange(0, BLOCK_N)
    row = bh.to(tl.int64) * Lp
    HALVES: tl.constexpr = Q // SUB
    first = seg * cps * HALVES
    last = tl.minimum((seg + 1) * cps, nc) * HALVES
    a = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    dec = tl.sum(tl.zeros([2], dtype=tl.float32), axis=0) + 1.0
    for i in range(last - first):
        c, t0, b_hi, b_lo = _block_start(CUM, lo_off, row, last - 1 - i, Q, SUB)
        t = t0 + tl.arange(0, SUB)
        ok = t < L
        step = bi.to(tl.int64) * L + t
        g = _grad_in(DY, step, h, SDY, P, ps, ok[:, None] & (ps < P)[None, :])
        q = tl.load(QQ + ((step * H + h)[:, None] * N + ns[None, :]), mask=ok[:, None] & (ns < N)[None, :],
                    other=0.0)
        hi, lo = cum_at(CUM, lo_off, row, t)
        hi_e, lo_e = cum_at(CUM, lo_off, row, t0 + SUB - 1)
        e = tl.where(ok, tl.exp((hi - b_hi) + (lo - b_lo)), 0.0)
        e_end = tl.exp((hi_e - b_hi) + (lo_e - b_lo))
        a = _carry(a, g, e, e_end, q, DOT)
        dec *= e_end
    at = (bh.to(tl.int64) * nseg + seg) * P * N
    tl.store(SEG_A + at + ps[:, None] * N + ns[None, :], a, mask=(ps < P)[:, None] & (ns < N)[None, :])
    tl.store(SEG_DEC + bh.to(tl.int64) * nseg + seg, dec)


@triton.jit
def _walk_bwd_kernel(
    # pointers: inputs, then outputs (SEG_A, SEG_DEC: _walk_sums_kernel's, with segments)
    X, K, QQ, DY, DTP, CUM, HS, DFINAL, D, DIAG, SEG_A, SEG_DEC,
    DX, DK, DQ, XV, DDIAG, DA, DH0, DD_PART,
    # sizes; x's and dy's step strides (``H P`` when contiguous; k, q, dx, dk, dq contiguous); chunks a segment
    L, H, P, N, Lp, nc, lo_off, SX, SDY, cps, nseg,
    # meta-parameters: ``SUB`` the steps walked at a time, ``Q`` or ``Q / 2`` (the (t, s) tiles' side)
    HAS_DFINAL: tl.constexpr, HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_DD: tl.constexpr,
    HAS_DIAG: tl.constexpr, SEGMENTED: tl.constexpr, Q: tl.constexpr, SUB: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr, AHEAD: tl.constexpr = True,
    FREC: tl.constexpr = False, MERGE: tl.constexpr = False,
):
    bh = tl.program_id(0)
    seg = tl.program_id(1)   # the row's chunks in segments of cps, walked by programs side by side
    bi = bh // H
    h = bh % H
    ps = tl.arange(0, BLOCK_P)
    ns = tl.arange(0, BLOCK_N)
    p_ok = ps < P
    pn_ok = p_ok[:, None] & (ns < N)[None, :]
    at = ps[:, None] * N + ns[None, :]
    PN = bh.to(tl.int64) * 0 + P * N    # int64: chunk offsets c P N pass 2^31 in long rows
    base = bh.to(tl.int64) * nc * PN
    row = bh.to(tl.int64) * Lp
    if HAS_DFINAL:
        dh = tl.load(DFINAL + bh.to(tl.int64) * PN + at, mask=pn_ok, other=0.0).to(tl.float32)
    else:
        dh = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    if SEGMENTED:   # the state gradient leaving this segment: the later segments' parts carried from the row's end
        for j in range(nseg - 1 - seg):   # (not k: a loop-carried name keeps its type, and k becomes a tile below)
            later = nseg - 1 - j
            dh = tl.load(SEG_DEC + bh.to(tl.int64) * nseg + later) * dh + tl.load(
                SEG_A + (bh.to(tl.int64) * nseg + later) * PN + at, mask=pn_ok, other=0.0)
    dd = tl.zeros([BLOCK_P], dtype=tl.float32)
    big_g = tl.sum(tl.zeros([2], dtype=tl.float32), axis=0)
    g_err = big_g + 0.0
    # one loop over the blocks of SUB steps, in reverse, one block's code: its registers are one block's (two blocks
    # of a chunk written out one after the other spilled 2.1 KB a thread at sm_90, one 32-step block 0.7)
    HALVES: tl.constexpr = Q // SUB
    first = seg * cps * HALVES
    last = tl.minimum((seg + 1) * cps, nc) * HALVES
    nblk = last - first
    live = tl.arange(0, SUB) * 0 + nblk > 0   # (a scalar condition as a tile: the interpreter wants one)
    # AHEAD: each block issues the loads of the next block's tiles and entering state before it computes, so they are
    # in flight while it computes (one program an SM has no other warps to hide a load's latency behind): the
    # kernel 2.568 -> 2.372 ms at SISO's B8 L4096 H32, MIMO's 9.36 -> 8.68 (H100, 2026-12-06); a second half's
    # first-half x and k also issued a block earlier, 2.655 (slower, taken out)
    if AHEAD:   # the first block's tiles and entering state
        nx, ng, nk, nq = _tiles(X, DY, K, QQ, bi, h, (last - 1) * SUB, live, L, H, P, N, SX, SDY, ps, ns, SUB)
        nh = tl.load(HS + base + ((last - 1) // HALVES) * PN + at, mask=pn_ok & (at * 0 + nblk > 0), other=0.0)
    for i in range(nblk):
        c, t0, b_hi, b_lo = _block_start(CUM, lo_off, row, last - 1 - i, Q, SUB)
        start = c * Q
        if AHEAD:
            x, g, k, q, enter = nx, ng, nk, nq, nh
            live = tl.arange(0, SUB) * 0 + i + 1 < nblk
            nx, ng, nk, nq = _tiles(X, DY, K, QQ, bi, h, t0 - SUB, live, L, H, P, N, SX, SDY, ps, ns, SUB)
            nh = tl.load(HS + base + ((t0 - SUB) // Q) * PN + at, mask=pn_ok & (at * 0 + i + 1 < nblk), other=0.0)
        else:
            enter = tl.load(HS + base + c * PN + at, mask=pn_ok, other=0.0)
        # (a branch whose test is always false where Q == SUB broke triton 3.6's coalescing pass: HALVES guards it)
        if HALVES > 1 and t0 > start:
            # the state entering the chunk's second half, made from the first half's steps (the forward keeps only
            # chunks' states): exp(cum_m) H_in + sum_{s <= m} exp(cum_m - cum_s) scale_s x_s k_s^T, m = t0 - 1; in
            # the entering states' dtype, as the forward keeps them. The first half is the next block walked: ahead,
            # its x and k are the tiles just issued.
            s0 = start + tl.arange(0, SUB)
            ok0 = s0 < L
            hi0, lo0 = cum_at(CUM, lo_off, row, s0)
            wm = tl.where(ok0, tl.exp((b_hi - hi0) + (b_lo - lo0)), 0.0) * tl.load(DTP + row + s0)
            if AHEAD:
                x0 = nx
                k0 = nk
            else:
                step0 = bi.to(tl.int64) * L + s0
                x0 = tl.load(X + (step0 * SX + h * P)[:, None] + ps[None, :], mask=ok0[:, None] & p_ok[None, :],
                             other=0.0)
                k0 = tl.load(K + (step0 * H + h)[:, None] * N + ns[None, :], mask=ok0[:, None] & (ns < N)[None, :],
                             other=0.0)
            enter = (tl.exp(b_hi + b_lo) * enter.to(tl.float32)
                     + mm(tl.trans(x0.to(tl.float32) * wm[:, None]), k0, DOT)).to(HS.dtype.element_ty)
        if not AHEAD:
            x, g, k, q = 0, 0, 0, 0   # _block loads them
        dh, dd, big_g, g_err = _block(X, K, QQ, DY, DTP, CUM, D, DIAG, DX, DK, DQ, XV, DDIAG, DA, dh, dd, enter, x, g, k, q,
                               b_hi, b_lo, t0, bi, h, bh, row, L, H, P, N, lo_off, SX, SDY, ps, ns, big_g, g_err, i == 0,
                               HAS_D, D_PER_CHANNEL, HAS_DD, HAS_DIAG, SUB, DOT, AHEAD, FREC, MERGE)
    if seg == 0:
        tl.store(DH0 + bh.to(tl.int64) * PN + at, dh, mask=pn_ok)
    if HAS_DD:
        tl.store(DD_PART + (bh.to(tl.int64) * nseg + seg) * P + ps, dd, mask=p_ok)


walk_bwd_kernel = Kernel(_walk_bwd_kernel, flags=dict(HAS_DFINAL="DFINAL", HAS_D="D", HAS_DD="DD_PART",
                                                      HAS_DIAG="DIAG", SEGMENTED="SEG_A"))
walk_sums_kernel = Kernel(_walk_sums_kernel)
