"""References for Mamba-3's single-input single-output (SISO) scan, the op behind ``mamba3_siso_combined``.

Shapes (as in mamba_ssm's ``mamba3_siso_combined``): ``Q, K (b, L, Hqk, N)`` with Hqk dividing H (head ``h``
reads ``h // (H / Hqk)``); ``V, Z (b, L, H, P)``; ``ADT, DT, Trap (b, H, L)``; ``Angles (b, L, H, S)``, S <= N/2;
``Q_bias, K_bias (H, N)``; ``D (H,)``; states ``(angle (b, H, S), ssm (b, H, P, N), k (b, H, N), v (b, H, P))``.
Per head and step, with ``H_t`` a ``(P, N)`` state:

    lam_t = sigmoid(Trap_t),  alpha_t = exp(ADT_t),  beta_t = (1 - lam_t) DT_t alpha_t,  gamma_t = lam_t DT_t
    theta_t = theta_{t-1} + pi tanh(Angles_t) DT_t                       (per rotated pair; kept mod 2 pi)
    q'_t = Q_t + Q_bias,  k'_t = K_t + K_bias;  q~_t = Rot(theta_t) q'_t,  k~_t = Rot(theta_t) k'_t
    H_t = alpha_t H_{t-1} + beta_t v_{t-1} k~_{t-1}^T + gamma_t v_t k~_t^T   (trapezoidal; lam = 1: Mamba-2's)
    y_t = H_t q~_t + D v_t,  out_t = y_t silu(Z_t)

``Rot`` turns the interleaved pairs ``(2i, 2i + 1)``, ``i < S``, by ``theta_{t, i}``; the other dimensions are
left alone. Before the first step the state holds ``(theta_{-1}, H_{-1}, k~_{-1}, v_{-1})`` (zeros by default).

Three routes, all float64 PyTorch (so they differentiate), held together by tests/test_mamba3_reference.py:
``mamba3_siso_loop`` (the ground truth, one step at a time through ``mamba3_siso_step_ref``) and
``mamba3_siso_chunked``, the chunked form the kernels will compute: with ``cs`` the within-chunk cumulative
``ADT`` and ``scale_j = gamma_j + DT_{j+1} (1 - lam_{j+1})``,

    y_t = sum_{j < t} e^{cs_t - cs_j} (q~_t . k~_j) scale_j v_j + [D + gamma_t (q'_t . k'_t)] v_t + e^{cs_t} H_in q~_t

where ``H_in`` is the state entering the chunk plus ``DT_0 (1 - lam_0) v_{-1} k~_{-1}^T`` of its first step.
"""
import math

import torch
import torch.nn.functional as F


def _f64(t):
    return t.double() if t is not None else None


def rotate(x, theta):
    """``x (..., N)`` with its pairs ``(2i, 2i + 1)``, ``i < S``, turned by ``theta (..., S)``."""
    S = theta.shape[-1]
    if S == 0:
        return x
    pairs = x[..., :2 * S].reshape(*x.shape[:-1], S, 2)
    c, s = torch.cos(theta), torch.sin(theta)
    a, b = pairs[..., 0], pairs[..., 1]
    turned = torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(*x.shape[:-1], 2 * S)
    return torch.cat([turned, x[..., 2 * S:]], dim=-1)


