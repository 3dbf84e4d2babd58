"""Mamba-3 MIMO's per-step terms going into the SSD stages (``ops/mamba3_mimo.py`` runs the stages in pseudo-time,
rank ``r`` of step ``t`` at ``t R + r``): the running angle, the ranks' inputs, the rotated ``q~, k~`` and the
in-step scores, forward and backward, and the settings the output terms (``mimo_out.py``) share.

Why kernels: written as PyTorch ops these terms were 48 of MIMO's 53 ms forward at B=8 L=4096 R=4 H=32
(H200, 2026-12-02, ``bench/results/h200-2026-12-02e/profile.txt``): every one of them materialised a
``(b, L, R, H, N)`` fp32 tensor, and the in-step block ran as batched ``R x R`` matrix products.

``_prep_fwd_kernel``, a program per (block of ``BLOCK_T`` steps, row x head): ``q' = Q + Q_bias[h]``,
``k' = K + K_bias[h]`` (Q/K head ``h // (H / Hqk)``), turned by ``theta`` on the half-split pairs
``(n, N/2 + n)``, ``n < S``, written in the stages' operand dtype as ``(b, L, R, H, N)`` (the stages' flat
``(b, L R, H, N)``), and the in-step scores ``sc[r, s] = q'_r . k'_s`` (fp32 ``(b, L, H, R, R)``; a turn
by one angle keeps the dot product).

``_prep_bwd_kernel``, a program per (step block, row x Q/K head, rank): the stages' ``dq~, dk~`` turned back, plus
the scores' terms, summed over the heads that share the Q/K head; the biases' partial sums; the angle's gradient per
rank (summed outside). The output terms (in-step block, skip, gate, output projection): ``mimo_out.py``.
"""
import os

import torch
import triton
import triton.language as tl

from ..ssd.common import INTERPRETED, _nearest, add2, add3, add4
from ..ssd.cumsum import chunk_row
from ..host import cdiv, next_power_of_2
from ..tuning import Kernel, TunableKernel, bucket, run_mode
from ..trig import cos_sin
from .launch import _prefix_block
from .prep import _rate, angle_rows, angle_sums_kernel, block_prefix_kernel

TORCH_DTYPE = {tl.bfloat16: torch.bfloat16, tl.float16: torch.float16, tl.float32: torch.float32}


@triton.jit
def _running_angle_kernel(ANG, DT, THETA_B, THETA, L, H, S, nblk, SAL, SAH, BLOCK_T: tl.constexpr,
                          BLOCK_S: tl.constexpr):
    """Block ``j`` of a (row, head)'s running angle, ``THETA (b, L, H, S)`` fp32 in ``[0, 2 pi)``: the angle
    entering the block (``THETA_B``, from SISO's block sums and prefix) plus the block's increments
    ``pi tanh(Angles) DT`` up to and including each step, in fp32 (a block's sum stays small)."""
    j, bh, bi, h, t, ok = chunk_row(L, H, BLOCK_T)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    tw, at, m = _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S, SAL, SAH)
    enter = tl.load(THETA_B + (bh.to(tl.int64) * nblk + j) * S + ss, mask=s_ok, other=0.0)
    theta = enter[None, :] + tl.cumsum(3.141592653589793 * tw * dt[:, None], axis=0)
    theta = theta - 6.283185307179586 * tl.floor(theta / 6.283185307179586)
    tl.store(THETA + at, theta, mask=m)


running_angle_kernel = Kernel(_running_angle_kernel)


@triton.jit
def _angle_grad_sums_kernel(DTH, SUMS, L, H, S, nblk, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """Each block's sum of the angles' gradients ``DTH (b, L, H, S)``: ``SUMS (b, H, nblk, S)``."""
    j, bh, bi, h, t, ok = chunk_row(L, H, BLOCK_T)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    at = ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + ss[None, :]
    g = tl.load(DTH + at, mask=ok[:, None] & s_ok[None, :], other=0.0).to(tl.float32)
    tl.store(SUMS + (bh.to(tl.int64) * nblk + j) * S + ss, tl.sum(g, axis=0), mask=s_ok)


@triton.jit
def _angle_grad_kernel(ANG, DT, DTH, AFTER, DANG, DDT, L, H, S, nblk, SAL, SAH, BLOCK_T: tl.constexpr,
                       BLOCK_S: tl.constexpr):
    """Block ``j``: each increment ``pi tanh(Angles_t) DT_t`` takes the gradients of every angle from step ``t``
    on (the block's own from ``t``, plus ``AFTER``, the later blocks' sums); through it ``DANG (b, L, H, S)``
    and ``DDT (b, H, L)`` fp32."""
    j, bh, bi, h, t, ok = chunk_row(L, H, BLOCK_T)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    tw, at, m = _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S, SAL, SAH)
    g = tl.load(DTH + at, mask=m, other=0.0).to(tl.float32)
    after = tl.load(AFTER + (bh.to(tl.int64) * nblk + j) * S + ss, mask=s_ok, other=0.0)
    later = after[None, :] + tl.sum(g, axis=0)[None, :] - tl.cumsum(g, axis=0) + g
    d_rate = 3.141592653589793 * later
    tl.store(DANG + at, d_rate * dt[:, None] * (1.0 - tw * tw), mask=m)
    tl.store(DDT + bh.to(tl.int64) * L + t, tl.sum(tl.where(m, d_rate * tw, 0.0), axis=1), mask=ok)


angle_grad_sums_kernel = Kernel(_angle_grad_sums_kernel)
angle_grad_kernel = Kernel(_angle_grad_kernel)


