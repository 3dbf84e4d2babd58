"""Mamba-3 SISO's decode step: one token, every (batch row, head) in its own program.

``theta' = theta + pi tanh(Angles) DT`` (mod 2 pi); ``q~, k~`` rotated by ``theta'``;
``H' = exp(ADT) H + (1 - lam) DT exp(ADT) v k~_prev^T + lam DT v_new k~^T``; ``out = (H' q~ + D v_new) silu(Z)``;
the new states are ``(theta', H', k~, v_new)``.

A program reads every old state value before it writes the new one (the angle and ``k~`` first, then the
state row block by row block, ``v`` with its block), so the outputs may be the inputs: the state is then
updated in place.
"""
import triton
import triton.language as tl

from ..tuning import Kernel
from .prep import _columns


@triton.jit
def _rotated(X, XB, row, h, ns, partner, n_ok, rot, N, cos, sin):
    x = tl.load(X + row + ns, mask=n_ok, other=0.0).to(tl.float32) + tl.load(XB + h * N + ns, mask=n_ok, other=0.0).to(tl.float32)
    xp = (tl.load(X + row + partner, mask=rot, other=0.0).to(tl.float32)
          + tl.load(XB + h * N + partner, mask=rot, other=0.0).to(tl.float32))
    return tl.where(rot, x * cos + xp * sin, x)


@triton.jit
def _siso_step_kernel(
    # pointers: inputs of this token
    Q, K, V, ADT, DT, TRAP, QB, KB, ANG, D, Z,
    # pointers: states in, states out (may be the same tensors), output
    THETA, SSM, KS, VS, THETA_OUT, SSM_OUT, KS_OUT, VS_OUT, OUT,
    # sizes
    H, HQK, P, N, S,
    # meta-parameters
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    bh = tl.program_id(0)
    bi = bh // H
    h = bh % H
    g = h // (H // HQK)
    ns, n_ok, pair, rot, partner, sign = _columns(N, S, BLOCK_N)
    dt = tl.load(DT + bh).to(tl.float32)
    lam = tl.sigmoid(tl.load(TRAP + bh).to(tl.float32))
    alpha = tl.exp(tl.load(ADT + bh).to(tl.float32))
    beta = (1.0 - lam) * dt * alpha
    gamma = lam * dt

    w = tl.load(ANG + bh * S + pair, mask=rot, other=0.0).to(tl.float32)
    tw = 2.0 / (1.0 + tl.exp(-2.0 * w)) - 1.0
    theta = tl.load(THETA + bh * S + pair, mask=rot, other=0.0).to(tl.float32) + 3.141592653589793 * tw * dt
    theta = theta - 6.283185307179586 * tl.floor(theta / 6.283185307179586)
    cos = tl.cos(theta)
    sin = tl.sin(theta) * sign
    qrow = (bi.to(tl.int64) * HQK + g) * N
    q = _rotated(Q, QB, qrow, h, ns, partner, n_ok, rot, N, cos, sin)
    k = _rotated(K, KB, qrow, h, ns, partner, n_ok, rot, N, cos, sin)
    k_prev = tl.load(KS + bh.to(tl.int64) * N + ns, mask=n_ok, other=0.0).to(tl.float32)
    if HAS_D:
        skip = tl.load(D + h).to(tl.float32)

    for p0 in range(0, P, BLOCK_P):
        ps = p0 + tl.arange(0, BLOCK_P)
        p_ok = ps < P
        at = bh.to(tl.int64) * P + ps
        m = p_ok[:, None] & n_ok[None, :]
        v = tl.load(V + at, mask=p_ok, other=0.0).to(tl.float32)
        v_prev = tl.load(VS + at, mask=p_ok, other=0.0).to(tl.float32)
        cell = at[:, None] * N + ns[None, :]
        state = tl.load(SSM + cell, mask=m, other=0.0).to(tl.float32)
        state = alpha * state + beta * v_prev[:, None] * k_prev[None, :] + gamma * v[:, None] * k[None, :]
        tl.store(SSM_OUT + cell, state.to(SSM_OUT.dtype.element_ty), mask=m)
        tl.store(VS_OUT + at, v.to(VS_OUT.dtype.element_ty), mask=p_ok)
        y = tl.sum(state * q[None, :], axis=1)
        if HAS_D:
            y += skip * v
        if HAS_Z:
            z = tl.load(Z + at, mask=p_ok, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(OUT + at, y.to(OUT.dtype.element_ty), mask=p_ok)
    tl.store(KS_OUT + bh.to(tl.int64) * N + ns, k.to(KS_OUT.dtype.element_ty), mask=n_ok)
    tl.store(THETA_OUT + bh * S + pair, theta.to(THETA_OUT.dtype.element_ty), mask=rot & (ns % 2 == 0))


siso_step_kernel = Kernel(_siso_step_kernel, flags=dict(HAS_D="D", HAS_Z="Z"))
