"""Mamba-3 SISO's decode step: one token, each (batch row, head) in programs of ``STEP_ROWS`` state rows (or in
one program).

``theta' = theta + pi tanh(Angles) DT`` (mod 2 pi); ``q~, k~`` rotated by ``theta'``;
``H' = exp(ADT) H + (1 - lam) DT exp(ADT) v k~_prev^T + lam DT v_new k~^T``; ``out = (H' q~ + D v_new) silu(Z)``;
the new states are ``(theta', H', k~, v_new)``. For the ``Mamba3`` block (``PRE``, ``NORM``) the kernel also makes
``DT`` and ``ADT`` from the projection's logits and normalises ``Q`` and ``K``; its inputs may be slices of the
projection's row.

A program reads every old state value before it writes the new one (the angle and ``k~`` first, then its state
rows, ``v`` with them), so the outputs may be the inputs: the state is then updated in place; where a pair's
rows are split over programs, the new angle and ``k~`` are written by the last program of the pair to have read
the old ones (``last_to_read``). Otherwise the new states go to new tensors (no copy of the old ones first), the states in may
be absent (zeros: ``HAS_STATES`` off, no fill launched), and ``v`` is not stored when ``VS_OUT`` is None (the
new ``v`` state is the token's ``V`` itself).
"""
import functools
import os

import torch
import triton
import triton.language as tl

from ..host import next_power_of_2
from ..tuning import Launch, OneLaunch, TunableKernel
from ..activations import softplus
from ..arrivals import counters, last_arrival
from .prep import _tanh


@triton.jit
def step_terms(DT, TRAP, ADT, DTB, A_FLOOR, sD, sA, sT, H, HQK, PRE: tl.constexpr):
    """A (batch row x head) program's ``(bh, batch row (int64), head, Q/K head, DT, alpha, beta, gamma)``: the
    trapezoid's weights of the decayed state, the previous token's and this token's outer products. ``DT``,
    ``ADT``, ``TRAP`` are ``(b, H)`` with batch strides ``sD, sA, sT``; with ``PRE`` they hold the block's
    logits ``dd_dt, dd_A``: ``DT = softplus(dd_dt + DTB[h])``, ``ADT = min(-softplus(dd_A), -A_FLOOR) DT``."""
    bh = tl.program_id(0)
    bi = bh // H
    h = bh % H
    row = bi.to(tl.int64)
    dt = tl.load(DT + row * sD + h).to(tl.float32)
    adt = tl.load(ADT + row * sA + h).to(tl.float32)
    if PRE:
        dt = softplus(dt + tl.load(DTB + h).to(tl.float32))
        adt = tl.minimum(-softplus(adt), -A_FLOOR) * dt
    lam = tl.sigmoid(tl.load(TRAP + row * sT + h).to(tl.float32))
    alpha = tl.exp(adt)
    return bh, row, h, h // (H // HQK), dt, alpha, (1.0 - lam) * dt * alpha, lam * dt


@triton.jit
def new_angle(ANG, THETA, row, sG, h, sGh, bh, S, ix, ok, dt, HAS_STATES: tl.constexpr):
    """The running angle after this token at angle indices ``ix`` (``ok``): the state's (zero without
    ``HAS_STATES``) ``+ pi tanh(Angles) DT``, fp32, reduced to ``[0, 2 pi)``."""
    theta = 3.141592653589793 * _tanh(tl.load(ANG + row * sG + h * sGh + ix, mask=ok, other=0.0).to(tl.float32)) * dt
    if HAS_STATES:
        theta += tl.load(THETA + bh * S + ix, mask=ok, other=0.0).to(tl.float32)
    return theta - 6.283185307179586 * tl.floor(theta / 6.283185307179586)