@triton.jit
def _ranks_kernel(V, MV, X, rows, H, P, R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr):
    """The rank inputs ``X (rows, R, H, P)`` fp32 = ``V (rows, H, P)`` times ``MV[h, r] (H, R, P)``, a program per
    (block of rows, head)."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    h = tl.program_id(1)
    pp = tl.arange(0, BLOCK_P)
    m = (t < rows)[:, None] & (pp < P)[None, :]
    v = tl.load(V + (t.to(tl.int64) * H + h)[:, None] * P + pp[None, :], mask=m, other=0.0).to(tl.float32)
    for r in tl.static_range(R):
        w = tl.load(MV + (h * R + r) * P + pp, mask=pp < P, other=0.0).to(tl.float32)
        at = ((t.to(tl.int64) * R + r) * H + h)[:, None] * P + pp[None, :]
        tl.store(X + at, (v * w[None, :]).to(X.dtype.element_ty), mask=m)


@triton.jit
def _ranks_bwd_kernel(DX, V, MV, DV, DMV_PART, rows, H, P, R: tl.constexpr, BLOCK_T: tl.constexpr,
                      BLOCK_P: tl.constexpr):
    """``DV (rows, H, P)`` fp32 = ``sum_r DX[:, r] MV[h, r]``; ``DMV_PART (blocks, H, R, P)`` this block's
    ``sum_t DX[t, r] V[t]``."""
    j = tl.program_id(0)
    t = j * BLOCK_T + tl.arange(0, BLOCK_T)
    h = tl.program_id(1)
    pp = tl.arange(0, BLOCK_P)
    m = (t < rows)[:, None] & (pp < P)[None, :]
    v = tl.load(V + (t.to(tl.int64) * H + h)[:, None] * P + pp[None, :], mask=m, other=0.0).to(tl.float32)
    dv = tl.zeros([BLOCK_T, BLOCK_P], dtype=tl.float32)
    for r in tl.static_range(R):
        w = tl.load(MV + (h * R + r) * P + pp, mask=pp < P, other=0.0).to(tl.float32)
        dx = tl.load(DX + ((t.to(tl.int64) * R + r) * H + h)[:, None] * P + pp[None, :], mask=m, other=0.0).to(tl.float32)
        dv += dx * w[None, :]
        tl.store(DMV_PART + ((j.to(tl.int64) * H + h) * R + r) * P + pp, tl.sum(dx * v, axis=0), mask=pp < P)
    tl.store(DV + (t.to(tl.int64) * H + h)[:, None] * P + pp[None, :], dv, mask=m)


ranks_kernel = Kernel(_ranks_kernel)
ranks_bwd_kernel = Kernel(_ranks_bwd_kernel)


def _rank_rows(device, backward: bool = False) -> int:
    """Rows per program of the rank inputs: 64 (32 backward: 64 spilled on sm_90 at P 64); 4 in the interpreter,
    so tests cross blocks."""
    return 4 if run_mode(device).interpreted else 32 if backward else 64


# "32" keeps the rank tensors (rank_dtype) in fp32 whatever V's dtype: the route before 2026-12-05, to time against
RANKS = os.environ.get("SSM_TRITON_MIMO_RANKS", "")


def rank_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the ranks' inputs ``x`` and of the gradients ``dy, dx`` the stages trade for ``V`` of
    ``dtype``: ``V``'s where it is 16-bit (the stages multiply ``x`` in it anyway, and Mamba-3 SISO's ``V, dy, dx``
    are so; each of these tensors is ``R`` times ``V``, 1.07 GB in fp32 at B8 L4096 H32 P64 rank 4), else fp32.
    The stages' output ``y`` stays fp32: the output kernel takes back terms the stages added (``scc``), and a
    rounded ``y`` would keep their rounding."""
    return dtype if dtype in (torch.bfloat16, torch.float16) and RANKS != "32" else torch.float32


def rank_inputs(V, MIMO_V):
    """``V (b, L, H, P)``, ``MIMO_V (H, R, P)`` -> ``x (b, L, R, H, P)`` in :func:`rank_dtype`, ``x[:, :, r] = V *
    MIMO_V[:, r]``: one pass writing the ranks' inputs (PyTorch's cast and broadcast product were two, and three
    more backward)."""
    b, L, H, P = V.shape
    R = MIMO_V.shape[1]
    V, MIMO_V = V.contiguous(), MIMO_V.contiguous()
    x = torch.empty((b, L, R, H, P), device=V.device, dtype=rank_dtype(V.dtype))
    bt = _rank_rows(V.device)
    ranks_kernel((cdiv(b * L, bt), H), V=V, MV=MIMO_V, X=x, rows=b * L, H=H, P=P, R=R, BLOCK_T=bt,
                 BLOCK_P=next_power_of_2(P))
    return x


def rank_inputs_backward(dx, V, MIMO_V):
    """Gradients of :func:`rank_inputs`: ``(dV (b, L, H, P), dMIMO_V (H, R, P))`` fp32; ``dx`` read once."""
    b, L, H, P = V.shape
    R = MIMO_V.shape[1]
    V, MIMO_V, dx = V.contiguous(), MIMO_V.contiguous(), dx.contiguous()
    bt = _rank_rows(V.device, backward=True)
    nb = cdiv(b * L, bt)
    dv = torch.empty((b, L, H, P), device=V.device, dtype=torch.float32)
    part = torch.empty((nb, H, R, P), device=V.device, dtype=torch.float32)
    ranks_bwd_kernel((nb, H), DX=dx, V=V, MV=MIMO_V, DV=dv, DMV_PART=part, rows=b * L, H=H, P=P, R=R, BLOCK_T=bt,
                     BLOCK_P=next_power_of_2(P))
    return dv, part.sum(0)


def angle_block(device) -> int:
    """Steps per block of the running angle: 64; 4 in the interpreter, so tests cross blocks."""
    return 4 if run_mode(device).interpreted else 64


