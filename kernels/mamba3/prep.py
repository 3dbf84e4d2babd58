"""Mamba-3 SISO's per-step terms, before and after the SSD stages (see ``kernels/mamba3/__init__.py``).

Every kernel here runs one program per (block of ``BLOCK_T`` steps, batch row x head); ``BLOCK_T`` divides the
chunk. The angles are a running sum over the whole row, so they take three launches: each block's total
(``_angle_sums_kernel``), a light per-row prefix over the blocks (``_block_prefix_kernel``), then the block
itself from the angle entering it.

``_siso_prep_kernel`` (forward):

* ``scale_t = lam_t DT_t + DT_{t+1} (1 - lam_{t+1})`` (the SSD's step size; the row's last step has no
  next one), ``cum`` the within-chunk sum of ``ADT`` (fp64, kept as two fp32 planes like the SSD's);
* ``theta_t = theta_{t-1} + pi tanh(Angles_t) DT_t`` in fp32 (block totals reduced mod 2 pi);
* ``q~ = Rot(theta) (Q + Q_bias)``, ``k~ = Rot(theta) (K + K_bias)``, one row per head;
* ``qk_t = q'_t . k'_t`` and the diagonal correction ``diag_t = -DT_{t+1} (1 - lam_{t+1}) qk_t``: the SSD's
  own diagonal weighs step ``t`` by ``scale_t``, Mamba-3's by ``lam_t DT_t``.

Rotations act on interleaved pairs ``(2i, 2i + 1)``, ``i < S``. Both kernels read (and write) the rotated
columns ``[0, 2 S)`` as one contiguous tile and split it into the pairs' even and odd columns in registers
(``tl.split`` / ``tl.join``), so every access is a whole-row one and each pair's cosine and sine are computed
once; the columns past ``2 S`` are a tile of their own. History (H200): reading the pairs as two stride-2 tiles
made every access a scalar one, and that forward was bound by L2 requests (Nsight Compute, 2026-12-02: 85% of
L2 throughput, 13% of DRAM's); a contiguous tile beside a second read of each column's partner ``c ^ 1``, with
each pair's angle at both of its columns, took it from 1.24 to 0.92 ms (2026-12-03c), and in the backward, where
it doubled the tiles, ran 1.93 ms against 1.50.

``_siso_prep_bwd_kernel`` pulls the gradients of ``q~, k~, scale, diag`` back to ``Q, K`` (a program walks
its share of the heads that share a Q/K head and sums theirs in registers; the launcher adds the shares; the
columns split over programs in blocks of pairs, those past ``2 S`` taken as pairs turned by angle 0), the
biases (per-block partial sums), ``Angles``, ``DT``, ``Trap`` and ``ADT``. The angles'
gradient is a suffix sum over the row: each block does its own steps and writes its total, the prefix
kernel runs backwards over the blocks, and ``_angle_carry_kernel`` adds what the later blocks send back. Reading
the per-head dq~, dk~ through tensor descriptors (no per-element addresses: at sm_90 a 64-step program's code is
about half integer address arithmetic) was slower: 1.471 against 1.151 ms at SISO's B8 L4096 H32 (H100, 2026-12-06).
"""
import torch
import triton
import triton.language as tl

from ..ssd.common import add4
from ..ssd.cumsum import chunk_row, store_cum   # (block, bh, row, head, steps, steps < L) of a (block, row x head) program
from ..host import cdiv, next_power_of_2
from ..trig import cos_sin
from ..tuning import Kernel, TunableKernel, bucket



@triton.jit
def _steps(DT, TRAP, base, t, L):
    """``(DT_t, lam_t, e_{t+1} = DT_{t+1} (1 - lam_{t+1}))`` for the steps ``t`` of one (row, head)."""
    ok = t < L
    nxt = (t + 1) < L
    dt = tl.load(DT + base + t, mask=ok, other=0.0).to(tl.float32)
    lam = tl.sigmoid(tl.load(TRAP + base + t, mask=ok, other=0.0).to(tl.float32))
    dt_n = tl.load(DT + base + t + 1, mask=nxt, other=0.0).to(tl.float32)
    lam_n = tl.sigmoid(tl.load(TRAP + base + t + 1, mask=nxt, other=0.0).to(tl.float32))
    return dt, lam, dt_n * (1.0 - lam_n)


@triton.jit
def _tanh(w):
    return 2.0 / (1.0 + tl.exp(-2.0 * w)) - 1.0