@triton.jit
def _pairs(X, XB, XW, row, h, ss, s_ok, rs, r_ok, N, EPS, NORM: tl.constexpr):
    """One row of ``X`` [normalised: ``X / rms(X) * XW``] ``+ bias`` as its even, odd and pass-through
    columns, fp32."""
    x_e = tl.load(X + row + 2 * ss, mask=s_ok, other=0.0).to(tl.float32)
    x_o = tl.load(X + row + 2 * ss + 1, mask=s_ok, other=0.0).to(tl.float32)
    x_r = tl.load(X + row + rs, mask=r_ok, other=0.0).to(tl.float32)
    if NORM:   # the block's RMSNorm on B and C, kept in fp32 (the composed step rounds it to the input's dtype)
        rstd = 1.0 / tl.sqrt((tl.sum(x_e * x_e) + tl.sum(x_o * x_o) + tl.sum(x_r * x_r)) / N + EPS)
        x_e = x_e * rstd * tl.load(XW + 2 * ss, mask=s_ok, other=0.0).to(tl.float32)
        x_o = x_o * rstd * tl.load(XW + 2 * ss + 1, mask=s_ok, other=0.0).to(tl.float32)
        x_r = x_r * rstd * tl.load(XW + rs, mask=r_ok, other=0.0).to(tl.float32)
    hb = XB + h * N
    x_e += tl.load(hb + 2 * ss, mask=s_ok, other=0.0).to(tl.float32)
    x_o += tl.load(hb + 2 * ss + 1, mask=s_ok, other=0.0).to(tl.float32)
    x_r += tl.load(hb + rs, mask=r_ok, other=0.0).to(tl.float32)
    return x_e, x_o, x_r


@triton.jit
def _new_state(SSM, cell, m, alpha, beta, gamma, v_prev, v, k_prev, k, HAS_STATES: tl.constexpr):
    """One column group of the state rows, decayed and with the two outer products added (not yet stored)."""
    if HAS_STATES:
        state = tl.load(SSM + cell, mask=m, other=0.0).to(tl.float32)
        return alpha * state + beta * v_prev[:, None] * k_prev[None, :] + gamma * v[:, None] * k[None, :]
    # from zero states: neither the decayed state nor the previous token's term
    return gamma * v[:, None] * k[None, :]


@triton.jit
def _update(SSM, SSM_OUT, cell, m, alpha, beta, gamma, v_prev, v, k_prev, k, q, HAS_STATES: tl.constexpr):
    """One column group of the state rows updated and stored on its own (see the barrier's note in the
    kernel); returns its share of ``H q``."""
    state = _new_state(SSM, cell, m, alpha, beta, gamma, v_prev, v, k_prev, k, HAS_STATES)
    tl.debug_barrier()
    tl.store(SSM_OUT + cell, state.to(SSM_OUT.dtype.element_ty), mask=m)
    return tl.sum(state * q[None, :], axis=1)


