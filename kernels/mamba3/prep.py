"""Mamba-3 SISO's per-step terms, before and after the SSD stages (see ``kernels/mamba3/__init__.py``).

``_siso_prep_kernel`` (forward), one program per (batch row, head) walking the chunks in order, since the
angles are a running sum over the whole row:

* ``scale_t = lam_t DT_t + DT_{t+1} (1 - lam_{t+1})`` (the SSD's step size; the row's last step has no
  next one), ``cum`` the within-chunk sum of ``ADT`` (fp64, kept as two fp32 planes like the SSD's);
* ``theta_t = theta_{t-1} + pi tanh(Angles_t) DT_t`` in fp32, reduced mod 2 pi at every chunk end;
* ``q~ = Rot(theta) (Q + Q_bias)``, ``k~ = Rot(theta) (K + K_bias)``, one row per head;
* ``qk_t = q'_t . k'_t`` and the diagonal correction ``diag_t = -DT_{t+1} (1 - lam_{t+1}) qk_t``: the SSD's
  own diagonal weighs step ``t`` by ``scale_t``, Mamba-3's by ``lam_t DT_t``.

Rotations act on interleaved pairs ``(2i, 2i + 1)``, ``i < S``. Each column ``n`` is handled on its own:
its pair's angle (``n // 2``) and its partner ``n ^ 1`` are loaded, so no register shuffles are needed
(``sign`` is -1 on the pair's first column, +1 on its second).

``_siso_prep_bwd_kernel`` walks the chunks backwards, per (batch row, head), and pulls the gradients of
``q~, k~, scale, diag`` and the decay back to ``Q, K`` (per head; the launcher sums a group's heads), the
biases, ``Angles``, ``DT``, ``Trap``, ``ADT`` and the entering angle. The angles' gradient is a suffix sum
over the row, carried from chunk to chunk.
"""
import math

import triton
import triton.language as tl

from ..ssd.bwd_dt import decay_grad
from ..tuning import Kernel

TWO_PI = 2 * math.pi


@triton.jit
def _columns(N, S, BLOCK_N: tl.constexpr):
    """``(ns, n_ok, pair index, rotated?, partner column, sign)`` for the ``BLOCK_N`` columns."""
    ns = tl.arange(0, BLOCK_N)
    rot = ns < 2 * S
    sign = tl.where(ns % 2 == 0, -1.0, 1.0)
    return ns, ns < N, ns // 2, rot, ns ^ 1, sign


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
def _angles(ANG, theta_in, dt, bi, h, t, ok, pair, rot, L, H, S):
    """``(theta (steps, columns), tanh(Angles))``: the entering angles plus the running sum inside the chunk."""
    w = tl.load(ANG + ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + pair[None, :],
                mask=ok[:, None] & rot[None, :], other=0.0).to(tl.float32)
    tw = 2.0 / (1.0 + tl.exp(-2.0 * w)) - 1.0   # tanh
    return theta_in[None, :] + tl.cumsum(3.141592653589793 * tw * dt[:, None], axis=0), tw