def _heads(t, H):
    """``(b, L, Hqk, N)`` -> ``(b, L, H, N)``: each head reads its group's row."""
    return t.repeat_interleave(H // t.shape[2], dim=2)


def _zero_states(b, H, P, N, S, like):
    z = dict(dtype=torch.float64, device=like.device)
    return (torch.zeros(b, H, S, **z), torch.zeros(b, H, P, N, **z), torch.zeros(b, H, N, **z),
            torch.zeros(b, H, P, **z))


def mamba3_siso_step_ref(states, q, k, v, adt, dt, trap, angles, q_bias, k_bias, D=None, z=None):
    """One step. ``states = (angle (b, H, S), ssm (b, H, P, N), k~ (b, H, N), v (b, H, P))``; ``q, k (b, H, N)``
    (already one per head), ``v, z (b, H, P)``, ``adt, dt, trap (b, H)``, ``angles (b, H, S)``. Returns
    ``(out (b, H, P), new states)``; nothing is updated in place."""
    theta, h, k_prev, v_prev = states
    lam = torch.sigmoid(trap)
    alpha = torch.exp(adt)
    beta, gamma = (1 - lam) * dt * alpha, lam * dt
    theta = torch.remainder(theta + math.pi * torch.tanh(angles) * dt[..., None], 2 * math.pi)
    qr, kr = rotate(q + q_bias, theta), rotate(k + k_bias, theta)
    h = (alpha[..., None, None] * h + beta[..., None, None] * v_prev[..., :, None] * k_prev[..., None, :]
         + gamma[..., None, None] * v[..., :, None] * kr[..., None, :])
    y = (h * qr[..., None, :]).sum(-1)
    if D is not None:
        y = y + D[:, None] * v
    if z is not None:
        y = y * F.silu(z)
    return y, (theta, h, kr, v)


def _prepare(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, Input_States):
    b, L, H, P = V.shape
    N, S = Q.shape[-1], Angles.shape[-1]
    t = {"q": _heads(_f64(Q), H), "k": _heads(_f64(K), H), "v": _f64(V), "z": _f64(Z), "angles": _f64(Angles),
         "adt": _f64(ADT).transpose(1, 2), "dt": _f64(DT).transpose(1, 2), "trap": _f64(Trap).transpose(1, 2)}
    states = tuple(_f64(s) for s in Input_States) if Input_States is not None else _zero_states(b, H, P, N, S, V)
    return t, states, _f64(Q_bias), _f64(K_bias), _f64(D)


def mamba3_siso_loop(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D=None, Z=None, Input_States=None):
    """The ground truth: every step in turn. Returns ``(out (b, L, H, P), (angle, ssm, k, v))`` in float64."""
    t, states, qb, kb, D = _prepare(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, Input_States)
    outs = []
    for i in range(V.shape[1]):
        y, states = mamba3_siso_step_ref(states, t["q"][:, i], t["k"][:, i], t["v"][:, i], t["adt"][:, i],
                                         t["dt"][:, i], t["trap"][:, i], t["angles"][:, i], qb, kb, D,
                                         t["z"][:, i] if t["z"] is not None else None)
        outs.append(y)
    return torch.stack(outs, dim=1), states


def mamba3_siso_chunked(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D=None, Z=None, Input_States=None,
                        chunk_size=64):
    """The chunked form (see the module docstring), chunk by chunk with the state passed between them.
    Returns what :func:`mamba3_siso_loop` returns."""
    t, (theta, h, k_prev, v_prev), qb, kb, D = _prepare(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z,
                                                         Input_States)
    b, L, H, P = V.shape
    lam = torch.sigmoid(t["trap"])                                           # (b, L, H)
    gamma = lam * t["dt"]
    # the angles: a running sum over the whole row, then reduced (the rotation is periodic)
    theta_all = theta[:, None] + torch.cumsum(math.pi * torch.tanh(t["angles"]) * t["dt"][..., None], dim=1)
    qp, kp = t["q"] + qb, t["k"] + kb
    qr, kr = rotate(qp, theta_all), rotate(kp, theta_all)
    # scale_j = gamma_j + DT_{j+1} (1 - lam_{j+1}); the row's last step has no next one
    nxt = F.pad((t["dt"] * (1 - lam))[:, 1:], (0, 0, 0, 1))
    scale = gamma + nxt
    outs = []
    for c0 in range(0, L, chunk_size):
        sl = slice(c0, min(c0 + chunk_size, L))
        cs = torch.cumsum(t["adt"][:, sl], dim=1)                            # (b, Lc, H)
        first = t["dt"][:, c0] * (1 - lam[:, c0])                            # (b, H)
        h_in = h + first[..., None, None] * v_prev[..., :, None] * k_prev[..., None, :]
        qc, kc, vc = qr[:, sl], kr[:, sl], t["v"][:, sl]
        gap = cs[:, :, None] - cs[:, None, :]                                # (b, t, j, H)
        Lc = qc.shape[1]
        strict = torch.tril(torch.ones(Lc, Lc, dtype=torch.bool, device=V.device), diagonal=-1)
        decay = torch.where(strict[None, :, :, None], torch.exp(torch.where(strict[None, :, :, None], gap, 0.0)), 0.0)
        scores = torch.einsum("bthn,bjhn->btjh", qc, kc) * decay * scale[:, sl][:, None]
        y = torch.einsum("btjh,bjhp->bthp", scores, vc)
        diag = gamma[:, sl] * (qp[:, sl] * kp[:, sl]).sum(-1)                # (b, Lc, H)
        if D is not None:
            diag = diag + D
        y = y + diag[..., None] * vc
        y = y + torch.exp(cs)[..., None] * torch.einsum("bhpn,bthn->bthp", h_in, qc)
        if t["z"] is not None:
            y = y * F.silu(t["z"][:, sl])
        outs.append(y)
        # the state leaving the chunk: its own contributions (the last step's beta part goes to the next
        # chunk through h_in) and the decayed entering state
        w = torch.exp(cs[:, -1:] - cs) * torch.cat([scale[:, sl][:, :-1], gamma[:, sl][:, -1:]], dim=1)
        h = torch.exp(cs[:, -1])[..., None, None] * h_in + torch.einsum("bjh,bjhp,bjhn->bhpn", w, vc, kc)
        k_prev, v_prev = kc[:, -1], vc[:, -1]
    theta_last = torch.remainder(theta_all[:, -1], 2 * math.pi) if L else theta
    return torch.cat(outs, dim=1), (theta_last, h, k_prev, v_prev)


# ---- MIMO (rank R): the op behind mamba3_mimo ----
#
# Shapes (mamba_ssm's ``mamba3_mimo``): ``Q, K (b, L, R, Hqk, N)``, ``V (b, L, H, P)`` (the x every rank shares),
# ``Q_bias, K_bias (H, R, N)``, ``MIMO_V, MIMO_Z, MIMO_Out (H, R, P)``, ``Angles (b, L, H, N // divisor)``. Per step:
#
#     v_{t,r} = x_t * MIMO_V[r],   q'_{t,r} = Q_{t,r} + Q_bias[r],   k'_{t,r} = K_{t,r} + K_bias[r]
#     q~, k~ = Rot_half(theta_t) q', k'     pairs (n, N/2 + n), n < N / divisor, one angle each
#     H_t = alpha_t H_{t-1} + beta_t sum_r v_{t-1,r} k~_{t-1,r}^T + gamma_t sum_r v_{t,r} k~_{t,r}^T
#     y_{t,r} = H_t q~_{t,r} + D v_{t,r},  gated by silu(z_t * MIMO_Z[r]);  out_t = sum_r MIMO_Out[r] * y_{t,r}
#
# (rank outputs ``(b, L, R, H, P)`` when MIMO_Out is None). The state is ``(angle (b, H, S), ssm (b, H, P, N),
# k~ (b, R, H, N), x (b, H, P))``: the previous step's rank values are x times MIMO_V again.

def rotate_half(x, theta):
    """``x (..., N)`` with its pairs ``(n, N/2 + n)``, ``n < S``, turned by ``theta (..., S)``."""
    S, half = theta.shape[-1], x.shape[-1] // 2
    if S == 0:
        return x
    a, b = x[..., :S], x[..., half:half + S]
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.cat([a * c - b * s, x[..., S:half], a * s + b * c, x[..., half + S:]], dim=-1)


def mamba3_mimo_step_ref(states, q, k, x, adt, dt, trap, angles, q_bias, k_bias, mimo_v, mimo_z, mimo_o, D=None,
                         z=None):
    """One step. ``states = (angle (b, H, S), ssm (b, H, P, N), k~ (b, R, H, N), x (b, H, P))``; ``q, k (b, R, H, N)``
    (one per head), ``x, z (b, H, P)``, ``adt, dt, trap (b, H)``, ``angles (b, H, S)``. Returns ``(out (b, H, P),
    or (b, R, H, P) without mimo_o, new states)``."""
    theta, h, k_prev, x_prev = states
    lam = torch.sigmoid(trap)
    alpha = torch.exp(adt)
    beta, gamma = (1 - lam) * dt * alpha, lam * dt
    theta = torch.remainder(theta + math.pi * torch.tanh(angles) * dt[..., None], 2 * math.pi)
    qr = rotate_half(q + q_bias.transpose(0, 1), theta[:, None])
    kr = rotate_half(k + k_bias.transpose(0, 1), theta[:, None])
    rank_v = lambda xx: xx[:, None] * mimo_v.transpose(0, 1)                    # noqa: E731  (b, R, H, P)
    h = (alpha[..., None, None] * h + beta[..., None, None] * torch.einsum("brhp,brhn->bhpn", rank_v(x_prev), k_prev)
         + gamma[..., None, None] * torch.einsum("brhp,brhn->bhpn", rank_v(x), kr))
    y = torch.einsum("bhpn,brhn->brhp", h, qr)
    if D is not None:
        y = y + D[:, None] * rank_v(x)
    if z is not None:
        y = y * F.silu(z[:, None] * mimo_z.transpose(0, 1))
    out = (y * mimo_o.transpose(0, 1)).sum(1) if mimo_o is not None else y
    return out, (theta, h, kr, x)


def _mimo_prepare(Q, K, V, ADT, DT, Trap, Angles, Z, Input_States, R, H, P, N, S):
    b = V.shape[0]
    t = {"q": _f64(Q).repeat_interleave(H // Q.shape[3], dim=3), "k": _f64(K).repeat_interleave(H // K.shape[3], dim=3),
         "x": _f64(V), "z": _f64(Z), "angles": _f64(Angles), "adt": _f64(ADT).transpose(1, 2),
         "dt": _f64(DT).transpose(1, 2), "trap": _f64(Trap).transpose(1, 2)}
    if Input_States is not None:
        states = tuple(_f64(s) for s in Input_States)
    else:
        z = dict(dtype=torch.float64, device=V.device)
        states = (torch.zeros(b, H, S, **z), torch.zeros(b, H, P, N, **z), torch.zeros(b, R, H, N, **z),
                  torch.zeros(b, H, P, **z))
    return t, states


def mamba3_mimo_loop(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D=None, Z=None,
                     Input_States=None):
    """The ground truth: every step in turn. Returns ``(out (b, L, H, P) or (b, L, R, H, P), (angle, ssm, k, x))``
    in float64."""
    b, L, R, _, N = Q.shape
    H, P, S = V.shape[2], V.shape[3], Angles.shape[-1]
    t, states = _mimo_prepare(Q, K, V, ADT, DT, Trap, Angles, Z, Input_States, R, H, P, N, S)
    args = [_f64(a) for a in (Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, D)]
    outs = []
    for i in range(L):
        y, states = mamba3_mimo_step_ref(states, t["q"][:, i], t["k"][:, i], t["x"][:, i], t["adt"][:, i], t["dt"][:, i],
                                         t["trap"][:, i], t["angles"][:, i], *args,
                                         z=t["z"][:, i] if t["z"] is not None else None)
        outs.append(y)
    return torch.stack(outs, dim=1), states


def mamba3_mimo_chunked(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D=None, Z=None,
                        Input_States=None, chunk_size=16):
    """The chunked form a kernel computes: with ``scale_j = gamma_j + e_{j+1}``, inside a chunk

        y_{t,r} = sum_{j<t} e^{cs_t - cs_j} sum_{r'} (q~_{t,r} . k~_{j,r'}) scale_j v_{j,r'}
                + gamma_t sum_{r'} (q'_{t,r} . k'_{t,r'}) v_{t,r'} + D v_{t,r} + e^{cs_t} H_in q~_{t,r}

    (the step's own ranks all meet through gamma_t: an R x R block on the diagonal; the rotation cancels in
    q~_{t,r} . k~_{t,r'}), ``H_in`` the state entering the chunk plus ``e_0 sum_r v_{-1,r} k~_{-1,r}^T``."""
    b, L, R, _, N = Q.shape
    H, P, S = V.shape[2], V.shape[3], Angles.shape[-1]
    t, (theta, h, k_prev, x_prev) = _mimo_prepare(Q, K, V, ADT, DT, Trap, Angles, Z, Input_States, R, H, P, N, S)
    qb, kb, mv, mz, mo, D = (_f64(a) for a in (Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, D))
    lam = torch.sigmoid(t["trap"])                                             # (b, L, H)
    gamma = lam * t["dt"]
    theta_all = theta[:, None] + torch.cumsum(math.pi * torch.tanh(t["angles"]) * t["dt"][..., None], dim=1)
    qp, kp = t["q"] + qb.transpose(0, 1), t["k"] + kb.transpose(0, 1)           # (b, L, R, H, N)
    qr, kr = rotate_half(qp, theta_all[:, :, None]), rotate_half(kp, theta_all[:, :, None])
    v = t["x"][:, :, None] * mv.transpose(0, 1)                                 # (b, L, R, H, P)
    nxt = F.pad((t["dt"] * (1 - lam))[:, 1:], (0, 0, 0, 1))
    scale = gamma + nxt
    outs = []
    for c0 in range(0, L, chunk_size):
        sl = slice(c0, min(c0 + chunk_size, L))
        cs = torch.cumsum(t["adt"][:, sl], dim=1)                               # (b, Lc, H)
        first = t["dt"][:, c0] * (1 - lam[:, c0])
        h_in = h + first[..., None, None] * torch.einsum("brhp,brhn->bhpn", x_prev[:, None] * mv.transpose(0, 1), k_prev)
        qc, kc, vc = qr[:, sl], kr[:, sl], v[:, sl]
        Lc = qc.shape[1]
        gap = cs[:, :, None] - cs[:, None, :]                                   # (b, t, j, H)
        strict = torch.tril(torch.ones(Lc, Lc, dtype=torch.bool, device=V.device), diagonal=-1)[None, :, :, None]
        decay = torch.where(strict, torch.exp(torch.where(strict, gap, 0.0)), 0.0) * scale[:, sl][:, None]
        y = torch.einsum("btrhn,bjshn,btjh,bjshp->btrhp", qc, kc, decay, vc)
        y = y + gamma[:, sl][:, :, None, :, None] * torch.einsum("btrhn,btshn,btshp->btrhp", qp[:, sl], kp[:, sl], vc)
        if D is not None:
            y = y + D[:, None] * vc
        y = y + torch.exp(cs)[:, :, None, :, None] * torch.einsum("bhpn,btrhn->btrhp", h_in, qc)
        if t["z"] is not None:
            y = y * F.silu(t["z"][:, sl][:, :, None] * mz.transpose(0, 1))
        outs.append((y * mo.transpose(0, 1)).sum(2) if mo is not None else y)
        w = torch.exp(cs[:, -1:] - cs) * torch.cat([scale[:, sl][:, :-1], gamma[:, sl][:, -1:]], dim=1)
        h = torch.exp(cs[:, -1])[..., None, None] * h_in + torch.einsum("bjh,bjrhp,bjrhn->bhpn", w, vc, kc)
        k_prev, x_prev = kc[:, -1], t["x"][:, sl][:, -1]
    theta_last = torch.remainder(theta_all[:, -1], 2 * math.pi) if L else theta
    return torch.cat(outs, dim=1), (theta_last, h, k_prev, x_prev)
