"""Mamba-3 MIMO's output terms around the SSD stages, forward and backward (the input terms, the running angle and
the rank inputs: ``mimo.py``; ``ops/mamba3_mimo.py`` runs the stages in pseudo-time, rank ``r`` of step ``t`` at
``t R + r``).

``_out_fwd_kernel``, a program per (step block, row x head), with ``v_s = V * MIMO_V[h, s]``::

    y_r += sum_s sc[r, s] w[r, s] v_s + D v_r,   w[r, s] = gamma_t (s > r), -e_{t+1} (s <= r)
    out  = sum_r MIMO_Out[h, r] * y_r * silu(Z * MIMO_Z[h, r])

(the stages gave the pairs ``s <= r`` the weight ``scale_t = gamma_t + e_{t+1}``, the in-step block
``gamma_t`` for all). ``_out_bwd_kernel`` pulls ``d out`` back through it: the stages' ``dy``, the scores',
``gamma``'s and ``e``'s gradients, ``dV`` (this part's), ``dZ`` and per-program partial sums of ``dMIMO_V``,
``dMIMO_Z``, ``dMIMO_Out`` and ``dD``, a program walking several step blocks (``OUT_ITERS``).

The step blocks, the problem key and the ranks held in registers are ``mimo.py``'s (``_blocks``, ``_problem``,
``HOIST_RANKS``), read from that module at each call so that a setting of them there (a test's, a sweep's) holds
here too.
"""
import os

import torch
import triton
import triton.language as tl

from ..activations import silu_and_slope
from ..host import cdiv, next_power_of_2
from ..tuning import TunableKernel, run_mode
from . import mimo as _m
from .mimo import _score_tile, _sum_ranks


@triton.jit
def _in_step(SC, SCC, at, ok, G, E):
    """The in-step block's weight of ``v_s`` in ``y_r``: ``gamma sc[r, s]``, less what the stages added,
    ``(gamma + e_{t+1}) scc[r, s]`` (0 unless ``s <= r``); and ``(sc, scc)``."""
    sc = tl.load(SC + at, mask=ok, other=0.0)
    scc = tl.load(SCC + at, mask=ok, other=0.0)
    return G * sc - (G + E) * scc, sc, scc


