"""Mamba-3 MIMO's prep backward with the ranks as a tensor dimension (``SSM_TRITON_MIMO_PREP_BWD_RANKS=1``): the
gradients of ``mimo.prep_forward`` in one program per (step block, row x Q/K head, block of column pairs) for
every rank, instead of one program per rank.

Why: ``mimo._prep_bwd_kernel`` (a program per rank ``r``) computes, for each of the ``H / Hqk`` heads it walks, the
angle's cos / sin and the turned ``q~_s, k~_s`` of every rank ``s`` its scores' terms read: ``R`` times the trig
and ``2 R^2`` turns a head across its ``R`` programs, where one program holding the ranks needs the trig once and
``2 R`` turns; and it stores the angle's gradient per rank, ``(R, b, L, H, S)`` fp32, for PyTorch to sum (at B8
L4096 H32 R4 S32 a 537 MB store and a sum; the prep backward took 5.4 ms of MIMO's 23.5 on an H100, 2026-12-06).
Here the rank tiles are ``(BLOCK_R, BLOCK_T, BLOCK_H)`` and the scores' rank sums are contractions over that axis
(``(BLOCK_R, BLOCK_R, BLOCK_T, BLOCK_H)`` products summed over the second), the angle's gradient summed over the
ranks in the program and stored once, ``(b, L, H, S)``.

The terms, per head ``h`` and rank ``r`` (``x' = x + bias[h, r]``, ``x~`` turned by the step's angle, pairs
``(i, i + N/2)``): ``dq'_r = Rot^T (dq~_r + sum_{s <= r} dscc[r, s] k~_s) + sum_s dsc[r, s] k'_s``, ``dk'_r`` the
same with ``dk~_r``, ``dscc[s, r]`` for ``s >= r`` over ``q~_s`` and ``dsc[s, r]`` over ``q'_s``; the angle takes
``(g_2 x~_1 - g_1 x~_2)`` of both sides, ``g`` the turned-space gradient. ``dQ, dK`` sum the heads sharing the Q/K
head; the biases' partials are each block's column sums.
"""
import os

import triton
import triton.language as tl

from .mimo import _angles, _turn

# 0 keeps mimo._prep_bwd_kernel (a program per rank); untimed (2026-12-07), off by default
PREP_BWD_RANKS = os.environ.get("SSM_TRITON_MIMO_PREP_BWD_RANKS", "0")


