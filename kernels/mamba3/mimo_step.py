"""Mamba-3 MIMO's decode step (rank R): one program per (batch row, head).

``theta' = theta + pi tanh(Angles) DT`` (mod 2 pi); per rank ``q~_r, k~_r`` are ``Q_r + Q_bias[h, r]`` and
``K_r + K_bias[h, r]`` turned by ``theta'`` on the half-split pairs ``(n, N/2 + n)``, ``n < S``;
``v_r = x MIMO_V[h, r]``;

    H' = exp(ADT) H + (1 - lam) DT exp(ADT) sum_r v_prev_r k~_prev_r^T + lam DT sum_r v_r k~_r^T
    y_r = H' q~_r + D v_r,  gated by silu(z MIMO_Z[h, r]),  out = sum_r MIMO_Out[h, r] y_r (or the y_r)

The rank sums are products with the rank axis padded to 16 (``tl.dot``'s least size); the state rows go by
blocks of ``BLOCK_P``, each read before it is written, so the states may be updated in place (the angle,
``k~`` and ``x`` states are read before any write too); or written to new tensors from the old (or from zeros:
``HAS_STATES`` off), ``x`` then not stored (``STORE_X`` off: the new ``x`` state is the token's ``V``).
"""
import functools

import triton
import triton.language as tl

from ..host import next_power_of_2
from ..ssd.common import mm
from ..tuning import TunableKernel
from .step import (STATE_NAMES, new_angle, turned_rows, STEP_ROWS, counters, input_strides, last_to_read, launch_step, new_state_shapes,
                   plan_of, step_grid, step_outs, step_terms)