@triton.jit
def _out_fwd_kernel(Y, SC, SCC, GAMMA, ENEXT, V, MV, D, Z, MZ, MO, OUT, L, H, P,
                    R: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_OUT: tl.constexpr,
                    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr):
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    ps = tl.arange(0, BLOCK_P)
    p_ok = ps < P
    m = ok[:, None] & p_ok[None, :]
    step = bi.to(tl.int64) * L + t
    at = (step * H + h)[:, None] * P + ps[None, :]                       # (b, L, H, P)
    vt = tl.load(V + at, mask=m, other=0.0).to(tl.float32)
    g = tl.load(GAMMA + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    e = tl.load(ENEXT + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    if HAS_Z:
        zt = tl.load(Z + at, mask=m, other=0.0).to(tl.float32)
    if HAS_D:
        d_h = tl.load(D + h).to(tl.float32)
    acc = tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32)
    for r in range(R):
        y_at = ((step * R + r) * H + h)[:, None] * P + ps[None, :]       # (b, L, R, H, P)
        y = tl.load(Y + y_at, mask=m, other=0.0).to(tl.float32)
        for s in range(R):
            w, _, _ = _in_step(SC, SCC, ((step * H + h) * R + r) * R + s, ok, g, e)
            mv_s = tl.load(MV + (h * R + s) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
            y += w[:, None] * vt * mv_s[None, :]
        if HAS_D:
            mv_r = tl.load(MV + (h * R + r) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
            y += d_h * vt * mv_r[None, :]
        if HAS_Z:
            mz = tl.load(MZ + (h * R + r) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
            gate, _ = silu_and_slope(zt * mz[None, :])
            y = y * gate
        if HAS_OUT:
            mo = tl.load(MO + (h * R + r) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
            acc += mo[None, :] * y
        else:
            tl.store(OUT + y_at, y.to(OUT.dtype.element_ty), mask=m)
    if HAS_OUT:
        tl.store(OUT + at, acc.to(OUT.dtype.element_ty), mask=m)


@triton.jit
def _rank_dy(r, Y, MV, MZ, MO, DOUT, DY, SC, SCC, step, h, H, R, P, ps, p_ok, m, ok, g, e, d_h, vt, zt, dout, rs,
             dz, d_mz, d_mo, HAS_Z: tl.constexpr, HAS_OUT: tl.constexpr, BLOCK_T: tl.constexpr,
             BLOCK_P: tl.constexpr, SUMS: tl.constexpr = True, y_in=None, mvs=None, GIVEN: tl.constexpr = False):
    """Rank ``r``'s pre-gate output again, the weight ``coef`` each channel of ``V`` took in it, and the gradient
    ``dy`` reaching the stages' ``y_r`` (stored to ``DY``); the gate's and the output projection's terms added to
    ``dz, d_mz, d_mo`` (where not ``SUMS``, ``d_mz, d_mo`` come back as rank ``r``'s ``(steps, P)`` tiles, to be
    summed over the steps with the other ranks'). ``GIVEN`` (``r`` a static rank): ``y_in`` is rank ``r``'s ``Y`` tile
    and ``mvs`` every rank's ``MIMO_V[h]`` row, read already."""
    y_at = ((step * R + r) * H + h)[:, None] * P + ps[None, :]
    if GIVEN:
        mv_r = mvs[r]
        y = y_in.to(tl.float32)
    else:
        mv_r = tl.load(MV + (h * R + r) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
        y = tl.load(Y + y_at, mask=m, other=0.0).to(tl.float32)
    coef = d_h * mv_r[None, :] + tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32)
    if GIVEN:
        for s in tl.static_range(R):
            w, _, _ = _in_step(SC, SCC, ((step * H + h) * R + r) * R + s, ok, g, e)
            coef += w[:, None] * mvs[s][None, :]
    else:
        for s in range(R):
            w, _, _ = _in_step(SC, SCC, ((step * H + h) * R + r) * R + s, ok, g, e)
            mv_s = tl.load(MV + (h * R + s) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
            coef += w[:, None] * mv_s[None, :]
    y += vt * coef
    if HAS_OUT:
        mo = tl.load(MO + (h * R + r) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
        dy = dout * mo[None, :]
    else:
        dy = tl.load(DOUT + y_at, mask=m, other=0.0).to(tl.float32)
    if HAS_Z:
        mz = tl.load(MZ + (h * R + r) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
        gate, slope = silu_and_slope(zt * mz[None, :])
        dzr = dy * y * slope
        dz += dzr * mz[None, :]
        if SUMS:
            d_mz += tl.where(rs[:, None] == r, tl.sum(dzr * zt, axis=0)[None, :], 0.0)
        else:
            d_mz = dzr * zt
        y = y * gate
        dy = dy * gate
    if HAS_OUT:
        if SUMS:
            d_mo += tl.where(rs[:, None] == r, tl.sum(dout * y, axis=0)[None, :], 0.0)
        else:
            d_mo = dout * y
    tl.store(DY + y_at, dy.to(DY.dtype.element_ty), mask=m)
    return dy, coef, mv_r, dz, d_mz, d_mo


@triton.jit
def _block_in(V, GAMMA, ENEXT, Z, DOUT, Y, bi, bh, h, H, L, P, ps, p_ok, t, ok, R: tl.constexpr,
              HAS_Z: tl.constexpr, HAS_OUT: tl.constexpr, WITH_Y: tl.constexpr = True):
    """A step block's inputs to :func:`_out_bwd_kernel` as they lie in memory: ``v, gamma, e_next, z, dout`` and
    (``WITH_Y``) every rank's ``Y`` tile (a tuple), zeros where a tensor is absent or a step is masked."""
    m = ok[:, None] & p_ok[None, :]
    step = bi.to(tl.int64) * L + t
    at = (step * H + h)[:, None] * P + ps[None, :]
    vt = tl.load(V + at, mask=m, other=0.0)
    g = tl.load(GAMMA + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    e = tl.load(ENEXT + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    if HAS_Z:
        zt = tl.load(Z + at, mask=m, other=0.0)
    else:
        zt = tl.zeros(vt.shape, dtype=vt.dtype)
    if HAS_OUT:
        dout = tl.load(DOUT + at, mask=m, other=0.0)
    else:
        dout = tl.zeros(vt.shape, dtype=vt.dtype)
    ys = ()
    if WITH_Y:
        for r in tl.static_range(R):
            ys = ys + (tl.load(Y + ((step * R + r) * H + h)[:, None] * P + ps[None, :], mask=m, other=0.0),)
    return vt, g, e, zt, dout, ys


@triton.jit
def _merged_in_step(dys, vt, MV, SC, SCC, DSC, DSCC, step, h, H, R: tl.constexpr, P, ps, p_ok, ok, g, e, d_h,
                    d_g, d_e, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, mvs=None, MV_GIVEN: tl.constexpr = False):
    """:func:`_out_bwd_kernel`'s in-step terms (``HOIST``, ``R <= 4``) with fewer passes across the lanes: for each
    rank ``s``, the ``R`` products ``dy_r . v_s`` in one reduction; the scores' gradients gathered into ``(steps, R
    R)`` tiles and stored once, not ``2 R R`` vectors each changing layout for its store. Returns ``d_g, d_e`` and
    the ``R`` tiles ``(steps, P)`` whose sums over the steps are ``d MIMO_V``'s (the caller sums them when it will:
    once a program)."""
    cc, tile_at, tile_ok = _score_tile(step, h, H, ok, R, BLOCK_R)
    dsc_t = tl.zeros([BLOCK_T, BLOCK_R * BLOCK_R], dtype=tl.float32)
    dscc_t = tl.zeros([BLOCK_T, BLOCK_R * BLOCK_R], dtype=tl.float32)
    ups = ()
    for s in tl.static_range(R):
        if MV_GIVEN:
            vs = vt * mvs[s][None, :]
        else:
            vs = vt * tl.load(MV + (h * R + s) * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :]
        prods = ()
        for r in tl.static_range(R):
            prods = prods + (dys[r] * vs,)
        dots = _sum_ranks(prods, 1, R)
        u = d_h * dys[s]                                   # D's share of d MIMO_V[s]
        for r in tl.static_range(R):
            w, sc, scc = _in_step(SC, SCC, ((step * H + h) * R + r) * R + s, ok, g, e)
            dot = dots[r]                                  # dy_r . v_s
            here = cc[None, :] == r * BLOCK_R + s
            dsc_t = tl.where(here, (g * dot)[:, None], dsc_t)
            if s <= r:
                dscc_t = tl.where(here, (-(g + e) * dot)[:, None], dscc_t)
            d_g += (sc - scc) * dot
            d_e -= scc * dot
            u += w[:, None] * dys[r]
        ups = ups + (u * vt,)
    tl.store(DSC + tile_at, dsc_t, mask=tile_ok)
    tl.store(DSCC + tile_at, dscc_t, mask=tile_ok)
    return d_g, d_e, ups


@triton.jit
def _add_ranks(acc, tiles, R: tl.constexpr):
    out = ()
    for r in tl.static_range(R):
        out = out + (acc[r] + tiles[r],)
    return out


@triton.jit
def _step_sums(tiles, rs, R: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr):
    """The ``R`` tiles ``(steps, P)`` summed over the steps in one reduction, as the rows of an ``(R, P)`` tile."""
    sums = _sum_ranks(tiles, 0, R)
    out = tl.zeros([BLOCK_R, BLOCK_P], dtype=tl.float32)
    for r in tl.static_range(R):
        out += tl.where(rs[:, None] == r, sums[r][None, :], 0.0)
    return out


@triton.jit
def _out_bwd_kernel(DOUT, Y, SC, SCC, GAMMA, ENEXT, V, MV, D, Z, MZ, MO,
                    DY, DSC, DSCC, DG, DE, DV, DZ, DMV, DMZ, DMO, DD,
                    L, H, P,
                    R: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_OUT: tl.constexpr,
                    HOIST: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_R: tl.constexpr,
                    MERGE: tl.constexpr = False, ITERS: tl.constexpr = 1, AHEAD: tl.constexpr = False):
    """Partials (``DMV, DMZ, DMO (programs along L, b H, R, P)``, ``DD (programs along L, b H)``) are summed
    outside, in a fixed order; a program walks ``ITERS`` blocks of ``BLOCK_T`` steps. ``HOIST`` (few ranks): every
    rank's ``dy`` is held, so that ``dMIMO_V[s]`` sums over the steps once per rank ``s`` (a tile gathering
    ``w[r, s] dy_r`` over ``r``), not once per pair of ranks: those sums across the block's rows went through
    shared memory, and the kernel waited on it (MIO stalls, 7.5 ms at B8 L4096 H32 R4 P64 on the H200, Nsight
    Compute 2026-12-04). With ``MERGE`` as well, the weights' sums over the steps are taken once a program, after
    its last block (their tiles added up until then), and each kind's ``R`` sums in one reduction. ``AHEAD`` (with
    ``HOIST``): the next block's inputs (:func:`_block_in`) are read while a block computes, and ``MIMO_V``'s rows of
    the head once a program."""
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    ps = tl.arange(0, BLOCK_P)
    p_ok = ps < P
    rs = tl.arange(0, BLOCK_R)
    d_h = 0.0
    if HAS_D:
        d_h = tl.load(D + h).to(tl.float32)
    d_mv = tl.zeros([BLOCK_R, BLOCK_P], dtype=tl.float32)
    d_mz = tl.zeros([BLOCK_R, BLOCK_P], dtype=tl.float32)
    d_mo = tl.zeros([BLOCK_R, BLOCK_P], dtype=tl.float32)
    d_d = tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32)
    if HOIST and MERGE:   # the weights' (steps, P) terms, each rank's, summed over the steps after the last block
        acc_v = ()
        acc_z = ()
        acc_o = ()
        for r in tl.static_range(R):
            acc_v = acc_v + (tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32),)
            acc_z = acc_z + (tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32),)
            acc_o = acc_o + (tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32),)
    AHEAD_ON: tl.constexpr = AHEAD and HOIST
    first = tl.program_id(0) * ITERS * BLOCK_T
    stop = tl.minimum(L, first + ITERS * BLOCK_T)   # the steps of this program's blocks
    if AHEAD_ON:   # and MIMO_V's rows of this head read once a program, not 5 R times a block
        mvs = ()
        for r in tl.static_range(R):
            mvs = mvs + (tl.load(MV + (h * R + r) * P + ps, mask=p_ok, other=0.0).to(tl.float32),)
        t = first + tl.arange(0, BLOCK_T)
        v_nx, g_nx, e_nx, z_nx, o_nx, y_nx = _block_in(V, GAMMA, ENEXT, Z, DOUT, Y, bi, bh, h, H, L, P, ps, p_ok, t,
                                                       t < stop, R, HAS_Z, HAS_OUT)
    for it in range(ITERS):
        t = (tl.program_id(0) * ITERS + it) * BLOCK_T + tl.arange(0, BLOCK_T)
        ok = t < L
        m = ok[:, None] & p_ok[None, :]
        step = bi.to(tl.int64) * L + t
        at = (step * H + h)[:, None] * P + ps[None, :]
        if AHEAD_ON:   # this block's inputs came in during the last one; the next one's now
            vt, g, e, zt, dout, y_cur = v_nx, g_nx, e_nx, z_nx, o_nx, y_nx
            v_nx, g_nx, e_nx, z_nx, o_nx, y_nx = _block_in(V, GAMMA, ENEXT, Z, DOUT, Y, bi, bh, h, H, L, P, ps, p_ok,
                                                           t + BLOCK_T, t + BLOCK_T < stop, R, HAS_Z, HAS_OUT)
        else:
            vt, g, e, zt, dout, y_cur = _block_in(V, GAMMA, ENEXT, Z, DOUT, Y, bi, bh, h, H, L, P, ps, p_ok, t, ok, R,
                                                  HAS_Z, HAS_OUT, False)
        vt = vt.to(tl.float32)
        zt = zt.to(tl.float32)
        dout = dout.to(tl.float32)
        dz = tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32)
        dv = tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32)
        dd_blk = tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32)
        d_g = tl.zeros([BLOCK_T], dtype=tl.float32)
        d_e = tl.zeros([BLOCK_T], dtype=tl.float32)
        if HOIST:
            dys = ()
            zs = ()
            os_ = ()
            for r in tl.static_range(R):
                y_r = y_cur[r] if AHEAD_ON else None
                mv_all = mvs if AHEAD_ON else None
                if MERGE:
                    dy, coef, mv_r, dz, z_r, o_r = _rank_dy(
                        r, Y, MV, MZ, MO, DOUT, DY, SC, SCC, step, h, H, R, P, ps, p_ok, m, ok, g, e, d_h, vt, zt,
                        dout, rs, dz, d_mz, d_mo, HAS_Z, HAS_OUT, BLOCK_T, BLOCK_P, False, y_r, mv_all, AHEAD_ON)
                    zs = zs + (z_r,)
                    os_ = os_ + (o_r,)
                else:
                    dy, coef, mv_r, dz, d_mz, d_mo = _rank_dy(
                        r, Y, MV, MZ, MO, DOUT, DY, SC, SCC, step, h, H, R, P, ps, p_ok, m, ok, g, e, d_h, vt, zt,
                        dout, rs, dz, d_mz, d_mo, HAS_Z, HAS_OUT, BLOCK_T, BLOCK_P, True, y_r, mv_all, AHEAD_ON)
                dv += dy * coef
                dd_blk += dy * mv_r[None, :]
                dys = dys + (dy,)
            if MERGE:
                if HAS_Z:
                    acc_z = _add_ranks(acc_z, zs, R)
                if HAS_OUT:
                    acc_o = _add_ranks(acc_o, os_, R)
                d_g, d_e, ups = _merged_in_step(dys, vt, MV, SC, SCC, DSC, DSCC, step, h, H, R, P, ps, p_ok, ok, g,
                                                e, d_h, d_g, d_e, BLOCK_T, BLOCK_R, mvs if AHEAD_ON else None,
                                                AHEAD_ON)
                acc_v = _add_ranks(acc_v, ups, R)
            else:
                for s in tl.static_range(R):
                    vs = vt * tl.load(MV + (h * R + s) * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :]
                    u = d_h * dys[s]                                   # D's share of d MIMO_V[s]
                    for r in tl.static_range(R):
                        s_at = ((step * H + h) * R + r) * R + s
                        w, sc, scc = _in_step(SC, SCC, s_at, ok, g, e)
                        dot = tl.sum(dys[r] * vs, axis=1)               # dy_r . v_s
                        tl.store(DSC + s_at, g * dot, mask=ok)
                        tl.store(DSCC + s_at, tl.where(s <= r, -(g + e) * dot, 0.0), mask=ok)
                        d_g += (sc - scc) * dot
                        d_e -= scc * dot
                        u += w[:, None] * dys[r]
                    d_mv += tl.where(rs[:, None] == s, tl.sum(u * vt, axis=0)[None, :], 0.0)
        else:
            for r in range(R):
                dy, coef, mv_r, dz, d_mz, d_mo = _rank_dy(
                    r, Y, MV, MZ, MO, DOUT, DY, SC, SCC, step, h, H, R, P, ps, p_ok, m, ok, g, e, d_h, vt, zt, dout,
                    rs, dz, d_mz, d_mo, HAS_Z, HAS_OUT, BLOCK_T, BLOCK_P)
                dv += dy * coef
                dd_blk += dy * mv_r[None, :]
                d_mv += tl.where(rs[:, None] == r, tl.sum(d_h * dy * vt, axis=0)[None, :], 0.0)
                for s in range(R):
                    s_at = ((step * H + h) * R + r) * R + s
                    w, sc, scc = _in_step(SC, SCC, s_at, ok, g, e)
                    mv_s = tl.load(MV + (h * R + s) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
                    dot = tl.sum(dy * vt * mv_s[None, :], axis=1)                  # dy_r . v_s
                    tl.store(DSC + s_at, g * dot, mask=ok)
                    tl.store(DSCC + s_at, tl.where(s <= r, -(g + e) * dot, 0.0), mask=ok)
                    d_g += (sc - scc) * dot
                    d_e -= scc * dot
                    d_mv += tl.where(rs[:, None] == s, tl.sum(w[:, None] * dy * vt, axis=0)[None, :], 0.0)
        d_d += dd_blk * vt
        tl.store(DG + bh.to(tl.int64) * L + t, d_g, mask=ok)
        tl.store(DE + bh.to(tl.int64) * L + t, d_e, mask=ok)
        tl.store(DV + at, dv, mask=m)
        if HAS_Z:
            tl.store(DZ + at, dz, mask=m)
    if HOIST and MERGE:
        d_mv = _step_sums(acc_v, rs, R, BLOCK_R, BLOCK_P)
        if HAS_Z:
            d_mz = _step_sums(acc_z, rs, R, BLOCK_R, BLOCK_P)
        if HAS_OUT:
            d_mo = _step_sums(acc_o, rs, R, BLOCK_R, BLOCK_P)
    part = (tl.program_id(0).to(tl.int64) * tl.num_programs(1) + bh)
    pr = (part * R + rs)[:, None] * P + ps[None, :]
    pr_ok = (rs < R)[:, None] & p_ok[None, :]
    tl.store(DMV + pr, d_mv, mask=pr_ok)
    if HAS_Z:
        tl.store(DMZ + pr, d_mz, mask=pr_ok)
    if HAS_OUT:
        tl.store(DMO + pr, d_mo, mask=pr_ok)
    if HAS_D:
        tl.store(DD + part, tl.sum(tl.sum(d_d, axis=1), axis=0))


_GATES = dict(HAS_D="D", HAS_Z="Z", HAS_OUT="MO")
out_fwd_kernel = TunableKernel("mamba3_mimo_out", _out_fwd_kernel, grid=lambda p, kw: (cdiv(p[1], p[7]), p[0] * p[3]),
                               key=_m._key, flags=_GATES, rule=lambda p, mode: dict(num_warps=4),
                               alternatives=lambda p, mode: [dict(num_warps=8)])
# holding every rank's dy (HOIST) at 4 warps spilled on sm_90 (255 registers and 24 bytes of stack; 174 at 8)
out_bwd_kernel = TunableKernel("mamba3_mimo_out_bwd", _out_bwd_kernel,
                               grid=lambda p, kw: (cdiv(p[1], p[7]), p[0] * p[3]), key=_m._key, flags=_GATES,
                               rule=lambda p, mode: dict(num_warps=8 if p[2] <= _m.HOIST_RANKS else 4),
                               alternatives=lambda p, mode: [dict(num_warps=4), dict(num_warps=8)])

# (its barrier counts read compiled unaligned, before tests/sm90_compile.py --aligned)
# the output backward (every rank held, R <= HOIST_RANKS) takes its sums across the lanes a kind at a time for
# every rank (the R products dy_r . v_s of a rank s, the R gates' and output weights' sums over the steps, the R sums
# for d MIMO_V) and stores the scores' gradients as (steps, R R) tiles (_merged_in_step): sm_90, triton 3.6, R = 4,
# 34 barriers a program against 145, 9 reductions against 30, 4 layout changes against 28 ("0" turns it off; with
# PREP_MERGE, H100, 2026-12-06, MIMO B8 L4096: its kernel 4.461 ms against 5.221, fwd+bwd 24.70-24.80 against
# 25.63-25.74)
OUT_MERGE = os.environ.get("SSM_TRITON_MIMO_OUT_MERGE", "1")
# step blocks the output backward walks a program: with the merged sums, the weights' sums over the steps and their
# partials' stores (3 (b, H, R, P) fp32 tensors a block of 8 steps: 400 MB at B8 L4096 H32 R4 P64) once a program.
# "" (the default): 8 where the programs still fill the GPU 4 times over (out_iters), a number forces it. H100,
# 2026-12-06, MIMO B8 L4096: its kernel 3.366 ms (8) / 3.606 (4) against 4.504 (1), fwd+bwd 23.51-23.69 against
# 24.71-24.87
OUT_ITERS = os.environ.get("SSM_TRITON_MIMO_OUT_ITERS", "")
# the next step block's inputs read while a block computes, and MIMO_V's rows of the head once a program instead of
# 5 R times a block (_out_bwd_kernel's AHEAD; with every rank held): "1" on, untimed as of 2026-12-06 (sm_90, triton
# 3.6, R 4, 8 warps: a block's loop 1142 -> 987 instructions, 145 -> 81 loads, 16 -> 8 barriers, 16 bytes of stack;
# the selective scan's loads ahead took its b8 backward from 5.82 to 5.45 ms that day)
OUT_AHEAD = os.environ.get("SSM_TRITON_MIMO_OUT_AHEAD", "0")


def out_forward(y, sc, scc, gamma, e_next, V, MIMO_V, D, Z, MIMO_Z, MIMO_Out):
    """``y (b, L, R, H, P)`` (the stages' output, fp32), ``sc (b, L, H, R, R)``, ``gamma, e_next (b, H, L)`` fp32,
    ``V, Z (b, L, H, P)``, ``MIMO_* (H, R, P)`` fp32, ``D (H,)`` -> ``out (b, L, H, P)`` in V's dtype, or
    ``(b, L, R, H, P)`` without ``MIMO_Out``."""
    b, L, R, H, P = y.shape
    out = torch.empty((b, L, H, P) if MIMO_Out is not None else (b, L, R, H, P), device=V.device, dtype=V.dtype)
    bt = _m._blocks(V.device, True)
    out_fwd_kernel.launch(_m._problem(b, L, R, H, H, P, V.dtype, bt, D, Z, MIMO_Out), None, Y=y, SC=sc, SCC=scc,
                          GAMMA=gamma, ENEXT=e_next, V=V, MV=MIMO_V, D=D, Z=Z, MZ=MIMO_Z, MO=MIMO_Out, OUT=out, L=L, H=H,
                          P=P, R=R, BLOCK_T=bt, BLOCK_P=next_power_of_2(P))
    return out


def out_iters(device, rows: int, L: int, bt: int) -> int:
    """Step blocks a program of the output backward walks (``OUT_ITERS``): up to 8 while ``rows`` (b H) programs
    along each of ``L``'s blocks still fill the GPU's SMs 4 times over; 2 in the interpreter (tests cross them)."""
    if OUT_ITERS:
        return max(1, int(OUT_ITERS))
    mode = run_mode(device)
    if mode.interpreted:
        return 2
    iters = 8
    while iters > 1 and cdiv(L, bt * iters) * rows < 4 * mode.sm_count:
        iters //= 2
    return iters


def out_backward(dout, y, sc, scc, gamma, e_next, V, MIMO_V, D, Z, MIMO_Z, MIMO_Out):
    """Gradients of :func:`out_forward`: ``(dy (b, L, R, H, P)`` in :func:`mimo.rank_dtype` (the stages', which multiply
    it in that dtype), ``dsc, dscc, dgamma, de_next, dV (b, L, H, P), dZ or None`` (fp32), ``dMIMO_V, dMIMO_Z or
    None, dMIMO_Out or None (H, R, P), dD (H,) or None)``."""
    b, L, R, H, P = y.shape
    bt = _m._blocks(V.device, False)
    iters = out_iters(V.device, b * H, L, bt)
    nt = cdiv(L, bt * iters)
    f32 = dict(device=V.device, dtype=torch.float32)
    dy = torch.empty((b, L, R, H, P), device=V.device, dtype=_m.rank_dtype(V.dtype))
    dsc = torch.empty_like(sc)
    dscc = torch.empty_like(sc)
    dg = torch.empty((b, H, L), **f32)
    de = torch.empty_like(dg)
    dv = torch.empty((b, L, H, P), **f32)
    dz = torch.empty_like(dv) if Z is not None else None
    # the weights' partials in one tensor, summed in one call: dMIMO_V's, then dMIMO_Z's and dMIMO_Out's where asked
    weights = torch.empty((1 + (Z is not None) + (MIMO_Out is not None), nt, b, H, R, P), **f32)
    dmv = weights[0]
    dmz = weights[1] if Z is not None else None
    dmo = weights[-1] if MIMO_Out is not None else None
    dd = torch.empty((nt, b, H), **f32) if D is not None else None
    out_bwd_kernel.launch(_m._problem(b, L, R, H, H, P, V.dtype, bt * iters, D, Z, MIMO_Out), None, DOUT=dout, Y=y,
                          SC=sc, SCC=scc, GAMMA=gamma, ENEXT=e_next, V=V, MV=MIMO_V, D=D, Z=Z, MZ=MIMO_Z, MO=MIMO_Out,
                          DY=dy, DSC=dsc, DSCC=dscc, DG=dg, DE=de, DV=dv, DZ=dz, DMV=dmv, DMZ=dmz, DMO=dmo, DD=dd, L=L,
                          H=H, P=P, R=R, HOIST=R <= _m.HOIST_RANKS, MERGE=OUT_MERGE != "0", BLOCK_T=bt,
                          BLOCK_P=next_power_of_2(P), BLOCK_R=next_power_of_2(R), ITERS=iters,
                          AHEAD=OUT_AHEAD not in ("", "0"))
    sums = weights.sum((1, 2))
    return (dy, dsc, dscc, dg, de, dv, dz, sums[0], sums[1] if Z is not None else None,
            sums[-1] if MIMO_Out is not None else None, dd.sum((0, 1)) if dd is not None else None)
