"""Mamba-3 MIMO's per-step terms around the SSD stages (``ops/mamba3_mimo.py`` runs the stages in pseudo-time,
rank ``r`` of step ``t`` at ``t R + r``): the rotated ``q~, k~`` going in, the in-step ``R x R`` block, skip,
gate and output projection coming out, forward and backward.

Why kernels: written as PyTorch ops these terms were 48 of MIMO's 53 ms forward at B=8 L=4096 R=4 H=32
(H200, 2026-12-02, ``bench/results/h200-2026-12-02e/profile.txt``): every one of them materialised a
``(b, L, R, H, N)`` fp32 tensor, and the in-step block ran as batched ``R x R`` matrix products.

``_prep_fwd_kernel``, a program per (block of ``BLOCK_T`` steps, row x head): ``q' = Q + Q_bias[h]``,
``k' = K + K_bias[h]`` (Q/K head ``h // (H / Hqk)``), turned by ``theta`` on the half-split pairs
``(n, N/2 + n)``, ``n < S``, written in the stages' operand dtype as ``(b, L, R, H, N)`` (the stages' flat
``(b, L R, H, N)``), and the in-step scores ``sc[r, s] = q'_r . k'_s`` (fp32 ``(b, L, H, R, R)``; a turn
by one angle keeps the dot product).

``_out_fwd_kernel``, a program per (step block, row x head), with ``v_s = V * MIMO_V[h, s]``::

    y_r += sum_s sc[r, s] w[r, s] v_s + D v_r,   w[r, s] = gamma_t (s > r), -e_{t+1} (s <= r)
    out  = sum_r MIMO_Out[h, r] * y_r * silu(Z * MIMO_Z[h, r])

(the stages gave the pairs ``s <= r`` the weight ``scale_t = gamma_t + e_{t+1}``, the in-step block
``gamma_t`` for all). ``_out_bwd_kernel`` pulls ``d out`` back through it: the stages' ``dy`` (fp32), the
scores', ``gamma``'s and ``e``'s gradients, ``dV`` (this part's), ``dZ`` and per-program partial sums of
``dMIMO_V``, ``dMIMO_Z``, ``dMIMO_Out`` and ``dD``. ``_prep_bwd_kernel``, a program per (step block,
row x Q/K head, rank): the stages' ``dq~, dk~`` turned back, plus the scores' terms, summed over the
heads that share the Q/K head; the biases' partial sums; the angle's gradient per rank (summed outside).
"""
import torch
import triton
import triton.language as tl

from ..activations import silu_and_slope
from ..ssd.common import INTERPRETED, _nearest
from ..ssd.cumsum import chunk_row
from ..host import cdiv, next_power_of_2
from ..tuning import Kernel, TunableKernel, bucket, run_mode
from .launch import _prefix_block
from .prep import _rate, angle_sums_kernel, block_prefix_kernel

TORCH_DTYPE = {tl.bfloat16: torch.bfloat16, tl.float16: torch.float16, tl.float32: torch.float32}


@triton.jit
def _running_angle_kernel(ANG, DT, THETA_B, THETA, L, H, S, nblk, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """Block ``j`` of a (row, head)'s running angle, ``THETA (b, L, H, S)`` fp32 in ``[0, 2 pi)``: the angle
    entering the block (``THETA_B``, from SISO's block sums and prefix) plus the block's increments
    ``pi tanh(Angles) DT`` up to and including each step, in fp32 (a block's sum stays small)."""
    j, bh, bi, h, t, ok = chunk_row(L, H, BLOCK_T)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    tw, at, m = _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S)
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
def _angle_grad_kernel(ANG, DT, DTH, AFTER, DANG, DDT, L, H, S, nblk, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    """Block ``j``: each increment ``pi tanh(Angles_t) DT_t`` takes the gradients of every angle from step ``t``
    on (the block's own from ``t``, plus ``AFTER``, the later blocks' sums); through it ``DANG (b, L, H, S)``
    and ``DDT (b, H, L)`` fp32."""
    j, bh, bi, h, t, ok = chunk_row(L, H, BLOCK_T)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    tw, at, m = _rate(ANG, bi, h, t, ok, ss, s_ok, L, H, S)
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
        tl.store(X + ((t.to(tl.int64) * R + r) * H + h)[:, None] * P + pp[None, :], v * w[None, :], mask=m)


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


def rank_inputs(V, MIMO_V):
    """``V (b, L, H, P)``, ``MIMO_V (H, R, P)`` -> ``x (b, L, R, H, P)`` fp32, ``x[:, :, r] = V * MIMO_V[:, r]``: one
    pass writing the ranks' inputs (PyTorch's cast and broadcast product were two, and three more backward)."""
    b, L, H, P = V.shape
    R = MIMO_V.shape[1]
    V, MIMO_V = V.contiguous(), MIMO_V.contiguous()
    x = torch.empty((b, L, R, H, P), device=V.device, dtype=torch.float32)
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
    Angles, DT = Angles.contiguous(), DT.contiguous()
    theta_b = torch.empty((b, H, nblk, S), device=dev, dtype=torch.float32)
    last = torch.empty((b, H, S), device=dev, dtype=torch.float32)
    theta = torch.empty((b, L, H, S), device=dev, dtype=torch.float32)
    grid = (nblk, b * H)
    angle_sums_kernel(grid, ANG=Angles, DT=DT, SUMS=theta_b, L=L, H=H, S=S, nblk=nblk, BLOCK_T=bt, BLOCK_S=block_s)
    block_prefix_kernel((b * H,), SUMS=theta_b, INIT=angle0.float().contiguous() if angle0 is not None else None,
                        OUT=theta_b, LAST=last, nblk=nblk, S=S, REVERSE=False, BLOCK_C=_prefix_block(dev),
                        BLOCK_S=block_s)
    running_angle_kernel(grid, ANG=Angles, DT=DT, THETA_B=theta_b, THETA=theta, L=L, H=H, S=S, nblk=nblk,
                         BLOCK_T=bt, BLOCK_S=block_s)
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
                      nblk=nblk, BLOCK_T=bt, BLOCK_S=block_s)
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
    at = _qk_at(bi, t, r, hk, L, R, Hqk, N)
    half = N // 2
    b1 = tl.load(BIAS + (h * R + r) * N + hs, mask=h_ok, other=0.0).to(tl.float32)
    b2 = tl.load(BIAS + (h * R + r) * N + half + hs, mask=h_ok, other=0.0).to(tl.float32)
    x1 = tl.load(PTR + at[:, None] + hs[None, :], mask=m, other=0.0).to(tl.float32) + b1[None, :]
    x2 = tl.load(PTR + at[:, None] + half + hs[None, :], mask=m, other=0.0).to(tl.float32) + b2[None, :]
    return x1, x2