@triton.jit
def _pairs(x, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """A contiguous ``(steps, 2 BLOCK_S)`` tile of interleaved pairs as ``(even, odd)`` columns, each
    ``(steps, BLOCK_S)``: the tile is read with whole-row accesses and split in registers."""
    return tl.split(tl.reshape(x, (BLOCK_T, BLOCK_S, 2)))


@triton.jit
def _interleave(e, o, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """The inverse of :func:`_pairs`: ``(even, odd)`` back to one ``(steps, 2 BLOCK_S)`` tile for a contiguous store."""
    return tl.reshape(tl.join(e, o), (BLOCK_T, 2 * BLOCK_S))


@triton.jit
def _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S, SAL, SAH):
    """``(tanh(Angles) (steps, pairs), the offsets of a contiguous (b, L, H, S) tensor, mask)``. ``Angles`` is read
    with step stride ``SAL`` and head stride ``SAH`` (0 where the heads share one row of rates, as a block's in_proj
    gives them), its batch stride ``L SAL`` and its pairs contiguous: a block's inference call passes its projection's
    columns, any float dtype, without the cast and the expanded copy."""
    m = ok[:, None] & s_ok[None, :]
    src = ((bi.to(tl.int64) * L + t) * SAL + h.to(tl.int64) * SAH)[:, None] + ss[None, :]
    at = ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + ss[None, :]
    return _tanh(tl.load(ANG + src, mask=m, other=0.0).to(tl.float32)), at, m


@triton.jit
def _angle_sums_kernel(ANG, DT, SUMS, L, H, S, nblk, SAL, SAH, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """Each block's angle increment ``sum_t pi tanh(Angles_t) DT_t`` per pair, reduced mod 2 pi."""
    j, bh, bi, h, t, ok = chunk_row(L, H, BLOCK_T)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    tw, _, _ = _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S, SAL, SAH)
    tot = tl.sum(3.141592653589793 * tw * dt[:, None], axis=0)
    tot = tot - 6.283185307179586 * tl.floor(tot / 6.283185307179586)
    tl.store(SUMS + (bh.to(tl.int64) * nblk + j) * S + ss, tot, mask=s_ok)


@triton.jit
def _block_prefix_kernel(SUMS, INIT, OUT, LAST, nblk, S, HAS_INIT: tl.constexpr, REVERSE: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Per (row, head), over the blocks' ``SUMS (nblk, S)``: forward, ``OUT[j] = INIT + sum_{j' < j}`` (the
    angle entering block ``j``, reduced mod 2 pi) and ``LAST`` the total (the final angle); ``REVERSE``,
    ``OUT[j] = INIT + sum_{j' > j}`` (what the later blocks and the final angle send back to block ``j``'s
    angles) and ``LAST`` the total (the entering angle's gradient). ``OUT`` may be ``SUMS``."""
    bh = tl.program_id(0)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    if HAS_INIT:
        carry = tl.load(INIT + bh * S + ss, mask=s_ok, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_S], dtype=tl.float32)
    for b0 in range(0, nblk, BLOCK_C):
        i = b0 + tl.arange(0, BLOCK_C)
        if REVERSE:
            j = nblk - 1 - i
        else:
            j = i
        m = (i < nblk)[:, None] & s_ok[None, :]
        at = (bh.to(tl.int64) * nblk + j)[:, None] * S + ss[None, :]
        tile = tl.load(SUMS + at, mask=m, other=0.0)
        before = carry[None, :] + tl.cumsum(tile, axis=0) - tile
        carry += tl.sum(tile, axis=0)
        if not REVERSE:
            before = before - 6.283185307179586 * tl.floor(before / 6.283185307179586)
            carry = carry - 6.283185307179586 * tl.floor(carry / 6.283185307179586)
        tl.store(OUT + at, before, mask=m)
    tl.store(LAST + bh * S + ss, carry, mask=s_ok)


@triton.jit
def _running_angle(ANG, DT, THETA_B, x, h, L, H, S, nblk, ss, s_ok, SAL, SAH, BLOCK_T: tl.constexpr):
    """The row's running angle just before step ``x`` (``0 <= x <= L``; one row): the entering angle of the
    block holding step ``x - 1``, plus that block's increments before ``x``."""
    j = tl.maximum(x - 1, 0) // BLOCK_T
    t = j * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < x
    dt = tl.load(DT + h.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    tw, _, _ = _rate(ANG, h * 0, h, t, ok, ss, s_ok, L, H, S, SAL, SAH)
    inc = tl.sum(tl.where(ok[:, None], 3.141592653589793 * tw * dt[:, None], 0.0), axis=0)
    return tl.load(THETA_B + (h.to(tl.int64) * nblk + j) * S + ss, mask=s_ok, other=0.0) + inc


@triton.jit
def _seq_angles_kernel(ANG, DT, THETA_B, CU, OFF, FINAL, L, H, S, nblk, SAL, SAH, BLOCK_T: tl.constexpr,
                       BLOCK_S: tl.constexpr):
    """Packed row (batch 1), per (sequence, head): ``OFF`` the running angle before the sequence starts, and
    ``FINAL`` its angle after its last step (reduced mod 2 pi)."""
    i = tl.program_id(0)
    h = tl.program_id(1)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    start = tl.minimum(tl.maximum(tl.load(CU + i), 0), L)
    end = tl.minimum(tl.maximum(tl.load(CU + i + 1), start), L)
    off = _running_angle(ANG, DT, THETA_B, start, h, L, H, S, nblk, ss, s_ok, SAL, SAH, BLOCK_T)
    last = _running_angle(ANG, DT, THETA_B, end, h, L, H, S, nblk, ss, s_ok, SAL, SAH, BLOCK_T) - off
    tl.store(OFF + (i * H + h) * S + ss, off, mask=s_ok)
    tl.store(FINAL + (i * H + h) * S + ss, last - 6.283185307179586 * tl.floor(last / 6.283185307179586), mask=s_ok)


@triton.jit
def _turns(ANG, THETA_B, OFF, seq, bi, bh, h, j, t, ok, dt, ss, s_ok, m, L, H, S, nblk, SAL, SAH,
           HAS_SEQ: tl.constexpr):
    """The block's rotation angles from the angle entering it (less the running angle before a packed row's
    sequence): ``(cos, sin (steps, pairs), tanh(Angles), its offsets)``."""
    tw, at, _ = _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S, SAL, SAH)
    theta = tl.load(THETA_B + (bh.to(tl.int64) * nblk + j) * S + ss, mask=s_ok, other=0.0)
    th = theta[None, :] + tl.cumsum(3.141592653589793 * tw * dt[:, None], axis=0)
    if HAS_SEQ:
        th -= tl.load(OFF + (seq.to(tl.int64) * H + h)[:, None] * S + ss[None, :], mask=m, other=0.0)
    cos, sin = cos_sin(th)
    return cos, sin, tw, at


@triton.jit
def _siso_prep_kernel(
    # pointers: inputs (THETA_B: the row's running angle entering each block, from _block_prefix_kernel;
    # packed rows: SEQ the step's sequence, OFF (sequences, H, S) the running angle before each one starts)
    Q, K, QB, KB, ANG, DT, TRAP, ADT, THETA_B, SEQ, OFF,
    # pointers: outputs
    QR, KR, DTP, CUM, DIAG, QK,
    # sizes; Angles' step and head strides (_rate)
    L, H, HQK, N, S, Lp, nblk, lo_off, SAL, SAH,
    # meta-parameters (HEADS: heads per program, all reading one Q/K head, which is loaded once)
    HAS_SEQ: tl.constexpr, CHUNK: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr,
    BLOCK_R: tl.constexpr, HEADS: tl.constexpr,
):
    j = tl.program_id(0)
    pid = tl.program_id(1)
    bi = pid // (H // HEADS)
    h0 = pid % (H // HEADS) * HEADS
    g = h0 // (H // HQK)
    t = j * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    # the group's Q and K: the rotated columns read as one contiguous tile and split into the pairs' even and
    # odd columns in registers; then the columns past the pairs
    c = tl.arange(0, 2 * BLOCK_S)
    c_ok = c < 2 * S
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    rs = 2 * S + tl.arange(0, BLOCK_R)
    r_ok = rs < N
    m = ok[:, None] & s_ok[None, :]
    mr = ok[:, None] & r_ok[None, :]
    m2 = ok[:, None] & c_ok[None, :]
    qrow = ((bi.to(tl.int64) * L + t) * HQK + g) * N
    q_e0, q_o0 = _pairs(tl.load(Q + qrow[:, None] + c[None, :], mask=m2, other=0.0).to(tl.float32), BLOCK_T, BLOCK_S)
    k_e0, k_o0 = _pairs(tl.load(K + qrow[:, None] + c[None, :], mask=m2, other=0.0).to(tl.float32), BLOCK_T, BLOCK_S)
    q_r0 = tl.load(Q + qrow[:, None] + rs[None, :], mask=mr, other=0.0).to(tl.float32)
    k_r0 = tl.load(K + qrow[:, None] + rs[None, :], mask=mr, other=0.0).to(tl.float32)
    seq = t * 0
    if HAS_SEQ:  # a sequence's last step has no next one
        seq = tl.load(SEQ + bi.to(tl.int64) * L + t, mask=ok, other=0)
        last = tl.load(SEQ + bi.to(tl.int64) * L + t + 1, mask=(t + 1) < L, other=-1) != seq
    start = (j * BLOCK_T) // CHUNK * CHUNK
    for hh in range(HEADS):
        h = h0 + hh
        bh = bi * H + h
        base = bh.to(tl.int64) * L
        row_p = bh.to(tl.int64) * Lp
        dt, lam, e_next = _steps(DT, TRAP, base, t, L)
        if HAS_SEQ:
            e_next = tl.where(last, 0.0, e_next)
        tl.store(DTP + row_p + t, tl.where(ok, lam * dt + e_next, 0.0))
        # the decay summed from the chunk's first step: the earlier blocks of the chunk, then this one
        before = tl.zeros([BLOCK_T], dtype=tl.float64)
        for e0 in range(start, j * BLOCK_T, BLOCK_T):
            e = e0 + tl.arange(0, BLOCK_T)
            before += tl.load(ADT + base + e, mask=e < L, other=0.0).to(tl.float64)
        adt = tl.load(ADT + base + t, mask=ok, other=0.0).to(tl.float64)
        cum = tl.sum(before, axis=0) + tl.cumsum(adt, axis=0)
        store_cum(CUM, lo_off, row_p + t, cum)

        cos, sin, _, _ = _turns(ANG, THETA_B, OFF, seq, bi, bh, h, j, t, ok, dt, ss, s_ok, m, L, H, S, nblk, SAL, SAH,
                                HAS_SEQ)
        q_e = q_e0 + tl.load(QB + h * N + 2 * ss, mask=s_ok, other=0.0).to(tl.float32)[None, :]
        q_o = q_o0 + tl.load(QB + h * N + 2 * ss + 1, mask=s_ok, other=0.0).to(tl.float32)[None, :]
        k_e = k_e0 + tl.load(KB + h * N + 2 * ss, mask=s_ok, other=0.0).to(tl.float32)[None, :]
        k_o = k_o0 + tl.load(KB + h * N + 2 * ss + 1, mask=s_ok, other=0.0).to(tl.float32)[None, :]
        orow = ((bi.to(tl.int64) * L + t) * H + h) * N
        tl.store(QR + orow[:, None] + c[None, :], _interleave(q_e * cos - q_o * sin, q_e * sin + q_o * cos, BLOCK_T,
                                                              BLOCK_S).to(QR.dtype.element_ty), mask=m2)
        tl.store(KR + orow[:, None] + c[None, :], _interleave(k_e * cos - k_o * sin, k_e * sin + k_o * cos, BLOCK_T,
                                                              BLOCK_S).to(KR.dtype.element_ty), mask=m2)
        # the columns past the rotated pairs pass through
        q_r = q_r0 + tl.load(QB + h * N + rs, mask=r_ok, other=0.0).to(tl.float32)[None, :]
        k_r = k_r0 + tl.load(KB + h * N + rs, mask=r_ok, other=0.0).to(tl.float32)[None, :]
        tl.store(QR + orow[:, None] + rs[None, :], q_r.to(QR.dtype.element_ty), mask=mr)
        tl.store(KR + orow[:, None] + rs[None, :], k_r.to(KR.dtype.element_ty), mask=mr)
        qk = tl.sum(q_e * k_e + q_o * k_o, axis=1) + tl.sum(q_r * k_r, axis=1)
        tl.store(QK + base + t, qk, mask=ok)
        tl.store(DIAG + row_p + t, tl.where(ok, -e_next * qk, 0.0))


@triton.jit
def _unrotate(x_e, x_o, d_e, d_o, cos, sin):
    """Back through ``y_e = x_e cos - x_o sin``, ``y_o = x_e sin + x_o cos``: ``(dx_e, dx_o, d theta)``."""
    dx_e = d_e * cos + d_o * sin
    dx_o = d_o * cos - d_e * sin
    dtheta = d_e * (-x_e * sin - x_o * cos) + d_o * (x_e * cos - x_o * sin)
    return dx_e, dx_o, dtheta


@triton.jit
def _head_loads(DT, TRAP, XV, DDIAG, QK, DE0, ANG, THETA_B, QB, KB, bi, h, jt, t, ok, prev_ok, ss, s_ok, e_ok, o_ok,
                hl, L, H, S, N, Lp, nblk, HAS_DE0: tl.constexpr):
    """What the prep backward reads of head ``h`` beside its dq~, dk~ tiles, as stored (nothing, zeros, where the
    scalar ``hl`` is 0: a head past the program's): ``DT, Trap`` at the steps and the next ones, ``XV, DDIAG`` at the
    steps and the previous ones, ``QK`` at the previous ones, ``DE0``, the biases' even and odd columns, ``Angles``
    and the angle entering the block (row ``jt`` of ``THETA_B``)."""
    live = (t * 0 + hl) > 0      # (scalar conditions as tiles: the interpreter wants them)
    live_s = (ss * 0 + hl) > 0
    bh = bi * H + h
    base = bh.to(tl.int64) * L
    row_p = bh.to(tl.int64) * Lp
    okl = ok & live
    nxt = (t + 1 < L) & live
    pl = prev_ok & live
    dt = tl.load(DT + base + t, mask=okl, other=0.0)
    trap = tl.load(TRAP + base + t, mask=okl, other=0.0)
    dt_n = tl.load(DT + base + t + 1, mask=nxt, other=0.0)
    trap_n = tl.load(TRAP + base + t + 1, mask=nxt, other=0.0)
    xv = tl.load(XV + row_p + t, mask=okl, other=0.0)
    dg = tl.load(DDIAG + row_p + t, mask=okl, other=0.0)
    xv_p = tl.load(XV + row_p + t - 1, mask=pl, other=0.0)
    dg_p = tl.load(DDIAG + row_p + t - 1, mask=pl, other=0.0)
    qk_p = tl.load(QK + base + t - 1, mask=pl, other=0.0)
    if HAS_DE0:
        de0 = tl.load(DE0 + bh + t * 0, mask=live & (t == 0), other=0.0)
    else:
        de0 = dt * 0.0
    qbe = tl.load(QB + h * N + 2 * ss, mask=e_ok & live_s, other=0.0)
    qbo = tl.load(QB + h * N + 2 * ss + 1, mask=o_ok & live_s, other=0.0)
    kbe = tl.load(KB + h * N + 2 * ss, mask=e_ok & live_s, other=0.0)
    kbo = tl.load(KB + h * N + 2 * ss + 1, mask=o_ok & live_s, other=0.0)
    at = ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + ss[None, :]
    ang = tl.load(ANG + at, mask=okl[:, None] & s_ok[None, :], other=0.0)
    theta = tl.load(THETA_B + (bh.to(tl.int64) * nblk + jt) * S + ss, mask=s_ok & live_s, other=0.0)
    return dt, trap, dt_n, trap_n, xv, dg, xv_p, dg_p, qk_p, de0, qbe, qbo, kbe, kbo, ang, theta


@triton.jit
def _siso_prep_bwd_kernel(
    # pointers: what the forward read or kept (SEQ: a packed row's sequence per step, or None)
    Q, K, QB, KB, ANG, DT, TRAP, QK, THETA_B, SEQ, OFF,
    # pointers: gradients arriving (of q~, k~ per head; scale's is XV, the diagonal's DDIAG; the first e)
    DQR, DKR, XV, DDIAG, DE0,
    # pointers: gradients leaving (DQ, DK per Q/K head, fp32, a plane per split: (SPLIT or more, b, L, HQK, N);
    # QB_PART, KB_PART this block's share of the biases' per head; DDT without the angles' part; SUF, in DANG's
    # place, each step's sum of d theta over the rest of its block, and DTH_SUMS each block's total:
    # _angle_carry_kernel finishes both). The decay's gradient is core.py's _decay_grad_kernel's, once per chunk.
    DQ, DK, QB_PART, KB_PART, SUF, DDT, DTRAP, DTH_SUMS,
    # sizes
    L, H, HQK, N, S, Lp, nblk, nblk_theta,
    # meta-parameters (PAIRS: column pairs a program, a power of two; THETA_EVERY: the forward's angle blocks in
    # one of this kernel's, whose BLOCK_T may be a multiple of the forward's)
    HAS_DE0: tl.constexpr, HAS_SEQ: tl.constexpr, BLOCK_T: tl.constexpr, PAIRS: tl.constexpr,
    SPLIT: tl.constexpr, THETA_EVERY: tl.constexpr, AHEAD: tl.constexpr = False, MERGE: tl.constexpr = False,
):
    # one program per (block of steps, batch row x Q/K head x split, block of column pairs): it walks its share
    # of the heads that read that Q/K head and adds their dQ, dK in registers, so no per-head copy of them
    # reaches memory; the launcher sums the SPLIT planes. The columns past the rotated pairs are pairs turned by
    # angle 0, so one code path serves every column, and the columns split over programs: one program holding
    # all N columns of 16 steps took 188-255 registers, one 8-warp block an SM, latency-bound (ncu, H200
    # 2026-12-03: 1.50 ms, 22% of DRAM bandwidth). The per-step terms are recomputed by every column block
    # (a few loads a step); the first one stores them.
    j = tl.program_id(0)
    pid = tl.program_id(1)
    cb = tl.program_id(2)
    sp = pid % SPLIT
    bg = pid // SPLIT
    bi = bg // HQK
    g = bg % HQK
    nb = tl.num_programs(1) // (HQK * SPLIT)
    planes = DQ + sp.to(tl.int64) * nb * L * HQK * N
    planes_k = DK + sp.to(tl.int64) * nb * L * HQK * N
    t = j * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    ss = cb * PAIRS + tl.arange(0, PAIRS)         # this program's pairs (2 s, 2 s + 1); rotated where s < S
    s_ok = ss < S
    e_ok = 2 * ss < N
    o_ok = 2 * ss + 1 < N
    c = cb * 2 * PAIRS + tl.arange(0, 2 * PAIRS)  # their columns, one contiguous tile
    m2 = ok[:, None] & (c < N)[None, :]
    m = ok[:, None] & s_ok[None, :]
    first = ok & ((t * 0 + cb) == 0)   # a (steps,) mask: the first column block stores the per-step terms
    qrow = ((bi.to(tl.int64) * L + t) * HQK + g) * N
    # Q and K of the group, without bias (each head adds its own), split into the pairs' even and odd columns
    q_e0, q_o0 = _pairs(tl.load(Q + qrow[:, None] + c[None, :], mask=m2, other=0.0).to(tl.float32), BLOCK_T, PAIRS)
    k_e0, k_o0 = _pairs(tl.load(K + qrow[:, None] + c[None, :], mask=m2, other=0.0).to(tl.float32), BLOCK_T, PAIRS)
    dq_e = tl.zeros([BLOCK_T, PAIRS], dtype=tl.float32)
    dq_o = tl.zeros([BLOCK_T, PAIRS], dtype=tl.float32)
    dk_e = tl.zeros([BLOCK_T, PAIRS], dtype=tl.float32)
    dk_o = tl.zeros([BLOCK_T, PAIRS], dtype=tl.float32)
    here = t * 0
    if HAS_SEQ:
        here = tl.load(SEQ + bi.to(tl.int64) * L + t, mask=ok, other=-2)
        same_prev = tl.load(SEQ + bi.to(tl.int64) * L + t - 1, mask=ok & (t >= 1), other=-1) == here
        same_next = tl.load(SEQ + bi.to(tl.int64) * L + t + 1, mask=(t + 1) < L, other=-1) == here
    per = H // HQK
    mine = per // SPLIT
    h0 = g * per + sp * mine
    # the gradient tiles of q~, k~ are read a head ahead: a program's loads in flight bound this kernel (16 KB an SM
    # at every tile and warp count tried, whatever the occupancy: 1.50-1.55 ms, H200 2026-12-04)
    orow = ((bi.to(tl.int64) * L + t) * H + h0) * N
    dqr_next = tl.load(DQR + orow[:, None] + c[None, :], mask=m2, other=0.0)
    dkr_next = tl.load(DKR + orow[:, None] + c[None, :], mask=m2, other=0.0)
    prev_ok = ok & (t >= 1)
    if HAS_SEQ:  # e_t enters step t - 1's scale only inside one sequence
        prev_ok &= same_prev
    jt = j * THETA_EVERY
    if AHEAD:   # the first head's other loads; each head then issues the next one's before it computes
        (n_dt, n_trap, n_dtn, n_trapn, n_xv, n_dg, n_xvp, n_dgp, n_qkp, n_de0, n_qbe, n_qbo, n_kbe, n_kbo, n_ang,
         n_th) = _head_loads(DT, TRAP, XV, DDIAG, QK, DE0, ANG, THETA_B, QB, KB, bi, h0, jt, t, ok, prev_ok, ss, s_ok,
                             e_ok, o_ok, mine > 0, L, H, S, N, Lp, nblk_theta, HAS_DE0)
    for hh in range(mine):
        h = h0 + hh
        bh = bi * H + h
        dqr_tile = dqr_next
        dkr_tile = dkr_next
        ahead = m2 & ((t * 0 + hh + 1) < mine)[:, None]   # (a scalar condition as a tile: the interpreter wants one)
        orow = ((bi.to(tl.int64) * L + t) * H + h + 1) * N
        dqr_next = tl.load(DQR + orow[:, None] + c[None, :], mask=ahead, other=0.0)
        dkr_next = tl.load(DKR + orow[:, None] + c[None, :], mask=ahead, other=0.0)
        if AHEAD:
            (c_dt, c_trap, c_dtn, c_trapn, c_xv, c_dg, c_xvp, c_dgp, c_qkp, c_de0, c_qbe, c_qbo, c_kbe, c_kbo, c_ang,
             c_th) = (n_dt, n_trap, n_dtn, n_trapn, n_xv, n_dg, n_xvp, n_dgp, n_qkp, n_de0, n_qbe, n_qbo, n_kbe, n_kbo,
                      n_ang, n_th)
            (n_dt, n_trap, n_dtn, n_trapn, n_xv, n_dg, n_xvp, n_dgp, n_qkp, n_de0, n_qbe, n_qbo, n_kbe, n_kbo, n_ang,
             n_th) = _head_loads(DT, TRAP, XV, DDIAG, QK, DE0, ANG, THETA_B, QB, KB, bi, h + 1, jt, t, ok, prev_ok,
                                 ss, s_ok, e_ok, o_ok, hh + 1 < mine, L, H, S, N, Lp, nblk_theta, HAS_DE0)
        else:
            (c_dt, c_trap, c_dtn, c_trapn, c_xv, c_dg, c_xvp, c_dgp, c_qkp, c_de0, c_qbe, c_qbo, c_kbe, c_kbo, c_ang,
             c_th) = _head_loads(DT, TRAP, XV, DDIAG, QK, DE0, ANG, THETA_B, QB, KB, bi, h, jt, t, ok, prev_ok, ss,
                                 s_ok, e_ok, o_ok, 1, L, H, S, N, Lp, nblk_theta, HAS_DE0)
        base = bh.to(tl.int64) * L
        dt = c_dt.to(tl.float32)
        lam = tl.sigmoid(c_trap.to(tl.float32))
        e_next = c_dtn.to(tl.float32) * (1.0 - tl.sigmoid(c_trapn.to(tl.float32)))

        # scale_t = lam_t dt_t + e_{t+1} and diag_t = -e_{t+1} qk_t, with e_t = dt_t (1 - lam_t)
        d_scale = c_xv
        d_diag = c_dg
        if HAS_SEQ:  # a sequence's last step has no next
            e_next = tl.where(same_next, e_next, 0.0)
        d_e = c_xvp - c_dgp * c_qkp
        if HAS_DE0:
            d_e = tl.where(t == 0, c_de0, d_e)
        d_qk = -d_diag * e_next

        q_e = q_e0 + c_qbe[None, :]
        q_o = q_o0 + c_qbo[None, :]
        k_e = k_e0 + c_kbe[None, :]
        k_o = k_o0 + c_kbo[None, :]
        d_qe, d_qo = _pairs(dqr_tile.to(tl.float32), BLOCK_T, PAIRS)
        d_ke, d_ko = _pairs(dkr_tile.to(tl.float32), BLOCK_T, PAIRS)
        if cb * PAIRS < S:
            # the rotations, recomputed from the angle entering the block (angle 0 past the rotated pairs)
            tw = _tanh(c_ang.to(tl.float32))
            at = ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + ss[None, :]
            th = c_th[None, :] + tl.cumsum(3.141592653589793 * tw * dt[:, None], axis=0)
            if HAS_SEQ:
                th -= tl.load(OFF + (here.to(tl.int64) * H + h)[:, None] * S + ss[None, :], mask=m, other=0.0)
            cos, sin = cos_sin(th)
            gq_e, gq_o, dth = _unrotate(q_e, q_o, d_qe, d_qo, cos, sin)
            gk_e, gk_o, dth_k = _unrotate(k_e, k_o, d_ke, d_ko, cos, sin)
            # theta_t is a running sum: its increment at step r gets sum_{t >= r} d theta_t; here the steps of
            # this block, the later blocks' part (and the end of a packed sequence) is applied by _angle_carry_kernel
            dth = tl.where(m, dth + dth_k, 0.0)
            total = tl.sum(dth, axis=0)
            tl.store(DTH_SUMS + (bh.to(tl.int64) * nblk + j) * S + ss, total, mask=s_ok)
            tl.store(SUF + at, total[None, :] - tl.cumsum(dth, axis=0) + dth, mask=m)
        else:
            # a column block past the rotated pairs (half of them at Mamba-3's default rope fraction): turned by
            # angle 0, its gradients pass through, and no angle gradient is stored (no trig, no running sum)
            gq_e, gq_o, gk_e, gk_o = d_qe, d_qo, d_ke, d_ko
        gq_e += d_qk[:, None] * k_e
        gq_o += d_qk[:, None] * k_o
        gk_e += d_qk[:, None] * q_e
        gk_o += d_qk[:, None] * q_o
        dq_e += gq_e
        dq_o += gq_o
        dk_e += gk_e
        dk_o += gk_o
        # this block's share of the head's bias gradients (padding steps and columns hold zeros)
        part = ((j.to(tl.int64) * nb + bi) * H + h) * N
        if MERGE:   # the four column sums in one reduction across the lanes, each bias's stored as one row
            sq_e, sq_o, sk_e, sk_o = tl.reduce((gq_e, gq_o, gk_e, gk_o), 0, add4)
            tl.store(QB_PART + part + c, tl.reshape(tl.join(sq_e, sq_o), (2 * PAIRS,)), mask=c < N)
            tl.store(KB_PART + part + c, tl.reshape(tl.join(sk_e, sk_o), (2 * PAIRS,)), mask=c < N)
        else:
            tl.store(QB_PART + part + 2 * ss, tl.sum(gq_e, axis=0), mask=e_ok)
            tl.store(QB_PART + part + 2 * ss + 1, tl.sum(gq_o, axis=0), mask=o_ok)
            tl.store(KB_PART + part + 2 * ss, tl.sum(gk_e, axis=0), mask=e_ok)
            tl.store(KB_PART + part + 2 * ss + 1, tl.sum(gk_o, axis=0), mask=o_ok)

        tl.store(DDT + base + t, d_scale * lam + d_e * (1.0 - lam), mask=first)
        tl.store(DTRAP + base + t, ((d_scale - d_e) * dt * lam * (1.0 - lam)).to(DTRAP.dtype.element_ty), mask=first)
    tl.store(planes + qrow[:, None] + c[None, :], _interleave(dq_e, dq_o, BLOCK_T, PAIRS), mask=m2)
    tl.store(planes_k + qrow[:, None] + c[None, :], _interleave(dk_e, dk_o, BLOCK_T, PAIRS), mask=m2)


@triton.jit
def _seq_tail_kernel(SUF, CARRY, CU, TAIL, L, H, S, nblk, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """Packed row (batch 1), per (sequence, head): ``TAIL`` the sum of d theta over every step after the
    sequence (``SUF`` at the next step plus the later blocks' ``CARRY``), which its own steps must not get."""
    i = tl.program_id(0)
    h = tl.program_id(1)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    nxt = tl.minimum(tl.maximum(tl.load(CU + i + 1), 0), L)
    inside = s_ok & ((ss * 0 + nxt) < L)
    at = (nxt.to(tl.int64) * H + h) * S + ss
    tail = (tl.load(SUF + at, mask=inside, other=0.0)
            + tl.load(CARRY + (h.to(tl.int64) * nblk + nxt // BLOCK_T) * S + ss, mask=inside, other=0.0))
    tl.store(TAIL + (i * H + h) * S + ss, tail, mask=s_ok)


@triton.jit
def _angle_carry_kernel(ANG, DT, CARRY, SEQ, TAIL, DTHF, DANG, DDT, L, H, S, nblk, SAL, SAH, HAS_SEQ: tl.constexpr,
                        BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """Each step's whole d theta suffix, ``G = SUF + CARRY[block]`` (``SUF`` read from ``DANG``), less what lies
    past its packed sequence (``TAIL``) plus that sequence's final-angle gradient (``DTHF``); then
    ``DANG = G pi (1 - tanh^2) DT`` and ``DDT += sum G pi tanh`` (both fp32, in place)."""
    j, bh, bi, h, t, ok = chunk_row(L, H, BLOCK_T)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    tw, at, m = _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S, SAL, SAH)
    g = tl.load(DANG + at, mask=m, other=0.0) + tl.load(CARRY + (bh.to(tl.int64) * nblk + j) * S + ss, mask=s_ok,
                                                         other=0.0)[None, :]
    if HAS_SEQ:
        seq = (tl.load(SEQ + bi.to(tl.int64) * L + t, mask=ok, other=0).to(tl.int64) * H + h)[:, None] * S + ss[None, :]
        g += tl.load(DTHF + seq, mask=m, other=0.0) - tl.load(TAIL + seq, mask=m, other=0.0)
    tl.store(DANG + at, g * 3.141592653589793 * (1.0 - tw * tw) * dt[:, None], mask=m)
    extra = tl.sum(tl.where(m, g * 3.141592653589793 * tw, 0.0), axis=1)
    tl.store(DDT + bh.to(tl.int64) * L + t, tl.load(DDT + bh.to(tl.int64) * L + t, mask=ok, other=0.0) + extra, mask=ok)


def angle_rows(Angles: torch.Tensor) -> tuple:
    """``(Angles, step stride, head stride)`` as :func:`_rate` reads ``Angles (b, L, H, S)``: itself where its pairs
    are contiguous and its batch stride is ``L`` steps (a block's projection columns expanded over the heads: head
    stride 0), else a contiguous copy. A single step's stride is its batch stride; a single head's is 0."""
    b, L, H, S = Angles.shape
    sb, sl, sh, sp = Angles.stride()
    sl = sb if L == 1 else sl
    sh = 0 if H == 1 else sh
    if (S > 1 and sp != 1) or (b > 1 and sb != L * sl):
        Angles = Angles.contiguous()
        sl, sh = H * S, S
    return Angles, sl, sh


angle_sums_kernel = Kernel(_angle_sums_kernel)
block_prefix_kernel = Kernel(_block_prefix_kernel, flags=dict(HAS_INIT="INIT"))
def heads_per_program(H: int, HQK: int, most: int = 4) -> int:
    """The largest divisor of ``H // HQK`` (the heads reading one Q/K head) up to ``most``."""
    per = H // HQK
    return max(d for d in range(1, min(per, most) + 1) if per % d == 0)


# problem: (b, L, H, HQK, N, S, chunk, steps per program, dtype, packed?)
def _prep_key(p):
    b, L, *rest = p
    return (bucket(b * L), *rest)


def _prep_rule(p, mode):
    # several heads per program read their Q/K head once: ncu on the H200 (2026-12-02) found the one-head
    # program bound by L2 traffic (85% of it), a third of which was every head re-reading the group's Q and K
    return dict(HEADS=heads_per_program(p[2], p[3]), num_warps=4)


def _prep_alternatives(p, mode):
    most = heads_per_program(p[2], p[3])
    return [dict(HEADS=1), dict(HEADS=1, num_warps=8), dict(HEADS=most, num_warps=8),
            dict(HEADS=heads_per_program(p[2], p[3], 8), num_warps=8)]


def _blocks(p) -> int:
    """Prep programs per row: the padded length over the steps per program."""
    L, chunk, bt = p[1], p[6], p[7]
    return -(-L // chunk) * chunk // bt


siso_prep_kernel = TunableKernel("mamba3_prep", _siso_prep_kernel, rule=_prep_rule, alternatives=_prep_alternatives,
                                 key=_prep_key, grid=lambda p, kw: (_blocks(p), p[0] * p[2] // kw["HEADS"]),
                                 flags=dict(HAS_SEQ="SEQ"))
@triton.jit
def _sum_planes_kernel(PLANES, OUT_Q, OUT_K, n, planes, USED: tl.constexpr, BLOCK: tl.constexpr):
    """``OUT_Q``, ``OUT_K`` (in their own dtype): the sums of the first ``USED`` of the prep backward's fp32 planes
    of dQ and of dK, ``PLANES (2, planes, n)`` (dQ's first); program axis 1 picks which."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = i < n
    which = tl.program_id(1)
    at = PLANES + which.to(tl.int64) * planes * n + i
    acc = tl.load(at, mask=ok, other=0.0)
    for sp in tl.static_range(1, USED):
        acc += tl.load(at + sp * n, mask=ok, other=0.0)
    if which == 0:
        tl.store(OUT_Q + i, acc.to(OUT_Q.dtype.element_ty), mask=ok)
    else:
        tl.store(OUT_K + i, acc.to(OUT_K.dtype.element_ty), mask=ok)


sum_planes_kernel = Kernel(_sum_planes_kernel)


def sum_planes(planes, used: int, dtype):
    """``(dQ, dK)`` in ``dtype`` from the prep backward's ``planes (2, split, b, L, HQK, N)`` fp32, its first
    ``used`` planes summed: one launch for both (they were two reductions and two casts)."""
    shape = planes.shape[2:]
    n = planes[0, 0].numel()
    dq = torch.empty(shape, device=planes.device, dtype=dtype)
    dk = torch.empty(shape, device=planes.device, dtype=dtype)
    block = 1024
    sum_planes_kernel((cdiv(n, block), 2), PLANES=planes, OUT_Q=dq, OUT_K=dk, n=n, planes=planes.shape[1], USED=used,
                      BLOCK=block)
    return dq, dk


def bwd_splits(H: int, HQK: int) -> list[int]:
    """The prep backward's choices of programs per Q/K head (each walks ``H / HQK / split`` heads; the launcher
    sums the ``split`` planes of dQ, dK): the divisors of the heads per Q/K head up to 4."""
    per = H // HQK
    return [d for d in (1, 2, 4) if per % d == 0]


def _pair_blocks(p, pairs: int) -> int:
    """Column blocks of the prep backward: the ``ceil(N / 2)`` column pairs over ``pairs`` a program."""
    return cdiv(cdiv(p[4], 2), pairs)


def _most_pairs(p) -> int:
    """The widest column block: every pair of a row."""
    return max(2, next_power_of_2(cdiv(p[4], 2)))


def _bwd_rule(p, mode):
    # the interpreter takes the most planes and few pairs a program, so that tests cross both sums and a column
    # block holds rotated and unrotated pairs; on sm_90, 16 pairs and 4 warps keep a program at 128-156
    # registers (all 64 pairs of N = 128 took 255 with a spill stack: tests/sm90_compile.py --resources)
    if mode.interpreted:
        return dict(SPLIT=bwd_splits(p[2], p[3])[-1], PAIRS=4)
    return dict(SPLIT=1, PAIRS=min(16, _most_pairs(p)), num_warps=4)


def _bwd_alternatives(p, mode):
    most = _most_pairs(p)
    shapes = dict.fromkeys((min(n, most), w) for n, w in ((8, 4), (16, 4), (16, 8), (32, 8), (64, 8)))
    return [dict(SPLIT=d, PAIRS=n, num_warps=w) for d in bwd_splits(p[2], p[3])[:2] for n, w in shapes]


siso_prep_bwd_kernel = TunableKernel("mamba3_prep_bwd_pairs", _siso_prep_bwd_kernel, key=_prep_key, rule=_bwd_rule,
                                     alternatives=_bwd_alternatives,
                                     grid=lambda p, kw: (_blocks(p), p[0] * p[3] * kw["SPLIT"],
                                                         _pair_blocks(p, kw["PAIRS"])),
                                     flags=dict(HAS_DE0="DE0", HAS_SEQ="SEQ"))
angle_carry_kernel = Kernel(_angle_carry_kernel, flags=dict(HAS_SEQ="SEQ"))
seq_angles_kernel = Kernel(_seq_angles_kernel)
seq_tail_kernel = Kernel(_seq_tail_kernel)