@triton.jit
def _biased(X, XB, row, h, ns, partner, ok, n_ok, rot, N):
    """``x' = X + bias`` at the columns and at their partners, fp32."""
    m = ok[:, None] & n_ok[None, :]
    x = tl.load(X + row[:, None] + ns[None, :], mask=m, other=0.0).to(tl.float32)
    x += tl.load(XB + h * N + ns, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    xp = tl.load(X + row[:, None] + partner[None, :], mask=m & rot[None, :], other=0.0).to(tl.float32)
    xp += tl.load(XB + h * N + partner, mask=rot, other=0.0).to(tl.float32)[None, :]
    return x, xp


@triton.jit
def _angle_sums_kernel(ANG, DT, SUMS, L, H, S, nc, CHUNK: tl.constexpr, BLOCK_S: tl.constexpr):
    """Each chunk's angle increment ``sum_t pi tanh(Angles_t) DT_t`` per pair, reduced mod 2 pi."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    t = c * CHUNK + tl.arange(0, CHUNK)
    ok = t < L
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    w = tl.load(ANG + ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + ss[None, :],
                mask=ok[:, None] & s_ok[None, :], other=0.0).to(tl.float32)
    tw = 2.0 / (1.0 + tl.exp(-2.0 * w)) - 1.0
    tot = tl.sum(3.141592653589793 * tw * dt[:, None], axis=0)
    tot = tot - 6.283185307179586 * tl.floor(tot / 6.283185307179586)
    tl.store(SUMS + (bh.to(tl.int64) * nc + c) * S + ss, tot, mask=s_ok)


@triton.jit
def _chunk_prefix_kernel(SUMS, INIT, OUT, LAST, nc, S, HAS_INIT: tl.constexpr, REVERSE: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Per (row, head), over the chunks' ``SUMS (nc, S)``: forward, ``OUT[c] = INIT + sum_{c' < c}`` (the
    angle entering chunk ``c``, reduced mod 2 pi) and ``LAST`` the total (the final angle); ``REVERSE``,
    ``OUT[c] = INIT + sum_{c' > c}`` (what the later chunks and the final angle send back to chunk ``c``'s
    angles) and ``LAST`` the total (the entering angle's gradient)."""
    bh = tl.program_id(0)
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    if HAS_INIT:
        carry = tl.load(INIT + bh * S + ss, mask=s_ok, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_S], dtype=tl.float32)
    for b0 in range(0, nc, BLOCK_C):
        i = b0 + tl.arange(0, BLOCK_C)
        if REVERSE:
            c = nc - 1 - i
        else:
            c = i
        m = (i < nc)[:, None] & s_ok[None, :]
        at = (bh.to(tl.int64) * nc + c)[:, None] * S + ss[None, :]
        tile = tl.load(SUMS + at, mask=m, other=0.0)
        before = carry[None, :] + tl.cumsum(tile, axis=0) - tile
        carry += tl.sum(tile, axis=0)
        if not REVERSE:
            before = before - 6.283185307179586 * tl.floor(before / 6.283185307179586)
            carry = carry - 6.283185307179586 * tl.floor(carry / 6.283185307179586)
        tl.store(OUT + at, before, mask=m)
    tl.store(LAST + bh * S + ss, carry, mask=s_ok)


@triton.jit
def _siso_prep_kernel(
    # pointers: inputs (THETA_C: the angle entering each chunk, from _chunk_prefix_kernel)
    Q, K, QB, KB, ANG, DT, TRAP, ADT, THETA_C,
    # pointers: outputs
    QR, KR, DTP, CUM, DIAG, QK,
    # sizes
    L, H, HQK, N, S, Lp, nc, lo_off,
    # meta-parameters
    CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
):
    c = tl.program_id(0)
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    g = h // (H // HQK)
    ns, n_ok, pair, rot, partner, sign = _columns(N, S, BLOCK_N)
    base = bh.to(tl.int64) * L
    row_p = bh.to(tl.int64) * Lp
    t = c * CHUNK + tl.arange(0, CHUNK)
    ok = t < L
    dt, lam, e_next = _steps(DT, TRAP, base, t, L)
    tl.store(DTP + row_p + t, tl.where(ok, lam * dt + e_next, 0.0))
    adt = tl.load(ADT + base + t, mask=ok, other=0.0).to(tl.float64)
    cum = tl.cumsum(adt, axis=0)
    cum_hi = cum.to(tl.float32)
    tl.store(CUM + row_p + t, cum_hi)
    tl.store(CUM + lo_off + row_p + t, (cum - cum_hi.to(tl.float64)).to(tl.float32))

    theta = tl.load(THETA_C + (bh.to(tl.int64) * nc + c) * S + pair, mask=rot, other=0.0)
    th, _ = _angles(ANG, theta, dt, bi, h, t, ok, pair, rot, L, H, S)
    cos = tl.cos(th)
    sin = tl.sin(th) * sign[None, :]
    qrow = ((bi.to(tl.int64) * L + t) * HQK + g) * N
    orow = ((bi.to(tl.int64) * L + t) * H + h) * N
    m = ok[:, None] & n_ok[None, :]
    q, qp = _biased(Q, QB, qrow, h, ns, partner, ok, n_ok, rot, N)
    k, kp = _biased(K, KB, qrow, h, ns, partner, ok, n_ok, rot, N)
    tl.store(QR + orow[:, None] + ns[None, :], tl.where(rot[None, :], q * cos + qp * sin, q).to(QR.dtype.element_ty), mask=m)
    tl.store(KR + orow[:, None] + ns[None, :], tl.where(rot[None, :], k * cos + kp * sin, k).to(KR.dtype.element_ty), mask=m)
    qk = tl.sum(q * k, axis=1)
    tl.store(QK + base + t, qk, mask=ok)
    tl.store(DIAG + row_p + t, tl.where(ok, -e_next * qk, 0.0))