@triton.jit
def _angles(THETA, bi, t, h, ok, L, H, S, hs):
    """``cos, sin`` of ``theta (b, L, H, S)`` as ``(BLOCK_T, BLOCK_H)``; 1 and 0 past the turned pairs."""
    m = ok[:, None] & (hs < S)[None, :]
    th = tl.load(THETA + ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + hs[None, :], mask=m, other=0.0)
    return tl.cos(th), tl.sin(th)


@triton.jit
def _prep_fwd_kernel(Q, K, QB, KB, THETA, QR, KR, SC, SCC, L, H, Hqk, N, S,
                     R: tl.constexpr, DOT: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
                     BLOCK_H: tl.constexpr):
    """Every rank in the tiles ``(BLOCK_T, BLOCK_R, BLOCK_H)``: each rank's ``k'`` is loaded and turned once a
    step block for the scores of all ranks (a loop over ranks ``r`` turned every ``k'_s`` again for each, 1.9 ms
    at B8 L4096 H32 R4 N128 on the H200, 2026-12-04)."""
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    hk = h // (H // Hqk)
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    hs = tl.arange(0, BLOCK_H)
    half = N // 2
    h_ok = hs < half
    rs = tl.arange(0, BLOCK_R)
    r_ok = rs < R
    m = ok[:, None] & h_ok[None, :]
    rm = ok[:, None] & r_ok[None, :]
    m3 = rm[:, :, None] & h_ok[None, None, :]
    cos, sin = _angles(THETA, bi, t, h, ok, L, H, S, hs)
    c3 = cos[:, None, :]
    s3 = sin[:, None, :]
    ranks = (bi.to(tl.int64) * L + t)[:, None] * R + rs[None, :]                # (BLOCK_T, BLOCK_R): rows (b, t, r)
    src = ((ranks * Hqk + hk) * N)[:, :, None] + hs[None, None, :]
    bias = (h * R + rs)[:, None] * N + hs[None, :]
    bias_m = r_ok[:, None] & h_ok[None, :]
    q1 = tl.load(Q + src, mask=m3, other=0.0).to(tl.float32) + tl.load(QB + bias, mask=bias_m, other=0.0)[None]
    q2 = tl.load(Q + src + half, mask=m3, other=0.0).to(tl.float32) + \
        tl.load(QB + bias + half, mask=bias_m, other=0.0)[None]
    qa, qb = _turn(q1, q2, c3, s3)
    qa = _rounded(qa, DOT)
    qb = _rounded(qb, DOT)
    # stored in DOT, the stages' operand dtype: exact, the values are already rounded to it
    dst = ((ranks * H + h) * N)[:, :, None] + hs[None, None, :]
    tl.store(QR + dst, qa.to(QR.dtype.element_ty), mask=m3)
    tl.store(QR + dst + half, qb.to(QR.dtype.element_ty), mask=m3)
    sc = ((bi.to(tl.int64) * L + t) * H + h)[:, None] * (R * R) + rs[None, :] * R   # [t, r, 0] of (b, L, H, R, R)
    for s in range(R):
        k1, k2 = _biased(K, KB, bi, t, s, h, hk, L, R, H, Hqk, N, hs, m, h_ok)
        tl.store(SC + sc + s, tl.sum(q1 * k1[:, None, :] + q2 * k2[:, None, :], axis=2), mask=rm)
        # s <= r: the same product as the stages' tensor cores take it, turned and in their dtype
        a, b = _turn(k1, k2, cos, sin)
        a = _rounded(a, DOT)
        b = _rounded(b, DOT)
        k_at = (((bi.to(tl.int64) * L + t) * R + s) * H + h) * N
        tl.store(KR + k_at[:, None] + hs[None, :], a.to(KR.dtype.element_ty), mask=m)
        tl.store(KR + k_at[:, None] + half + hs[None, :], b.to(KR.dtype.element_ty), mask=m)
        scc = tl.sum(qa * a[:, None, :] + qb * b[:, None, :], axis=2)
        tl.store(SCC + sc + s, tl.where((rs >= s)[None, :], scc, 0.0), mask=rm)


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
def _in_step(SC, SCC, at, ok, G, E):
    """The in-step block's weight of ``v_s`` in ``y_r``: ``gamma sc[r, s]``, less what the stages added,
    ``(gamma + e_{t+1}) scc[r, s]`` (0 unless ``s <= r``); and ``(sc, scc)``."""
    sc = tl.load(SC + at, mask=ok, other=0.0)
    scc = tl.load(SCC + at, mask=ok, other=0.0)
    return G * sc - (G + E) * scc, sc, scc