@triton.jit
def _rank_halves(PTR, at, hs, m, N):
    """The halves ``(i, N/2 + i)`` at row offsets ``at (BLOCK_R, BLOCK_T, 1)``, fp32."""
    x1 = tl.load(PTR + at + hs[None, None, :], mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(PTR + at + N // 2 + hs[None, None, :], mask=m, other=0.0).to(tl.float32)
    return x1, x2


@triton.jit
def _contract(w, x):
    """``sum_s w[r, s, t] x[s, t, :]``: ``w (BLOCK_R, BLOCK_R, BLOCK_T)``, ``x (BLOCK_R, BLOCK_T, BLOCK_H)``."""
    return tl.sum(w[:, :, :, None] * x[None, :, :, :], axis=1)


@triton.jit
def _prep_bwd_ranks_kernel(Q, K, QB, KB, THETA, DQR, DKR, DSC, DSCC, DQ, DK, DQB, DKB, DTH,
                           nb, L, H, Hqk, N, S,
                           R: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
                           FAST_TRIG: tl.constexpr = False):
    """``Q, K (b, L, R, Hqk, N)``; ``QB, KB (H, R, N)`` fp32; ``THETA (b, L, H, S)`` fp32; ``DQR, DKR (b, L, R, H, N)``
    the stages' gradients of ``q~, k~``; ``DSC, DSCC (b, L, H, R, R)`` fp32 the scores'. Writes ``DQ, DK`` (``Q``'s
    shape and dtype), ``DQB, DKB (step blocks, b, H, R, N)`` fp32 partials, ``DTH (b, L, H, S)`` fp32."""
    bk = tl.program_id(1)
    bi = bk // Hqk
    hk = bk % Hqk
    half = N // 2
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    hs = tl.program_id(2) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = hs < half
    rr = tl.arange(0, BLOCK_R)
    r_ok = rr < R
    m = r_ok[:, None, None] & ok[None, :, None] & h_ok[None, None, :]
    group = H // Hqk
    step = bi.to(tl.int64) * L + t
    # rows (b, t, r, hk) of Q, K: (BLOCK_R, BLOCK_T, 1) offsets
    qk_at = ((step[None, :] * R + rr[:, None]) * Hqk + hk)[:, :, None] * N
    q1, q2 = _rank_halves(Q, qk_at, hs, m, N)
    k1, k2 = _rank_halves(K, qk_at, hs, m, N)
    # the scores' (r, s) and (s, r) entries, per step: (BLOCK_R, BLOCK_R, BLOCK_T) offsets past (step, h)
    rs = (rr[:, None] * R + rr[None, :])[:, :, None]
    sr = (rr[None, :] * R + rr[:, None])[:, :, None]
    w_ok = (r_ok[:, None] & r_ok[None, :])[:, :, None] & ok[None, None, :]
    lower = (rr[:, None] >= rr[None, :])[:, :, None]     # s <= r
    upper = (rr[:, None] <= rr[None, :])[:, :, None]     # s >= r
    bias_at = rr[:, None, None] * N + hs[None, None, :]
    bias_ok = r_ok[:, None, None] & h_ok[None, None, :]
    dq1 = tl.zeros([BLOCK_R, BLOCK_T, BLOCK_H], dtype=tl.float32)
    dq2 = tl.zeros([BLOCK_R, BLOCK_T, BLOCK_H], dtype=tl.float32)
    dk1 = tl.zeros([BLOCK_R, BLOCK_T, BLOCK_H], dtype=tl.float32)
    dk2 = tl.zeros([BLOCK_R, BLOCK_T, BLOCK_H], dtype=tl.float32)
    turned = tl.program_id(2) * BLOCK_H < S
    for j in range(group):
        h = hk * group + j
        if turned:
            cos, sin = _angles(THETA, bi, t, h, ok, L, H, S, hs, FAST_TRIG)
        else:   # a column block past the turned pairs: no trig
            cos = tl.full([BLOCK_T, BLOCK_H], 1.0, tl.float32)
            sin = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
        cos = cos[None, :, :]
        sin = sin[None, :, :]
        qp1 = q1 + tl.load(QB + h * R * N + bias_at, mask=bias_ok, other=0.0)
        qp2 = q2 + tl.load(QB + h * R * N + half + bias_at, mask=bias_ok, other=0.0)
        kp1 = k1 + tl.load(KB + h * R * N + bias_at, mask=bias_ok, other=0.0)
        kp2 = k2 + tl.load(KB + h * R * N + half + bias_at, mask=bias_ok, other=0.0)
        qt1, qt2 = _turn(qp1, qp2, cos, sin)
        kt1, kt2 = _turn(kp1, kp2, cos, sin)
        grad_at = ((step[None, :] * R + rr[:, None]) * H + h)[:, :, None] * N
        gq1, gq2 = _rank_halves(DQR, grad_at, hs, m, N)
        gk1, gk2 = _rank_halves(DKR, grad_at, hs, m, N)
        score_at = ((step * H + h) * R * R)[None, None, :]
        w = tl.where(lower, tl.load(DSCC + score_at + rs, mask=w_ok, other=0.0), 0.0)
        gq1 += _contract(w, kt1)
        gq2 += _contract(w, kt2)
        w = tl.where(upper, tl.load(DSCC + score_at + sr, mask=w_ok, other=0.0), 0.0)
        gk1 += _contract(w, qt1)
        gk2 += _contract(w, qt2)
        dth = tl.sum(gq2 * qt1 - gq1 * qt2 + gk2 * kt1 - gk1 * kt2, axis=0)
        w = tl.load(DSC + score_at + rs, mask=w_ok, other=0.0)
        pq1 = gq1 * cos + gq2 * sin + _contract(w, kp1)
        pq2 = gq2 * cos - gq1 * sin + _contract(w, kp2)
        w = tl.load(DSC + score_at + sr, mask=w_ok, other=0.0)
        pk1 = gk1 * cos + gk2 * sin + _contract(w, qp1)
        pk2 = gk2 * cos - gk1 * sin + _contract(w, qp2)
        dq1 += pq1
        dq2 += pq2
        dk1 += pk1
        dk2 += pk2
        part = (((tl.program_id(0).to(tl.int64) * nb + bi) * H + h) * R + rr)[:, None] * N + hs[None, :]
        p_ok = r_ok[:, None] & h_ok[None, :]
        tl.store(DQB + part, tl.sum(pq1, axis=1), mask=p_ok)
        tl.store(DQB + part + half, tl.sum(pq2, axis=1), mask=p_ok)
        tl.store(DKB + part, tl.sum(pk1, axis=1), mask=p_ok)
        tl.store(DKB + part + half, tl.sum(pk2, axis=1), mask=p_ok)
        th_at = ((step * H + h) * S)[:, None] + hs[None, :]
        tl.store(DTH + th_at, dth, mask=ok[:, None] & (hs < S)[None, :])
    tl.store(DQ + qk_at + hs[None, None, :], dq1.to(DQ.dtype.element_ty), mask=m)
    tl.store(DQ + qk_at + half + hs[None, None, :], dq2.to(DQ.dtype.element_ty), mask=m)
    tl.store(DK + qk_at + hs[None, None, :], dk1.to(DK.dtype.element_ty), mask=m)
    tl.store(DK + qk_at + half + hs[None, None, :], dk2.to(DK.dtype.element_ty), mask=m)