angle_sums_kernel = Kernel(_angle_sums_kernel)
chunk_prefix_kernel = Kernel(_chunk_prefix_kernel, flags=dict(HAS_INIT="INIT"))
siso_prep_kernel = Kernel(_siso_prep_kernel)


@triton.jit
def _unrotate(x, xp, d, dp, cos, sin, sign, rot):
    """Back through ``y_n = x_n cos + x_partner sin_n`` (``sin_n = sign_n sin theta``; the partner's is
    ``-sin_n``): ``(dx_n, d theta)`` from the gradients ``d`` at the column and ``dp`` at its partner. Both
    columns of a pair get the pair's whole ``d theta``."""
    dx = tl.where(rot[None, :], d * cos - dp * sin, d)
    dtheta = sign[None, :] * (d * (xp * cos - x * sin) - dp * (xp * sin + x * cos))
    return dx, tl.where(rot[None, :], dtheta, 0.0)


@triton.jit
def _siso_prep_bwd_kernel(
    # pointers: what the forward read or kept
    Q, K, QB, KB, ANG, DT, TRAP, QK, THETA_C,
    # pointers: gradients arriving (of q~, k~ per head; scale's is XV, the diagonal's DDIAG; the decay's
    # parts RS, CS, INTER, US, F as in the SSD's step-size backward; the first e)
    DQR, DKR, XV, DDIAG, RS, CS, INTER, US, F, DE0,
    # pointers: gradients leaving (DANG and DDT without the later chunks' angle part; DTH_SUMS each chunk's
    # total d theta, from which _chunk_prefix_kernel makes that part)
    DQP, DKP, DANG, DDT, DTRAP, DADT, DTH_SUMS,
    # sizes
    L, H, HQK, N, S, Lp, nc,
    # meta-parameters
    HAS_DE0: tl.constexpr, CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
):
    c = tl.program_id(0)
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    g = h // (H // HQK)
    ns, n_ok, pair, rot, partner, sign = _columns(N, S, BLOCK_N)
    first_of_pair = rot & (ns % 2 == 0)
    base = bh.to(tl.int64) * L
    row_p = bh.to(tl.int64) * Lp
    t = c * CHUNK + tl.arange(0, CHUNK)
    ok = t < L
    dt, lam, e_next = _steps(DT, TRAP, base, t, L)
    tl.store(DADT + base + t, decay_grad(RS, CS, INTER, US, F, row_p + t, bh, nc, c, ok), mask=ok)

    # scale_t = lam_t dt_t + e_{t+1} and diag_t = -e_{t+1} qk_t, with e_t = dt_t (1 - lam_t)
    d_scale = tl.load(XV + row_p + t, mask=ok, other=0.0)
    d_diag = tl.load(DDIAG + row_p + t, mask=ok, other=0.0)
    prev_ok = ok & (t >= 1)
    d_e = (tl.load(XV + row_p + t - 1, mask=prev_ok, other=0.0)
           - tl.load(DDIAG + row_p + t - 1, mask=prev_ok, other=0.0) * tl.load(QK + base + t - 1, mask=prev_ok, other=0.0))
    if HAS_DE0:
        d_e = tl.where(t == 0, tl.load(DE0 + bh), d_e)
    d_qk = -d_diag * e_next
    d_lam = (d_scale - d_e) * dt
    d_dt = d_scale * lam + d_e * (1.0 - lam)

    # the rotations, recomputed from the angle entering the chunk
    theta_in = tl.load(THETA_C + (bh.to(tl.int64) * nc + c) * S + pair, mask=rot, other=0.0)
    th, tw = _angles(ANG, theta_in, dt, bi, h, t, ok, pair, rot, L, H, S)
    cos = tl.cos(th)
    sin = tl.sin(th) * sign[None, :]
    qrow = ((bi.to(tl.int64) * L + t) * HQK + g) * N
    orow = ((bi.to(tl.int64) * L + t) * H + h) * N
    m = ok[:, None] & n_ok[None, :]
    mp = m & rot[None, :]
    q, qp = _biased(Q, QB, qrow, h, ns, partner, ok, n_ok, rot, N)
    k, kp = _biased(K, KB, qrow, h, ns, partner, ok, n_ok, rot, N)
    dq = tl.load(DQR + orow[:, None] + ns[None, :], mask=m, other=0.0)
    dqp = tl.load(DQR + orow[:, None] + partner[None, :], mask=mp, other=0.0)
    dk = tl.load(DKR + orow[:, None] + ns[None, :], mask=m, other=0.0)
    dkp = tl.load(DKR + orow[:, None] + partner[None, :], mask=mp, other=0.0)
    dq_in, dth_q = _unrotate(q, qp, dq, dqp, cos, sin, sign, rot)
    dk_in, dth_k = _unrotate(k, kp, dk, dkp, cos, sin, sign, rot)
    tl.store(DQP + orow[:, None] + ns[None, :], dq_in + d_qk[:, None] * k, mask=m)
    tl.store(DKP + orow[:, None] + ns[None, :], dk_in + d_qk[:, None] * q, mask=m)

    # theta_t is a running sum: its increment at step r gets sum_{t >= r} d theta_t; here the steps of this
    # chunk, the later chunks' part is added by _angle_carry_kernel
    dth = tl.where(ok[:, None], dth_q + dth_k, 0.0)
    total = tl.sum(dth, axis=0)
    suffix = total[None, :] - tl.cumsum(dth, axis=0) + dth
    tl.store(DTH_SUMS + (bh.to(tl.int64) * nc + c) * S + pair, total, mask=first_of_pair)
    d_w = suffix * 3.141592653589793 * (1.0 - tw * tw) * dt[:, None]
    tl.store(DANG + ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + pair[None, :], d_w,
             mask=ok[:, None] & first_of_pair[None, :])
    d_dt += tl.sum(tl.where(first_of_pair[None, :], suffix * 3.141592653589793 * tw, 0.0), axis=1)
    tl.store(DDT + base + t, d_dt, mask=ok)
    tl.store(DTRAP + base + t, (d_lam * lam * (1.0 - lam)).to(DTRAP.dtype.element_ty), mask=ok)