@triton.jit
def _rank_weights(MV, SC, SCC, sc_col, rm, g, e, d_h, h, P, rs, ps, p_ok, wm, R: tl.constexpr,
                  BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr):
    """``(coef, mv)``: the weight ``coef (BLOCK_T, BLOCK_R, BLOCK_P)`` each channel of ``V`` takes in ``y_r``
    beyond the stages' (``D MIMO_V[h, r] + sum_s w[r, s] MIMO_V[h, s]``) and ``mv = MIMO_V[h] (BLOCK_R,
    BLOCK_P)``; ``sc_col (BLOCK_T, BLOCK_R)`` the offsets of the in-step scores ``[t, r, 0]``."""
    mv = tl.load(MV + (h * R + rs)[:, None] * P + ps[None, :], mask=wm, other=0.0).to(tl.float32)
    coef = d_h * mv[None, :, :] + tl.zeros([BLOCK_T, BLOCK_R, BLOCK_P], dtype=tl.float32)
    for s in range(R):
        w, _, _ = _in_step(SC, SCC, sc_col + s, rm, g[:, None], e[:, None])
        mv_s = tl.load(MV + (h * R + s) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
        coef += w[:, :, None] * mv_s[None, None, :]
    return coef, mv


@triton.jit
def _out_fwd_kernel(Y, SC, SCC, GAMMA, ENEXT, V, MV, D, Z, MZ, MO, OUT, L, H, P,
                    R: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_OUT: tl.constexpr,
                    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_R: tl.constexpr):
    """Every rank in the tiles ``(BLOCK_T, BLOCK_R, BLOCK_P)``."""
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    ps = tl.arange(0, BLOCK_P)
    p_ok = ps < P
    rs = tl.arange(0, BLOCK_R)
    r_ok = rs < R
    m = ok[:, None] & p_ok[None, :]
    rm = ok[:, None] & r_ok[None, :]
    m3 = rm[:, :, None] & p_ok[None, None, :]
    wm = r_ok[:, None] & p_ok[None, :]
    step = bi.to(tl.int64) * L + t
    at = (step * H + h)[:, None] * P + ps[None, :]                                    # (b, L, H, P)
    y_at = (((step[:, None] * R + rs[None, :]) * H + h) * P)[:, :, None] + ps[None, None, :]   # (b, L, R, H, P)
    sc_col = ((step * H + h) * R * R)[:, None] + rs[None, :] * R
    vt = tl.load(V + at, mask=m, other=0.0).to(tl.float32)
    g = tl.load(GAMMA + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    e = tl.load(ENEXT + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    d_h = 0.0
    if HAS_D:
        d_h = tl.load(D + h).to(tl.float32)
    coef, _ = _rank_weights(MV, SC, SCC, sc_col, rm, g, e, d_h, h, P, rs, ps, p_ok, wm, R, BLOCK_T, BLOCK_R, BLOCK_P)
    y = tl.load(Y + y_at, mask=m3, other=0.0) + vt[:, None, :] * coef
    if HAS_Z:
        zt = tl.load(Z + at, mask=m, other=0.0).to(tl.float32)
        mz = tl.load(MZ + (h * R + rs)[:, None] * P + ps[None, :], mask=wm, other=0.0).to(tl.float32)
        gate, _ = silu_and_slope(zt[:, None, :] * mz[None, :, :])
        y = y * gate
    if HAS_OUT:
        mo = tl.load(MO + (h * R + rs)[:, None] * P + ps[None, :], mask=wm, other=0.0).to(tl.float32)
        tl.store(OUT + at, tl.sum(mo[None, :, :] * y, axis=1).to(OUT.dtype.element_ty), mask=m)
    else:
        tl.store(OUT + y_at, y.to(OUT.dtype.element_ty), mask=m3)


@triton.jit
def _out_bwd_kernel(DOUT, Y, SC, SCC, GAMMA, ENEXT, V, MV, D, Z, MZ, MO,
                    DY, DSC, DSCC, DG, DE, DV, DZ, DMV, DMZ, DMO, DD,
                    L, H, P,
                    R: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_OUT: tl.constexpr,
                    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_R: tl.constexpr):
    """Every rank in the tiles ``(BLOCK_T, BLOCK_R, BLOCK_P)``: a sum over the steps once per rank, not once per
    pair of ranks (a loop over ``r`` and ``s`` took 7.5 ms at B8 L4096 H32 R4 P64 on the H200, 2026-12-04).
    Partials (``DMV, DMZ, DMO (programs along L, b H, R, P)``, ``DD (programs along L, b H)``) are summed
    outside, in a fixed order."""
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ok = t < L
    ps = tl.arange(0, BLOCK_P)
    p_ok = ps < P
    rs = tl.arange(0, BLOCK_R)
    r_ok = rs < R
    m = ok[:, None] & p_ok[None, :]
    rm = ok[:, None] & r_ok[None, :]
    m3 = rm[:, :, None] & p_ok[None, None, :]
    wm = r_ok[:, None] & p_ok[None, :]
    step = bi.to(tl.int64) * L + t
    at = (step * H + h)[:, None] * P + ps[None, :]
    y_at = (((step[:, None] * R + rs[None, :]) * H + h) * P)[:, :, None] + ps[None, None, :]
    sc_col = ((step * H + h) * R * R)[:, None] + rs[None, :] * R
    vt = tl.load(V + at, mask=m, other=0.0).to(tl.float32)
    g = tl.load(GAMMA + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    e = tl.load(ENEXT + bh.to(tl.int64) * L + t, mask=ok, other=0.0)
    d_h = 0.0
    if HAS_D:
        d_h = tl.load(D + h).to(tl.float32)
    # the pre-gate output again, and the weight each channel of V took in it
    coef, mv = _rank_weights(MV, SC, SCC, sc_col, rm, g, e, d_h, h, P, rs, ps, p_ok, wm, R, BLOCK_T, BLOCK_R,
                             BLOCK_P)
    y = tl.load(Y + y_at, mask=m3, other=0.0) + vt[:, None, :] * coef
    if HAS_OUT:
        dout = tl.load(DOUT + at, mask=m, other=0.0).to(tl.float32)
        mo = tl.load(MO + (h * R + rs)[:, None] * P + ps[None, :], mask=wm, other=0.0).to(tl.float32)
        dy = dout[:, None, :] * mo[None, :, :]
    else:
        dy = tl.load(DOUT + y_at, mask=m3, other=0.0).to(tl.float32)
    part = tl.program_id(0).to(tl.int64) * tl.num_programs(1) + bh
    pr = (part * R + rs)[:, None] * P + ps[None, :]
    if HAS_Z:
        zt = tl.load(Z + at, mask=m, other=0.0).to(tl.float32)
        mz = tl.load(MZ + (h * R + rs)[:, None] * P + ps[None, :], mask=wm, other=0.0).to(tl.float32)
        gate, slope = silu_and_slope(zt[:, None, :] * mz[None, :, :])
        dzr = dy * y * slope
        tl.store(DZ + at, tl.sum(dzr * mz[None, :, :], axis=1), mask=m)
        tl.store(DMZ + pr, tl.sum(dzr * zt[:, None, :], axis=0), mask=wm)
        y = y * gate
        dy = dy * gate
    if HAS_OUT:
        tl.store(DMO + pr, tl.sum(dout[:, None, :] * y, axis=0), mask=wm)
    tl.store(DY + y_at, dy, mask=m3)
    tl.store(DV + at, tl.sum(dy * coef, axis=1), mask=m)
    dyv = dy * vt[:, None, :]                                                         # dy_r * V
    d_mv = d_h * tl.sum(dyv, axis=0)
    if HAS_D:
        tl.store(DD + part, tl.sum(tl.sum(tl.sum(dyv * mv[None, :, :], axis=2), axis=1), axis=0))
    d_g = tl.zeros([BLOCK_T], dtype=tl.float32)
    d_e = tl.zeros([BLOCK_T], dtype=tl.float32)
    for s in range(R):
        w, sc, scc = _in_step(SC, SCC, sc_col + s, rm, g[:, None], e[:, None])       # column s: (BLOCK_T, BLOCK_R)
        mv_s = tl.load(MV + (h * R + s) * P + ps, mask=p_ok, other=0.0).to(tl.float32)
        dot = tl.sum(dyv * mv_s[None, None, :], axis=2)                               # dy_r . v_s
        tl.store(DSC + sc_col + s, g[:, None] * dot, mask=rm)
        tl.store(DSCC + sc_col + s, tl.where((rs >= s)[None, :], -(g + e)[:, None] * dot, 0.0), mask=rm)
        d_g += tl.sum((sc - scc) * dot, axis=1)
        d_e -= tl.sum(scc * dot, axis=1)
        d_mv += tl.where(rs[:, None] == s, tl.sum(tl.sum(w[:, :, None] * dyv, axis=1), axis=0)[None, :], 0.0)
    tl.store(DG + bh.to(tl.int64) * L + t, d_g, mask=ok)
    tl.store(DE + bh.to(tl.int64) * L + t, d_e, mask=ok)
    tl.store(DMV + pr, d_mv, mask=wm)


@triton.jit
def _biased_rows(PTR, BIAS, lt, r, h, hk, R, Hqk, N, hs, m, h_ok):
    """``(Q + Q_bias[h, r])`` halves ``(BLOCK_T, BLOCK_H)`` for the steps ``lt`` counted from ``PTR``'s: int32
    offsets from a base pointer that the program moved to its first step once (64-bit offset tiles, hoisted out
    of the loops, held registers)."""
    at = ((lt * R + r) * Hqk + hk) * N
    half = N // 2
    b1 = tl.load(BIAS + (h * R + r) * N + hs, mask=h_ok, other=0.0).to(tl.float32)
    b2 = tl.load(BIAS + (h * R + r) * N + half + hs, mask=h_ok, other=0.0).to(tl.float32)
    x1 = tl.load(PTR + at[:, None] + hs[None, :], mask=m, other=0.0).to(tl.float32) + b1[None, :]
    x2 = tl.load(PTR + at[:, None] + half + hs[None, :], mask=m, other=0.0).to(tl.float32) + b2[None, :]
    return x1, x2


@triton.jit
def _prep_bwd_kernel(Q, K, QB, KB, THETA, DQR, DKR, DSC, DSCC, DQ, DK, DQB, DKB, DTH,
                     nb, L, H, Hqk, N, S,
                     R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr):
    """A program per (step block, row x Q/K head, block of ``BLOCK_H`` column pairs ``(i, i + N/2)``), every rank
    in its tiles ``(BLOCK_T, BLOCK_R, BLOCK_H)``: ``dQ, dK`` summed over the heads sharing the Q/K head, in ``Q``'s
    dtype; ``DQB, DKB (programs along L, b, H, R, N)`` partials; ``DTH (b, L, H, S)`` the angle's gradient, the
    ranks summed. Ranks in the tile, not a program each: a rank's program turned every other rank's ``q', k'``
    again for the scores' terms (``R^2`` turns and angle loads a head, where ``R`` do), and the angle's
    gradient went out per rank (``(R, b, L, H, S)`` fp32, summed outside): 7.5 ms at B8 L4096 H32 R4 N128 on
    the H200 (2026-12-04). Columns split over programs since every term is per pair."""
    bk = tl.program_id(1)
    bi = bk // Hqk
    hk = bk % Hqk
    half = N // 2
    t0 = tl.program_id(0) * BLOCK_T
    lt = tl.arange(0, BLOCK_T)
    ok = t0 + lt < L
    hs = tl.program_id(2) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = hs < half
    rs = tl.arange(0, BLOCK_R)
    r_ok = rs < R
    m = ok[:, None] & h_ok[None, :]
    rm = ok[:, None] & r_ok[None, :]
    m3 = rm[:, :, None] & h_ok[None, None, :]
    bias_m = r_ok[:, None] & h_ok[None, :]
    group = H // Hqk
    row0 = bi.to(tl.int64) * L + t0                                           # the block's first step
    # base pointers at the block's first step; in-block offsets in int32
    Q = Q + row0 * R * Hqk * N
    K = K + row0 * R * Hqk * N
    DQ = DQ + row0 * R * Hqk * N
    DK = DK + row0 * R * Hqk * N
    DQR = DQR + row0 * R * H * N
    DKR = DKR + row0 * R * H * N
    DSC = DSC + row0 * H * R * R
    DSCC = DSCC + row0 * H * R * R
    DTH = DTH + row0 * H * S
    THETA = THETA + row0 * H * S
    ranks = lt[:, None] * R + rs[None, :]                                     # (BLOCK_T, BLOCK_R)
    qk3 = ((ranks * Hqk + hk) * N)[:, :, None] + hs[None, None, :]            # (b, L, R, Hqk, N), first halves
    dq1 = tl.zeros([BLOCK_T, BLOCK_R, BLOCK_H], dtype=tl.float32)
    dq2 = tl.zeros([BLOCK_T, BLOCK_R, BLOCK_H], dtype=tl.float32)
    dk1 = tl.zeros([BLOCK_T, BLOCK_R, BLOCK_H], dtype=tl.float32)
    dk2 = tl.zeros([BLOCK_T, BLOCK_R, BLOCK_H], dtype=tl.float32)
    for j in range(group):
        h = hk * group + j
        th_at = (lt * H + h)[:, None] * S + hs[None, :]
        th_m = ok[:, None] & (hs < S)[None, :]
        th = tl.load(THETA + th_at, mask=th_m, other=0.0)
        cos = tl.cos(th)
        sin = tl.sin(th)
        c3 = cos[:, None, :]
        s3 = sin[:, None, :]
        g3d = ((ranks * H + h) * N)[:, :, None] + hs[None, None, :]           # (b, L, R, H, N)
        g1 = tl.load(DQR + g3d, mask=m3, other=0.0).to(tl.float32)
        g2 = tl.load(DQR + g3d + half, mask=m3, other=0.0).to(tl.float32)
        g3 = tl.load(DKR + g3d, mask=m3, other=0.0).to(tl.float32)
        g4 = tl.load(DKR + g3d + half, mask=m3, other=0.0).to(tl.float32)
        sc = ((lt * H + h) * R * R)[:, None]                                   # rows of (b, L, H, R, R)
        for s in range(R):
            # rank s's q~, k~ as (BLOCK_T, BLOCK_H) tiles, loaded and turned again (cache hits) rather than picked
            # out of the rank tiles: the rounded scores scc[r, s] (s <= r) act on q~_r, k~_s, their gradient
            # passing the rounding straight through onto dq~ and dk~ before those are turned back
            o1, o2 = _biased_rows(K, KB, lt, s, h, hk, R, Hqk, N, hs, m, h_ok)
            o1, o2 = _turn(o1, o2, cos, sin)
            w = tl.load(DSCC + sc + rs[None, :] * R + s, mask=rm & (rs >= s)[None, :], other=0.0)   # dscc[r, s]
            g1 += w[:, :, None] * o1[:, None, :]
            g2 += w[:, :, None] * o2[:, None, :]
            o1, o2 = _biased_rows(Q, QB, lt, s, h, hk, R, Hqk, N, hs, m, h_ok)
            o1, o2 = _turn(o1, o2, cos, sin)
            w = tl.load(DSCC + sc + s * R + rs[None, :], mask=rm & (rs <= s)[None, :], other=0.0)   # dscc[s, r]
            g3 += w[:, :, None] * o1[:, None, :]
            g4 += w[:, :, None] * o2[:, None, :]
        # every rank's q~ and k~ (BLOCK_T, BLOCK_R, BLOCK_H) halves, for the angle's gradient; loaded only now,
        # so that they are not live through the loop above
        bias = (h * R + rs)[:, None] * N + hs[None, :]
        q1 = tl.load(Q + qk3, mask=m3, other=0.0).to(tl.float32) + tl.load(QB + bias, mask=bias_m, other=0.0)[None]
        q2 = tl.load(Q + qk3 + half, mask=m3, other=0.0).to(tl.float32) + \
            tl.load(QB + bias + half, mask=bias_m, other=0.0)[None]
        qa, qb = _turn(q1, q2, c3, s3)
        dth = g2 * qa - g1 * qb
        k1 = tl.load(K + qk3, mask=m3, other=0.0).to(tl.float32) + tl.load(KB + bias, mask=bias_m, other=0.0)[None]
        k2 = tl.load(K + qk3 + half, mask=m3, other=0.0).to(tl.float32) + \
            tl.load(KB + bias + half, mask=bias_m, other=0.0)[None]
        ka, kb = _turn(k1, k2, c3, s3)
        dth += g4 * ka - g3 * kb
        tl.store(DTH + th_at, tl.sum(dth, axis=1), mask=th_m)
        pq1 = g1 * c3 + g2 * s3
        pq2 = g2 * c3 - g1 * s3
        pk1 = g3 * c3 + g4 * s3
        pk2 = g4 * c3 - g3 * s3
        for s in range(R):
            # sc[r, s] = q'_r . k'_s feeds dq'_r; sc[s, r] = q'_s . k'_r feeds dk'_r
            o1, o2 = _biased_rows(K, KB, lt, s, h, hk, R, Hqk, N, hs, m, h_ok)
            w = tl.load(DSC + sc + rs[None, :] * R + s, mask=rm, other=0.0)                  # dsc[r, s]
            pq1 += w[:, :, None] * o1[:, None, :]
            pq2 += w[:, :, None] * o2[:, None, :]
            o1, o2 = _biased_rows(Q, QB, lt, s, h, hk, R, Hqk, N, hs, m, h_ok)
            w = tl.load(DSC + sc + s * R + rs[None, :], mask=rm, other=0.0)                  # dsc[s, r]
            pk1 += w[:, :, None] * o1[:, None, :]
            pk2 += w[:, :, None] * o2[:, None, :]
        dq1 += pq1
        dq2 += pq2
        dk1 += pk1
        dk2 += pk2
        part = ((((tl.program_id(0).to(tl.int64) * nb + bi) * H + h) * R + rs) * N)[:, None] + hs[None, :]
        tl.store(DQB + part, tl.sum(pq1, axis=0), mask=bias_m)
        tl.store(DQB + part + half, tl.sum(pq2, axis=0), mask=bias_m)
        tl.store(DKB + part, tl.sum(pk1, axis=0), mask=bias_m)
        tl.store(DKB + part + half, tl.sum(pk2, axis=0), mask=bias_m)
    tl.store(DQ + qk3, dq1.to(DQ.dtype.element_ty), mask=m3)
    tl.store(DQ + qk3 + half, dq2.to(DQ.dtype.element_ty), mask=m3)
    tl.store(DK + qk3, dk1.to(DK.dtype.element_ty), mask=m3)
    tl.store(DK + qk3 + half, dk2.to(DK.dtype.element_ty), mask=m3)


# problem: (b, L, R, H, Hqk, N or P, dtype, steps per program (0: tuned), D?, Z?, MIMO_Out?); the warps are tuned,
# the forwards' step blocks and the prep backward's column block
def _key(p):
    b, L, *rest = p
    return (bucket(b * L), *rest)


def _warps(name, fn, grid, flags=None):
    return TunableKernel(name, fn, grid=grid, key=_key, rule=lambda p, mode: dict(num_warps=4),
                         alternatives=lambda p, mode: [dict(num_warps=8)], flags=flags)


_GATES = dict(HAS_D="D", HAS_Z="Z", HAS_OUT="MO")
prep_fwd_kernel = TunableKernel("mamba3_mimo_prep_ranks", _prep_fwd_kernel, key=_key,
                                rule=lambda p, mode: dict(BLOCK_T=8, num_warps=4),
                                alternatives=lambda p, mode: [dict(BLOCK_T=8, num_warps=8), dict(BLOCK_T=16, num_warps=8),
                                                              dict(BLOCK_T=4, num_warps=4)],
                                grid=lambda p, kw: (cdiv(p[1], kw["BLOCK_T"]), p[0] * p[3]))


def _prep_bwd_rule(p, mode):
    # the interpreter takes few pairs a program, so that tests cross column blocks
    return dict(BLOCK_H=2) if mode.interpreted else dict(BLOCK_H=min(16, _block_h(p[5])), num_warps=4)


def _prep_bwd_alternatives(p, mode):
    most = _block_h(p[5])
    shapes = dict.fromkeys((min(n, most), w) for n, w in ((8, 4), (16, 8), (32, 4), (32, 8)))
    return [dict(BLOCK_H=n, num_warps=w) for n, w in shapes]


prep_bwd_kernel = TunableKernel("mamba3_mimo_prep_bwd", _prep_bwd_kernel, key=_key, rule=_prep_bwd_rule,
                                alternatives=_prep_bwd_alternatives,
                                grid=lambda p, kw: (cdiv(p[1], p[7]), p[0] * p[4],
                                                    cdiv(max(p[5] // 2, 1), kw["BLOCK_H"])))
def _out_fwd_rule(p, mode):
    # every rank in a program's tiles: 8 steps hold (8, R, P) fp32 tiles (140 registers at R 4, P 64, 4 warps on
    # sm_90, no spill); the interpreter takes 8 too, so tests cross blocks
    return dict(BLOCK_T=8, num_warps=4)


out_fwd_kernel = TunableKernel("mamba3_mimo_out_ranks", _out_fwd_kernel, key=_key, rule=_out_fwd_rule,
                               alternatives=lambda p, mode: [dict(BLOCK_T=8, num_warps=8), dict(BLOCK_T=16, num_warps=8),
                                                             dict(BLOCK_T=4, num_warps=4)],
                               grid=lambda p, kw: (cdiv(p[1], kw["BLOCK_T"]), p[0] * p[3]), flags=_GATES)
out_bwd_kernel = _warps("mamba3_mimo_out_bwd", _out_bwd_kernel, lambda p, kw: (cdiv(p[1], p[7]), p[0] * p[3]),
                        _GATES)


def _problem(b, L, R, H, Hqk, width, dtype, bt, *gates):
    return (b, L, R, H, Hqk, width, dtype, bt, *(g is not None for g in gates))


# Steps a program of the backward kernels (not tuned: their partial sums are shaped by it), sized so that neither
# spills on sm_90 at N = 128, P = 64 with every rank in its tiles (tests/sm90_compile.py --resources: the prep
# backward 147 registers at 16 pairs and 4 warps, the output backward 240); the interpreter's tests (rows up to 30
# steps) cross blocks at 8 too. The forward kernels tune theirs.
BWD_STEPS = 8


def _block_h(N: int) -> int:
    return next_power_of_2(max(N // 2, 1))


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
    prep_fwd_kernel.launch(_problem(b, L, R, H, Hqk, N, Q.dtype, 0), None, Q=Q, K=K, QB=Q_bias, KB=K_bias,
                           THETA=theta, QR=qr, KR=kr, SC=sc, SCC=scc, L=L, H=H, Hqk=Hqk, N=N, S=theta.shape[3], R=R,
                           DOT=dot, BLOCK_R=next_power_of_2(R), BLOCK_H=_block_h(N))
    return qr, kr, sc, scc


def prep_backward(dqr, dkr, dsc, dscc, Q, K, Q_bias, K_bias, theta):
    """Gradients of :func:`prep_forward` from ``dqr, dkr (b, L, R, H, N)`` fp32 and ``dsc``: ``(dQ, dK`` in their
    dtypes, ``dQ_bias, dK_bias (H, R, N)`` fp32, ``dtheta (b, L, H, S)`` fp32)."""
    b, L, R, Hqk, N = Q.shape
    H, S = theta.shape[2], theta.shape[3]
    bt = BWD_STEPS
    nt = cdiv(L, bt)
    dq = torch.empty_like(Q)
    dk = torch.empty_like(K)
    dqb = torch.empty((nt, b, H, R, N), device=Q.device, dtype=torch.float32)
    dkb = torch.empty_like(dqb)
    dth = torch.empty((b, L, H, S), device=Q.device, dtype=torch.float32)
    prep_bwd_kernel.launch(_problem(b, L, R, H, Hqk, N, Q.dtype, bt), None, Q=Q, K=K, QB=Q_bias, KB=K_bias,
                           THETA=theta, DQR=dqr, DKR=dkr, DSC=dsc, DSCC=dscc, DQ=dq, DK=dk, DQB=dqb, DKB=dkb, DTH=dth,
                           nb=b, L=L, H=H, Hqk=Hqk, N=N, S=S, R=R, BLOCK_T=bt, BLOCK_R=next_power_of_2(R))
    return dq, dk, dqb.sum((0, 1)), dkb.sum((0, 1)), dth


def out_forward(y, sc, scc, gamma, e_next, V, MIMO_V, D, Z, MIMO_Z, MIMO_Out):
    """``y (b, L, R, H, P)`` fp32 (the stages' output), ``sc (b, L, H, R, R)``, ``gamma, e_next (b, H, L)`` fp32,
    ``V, Z (b, L, H, P)``, ``MIMO_* (H, R, P)`` fp32, ``D (H,)`` -> ``out (b, L, H, P)`` in V's dtype, or
    ``(b, L, R, H, P)`` without ``MIMO_Out``."""
    b, L, R, H, P = y.shape
    out = torch.empty((b, L, H, P) if MIMO_Out is not None else (b, L, R, H, P), device=V.device, dtype=V.dtype)
    out_fwd_kernel.launch(_problem(b, L, R, H, H, P, V.dtype, 0, D, Z, MIMO_Out), None, Y=y, SC=sc, SCC=scc,
                          GAMMA=gamma, ENEXT=e_next, V=V, MV=MIMO_V, D=D, Z=Z, MZ=MIMO_Z, MO=MIMO_Out, OUT=out, L=L, H=H,
                          P=P, R=R, BLOCK_P=next_power_of_2(P), BLOCK_R=next_power_of_2(R))
    return out


def out_backward(dout, y, sc, scc, gamma, e_next, V, MIMO_V, D, Z, MIMO_Z, MIMO_Out):
    """Gradients of :func:`out_forward`: ``(dy (b, L, R, H, P), dsc, dscc, dgamma, de_next, dV (b, L, H, P), dZ or
    None`` (fp32), ``dMIMO_V, dMIMO_Z or None, dMIMO_Out or None (H, R, P), dD (H,) or None)``."""
    b, L, R, H, P = y.shape
    bt = BWD_STEPS
    nt = cdiv(L, bt)
    f32 = dict(device=V.device, dtype=torch.float32)
    dy = torch.empty((b, L, R, H, P), **f32)
    dsc = torch.empty_like(sc)
    dscc = torch.empty_like(sc)
    dg = torch.empty((b, H, L), **f32)
    de = torch.empty_like(dg)
    dv = torch.empty((b, L, H, P), **f32)
    dz = torch.empty_like(dv) if Z is not None else None
    parts = lambda on: torch.empty((nt, b, H, R, P), **f32) if on else None  # noqa: E731
    dmv, dmz, dmo = parts(True), parts(Z is not None), parts(MIMO_Out is not None)
    dd = torch.empty((nt, b, H), **f32) if D is not None else None
    out_bwd_kernel.launch(_problem(b, L, R, H, H, P, V.dtype, bt, D, Z, MIMO_Out), None, DOUT=dout, Y=y, SC=sc,
                          SCC=scc, GAMMA=gamma, ENEXT=e_next, V=V, MV=MIMO_V, D=D, Z=Z, MZ=MIMO_Z, MO=MIMO_Out, DY=dy,
                          DSC=dsc, DSCC=dscc, DG=dg, DE=de, DV=dv, DZ=dz, DMV=dmv, DMZ=dmz, DMO=dmo, DD=dd, L=L, H=H, P=P,
                          R=R, BLOCK_T=bt, BLOCK_P=next_power_of_2(P), BLOCK_R=next_power_of_2(R))
    fold = lambda t: t.sum((0, 1)) if t is not None else None  # noqa: E731
    return dy, dsc, dscc, dg, de, dv, dz, fold(dmv), fold(dmz), fold(dmo), fold(dd)