def running_angle(Angles, DT, angle0):
    """``theta (b, L, H, S)`` fp32 in ``[0, 2 pi)``: the running sum over L of ``pi tanh(Angles) DT`` from
    ``angle0 (b, H, S)`` (zeros when None); ``Angles (b, L, H, S)``, ``DT (b, H, L)``. Three launches (block
    sums, their prefix, the blocks) where it was some twenty PyTorch ops with an fp64 scan."""
    b, L, H, S = Angles.shape
    dev = Angles.device
    bt, block_s = angle_block(dev), next_power_of_2(max(S, 1))
    nblk = cdiv(L, bt)
    (Angles, sal, sah), DT = angle_rows(Angles), DT.contiguous()
    theta_b = torch.empty((b, H, nblk, S), device=dev, dtype=torch.float32)
    last = torch.empty((b, H, S), device=dev, dtype=torch.float32)
    theta = torch.empty((b, L, H, S), device=dev, dtype=torch.float32)
    grid = (nblk, b * H)
    angle_sums_kernel(grid, ANG=Angles, DT=DT, SUMS=theta_b, L=L, H=H, S=S, nblk=nblk, SAL=sal, SAH=sah, BLOCK_T=bt,
                      BLOCK_S=block_s)
    block_prefix_kernel((b * H,), SUMS=theta_b, INIT=angle0.float().contiguous() if angle0 is not None else None,
                        OUT=theta_b, LAST=last, nblk=nblk, S=S, REVERSE=False, BLOCK_C=_prefix_block(dev),
                        BLOCK_S=block_s)
    running_angle_kernel(grid, ANG=Angles, DT=DT, THETA_B=theta_b, THETA=theta, L=L, H=H, S=S, nblk=nblk, SAL=sal,
                         SAH=sah, BLOCK_T=bt, BLOCK_S=block_s)
    return theta


def running_angle_backward(dtheta, Angles, DT):
    """The gradients of :func:`running_angle`'s ``theta`` back to ``(dAngles (b, L, H, S), dDT (b, H, L),
    dangle0 (b, H, S))``, fp32: each increment takes the gradients of every angle from its step on (the mod 2 pi
    has slope 1). The same blocks: their sums, the later blocks' share by a reverse prefix, then each block."""
    b, L, H, S = Angles.shape
    dev = Angles.device
    bt, block_s = angle_block(dev), next_power_of_2(max(S, 1))
    nblk = cdiv(L, bt)
    Angles, DT, dtheta = Angles.contiguous(), DT.contiguous(), dtheta.contiguous()
    after = torch.empty((b, H, nblk, S), device=dev, dtype=torch.float32)
    d_angle0 = torch.empty((b, H, S), device=dev, dtype=torch.float32)
    d_angles = torch.empty((b, L, H, S), device=dev, dtype=torch.float32)
    d_dt = torch.empty((b, H, L), device=dev, dtype=torch.float32)
    grid = (nblk, b * H)
    angle_grad_sums_kernel(grid, DTH=dtheta, SUMS=after, L=L, H=H, S=S, nblk=nblk, BLOCK_T=bt, BLOCK_S=block_s)
    block_prefix_kernel((b * H,), SUMS=after, INIT=None, OUT=after, LAST=d_angle0, nblk=nblk, S=S, REVERSE=True,
                        BLOCK_C=_prefix_block(dev), BLOCK_S=block_s)
    angle_grad_kernel(grid, ANG=Angles, DT=DT, DTH=dtheta, AFTER=after, DANG=d_angles, DDT=d_dt, L=L, H=H, S=S,
                      nblk=nblk, SAL=H * S, SAH=S, BLOCK_T=bt, BLOCK_S=block_s)
    return d_angles, d_dt, d_angle0


@triton.jit
def _turn(x1, x2, cos, sin):
    return x1 * cos - x2 * sin, x1 * sin + x2 * cos


@triton.jit
def _qk_at(bi, t, r, hk, L, R, Hqk, N):
    """Offsets of the rows ``(b, t, r, hk, :)`` of ``Q``/``K (b, L, R, Hqk, N)``."""
    return ((bi.to(tl.int64) * L + t) * R + r) * Hqk * N + hk * N


@triton.jit
def _biased(PTR, BIAS, bi, t, r, h, hk, L, R, H, Hqk, N, hs, m, h_ok):
    """``(Q + Q_bias[h, r])`` halves for the steps ``t``: ``(BLOCK_T, BLOCK_H)`` each."""
    x1, x2 = _raw_halves(PTR, bi, t, r, hk, L, R, Hqk, N, hs, m)
    b1, b2 = _bias_halves(BIAS, h, r, R, N, hs, h_ok)
    return x1 + b1, x2 + b2


@triton.jit
def _angles(THETA, bi, t, h, ok, L, H, S, hs, FAST_TRIG: tl.constexpr = False):
    """``cos, sin`` of ``theta (b, L, H, S)`` as ``(BLOCK_T, BLOCK_H)``; 1 and 0 past the turned pairs."""
    m = ok[:, None] & (hs < S)[None, :]
    th = tl.load(THETA + ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + hs[None, :], mask=m, other=0.0)
    if FAST_TRIG:   # the SFU's forms after a reduction to [-pi, pi] (trig.cos_sin; libdevice in the interpreter)
        cos, sin = cos_sin(th)
    else:
        cos = tl.cos(th)
        sin = tl.sin(th)
    return cos, sin


@triton.jit
def _sum_ranks(tiles, AXIS: tl.constexpr, R: tl.constexpr):
    """The ``R`` (at most 4) tiles of ``tiles`` each summed along ``AXIS``, in one reduction across the lanes."""
    if R == 4:
        out = tl.reduce(tiles, AXIS, add4)
    elif R == 3:
        out = tl.reduce(tiles, AXIS, add3)
    elif R == 2:
        out = tl.reduce(tiles, AXIS, add2)
    else:
        out = (tl.sum(tiles[0], axis=AXIS),)
    return out