@triton.jit
def _mimo_step_kernel(
    # pointers: inputs of this token (Q, K (b, R, Hqk, N); V, Z (b, H, P); biases (H, R, N); MIMO_* (H, R, P))
    # each packed after its batch dim, ANG's head dim any stride; the block's parameters under PRE / NORM (DTB (H,);
    # QW, KW (N,))
    Q, K, V, ADT, DT, TRAP, QB, KB, MV, MZ, MO, ANG, D, Z, DTB, QW, KW,
    # pointers: states in and out (may be the same tensors: angle (b, H, S), ssm (b, H, P, N), k~ (b, R, H, N),
    # x (b, H, P); the states in absent without HAS_STATES, XS_OUT without STORE_X) and the output (b, H, P), or
    # (b, R, H, P) without MIMO_Out
    THETA, SSM, KS, XS, THETA_OUT, SSM_OUT, KS_OUT, XS_OUT, OUT, CNT,
    # the inputs' batch strides (ANG's head stride too: 0 where the heads share one row of angles)
    sQ, sK, sV, sZ, sA, sD, sT, sG, sGh,
    # sizes; the block's decay floor and norm epsilon (read under PRE / NORM)
    H, HQK, R, P, N, S, A_FLOOR, EPS,
    # meta-parameters
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_MO: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_STATES: tl.constexpr = True, STORE_X: tl.constexpr = True, PRE: tl.constexpr = False,
    NORM: tl.constexpr = False, SPLIT: tl.constexpr = False,
):
    bh, row, h, g, dt, alpha, beta, gamma = step_terms(DT, TRAP, ADT, DTB, A_FLOOR, sD, sA, sT, H, HQK, PRE)

    # columns: n < S pairs with N/2 + n; the pair's angle index; the partner's sign in the turn
    ns = tl.arange(0, BLOCK_N)
    n_ok = ns < N
    half = N // 2
    first = ns < S
    second = (ns >= half) & (ns < half + S)
    rot = first | second
    angle_ix = tl.where(second, ns - half, ns)
    partner = tl.where(first, ns + half, ns - half)
    theta = new_angle(ANG, THETA, row, sG, h, sGh, bh, S, angle_ix, rot, dt, HAS_STATES)
    cos = tl.where(rot, tl.cos(theta), 1.0)
    sin = tl.where(first, -tl.sin(theta), tl.where(second, tl.sin(theta), 0.0))

    rk = tl.arange(0, 16)            # the rank axis, padded for tl.dot
    rk_ok = rk < R
    qrows = (rk * HQK + g) * N
    brows = (h * R + rk) * N
    q = turned_rows(Q + row * sQ, QB, QW, qrows, brows, ns, partner, rk_ok, n_ok, rot, cos, sin, N, EPS, NORM)  # (16, BLOCK_N)
    k = turned_rows(K + row * sK, KB, KW, qrows, brows, ns, partner, rk_ok, n_ok, rot, cos, sin, N, EPS, NORM)
    krows = ((row * R + rk) * H + h) * N
    km = rk_ok[:, None] & n_ok[None, :]
    if HAS_STATES:
        k_prev = tl.load(KS + krows[:, None] + ns[None, :], mask=km, other=0.0).to(tl.float32)
    else:   # read only under HAS_STATES, but a name the loop sees must exist either way
        k_prev = tl.zeros([16, BLOCK_N], dtype=tl.float32)
    if HAS_D:
        skip = tl.load(D + h).to(tl.float32)

    for p0 in range(tl.program_id(1) * BLOCK_P if SPLIT else 0, P, P if SPLIT else BLOCK_P):
        ps = p0 + tl.arange(0, BLOCK_P)
        p_ok = ps < P
        at = bh.to(tl.int64) * P + ps
        rp = rk_ok[:, None] & p_ok[None, :]
        proj = (h * R + rk)[:, None] * P + ps[None, :]
        mv = tl.load(MV + proj, mask=rp, other=0.0).to(tl.float32)                    # (16, BLOCK_P)
        x = tl.load(V + row * sV + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)
        cell = at[:, None] * N + ns[None, :]
        pm = p_ok[:, None] & n_ok[None, :]
        # sum_r v_r k_r^T as (P, ranks) @ (ranks, N)
        state = gamma * mm(tl.trans(mv * x[None, :]), k, tl.float32)
        if HAS_STATES:   # else from zero states: no decayed state, no previous token's term
            x_prev = tl.load(XS + at, mask=p_ok, other=0.0).to(tl.float32)
            state += (alpha * tl.load(SSM + cell, mask=pm, other=0.0).to(tl.float32)
                      + beta * mm(tl.trans(mv * x_prev[None, :]), k_prev, tl.float32))
        # in place (SSM_OUT is SSM, XS_OUT is XS): every thread's reads of the old rows and x_prev are done before
        # they are overwritten by threads that may hold other elements (the SISO step raced so on the H200)
        tl.debug_barrier()
        tl.store(SSM_OUT + cell, state.to(SSM_OUT.dtype.element_ty), mask=pm)
        if STORE_X:
            tl.store(XS_OUT + at, x.to(XS_OUT.dtype.element_ty), mask=p_ok)
        y = mm(q, tl.trans(state), tl.float32)                                           # (16, BLOCK_P)
        if HAS_D:
            y += skip * mv * x[None, :]
        if HAS_Z:
            zr = tl.load(Z + row * sZ + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :] * tl.load(MZ + proj, mask=rp, other=0.0).to(tl.float32)
            y = y * zr * tl.sigmoid(zr)
        if HAS_MO:
            out = tl.sum(y * tl.load(MO + proj, mask=rp, other=0.0).to(tl.float32), axis=0)
            tl.store(OUT + at, out.to(OUT.dtype.element_ty), mask=p_ok)
        else:
            orows = ((row * R + rk) * H + h) * P
            tl.store(OUT + orows[:, None] + ps[None, :], y.to(OUT.dtype.element_ty), mask=rp)
    tl.debug_barrier()   # the previous k~ and angle were read by every warp
    if last_to_read(CNT, bh, SPLIT):
        tl.store(KS_OUT + krows[:, None] + ns[None, :], k.to(KS_OUT.dtype.element_ty), mask=km)
        tl.store(THETA_OUT + bh * S + ns, theta.to(THETA_OUT.dtype.element_ty), mask=first)


def _rule(p, mode):
    # the ranks' q, k, k_prev stay in registers, which 16-row state blocks and 8 warps allow; split (step.STEP_ROWS),
    # a program takes one such block
    return dict(BLOCK_P=16, BLOCK_N=max(16, next_power_of_2(p[3])), num_warps=8, **({"SPLIT": True} if STEP_ROWS else {}))