@triton.jit
def _angle_carry_kernel(ANG, DT, CARRY, DANG, DDT, L, H, S, nc, CHUNK: tl.constexpr, BLOCK_S: tl.constexpr):
    """Adds what the later chunks send back through the angles: ``CARRY[c]`` (per pair) times each step's
    increment's derivatives, to ``DANG`` and ``DDT`` (both fp32, in place)."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    t = c * CHUNK + tl.arange(0, CHUNK)
    ok = t < L
    ss = tl.arange(0, BLOCK_S)
    s_ok = ss < S
    m = ok[:, None] & s_ok[None, :]
    dt = tl.load(DT + bh.to(tl.int64) * L + t, mask=ok, other=0.0).to(tl.float32)
    at = ((bi.to(tl.int64) * L + t) * H + h)[:, None] * S + ss[None, :]
    tw = 2.0 / (1.0 + tl.exp(-2.0 * tl.load(ANG + at, mask=m, other=0.0).to(tl.float32))) - 1.0
    carry = tl.load(CARRY + (bh.to(tl.int64) * nc + c) * S + ss, mask=s_ok, other=0.0)[None, :]
    tl.store(DANG + at, tl.load(DANG + at, mask=m, other=0.0) + carry * 3.141592653589793 * (1.0 - tw * tw) * dt[:, None],
             mask=m)
    extra = tl.sum(tl.where(m, carry * 3.141592653589793 * tw, 0.0), axis=1)
    tl.store(DDT + bh.to(tl.int64) * L + t, tl.load(DDT + bh.to(tl.int64) * L + t, mask=ok, other=0.0) + extra, mask=ok)


siso_prep_bwd_kernel = Kernel(_siso_prep_bwd_kernel, flags=dict(HAS_DE0="DE0"))
angle_carry_kernel = Kernel(_angle_carry_kernel)