@triton.jit
def _score_tile(step, h, H, ok, R: tl.constexpr, BLOCK_R: tl.constexpr):
    """The ``(steps, R R)`` scores of head ``h`` as one tile: its columns ``cc`` (``r BLOCK_R + s`` for ranks ``r,
    s``), their offsets in a ``(b, L, H, R, R)`` tensor, and the mask."""
    cc = tl.arange(0, BLOCK_R * BLOCK_R)
    cr = cc // BLOCK_R
    cs = cc % BLOCK_R
    at = (step * H + h)[:, None] * (R * R) + (cr * R + cs)[None, :]
    return cc, at, ok[:, None] & ((cr < R) & (cs < R))[None, :]


@triton.jit
def _scores(q1, q2, qa, qb, k1, k2, ka, kb, SC, SCC, at, ok, r, s):
    """``sc[r, s] = q'_r . k'_s``; for ``s <= r`` the same product as the stages' tensor cores take it, turned
    and in their dtype (``scc``, 0 above the diagonal)."""
    tl.store(SC + at, tl.sum(q1 * k1 + q2 * k2, axis=1), mask=ok)
    scc = tl.sum(qa * ka + qb * kb, axis=1)
    tl.store(SCC + at, tl.where(s <= r, scc, 0.0), mask=ok)


@triton.jit
def _prep_fwd_kernel(Q, K, QB, KB, THETA, QR, KR, SC, SCC, L, H, Hqk, N, S,
                     R: tl.constexpr, DOT: tl.constexpr, HOIST: tl.constexpr, BLOCK_T: tl.constexpr,
                     BLOCK_H: tl.constexpr, MERGE: tl.constexpr = False, BLOCK_R: tl.constexpr = 1,
                     FAST_TRIG: tl.constexpr = False):
    """``HOIST`` (few ranks): every rank's ``k'`` and turned ``k~`` are made once and held, where a loop over the
    ranks ``r`` loaded and turned each ``k'_s`` again for every ``r`` (``R^2`` loads and turns a program).
    ``MERGE`` (with ``HOIST``, ``R <= 4``): a rank ``r``'s ``R`` scores of each kind summed across the lanes in one
    reduction, and the scores stored as ``(steps, R R)`` tiles (``BLOCK_R`` a power of two ``>= R``), not ``2 R R``
    vectors each changing layout for its store."""
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    hk = h // (H // Hqk)
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    hs = tl.arange(0, BLOCK_H)
    h_ok = hs < N // 2
    m = ok[:, None] & h_ok[None, :]
    cos, sin = _angles(THETA, bi, t, h, ok, L, H, S, hs, FAST_TRIG)
    if HOIST:
        ks1 = ()
        ks2 = ()
        kt1 = ()
        kt2 = ()
        for s in tl.static_range(R):
            k1, k2, a, b = _turned_rows(K, KB, KR, bi, t, s, h, hk, L, R, H, Hqk, N, hs, m, h_ok, cos, sin, DOT)
            ks1 = ks1 + (k1,)
            ks2 = ks2 + (k2,)
            kt1 = kt1 + (a,)
            kt2 = kt2 + (b,)
        if MERGE:
            cc, tile_at, tile_ok = _score_tile(bi.to(tl.int64) * L + t, h, H, ok, R, BLOCK_R)
            sc_t = tl.zeros([BLOCK_T, BLOCK_R * BLOCK_R], dtype=tl.float32)
            scc_t = tl.zeros([BLOCK_T, BLOCK_R * BLOCK_R], dtype=tl.float32)
            for r in tl.static_range(R):
                q1, q2, qa, qb = _turned_rows(Q, QB, QR, bi, t, r, h, hk, L, R, H, Hqk, N, hs, m, h_ok, cos, sin, DOT)
                plain = ()
                turned = ()
                for s in tl.static_range(R):
                    plain = plain + (q1 * ks1[s] + q2 * ks2[s],)
                    turned = turned + (qa * kt1[s] + qb * kt2[s],)
                plain_sums = _sum_ranks(plain, 1, R)
                turned_sums = _sum_ranks(turned, 1, R)
                for s in tl.static_range(R):
                    here = cc[None, :] == r * BLOCK_R + s
                    sc_t = tl.where(here, plain_sums[s][:, None], sc_t)
                    if s <= r:
                        scc_t = tl.where(here, turned_sums[s][:, None], scc_t)
            tl.store(SC + tile_at, sc_t, mask=tile_ok)
            tl.store(SCC + tile_at, scc_t, mask=tile_ok)
        else:
            for r in tl.static_range(R):
                q1, q2, qa, qb = _turned_rows(Q, QB, QR, bi, t, r, h, hk, L, R, H, Hqk, N, hs, m, h_ok, cos, sin, DOT)
                for s in tl.static_range(R):
                    at = (((bi.to(tl.int64) * L + t) * H + h) * R + r) * R + s
                    _scores(q1, q2, qa, qb, ks1[s], ks2[s], kt1[s], kt2[s], SC, SCC, at, ok, r, s)
    else:
        # dynamic loops over the ranks: unrolled, they kept every rank's tiles live and spilled kilobytes
        for r in range(R):
            q1, q2, qa, qb = _turned_rows(Q, QB, QR, bi, t, r, h, hk, L, R, H, Hqk, N, hs, m, h_ok, cos, sin, DOT)
            _turned_rows(K, KB, KR, bi, t, r, h, hk, L, R, H, Hqk, N, hs, m, h_ok, cos, sin, DOT)
            for s in range(R):
                k1, k2 = _biased(K, KB, bi, t, s, h, hk, L, R, H, Hqk, N, hs, m, h_ok)
                a, b = _turn(k1, k2, cos, sin)
                at = (((bi.to(tl.int64) * L + t) * H + h) * R + r) * R + s
                _scores(q1, q2, qa, qb, k1, k2, _rounded(a, DOT), _rounded(b, DOT), SC, SCC, at, ok, r, s)