@triton.jit
def turned_rows(X, XB, XW, rows, bias_rows, ns, partner, rk_ok, n_ok, p_ok, cos, sin, N, EPS, NORM: tl.constexpr):
    """Rows (ranks, columns) of ``X`` at ``rows`` [normalised: ``X / rms(X) * XW``] ``+`` the bias rows, turned:
    column ``n`` takes ``x[n] cos + x[partner[n]] sin`` (``sin`` carries each column's sign; ``p_ok`` where a partner
    is read). MIMO turns half-split pairs, SISO's whole-row step interleaved ones (one row)."""
    m = rk_ok[:, None] & n_ok[None, :]
    x = tl.load(X + rows[:, None] + ns[None, :], mask=m, other=0.0).to(tl.float32)
    mp = rk_ok[:, None] & p_ok[None, :]
    xp = tl.load(X + rows[:, None] + partner[None, :], mask=mp, other=0.0).to(tl.float32)
    if NORM:   # the block's RMSNorm on B and C (each rank's row), kept in fp32
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / N + EPS)
        x = x * rstd[:, None] * tl.load(XW + ns, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        xp = xp * rstd[:, None] * tl.load(XW + partner, mask=p_ok, other=0.0).to(tl.float32)[None, :]
    x += tl.load(XB + bias_rows[:, None] + ns[None, :], mask=m, other=0.0).to(tl.float32)
    xp += tl.load(XB + bias_rows[:, None] + partner[None, :], mask=mp, other=0.0).to(tl.float32)
    return x * cos[None, :] + xp * sin[None, :]


@triton.jit
def _siso_step_whole(Q, K, V, ADT, DT, TRAP, QB, KB, ANG, D, Z, DTB, QW, KW, THETA, SSM, KS, VS, THETA_OUT, SSM_OUT,
                     KS_OUT, VS_OUT, OUT, CNT, sQ, sK, sV, sZ, sA, sD, sT, sG, sGh, H, HQK, P, N, S, A_FLOOR, EPS,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                     HAS_STATES: tl.constexpr, STORE_V: tl.constexpr, PRE: tl.constexpr, NORM: tl.constexpr,
                     SPLIT: tl.constexpr):
    """The step with whole state rows (``WHOLE``): q~, k~ and the previous k~ as full rows of N columns, each
    rotated pair's angle computed for both its columns, so the state rows are one packed ``(BLOCK_P, N)`` tile,
    read and written whole (the split form reads its even and odd columns as two strided tiles and the rest as a
    third, each behind its own barrier)."""
    bh, row, h, g, dt, alpha, beta, gamma = step_terms(DT, TRAP, ADT, DTB, A_FLOOR, sD, sA, sT, H, HQK, PRE)
    ns = tl.arange(0, BLOCK_N)
    n_ok = ns < N
    turned = ns < 2 * S
    half = ns // 2
    theta = new_angle(ANG, THETA, row, sG, h, sGh, bh, S, half, turned, dt, HAS_STATES)
    cos = tl.where(turned, tl.cos(theta), 1.0)
    # column n of a pair takes x[n] cos - x[n + 1] sin (even n) or x[n - 1] sin + x[n] cos (odd)
    sin = tl.where(turned, tl.where(ns % 2 == 0, -tl.sin(theta), tl.sin(theta)), 0.0)
    pair = ns ^ 1
    one = tl.arange(0, 1)   # q~, k~ as one row of turned_rows, then as vectors
    q = tl.sum(turned_rows(Q + row * sQ, QB, QW, one + g * N, one + h * N, ns, pair, one < 1, n_ok, turned, cos, sin,
                           N, EPS, NORM), axis=0)
    k = tl.sum(turned_rows(K + row * sK, KB, KW, one + g * N, one + h * N, ns, pair, one < 1, n_ok, turned, cos, sin,
                           N, EPS, NORM), axis=0)
    krow = bh.to(tl.int64) * N
    if HAS_STATES:
        k_prev = tl.load(KS + krow + ns, mask=n_ok, other=0.0).to(tl.float32)
    else:
        k_prev = tl.zeros([BLOCK_N], dtype=tl.float32)
    if HAS_D:
        skip = tl.load(D + h).to(tl.float32)
    for p0 in range(tl.program_id(1) * BLOCK_P if SPLIT else 0, P, P if SPLIT else BLOCK_P):
        ps = p0 + tl.arange(0, BLOCK_P)
        p_ok = ps < P
        at = bh.to(tl.int64) * P + ps
        v = tl.load(V + row * sV + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)
        cell = at[:, None] * N + ns[None, :]
        m = p_ok[:, None] & n_ok[None, :]
        if HAS_STATES:
            v_prev = tl.load(VS + at, mask=p_ok, other=0.0).to(tl.float32)
        else:
            v_prev = tl.zeros([BLOCK_P], dtype=tl.float32)
        state = _new_state(SSM, cell, m, alpha, beta, gamma, v_prev, v, k_prev, k, HAS_STATES)
        # in place: every thread's reads (the tile, v_prev) before any store (the split form's note)
        tl.debug_barrier()
        tl.store(SSM_OUT + cell, state.to(SSM_OUT.dtype.element_ty), mask=m)
        y = tl.sum(state * q[None, :], axis=1)
        if STORE_V:
            tl.store(VS_OUT + at, v.to(VS_OUT.dtype.element_ty), mask=p_ok)
        if HAS_D:
            y += skip * v
        if HAS_Z:
            z = tl.load(Z + row * sZ + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(OUT + at, y.to(OUT.dtype.element_ty), mask=p_ok)
    tl.debug_barrier()   # the previous k~ and the angle, read at the start by every warp
    if last_to_read(CNT, bh, SPLIT):
        tl.store(KS_OUT + krow + ns, k.to(KS_OUT.dtype.element_ty), mask=n_ok)
        tl.store(THETA_OUT + bh * S + half, theta.to(THETA_OUT.dtype.element_ty), mask=turned & (ns % 2 == 0))


@triton.jit
def _siso_step_kernel(
    # pointers: inputs of this token (Q, K (b, Hqk, N); V, Z (b, H, P); ADT, DT, TRAP (b, H); ANG (b, H, S): each
    # packed after its batch dim, ANG's head dim any stride), the block's parameters under PRE / NORM (DTB (H,);
    # QW, KW (N,))
    Q, K, V, ADT, DT, TRAP, QB, KB, ANG, D, Z, DTB, QW, KW,
    # pointers: states in (absent without HAS_STATES), states out (may be the same tensors; VS_OUT absent
    # without STORE_V), output; in place, one counter per (batch row, head) (``last_to_read``)
    THETA, SSM, KS, VS, THETA_OUT, SSM_OUT, KS_OUT, VS_OUT, OUT, CNT,
    # the inputs' batch strides (ANG's head stride too: 0 where the heads share one row of angles)
    sQ, sK, sV, sZ, sA, sD, sT, sG, sGh,
    # sizes; the block's decay floor and norm epsilon (read under PRE / NORM)
    H, HQK, P, N, S, A_FLOOR, EPS,
    # meta-parameters: each program takes BLOCK_P state rows of one (batch row, head), all of them without SPLIT
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_S: tl.constexpr,
    BLOCK_R: tl.constexpr, HAS_STATES: tl.constexpr = True, STORE_V: tl.constexpr = True,
    PRE: tl.constexpr = False, NORM: tl.constexpr = False, SPLIT: tl.constexpr = False,
    GROUPED: tl.constexpr = False, WHOLE: tl.constexpr = False, BLOCK_N: tl.constexpr = 1,
):
    if WHOLE:
        _siso_step_whole(Q, K, V, ADT, DT, TRAP, QB, KB, ANG, D, Z, DTB, QW, KW, THETA, SSM, KS, VS, THETA_OUT, SSM_OUT,
                         KS_OUT, VS_OUT, OUT, CNT, sQ, sK, sV, sZ, sA, sD, sT, sG, sGh, H, HQK, P, N, S, A_FLOOR, EPS,
                         HAS_D, HAS_Z, BLOCK_P, BLOCK_N, HAS_STATES, STORE_V, PRE, NORM, SPLIT)
    else:
        bh, row, h, g, dt, alpha, beta, gamma = step_terms(DT, TRAP, ADT, DTB, A_FLOOR, sD, sA, sT, H, HQK, PRE)

        ss = tl.arange(0, BLOCK_S)
        s_ok = ss < S
        rs = 2 * S + tl.arange(0, BLOCK_R)
        r_ok = rs < N
        theta = new_angle(ANG, THETA, row, sG, h, sGh, bh, S, ss, s_ok, dt, HAS_STATES)
        cos = tl.cos(theta)
        sin = tl.sin(theta)
        q_e, q_o, q_r = _pairs(Q, QB, QW, row * sQ + g * N, h, ss, s_ok, rs, r_ok, N, EPS, NORM)
        k_e, k_o, k_r = _pairs(K, KB, KW, row * sK + g * N, h, ss, s_ok, rs, r_ok, N, EPS, NORM)
        q_e, q_o = q_e * cos - q_o * sin, q_e * sin + q_o * cos
        k_e, k_o = k_e * cos - k_o * sin, k_e * sin + k_o * cos
        krow = bh.to(tl.int64) * N
        if HAS_STATES:
            kp_e = tl.load(KS + krow + 2 * ss, mask=s_ok, other=0.0).to(tl.float32)
            kp_o = tl.load(KS + krow + 2 * ss + 1, mask=s_ok, other=0.0).to(tl.float32)
            kp_r = tl.load(KS + krow + rs, mask=r_ok, other=0.0).to(tl.float32)
        else:
            kp_e = tl.zeros([BLOCK_S], dtype=tl.float32)
            kp_o = tl.zeros([BLOCK_S], dtype=tl.float32)
            kp_r = tl.zeros([BLOCK_R], dtype=tl.float32)
        if HAS_D:
            skip = tl.load(D + h).to(tl.float32)

        for p0 in range(tl.program_id(1) * BLOCK_P if SPLIT else 0, P, P if SPLIT else BLOCK_P):
            ps = p0 + tl.arange(0, BLOCK_P)
            p_ok = ps < P
            at = bh.to(tl.int64) * P + ps
            v = tl.load(V + row * sV + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)
            if HAS_STATES:
                v_prev = tl.load(VS + at, mask=p_ok, other=0.0).to(tl.float32)
            else:
                v_prev = tl.zeros([BLOCK_P], dtype=tl.float32)
            rows = at[:, None] * N
            ms = p_ok[:, None] & s_ok[None, :]
            # in place (SSM_OUT is SSM, VS_OUT is VS): a tile smaller than the block is held by several threads, all of
            # which read it and only one of which stores each element; a slow copy must not read the new state (which
            # the H200 did at S of 2-6: the few rotated columns, replicated 8x at 8 warps, gave wrong outputs,
            # 2026-12-02 and 12-04), nor a new v as v_prev: a barrier between the reads and the stores
            mr = p_ok[:, None] & r_ok[None, :]
            if GROUPED:   # the three column groups read together (one wait on memory, not three), stored together
                st_e = _new_state(SSM, rows + 2 * ss[None, :], ms, alpha, beta, gamma, v_prev, v, kp_e, k_e, HAS_STATES)
                st_o = _new_state(SSM, rows + 2 * ss[None, :] + 1, ms, alpha, beta, gamma, v_prev, v, kp_o, k_o,
                                  HAS_STATES)
                st_r = _new_state(SSM, rows + rs[None, :], mr, alpha, beta, gamma, v_prev, v, kp_r, k_r, HAS_STATES)
                tl.debug_barrier()
                tl.store(SSM_OUT + rows + 2 * ss[None, :], st_e.to(SSM_OUT.dtype.element_ty), mask=ms)
                tl.store(SSM_OUT + rows + 2 * ss[None, :] + 1, st_o.to(SSM_OUT.dtype.element_ty), mask=ms)
                tl.store(SSM_OUT + rows + rs[None, :], st_r.to(SSM_OUT.dtype.element_ty), mask=mr)
                y = (tl.sum(st_e * q_e[None, :], axis=1) + tl.sum(st_o * q_o[None, :], axis=1)
                     + tl.sum(st_r * q_r[None, :], axis=1))
            else:
                y = _update(SSM, SSM_OUT, rows + 2 * ss[None, :], ms, alpha, beta, gamma, v_prev, v, kp_e, k_e, q_e,
                            HAS_STATES)
                y += _update(SSM, SSM_OUT, rows + 2 * ss[None, :] + 1, ms, alpha, beta, gamma, v_prev, v, kp_o, k_o,
                             q_o, HAS_STATES)
                y += _update(SSM, SSM_OUT, rows + rs[None, :], mr, alpha, beta, gamma, v_prev, v, kp_r, k_r, q_r,
                             HAS_STATES)
                tl.debug_barrier()
            if STORE_V:
                tl.store(VS_OUT + at, v.to(VS_OUT.dtype.element_ty), mask=p_ok)
            if HAS_D:
                y += skip * v
            if HAS_Z:
                z = tl.load(Z + row * sZ + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(OUT + at, y.to(OUT.dtype.element_ty), mask=p_ok)
        tl.debug_barrier()   # likewise for the previous k~ and the angle, read at the start by every warp
        if last_to_read(CNT, bh, SPLIT):
            tl.store(KS_OUT + krow + 2 * ss, k_e.to(KS_OUT.dtype.element_ty), mask=s_ok)
            tl.store(KS_OUT + krow + 2 * ss + 1, k_o.to(KS_OUT.dtype.element_ty), mask=s_ok)
            tl.store(KS_OUT + krow + rs, k_r.to(KS_OUT.dtype.element_ty), mask=r_ok)
            tl.store(THETA_OUT + bh * S + ss, theta.to(THETA_OUT.dtype.element_ty), mask=s_ok)


@triton.jit
def last_to_read(CNT, bh, SPLIT: tl.constexpr):
    """Whether this program writes its (batch row, head)'s new ``k~`` and angle, which every program of the
    pair computes alike from the old ones. Unsplit: the only program. Split into blocks of state rows: into new
    states (no ``CNT``), the first block's; in place, the last of the pair's programs to have read the old
    ones (``kernels/arrivals.py``), so that no program reads a new ``k~`` or angle as an old one."""
    if SPLIT:
        if CNT is None:
            last = tl.program_id(1) == 0
        else:
            last = last_arrival(CNT, bh, tl.num_programs(1))
    else:
        last = True
    return last


# State rows a program of the steps takes (0: every row of its (batch row, head), as before 2026-12-06h). One
# program a pair was 52 us a layer of the 130M-size Mamba3 LM's step at 16 rows (H100, 2026-12-06h: 384 programs of 8
# warps at 255 registers, one an SM, each a chain of loads and stores; ~8 us of state traffic); in blocks of rows
# the programs are many and small, each recomputing the pair's q~ and k~ (two rows of N)
STEP_ROWS = int(os.environ.get("SSM_TRITON_M3_STEP_ROWS", "16"))
# The SISO step's three column groups of state rows read together, then stored together behind one barrier (1), or
# each read, barred and stored in turn (0, the form timed on 2026-12-06h); untimed: 217 registers at 4 warps in
# 16-row blocks against 168 (sm_90, triton 3.6), all of a program's state loads in flight at once
STEP_GROUPED = os.environ.get("SSM_TRITON_M3_STEP_GROUPED", "0").strip() not in ("", "0")
# The SISO step on whole state rows (1: q~, k~ as full rows, the state rows one packed tile; ``_siso_step_whole``)
# or on its column groups (0). H100, 2026-12-07, the 130M-size Mamba3 LM's replayed step in 16-row blocks: b1 0.491
# against 0.534 ms, b16 0.784 against 1.142 (64 registers at 4 warps against 168); 32-row blocks no better
STEP_WHOLE = os.environ.get("SSM_TRITON_M3_STEP_WHOLE", "1").strip() not in ("", "0")


def _rule(problem, mode):
    _, P, N, S = problem
    tiles = dict(BLOCK_S=max(2, next_power_of_2(S)), BLOCK_R=max(2, next_power_of_2(N - 2 * S)))
    if STEP_GROUPED:
        tiles["GROUPED"] = True
    if STEP_WHOLE:
        tiles.update(WHOLE=True, BLOCK_N=next_power_of_2(N))
    if STEP_ROWS:
        return dict(BLOCK_P=min(STEP_ROWS, next_power_of_2(P)), SPLIT=True, num_warps=4, **tiles)
    # 4 warps need 251 registers
    return dict(BLOCK_P=min(64, max(16, next_power_of_2(P))), num_warps=8, **tiles)


def step_grid(rows: int):
    """The grid of a step whose problem holds the state rows P at ``rows``: one program a (batch row, head), or
    one a block of its state rows (``SPLIT``)."""
    return lambda problem, kw: (problem[0], triton.cdiv(problem[rows], kw["BLOCK_P"]) if kw.get("SPLIT") else 1)


# one candidate (the rule): a TunableKernel for the bound launches of op plans, nothing is timed
siso_step_kernel = TunableKernel("mamba3_siso_step", _siso_step_kernel, grid=step_grid(1), rule=_rule,
                                 key=lambda p: p[1:],
                                 flags=dict(HAS_D="D", HAS_Z="Z", HAS_STATES="SSM", STORE_V="VS_OUT", PRE="DTB",
                                            NORM="QW"))

# the token's inputs, then the block's parameters (None from mamba3_siso_step): dt_bias, the norms' weights
INPUTS = ("Q", "K", "V", "ADT", "DT", "TRAP", "QB", "KB", "ANG", "D", "Z", "DTB", "QW", "KW")
ANGLES = 8   # Angles' place among them: its head dim may have any stride


def reads_as_is(t, loose: bool = False) -> bool:
    """Whether a step kernel reads ``t`` where it lies: packed after its batch dim (a slice of a wider row
    is), save dim 1's stride with ``loose`` (angles shared by the heads: an expanded view)."""
    expect = 1
    for d in range(t.dim() - 1, 0, -1):
        if t.shape[d] != 1 and t.stride(d) != expect and not (loose and d == 1):
            return False
        expect *= t.shape[d]
    return True


def to_read(tensors, angles: int, inputs: int) -> tuple:
    """The places of ``tensors`` (``inputs`` of them the token's and the block's, then the states, which the
    kernels read packed) a step kernel cannot read as they lie (copied packed for it)."""
    return tuple(i for i, t in enumerate(tensors) if t is not None
                 and not (reads_as_is(t, i == angles) if i < inputs else t.is_contiguous()))


def input_strides(Q, K, V, Z, ADT, DT, Trap, Angles) -> dict:
    """The step kernels' stride arguments: each input's batch stride, the angles' head stride."""
    return dict(sQ=Q.stride(0), sK=K.stride(0), sV=V.stride(0), sZ=Z.stride(0) if Z is not None else 0,
                sA=ADT.stride(0), sD=DT.stride(0), sT=Trap.stride(0), sG=Angles.stride(0), sGh=Angles.stride(1))


def step_args(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, dt_bias, Q_norm, K_norm, angle, ssm, k, v, out,
              angle_out=None, ssm_out=None, k_out=None, *, A_floor=0.0, eps=0.0):
    """``(problem, launch arguments)`` of one SISO step (inputs as :func:`reads_as_is` allows, states packed): the
    states updated from ``(angle, ssm, k, v)`` into themselves, or, with ``ssm_out``, into ``(angle_out, ssm_out,
    k_out)`` from them (zeros where they are None; the new ``v`` is ``V``, not stored). With ``dt_bias``,
    ``ADT`` and ``DT`` are the block's logits (the decay floored at ``-A_floor``); with the norms' weights Q and K
    are normalised (``eps``) before their biases."""
    b, H, P = V.shape
    N, S = Q.shape[2], Angles.shape[2]
    args = dict(zip(INPUTS, (Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, dt_bias, Q_norm, K_norm)))
    new = ssm_out is not None
    args.update(THETA=angle, SSM=ssm, KS=k, VS=v, THETA_OUT=angle_out if new else angle,
                SSM_OUT=ssm_out if new else ssm, KS_OUT=k_out if new else k, VS_OUT=None if new else v, OUT=out,
                CNT=None if new else counters(k, b * H), H=H, HQK=Q.shape[1], P=P, N=N, S=S, A_FLOOR=float(A_floor),
                EPS=float(eps),
                **input_strides(Q, K, V, Z, ADT, DT, Trap, Angles))
    return (b * H, P, N, S), args


def new_state_shapes(V, Q, Angles, ranks: int = 0) -> tuple:
    """The fp32 ``(angle, ssm, k~)`` states a step writes when it does not update the old ones: ``(b, H, S)``,
    ``(b, H, P, N)``, ``(b, H, N)`` (``(b, R, H, N)`` for MIMO's ``ranks`` R)."""
    b, H, P = V.shape
    N = Q.shape[-1]
    return (b, H, Angles.shape[2]), (b, H, P, N), ((b, ranks, H, N) if ranks else (b, H, N))


def launch_step(kernel, args_of, tensors, out_shape, new_shapes):
    """Allocate the output (and the new states), launch; returns ``out`` or ``(out, angle, ssm, k)``."""
    V = tensors[2]
    made = [torch.empty(out_shape, device=V.device, dtype=V.dtype)]
    made += [torch.empty(s, device=V.device, dtype=torch.float32) for s in new_shapes or ()]
    problem, args = args_of(*tensors, *made)
    kernel.launch(problem, **args)
    return made[0] if not new_shapes else tuple(made)


def siso_step(*tensors, new_states: bool = False, A_floor: float = 0.0, eps: float = 0.0):
    """One step of ``(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, dt_bias, Q_norm, K_norm, angle, ssm,
    k, v)`` (:func:`step_args`): the states updated in place, returns ``out (b, H, P)``; or (``new_states``)
    ``(out, angle, ssm, k~)`` with new fp32 states, the old ones (or None: zeros) only read."""
    V = tensors[2]
    return launch_step(siso_step_kernel, functools.partial(step_args, A_floor=A_floor, eps=eps), tensors,
                       tuple(V.shape), new_state_shapes(V, tensors[0], tensors[ANGLES]) if new_states else None)


class StepPlan:
    """A decode step as an op plan (``ssm_triton/ops/_plans.py``): ``plan(tensors) -> [out, (new states)]`` for
    the tensors of :func:`siso_step` / the MIMO step, of the shapes, strides and dtypes it was made for; the
    ones the kernel could not read as they lay then are copied each call."""
    __slots__ = ("one", "copy", "count")

    def __init__(self, one: OneLaunch, copy: tuple, count):
        self.one, self.copy, self.count = one, copy, count

    def __call__(self, tensors):
        if self.copy:
            tensors = list(tensors)
            for i in self.copy:
                tensors[i] = tensors[i].contiguous()
        if self.count is not None:   # the counters of these states (the k~ state's place, their number)
            tensors = (*tensors, counters(tensors[self.count[0]], self.count[1]))
        return self.one(tensors)


def plan_of(kernel, args_of, tensors, names, outs, angles: int) -> StepPlan:
    """A :class:`StepPlan` of ``kernel`` launched with ``args_of(*tensors, *made)`` (those it cannot read as they
    lie copied: :func:`to_read`; ``angles``: the place of the angles among them); ``names`` are the kernel's
    pointer arguments, one per tensor (a state updated in place names its in and out both); ``outs``:
    ``(name, shape, dtype)`` of each tensor a call allocates, the output first."""
    inputs = len(names) - len(STATE_NAMES)
    copy = to_read(tensors, angles, inputs)
    packed = [t.contiguous() if i in copy else t for i, t in enumerate(tensors)]
    V = packed[2]
    made = [torch.empty(shape, device=V.device, dtype=dtype) for _, shape, dtype in outs]
    problem, args = args_of(*packed, *made)
    take, vary = [], []
    for i, (t, name) in enumerate(zip(packed, names)):
        if t is not None:
            for n in (name if isinstance(name, tuple) else (name,)):
                take.append(i)
                vary.append(n)
    count = None
    if args.get("CNT") is not None:   # in place: the counters go with the states of each call
        count = (inputs + 2, args["CNT"].numel())
        take.append(len(packed))
        vary.append("CNT")
    launch = Launch(kernel, problem, args, (*vary, *(n for n, _, _ in outs)))
    return StepPlan(OneLaunch(launch, tuple(take), tuple((tuple(s), d) for _, s, d in outs), V.device), copy, count)


STATE_NAMES = (("THETA", "THETA_OUT"), ("SSM", "SSM_OUT"), ("KS", "KS_OUT"), ("VS", "VS_OUT"))
NEW_STATE_OUTS = ("THETA_OUT", "SSM_OUT", "KS_OUT")


def step_outs(V, out_shape, new_shapes) -> tuple:
    """:func:`plan_of`'s ``outs``: the output, and the new fp32 states when ``new_shapes`` is given."""
    outs = (("OUT", tuple(out_shape), V.dtype),)
    return outs + tuple((n, s, torch.float32) for n, s in zip(NEW_STATE_OUTS, new_shapes or ()))


def siso_step_plan(tensors, new_states: bool = False, A_floor: float = 0.0, eps: float = 0.0) -> StepPlan:
    """:func:`siso_step` of tensors of these shapes, strides and dtypes as a :class:`StepPlan` (the states in
    place, or ``new_states``: read from the given ones, or zeros where they were None)."""
    V = tensors[2]
    names = INPUTS + (tuple(n for n, _ in STATE_NAMES) if new_states else STATE_NAMES)
    shapes = new_state_shapes(V, tensors[0], tensors[ANGLES]) if new_states else None
    return plan_of(siso_step_kernel, functools.partial(step_args, A_floor=A_floor, eps=eps), tensors, names,
                   step_outs(V, V.shape, shapes), ANGLES)