# one candidate (the rule)
mimo_step_kernel = TunableKernel(
    "mamba3_mimo_step", _mimo_step_kernel, grid=step_grid(2), key=lambda p: p[1:], rule=_rule,
    flags=dict(HAS_D="D", HAS_Z="Z", HAS_MO="MO", HAS_STATES="SSM", STORE_X="XS_OUT", PRE="DTB", NORM="QW"))

# the token's inputs, then the block's parameters (None from mamba3_mimo_step): dt_bias, the norms' weights
INPUTS = ("Q", "K", "V", "ADT", "DT", "TRAP", "QB", "KB", "MV", "MZ", "MO", "ANG", "D", "Z", "DTB", "QW", "KW")
ANGLES = 11   # Angles' place among them


def mimo_step_args(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, dt_bias, Q_norm,
                   K_norm, angle, ssm, k, x, out, angle_out=None, ssm_out=None, k_out=None, *, A_floor=0.0, eps=0.0):
    """``(problem, launch arguments)`` of one MIMO step (inputs as ``step.reads_as_is`` allows, states packed):
    the states updated in place, or, with ``ssm_out``, into ``(angle_out, ssm_out, k_out)`` from them (zeros
    where they are None; the new ``x`` is ``V``, not stored). The block's parameters as in ``step.step_args``."""
    b, H, P = V.shape
    R, Hqk, N = Q.shape[1], Q.shape[2], Q.shape[3]
    args = dict(zip(INPUTS, (Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z,
                             dt_bias, Q_norm, K_norm)))
    new = ssm_out is not None
    args.update(THETA=angle, SSM=ssm, KS=k, XS=x, THETA_OUT=angle_out if new else angle,
                SSM_OUT=ssm_out if new else ssm, KS_OUT=k_out if new else k, XS_OUT=None if new else x, OUT=out,
                CNT=None if new else counters(k, b * H), H=H,
                HQK=Hqk, R=R, P=P, N=N, S=Angles.shape[2], A_FLOOR=float(A_floor), EPS=float(eps),
                **input_strides(Q, K, V, Z, ADT, DT, Trap, Angles))
    return (b * H, R, P, N), args


def out_shape(V, Q, MIMO_Out) -> tuple:
    """``(b, H, P)``, or ``(b, R, H, P)`` when the ranks' outputs come back apart (no MIMO_Out)."""
    return tuple(V.shape) if MIMO_Out is not None else (V.shape[0], Q.shape[1], *V.shape[1:])


def mimo_step(*tensors, new_states: bool = False, A_floor: float = 0.0, eps: float = 0.0):
    """One step of ``(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, dt_bias,
    Q_norm, K_norm, angle, ssm, k, x)`` (:func:`mimo_step_args`): the states updated in place, returns the
    output; or (``new_states``) ``(out, angle, ssm, k~)`` with new fp32 states, the old ones (or None: zeros)
    only read."""
    V, Q = tensors[2], tensors[0]
    return launch_step(mimo_step_kernel, functools.partial(mimo_step_args, A_floor=A_floor, eps=eps), tensors,
                       out_shape(V, Q, tensors[10]),
                       new_state_shapes(V, Q, tensors[ANGLES], Q.shape[1]) if new_states else None)


def mimo_step_plan(tensors, new_states: bool = False, A_floor: float = 0.0, eps: float = 0.0):
    """:func:`mimo_step` of tensors of these shapes, strides and dtypes as a step plan (``step.StepPlan``)."""
    V, Q = tensors[2], tensors[0]
    states = STATE_NAMES[:3] + (("XS", "XS_OUT"),)
    names = INPUTS + (tuple(n for n, _ in states) if new_states else states)
    shapes = new_state_shapes(V, Q, tensors[ANGLES], Q.shape[1]) if new_states else None
    return plan_of(mimo_step_kernel, functools.partial(mimo_step_args, A_floor=A_floor, eps=eps), tensors, names,
                   step_outs(V, out_shape(V, Q, tensors[10]), shapes), ANGLES)