@triton.jit
def _turned_rows(PTR, BIAS, OUT, bi, t, r, h, hk, L, R, H, Hqk, N, hs, m, h_ok, cos, sin, DOT: tl.constexpr):
    """Rank ``r``'s ``x' = Q + Q_bias[h, r]`` (or K's) and ``x~``, turned and rounded to ``DOT``, which is also stored
    to ``OUT (b, L, R, H, N)`` in ``DOT``, the stages' operand dtype (exact: the values are already rounded to it).
    Returns the halves ``(x'_1, x'_2, x~_1, x~_2)``."""
    x1, x2 = _biased(PTR, BIAS, bi, t, r, h, hk, L, R, H, Hqk, N, hs, m, h_ok)
    a, b = _turn(x1, x2, cos, sin)
    a = _rounded(a, DOT)
    b = _rounded(b, DOT)
    dst = (((bi.to(tl.int64) * L + t) * R + r) * H + h) * N
    tl.store(OUT + dst[:, None] + hs[None, :], a.to(OUT.dtype.element_ty), mask=m)
    tl.store(OUT + dst[:, None] + N // 2 + hs[None, :], b.to(OUT.dtype.element_ty), mask=m)
    return x1, x2, a, b


@triton.jit
def _rounded(x, DOT: tl.constexpr):
    """``x`` rounded to the tensor cores' operand dtype, as fp32 values (to nearest in the interpreter too,
    whose own conversion truncates: ``ssd/common._nearest``); unchanged for fp32 operands."""
    if DOT == tl.float32:
        return x
    elif INTERPRETED:
        return _nearest(x, DOT)
    else:
        return x.to(DOT).to(tl.float32)


@triton.jit
def _raw_halves(PTR, bi, t, r, hk, L, R, Hqk, N, hs, m):
    """Rank ``r``'s rows of ``Q``/``K`` without a bias: ``(BLOCK_T, BLOCK_H)`` halves in fp32."""
    at = _qk_at(bi, t, r, hk, L, R, Hqk, N)
    x1 = tl.load(PTR + at[:, None] + hs[None, :], mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(PTR + at[:, None] + N // 2 + hs[None, :], mask=m, other=0.0).to(tl.float32)
    return x1, x2


@triton.jit
def _bias_halves(BIAS, h, r, R, N, hs, h_ok):
    b1 = tl.load(BIAS + (h * R + r) * N + hs, mask=h_ok, other=0.0).to(tl.float32)
    b2 = tl.load(BIAS + (h * R + r) * N + N // 2 + hs, mask=h_ok, other=0.0).to(tl.float32)
    return b1[None, :], b2[None, :]


@triton.jit
def _side_terms(x1, x2, BIAS, DSC, DSCC, at, on, h, s, R, N, hs, h_ok, ok, cos, sin, ga, gb, ea, eb):
    """One side of :func:`_rank_terms`: rank ``s``'s raw rows ``x1, x2`` with their bias, weighted by the scores'
    gradients at ``at`` (``DSCC``'s only where ``on``): into ``ea, eb`` as ``x'``, into ``ga, gb`` turned."""
    b1, b2 = _bias_halves(BIAS, h, s, R, N, hs, h_ok)
    o1 = x1 + b1
    o2 = x2 + b2
    w = tl.load(DSC + at, mask=ok, other=0.0)
    ea += w[:, None] * o1
    eb += w[:, None] * o2
    o1, o2 = _turn(o1, o2, cos, sin)
    w = tl.where(on, tl.load(DSCC + at, mask=ok, other=0.0), 0.0)
    ga += w[:, None] * o1
    gb += w[:, None] * o2
    return ga, gb, ea, eb


@triton.jit
def _rank_terms(k1, k2, q1, q2, KB, QB, DSC, DSCC, h, r, s, R, N, hs, h_ok, step, H, ok, cos, sin,
                g1, g2, g3, g4, e1, e2, e3, e4):
    """Rank ``s``'s share of rank ``r``'s gradients at head ``h``, from ``s``'s raw rows ``k1, k2, q1, q2``: the
    stages' rounded scores ``scc[r, s]`` (``s <= r``) act on ``q~_r, k~_s`` and ``scc[s, r]`` on ``q~_s, k~_r``
    (their gradient passes the rounding straight through onto ``dq~, dk~`` before those are turned back:
    ``g``); ``sc[r, s] = q'_r . k'_s`` feeds ``dq'_r`` and ``sc[s, r]`` feeds ``dk'_r`` (``e``)."""
    row = (step * H + h) * R
    g1, g2, e1, e2 = _side_terms(k1, k2, KB, DSC, DSCC, (row + r) * R + s, r >= s, h, s, R, N, hs, h_ok, ok, cos, sin,
                                 g1, g2, e1, e2)
    g3, g4, e3, e4 = _side_terms(q1, q2, QB, DSC, DSCC, (row + s) * R + r, r <= s, h, s, R, N, hs, h_ok, ok, cos, sin,
                                 g3, g4, e3, e4)
    return g1, g2, g3, g4, e1, e2, e3, e4


@triton.jit
def _prep_bwd_kernel(Q, K, QB, KB, THETA, DQR, DKR, DSC, DSCC, DQ, DK, DQB, DKB, DTH,
                     nb, L, H, Hqk, N, S,
                     R: tl.constexpr, HOIST: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
                     MERGE: tl.constexpr = False, FAST_TRIG: tl.constexpr = False):
    """A program per (step block, row x Q/K head, rank ``r`` x block of ``BLOCK_H`` column pairs ``(i, i + N/2)``):
    ``dQ, dK`` of rank ``r`` summed over the heads sharing the Q/K head, in ``Q``'s dtype; ``DQB, DKB (programs
    along L, b, H, R, N)`` partials; ``DTH (R, b, L, H, S)`` the angle's gradient from rank ``r``'s terms.
    Columns split over programs since every term is per pair: all 64 pairs of N = 128 in one program took 255
    registers and a spill stack on sm_90 (tests/sm90_compile.py --resources), 10.8 ms at B8 L4096 H32 R4 on
    the H200 (2026-12-03). ``HOIST`` (few ranks): every rank's raw ``Q, K`` rows are loaded once, before the loop
    over the heads that share them, not twice a head and rank (L1-bound: 86% hits, 7.5 ms at that shape, Nsight
    Compute on the H200, 2026-12-04)."""
    bk = tl.program_id(1)
    bi = bk // Hqk
    hk = bk % Hqk
    half = N // 2
    ncb = tl.cdiv(half, BLOCK_H)
    r = tl.program_id(2) // ncb
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    hs = tl.program_id(2) % ncb * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = hs < half
    m = ok[:, None] & h_ok[None, :]
    group = H // Hqk
    step = bi.to(tl.int64) * L + t
    dq1 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
    dq2 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
    dk1 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
    dk2 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
    own_q1, own_q2 = _raw_halves(Q, bi, t, r, hk, L, R, Hqk, N, hs, m)
    own_k1, own_k2 = _raw_halves(K, bi, t, r, hk, L, R, Hqk, N, hs, m)
    if HOIST:
        ks1 = ()
        ks2 = ()
        qs1 = ()
        qs2 = ()
        for s in tl.static_range(R):
            a, b = _raw_halves(K, bi, t, s, hk, L, R, Hqk, N, hs, m)
            ks1 = ks1 + (a,)
            ks2 = ks2 + (b,)
            a, b = _raw_halves(Q, bi, t, s, hk, L, R, Hqk, N, hs, m)
            qs1 = qs1 + (a,)
            qs2 = qs2 + (b,)
    # the gradient tiles of q~, k~ read a head ahead, in flight while a head computes (as in prep.py's SISO backward)
    src = ((step * R + r) * H + hk * group) * N
    n1 = tl.load(DQR + src[:, None] + hs[None, :], mask=m, other=0.0)
    n2 = tl.load(DQR + src[:, None] + half + hs[None, :], mask=m, other=0.0)
    n3 = tl.load(DKR + src[:, None] + hs[None, :], mask=m, other=0.0)
    n4 = tl.load(DKR + src[:, None] + half + hs[None, :], mask=m, other=0.0)
    for j in range(group):
        h = hk * group + j
        g1 = n1.to(tl.float32)
        g2 = n2.to(tl.float32)
        g3 = n3.to(tl.float32)
        g4 = n4.to(tl.float32)
        src = ((step * R + r) * H + h + 1) * N
        ahead = m & ((t * 0 + j + 1) < group)[:, None]
        n1 = tl.load(DQR + src[:, None] + hs[None, :], mask=ahead, other=0.0)
        n2 = tl.load(DQR + src[:, None] + half + hs[None, :], mask=ahead, other=0.0)
        n3 = tl.load(DKR + src[:, None] + hs[None, :], mask=ahead, other=0.0)
        n4 = tl.load(DKR + src[:, None] + half + hs[None, :], mask=ahead, other=0.0)
        if tl.program_id(2) % ncb * BLOCK_H < S:
            cos, sin = _angles(THETA, bi, t, h, ok, L, H, S, hs, FAST_TRIG)
        else:   # a column block past the turned pairs (at rotary_dim_divisor 4, half of them): no trig
            cos = tl.full([BLOCK_T, BLOCK_H], 1.0, tl.float32)
            sin = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
        e1 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
        e2 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
        e3 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
        e4 = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
        if HOIST:
            for s in tl.static_range(R):
                g1, g2, g3, g4, e1, e2, e3, e4 = _rank_terms(
                    ks1[s], ks2[s], qs1[s], qs2[s], KB, QB, DSC, DSCC, h, r, s, R, N, hs, h_ok, step, H, ok, cos, sin,
                    g1, g2, g3, g4, e1, e2, e3, e4)
        else:
            for s in range(R):
                k1, k2 = _raw_halves(K, bi, t, s, hk, L, R, Hqk, N, hs, m)
                q1, q2 = _raw_halves(Q, bi, t, s, hk, L, R, Hqk, N, hs, m)
                g1, g2, g3, g4, e1, e2, e3, e4 = _rank_terms(
                    k1, k2, q1, q2, KB, QB, DSC, DSCC, h, r, s, R, N, hs, h_ok, step, H, ok, cos, sin,
                    g1, g2, g3, g4, e1, e2, e3, e4)
        b1, b2 = _bias_halves(QB, h, r, R, N, hs, h_ok)
        a, b = _turn(own_q1 + b1, own_q2 + b2, cos, sin)
        dth = g2 * a - g1 * b
        pq1 = g1 * cos + g2 * sin + e1
        pq2 = g2 * cos - g1 * sin + e2
        b1, b2 = _bias_halves(KB, h, r, R, N, hs, h_ok)
        a, b = _turn(own_k1 + b1, own_k2 + b2, cos, sin)
        dth += g4 * a - g3 * b
        pk1 = g3 * cos + g4 * sin + e3
        pk2 = g4 * cos - g3 * sin + e4
        dq1 += pq1
        dq2 += pq2
        dk1 += pk1
        dk2 += pk2
        part = ((tl.program_id(0).to(tl.int64) * nb + bi) * H + h) * R + r
        if MERGE:   # the biases' four column sums in one reduction across the lanes
            sq1, sq2, sk1, sk2 = tl.reduce((pq1, pq2, pk1, pk2), 0, add4)
        else:
            sq1 = tl.sum(pq1, axis=0)
            sq2 = tl.sum(pq2, axis=0)
            sk1 = tl.sum(pk1, axis=0)
            sk2 = tl.sum(pk2, axis=0)
        tl.store(DQB + part * N + hs, sq1, mask=h_ok)
        tl.store(DQB + part * N + half + hs, sq2, mask=h_ok)
        tl.store(DKB + part * N + hs, sk1, mask=h_ok)
        tl.store(DKB + part * N + half + hs, sk2, mask=h_ok)
        th_at = ((r.to(tl.int64) * nb + bi) * L + t) * H + h
        tl.store(DTH + th_at[:, None] * S + hs[None, :], dth, mask=ok[:, None] & (hs < S)[None, :])
    at = _qk_at(bi, t, r, hk, L, R, Hqk, N)
    tl.store(DQ + at[:, None] + hs[None, :], dq1.to(DQ.dtype.element_ty), mask=m)
    tl.store(DQ + at[:, None] + half + hs[None, :], dq2.to(DQ.dtype.element_ty), mask=m)
    tl.store(DK + at[:, None] + hs[None, :], dk1.to(DK.dtype.element_ty), mask=m)
    tl.store(DK + at[:, None] + half + hs[None, :], dk2.to(DK.dtype.element_ty), mask=m)


# problem: (b, L, R, H, Hqk, N or P, dtype, steps per program, D?, Z?, MIMO_Out?); the warps are tuned, and the
# prep backward's column block (its 16 pairs at 4 warps: 96 registers on Triton 3.9's sm_90 compile, no spill)
def _key(p):
    b, L, *rest = p
    return (bucket(b * L), *rest)


# 8 warps first: with every rank's k' and k~ held (HOIST) a 16-step block at 4 warps spills on sm_90 (255 registers
# and 424 bytes of stack, Triton 3.9; 180 registers at 8 warps)
prep_fwd_kernel = TunableKernel("mamba3_mimo_prep", _prep_fwd_kernel,
                                grid=lambda p, kw: (cdiv(p[1], p[7]), p[0] * p[3]), key=_key,
                                rule=lambda p, mode: dict(num_warps=8), alternatives=lambda p, mode: [dict(num_warps=4)])


def _prep_bwd_rule(p, mode):
    # the interpreter takes few pairs a program, so that tests cross column blocks
    return dict(BLOCK_H=2) if mode.interpreted else dict(BLOCK_H=min(16, _block_h(p[5])), num_warps=4)


def _prep_bwd_alternatives(p, mode):
    most = _block_h(p[5])
    shapes = dict.fromkeys((min(n, most), w) for n, w in ((8, 4), (16, 8), (32, 4), (32, 8), (64, 8)))
    return [dict(BLOCK_H=n, num_warps=w) for n, w in shapes]


prep_bwd_kernel = TunableKernel("mamba3_mimo_prep_bwd_pairs", _prep_bwd_kernel, key=_key, rule=_prep_bwd_rule,
                                alternatives=_prep_bwd_alternatives,
                                grid=lambda p, kw: (cdiv(p[1], p[7]), p[0] * p[4],
                                                    p[2] * cdiv(max(p[5] // 2, 1), kw["BLOCK_H"])))


# (imported here: it takes this module's trig and turn helpers, defined above)
from . import mimo_prep_bwd as _ranked  # noqa: E402


def _prep_bwd_ranks_rule(p, mode):
    # every rank's tiles at once, and (BLOCK_R, BLOCK_R, steps, pairs) products: fewer pairs than a rank's program
    # (sm_90, triton 3.6, R 4, 8-step blocks: 8 pairs 158 registers at 4 warps, 121 at 8, no spill; 32 pairs spill
    # 208 bytes a thread at 4 warps, 32 at 8)
    return dict(BLOCK_H=2) if mode.interpreted else dict(BLOCK_H=min(8, _block_h(p[5])), num_warps=4)


def _prep_bwd_ranks_alternatives(p, mode):
    most = _block_h(p[5])
    shapes = dict.fromkeys((min(n, most), w) for n, w in ((8, 8), (16, 4), (16, 8), (4, 4)))
    return [dict(BLOCK_H=n, num_warps=w) for n, w in shapes]


prep_bwd_ranks_kernel = TunableKernel("mamba3_mimo_prep_bwd_ranks", _ranked._prep_bwd_ranks_kernel, key=_key,
                                      rule=_prep_bwd_ranks_rule, alternatives=_prep_bwd_ranks_alternatives,
                                      grid=lambda p, kw: (cdiv(p[1], p[7]), p[0] * p[4],
                                                          cdiv(max(p[5] // 2, 1), kw["BLOCK_H"])))


def _problem(b, L, R, H, Hqk, width, dtype, bt, *gates):
    return (b, L, R, H, Hqk, width, dtype, bt, *(g is not None for g in gates))


# Step blocks (not tuned), sized so that no kernel spills on sm_90 at N = 128, P = 64
# (tests/sm90_compile.py --resources). The interpreter takes 8 steps: its cost is per program, and the
# tests' rows (up to 30 steps) still cross blocks.
def _blocks(device, forward: bool) -> int:
    if run_mode(device).interpreted:
        return 8
    return 16 if forward else 8


def _block_h(N: int) -> int:
    return next_power_of_2(max(N // 2, 1))


# ranks whose tiles the kernels hold in registers (the prep forward every rank's k' and turned k~ for a step block,
# the prep backward every rank's raw Q, K rows through its loop over heads, the output backward every rank's dy);
# more ranks reload or recompute them
HOIST_RANKS = 4
# (barrier counts here and below read compiled unaligned, before tests/sm90_compile.py --aligned)
# the prep forward (every rank held) sums each rank's R scores of a kind in one reduction and stores the scores as
# (steps, R R) tiles (_prep_fwd_kernel's MERGE): sm_90, triton 3.6, R = 4, 27 barriers a program against 129, 8
# reductions against 26, 2 layout changes against 26; and the prep backward takes each head's four bias column sums
# in one reduction (_prep_bwd_kernel's MERGE) ("0" turns it off; H100, 2026-12-06, MIMO B8: the prep forward 1.635 ms
# against 1.950, the backward 5.437 against 5.466)
PREP_MERGE = os.environ.get("SSM_TRITON_MIMO_PREP_MERGE", "1")
# the prep kernels' cos / sin: libdevice's ("", the default), or "fast", trig.cos_sin (the SFU's forms, as SISO's prep
# takes them). libdevice's were kept when the SFU's measured slower in MIMO's prep backward (7.37 against 5.81 ms,
# H100, 2026-12-05f, two processes, unexplained, and possibly the tuning cache's doing: the second process took the
# first's column block, 12-06f); its SASS at sm_90 (triton 3.6, BLOCK_H 32): libdevice's forms with their slow-path
# branches in a head's 794 instructions. SSM_TRITON_MIMO_PREP_TRIG=fast for an A/B
PREP_TRIG = os.environ.get("SSM_TRITON_MIMO_PREP_TRIG", "")


def prep_forward(Q, K, Q_bias, K_bias, theta, H, dot):
    """``Q, K (b, L, R, Hqk, N)`` contiguous, ``Q_bias, K_bias (H, R, N)`` fp32, ``theta (b, L, H, S)`` fp32,
    ``dot`` the stages' tensor-core dtype (``tl.bfloat16``, ``tl.float16`` or ``tl.float32``) -> ``(q~, k~
    (b, L, R, H, N)`` in ``dot``, ``sc (b, L, H, R, R)`` fp32 ``q'_r . k'_s``, ``scc`` the same for ``s <= r``
    as the stages compute it, from ``q~, k~`` rounded to ``dot`` (0 above the diagonal))``. The in-step block
    subtracts ``scc`` where the stages added it, so their rounding cancels (bf16 rounding of a short,
    cancelling product cost MIMO 5% of an output on the H200). Written in ``dot`` because the stages take them
    so: fp32 tensors cast by PyTorch cost the H200 1.5 ms of the 12.2 ms rank-4 forward (B8 L4096 H32, 12-03d)."""
    b, L, R, Hqk, N = Q.shape
    qr = torch.empty((b, L, R, H, N), device=Q.device, dtype=TORCH_DTYPE[dot])
    kr = torch.empty_like(qr)
    sc = torch.empty((b, L, H, R, R), device=Q.device, dtype=torch.float32)
    scc = torch.empty_like(sc)
    bt = _blocks(Q.device, True)
    prep_fwd_kernel.launch(_problem(b, L, R, H, Hqk, N, Q.dtype, bt), None, Q=Q, K=K, QB=Q_bias, KB=K_bias,
                           THETA=theta, QR=qr, KR=kr, SC=sc, SCC=scc, L=L, H=H, Hqk=Hqk, N=N, S=theta.shape[3], R=R,
                           DOT=dot, HOIST=R <= HOIST_RANKS, BLOCK_T=bt, BLOCK_H=_block_h(N),
                           MERGE=PREP_MERGE != "0", BLOCK_R=next_power_of_2(R), FAST_TRIG=PREP_TRIG == "fast")
    return qr, kr, sc, scc


def prep_backward(dqr, dkr, dsc, dscc, Q, K, Q_bias, K_bias, theta):
    """Gradients of :func:`prep_forward` from ``dqr, dkr (b, L, R, H, N)`` fp32 and ``dsc``: ``(dQ, dK`` in their
    dtypes, ``dQ_bias, dK_bias (H, R, N)`` fp32, ``dtheta (b, L, H, S)`` fp32)."""
    b, L, R, Hqk, N = Q.shape
    H, S = theta.shape[2], theta.shape[3]
    bt = _blocks(Q.device, False)
    nt = cdiv(L, bt)
    dq = torch.empty_like(Q)
    dk = torch.empty_like(K)
    biases = torch.empty((2, nt, b, H, R, N), device=Q.device, dtype=torch.float32)   # summed in one call
    dqb, dkb = biases[0], biases[1]
    problem = _problem(b, L, R, H, Hqk, N, Q.dtype, bt)
    args = dict(Q=Q, K=K, QB=Q_bias, KB=K_bias, THETA=theta, DQR=dqr, DKR=dkr, DSC=dsc, DSCC=dscc, DQ=dq, DK=dk,
                DQB=dqb, DKB=dkb, nb=b, L=L, H=H, Hqk=Hqk, N=N, S=S, R=R, BLOCK_T=bt, FAST_TRIG=PREP_TRIG == "fast")
    ranked = _ranked.PREP_BWD_RANKS != "0"
    if ranked:   # every rank in a program: the angle's gradient summed there
        dth = torch.empty((b, L, H, S), device=Q.device, dtype=torch.float32)
        prep_bwd_ranks_kernel.launch(problem, None, DTH=dth, BLOCK_R=next_power_of_2(R), **args)
    else:
        dth = torch.empty((R, b, L, H, S), device=Q.device, dtype=torch.float32)
        prep_bwd_kernel.launch(problem, None, DTH=dth, HOIST=R <= HOIST_RANKS, MERGE=PREP_MERGE != "0", **args)
    sums = biases.sum((1, 2))
    return dq, dk, sums[0], sums[1], dth if ranked else dth.sum(0)
