"""Mamba-2's decode step between its two projections in one launch: the causal conv window of ``x, B, C``
(rolled in place), the SSM state update (in place), and the gated RMSNorm, from in_proj's output row to
out_proj's input.

The composed step launches these as three kernels a layer (conv update, state update, gated norm), each a short
chain of memory round trips: at 16 rows the conv update and the norm were 2.2 and 2.1 us a layer of the 130M
LM's 27 us step (H100 profile, 2026-12-06h), the gaps between launches not counted. Here a program owns one
(batch row, head) and ``BLOCK_P`` of its state rows, as the state update does, and computes the conv outputs it
reads: its own ``x`` channels (whose windows it alone rolls) and its group's ``B`` and ``C`` (which every program
of the row's group reads). Two things need the whole row, and go to the row's last program to arrive
(``kernels/arrivals.py``): rolling the B and C windows (after every program has read them old), and the norm,
whose statistics sum over the row's heads: each program stores its ``y`` and its rows' sum of squares, and the
last one sums the partials in a fixed order (deterministic) and rewrites the row normalised.

Values are rounded where the composed step rounds them (the conv's outputs and ``y`` in the model's dtype), so
the two agree to the order of the sums.

Shapes: ``zx (b, O)`` in_proj's output rows, ``O = 2 d_ssm + 2 G N + H`` laid out ``[z, x, B, C, dt]`` (no
gated-MLP columns), row stride any, columns packed; ``conv_state (b, conv_dim, W)`` any strides, ``conv_dim =
d_ssm + 2 G N``; conv weight ``(conv_dim, W)`` and bias ``(conv_dim,)`` packed; ``ssm_state (b, H, P, N)`` any
strides; ``A_log, dt_bias (H,)``; ``D (H,)`` or ``(H * P,)``; norm weight ``(d_ssm,)``; out ``y (b, d_ssm)``.
"""
import torch
import triton
import triton.language as tl

from .activations import softplus
from .arrivals import last_arrival
from .host import cdiv, next_power_of_2
from .tuning import Launch, OneLaunch, TunableKernel, run_mode


@triton.jit
def _conv_now(ZX_ROW, CS_ROW, CONV_W, CONV_B, chans, ok, xbc_lo, cs_c, cs_w, HAS_CONV_B: tl.constexpr,
              W: tl.constexpr):
    """silu of the causal conv of channels ``chans`` at this token, in fp32: the window's last ``W - 1`` entries of
    the state, then the token's value from the row."""
    acc = tl.zeros(chans.shape, dtype=tl.float32)
    if HAS_CONV_B:
        acc += tl.load(CONV_B + chans, mask=ok, other=0.0).to(tl.float32)
    for k in tl.static_range(W - 1):
        old = tl.load(CS_ROW + chans.to(tl.int64) * cs_c + (k + 1) * cs_w, mask=ok, other=0.0).to(tl.float32)
        acc += tl.load(CONV_W + chans * W + k, mask=ok, other=0.0).to(tl.float32) * old
    new = tl.load(ZX_ROW + xbc_lo + chans, mask=ok, other=0.0).to(tl.float32)
    acc += tl.load(CONV_W + chans * W + (W - 1), mask=ok, other=0.0).to(tl.float32) * new
    return acc * tl.sigmoid(acc)


@triton.jit
def _roll_load(ZX_ROW, CS_ROW, chans, ok, xbc_lo, cs_c, cs_w, W: tl.constexpr, BLOCK_W: tl.constexpr):
    """The windows of ``chans`` one step on, as ``(BLOCK, BLOCK_W)``: entry ``j`` takes entry ``j + 1``, the last the
    token's value (stored by :func:`_roll_store`, after a barrier: several threads may hold an entry)."""
    j = tl.arange(0, BLOCK_W)
    both = ok[:, None] & (j < W - 1)[None, :]
    old = tl.load(CS_ROW + chans.to(tl.int64)[:, None] * cs_c + (j + 1)[None, :] * cs_w, mask=both, other=0.0)
    new = tl.load(ZX_ROW + xbc_lo + chans, mask=ok, other=0.0).to(old.dtype)
    return tl.where((j < W - 1)[None, :], old, new[:, None])


@triton.jit
def _roll_store(CS_ROW, rolled, chans, ok, cs_c, cs_w, W: tl.constexpr, BLOCK_W: tl.constexpr):
    j = tl.arange(0, BLOCK_W)
    tl.store(CS_ROW + chans.to(tl.int64)[:, None] * cs_c + j[None, :] * cs_w, rolled, mask=ok[:, None] & (j < W)[None, :])


@triton.jit
def _mamba2_step_kernel(
    ZX, CONV_S, CONV_W, CONV_B, SSM, A_LOG, DT_BIAS, D, NORM_W, CNT, Y, PART,
    # sizes: heads, state rows and columns, B/C groups, heads a group, the norm's group size and count, its epsilon
    H, P, N, G, heads_per_group, d_ssm, conv_dim, norm_size, norm_groups, eps,
    # strides: zx's rows, the conv state's (row, channel, tap), the SSM state's; D's per head (P, or 0 with one a head)
    zx_b, cs_b, cs_c, cs_w, s_b, s_h, s_p, s_n, d_h, d_p,
    W: tl.constexpr, HAS_CONV_B: tl.constexpr, HAS_NORM: tl.constexpr, GATE_FIRST: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_F: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pb = tl.program_id(0)
    bi = tl.program_id(1).to(tl.int64)
    h = tl.program_id(2)
    g = h // heads_per_group
    ps = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    ns = tl.arange(0, BLOCK_N)
    p_ok = ps < P
    n_ok = ns < N
    pn_ok = p_ok[:, None] & n_ok[None, :]
    zx_row = ZX + bi * zx_b
    cs_row = CONV_S + bi * cs_b
    xbc_lo = d_ssm   # zx's columns: z, then x, B, C, then dt
    cx = h * P + ps
    # the conv outputs, rounded to the model's dtype as the composed step's conv update stores them
    x = _conv_now(zx_row, cs_row, CONV_W, CONV_B, cx, p_ok, xbc_lo, cs_c, cs_w, HAS_CONV_B, W)
    x = x.to(ZX.dtype.element_ty).to(tl.float32)
    b = _conv_now(zx_row, cs_row, CONV_W, CONV_B, d_ssm + g * N + ns, n_ok, xbc_lo, cs_c, cs_w, HAS_CONV_B, W)
    b = b.to(ZX.dtype.element_ty).to(tl.float32)
    c = _conv_now(zx_row, cs_row, CONV_W, CONV_B, d_ssm + (G + g) * N + ns, n_ok, xbc_lo, cs_c, cs_w, HAS_CONV_B, W)
    c = c.to(ZX.dtype.element_ty).to(tl.float32)
    # this program's x channels are its own: their windows roll here, stored after the barrier below
    x_rolled = _roll_load(zx_row, cs_row, cx, p_ok, xbc_lo, cs_c, cs_w, W, BLOCK_W)
    dt = softplus(tl.load(zx_row + d_ssm + conv_dim + h).to(tl.float32) + tl.load(DT_BIAS + h).to(tl.float32))
    decay = tl.exp(-tl.exp(tl.load(A_LOG + h).to(tl.float32)) * dt)
    at = SSM + bi * s_b + h * s_h + ps[:, None] * s_p + ns[None, :] * s_n
    state = tl.load(at, mask=pn_ok, other=0.0).to(tl.float32)
    state = decay * state + (dt * x)[:, None] * b[None, :]
    tl.debug_barrier()   # in place: every thread's read of the tile before any store (kernels/state_update.py)
    tl.store(at, state.to(SSM.dtype.element_ty), mask=pn_ok)
    _roll_store(cs_row, x_rolled, cx, p_ok, cs_c, cs_w, W, BLOCK_W)
    y = tl.sum(state * c[None, :], axis=1) + tl.load(D + h * d_h + ps * d_p, mask=p_ok, other=0.0).to(tl.float32) * x
    z_at = zx_row + cx
    if HAS_NORM:
        y = y.to(Y.dtype.element_ty)
        tl.store(Y + bi * d_ssm + cx, y, mask=p_ok)
        u = y.to(tl.float32)
        if GATE_FIRST:
            z = tl.load(z_at, mask=p_ok, other=0.0).to(tl.float32)
            u = u * z * tl.sigmoid(z)
        n_parts = tl.num_programs(0) * H
        tl.store(PART + bi * n_parts + h * tl.num_programs(0) + pb, tl.sum(tl.where(p_ok, u * u, 0.0), axis=0))
    else:   # the gate in the update, as the state update applies z
        z = tl.load(z_at, mask=p_ok, other=0.0).to(tl.float32)
        tl.store(Y + bi * d_ssm + cx, (y * z * tl.sigmoid(z)).to(Y.dtype.element_ty), mask=p_ok)
    tl.debug_barrier()   # this program's reads of the B and C windows and its stores, before it counts itself in
    if last_arrival(CNT, bi, tl.num_programs(0) * H):
        # one round trip for each part where the blocks cover it (the op sizes them so): the B and C windows' reads,
        # then the norm's reads of every partial and row, its stores, and the windows' stores after a barrier
        chans = d_ssm + tl.arange(0, BLOCK_C)
        c_ok = chans < conv_dim
        bc_rolled = _roll_load(zx_row, cs_row, chans, c_ok, xbc_lo, cs_c, cs_w, W, BLOCK_W)
        if HAS_NORM:
            # a norm group spans whole heads (the op checks it): its partials are contiguous, norm_size / P heads'
            n_parts = tl.num_programs(0) * H
            per_group = (norm_size // P) * tl.num_programs(0)
            js = tl.arange(0, BLOCK_J)
            for gn in range(norm_groups):
                # .cg: another SM's stores, read from L2 (this SM's L1 may hold the lines from before)
                parts = tl.load(PART + bi * n_parts + gn * per_group + js, mask=js < per_group, other=0.0,
                                cache_modifier=".cg")
                rstd = 1.0 / tl.sqrt(tl.sum(parts, axis=0) / norm_size + eps)
                for lo in range(0, norm_size, BLOCK_F):
                    fs = gn * norm_size + lo + tl.arange(0, BLOCK_F)
                    f_ok = fs < (gn + 1) * norm_size
                    yf = tl.load(Y + bi * d_ssm + fs, mask=f_ok, other=0.0, cache_modifier=".cg").to(tl.float32)
                    zf = tl.load(zx_row + fs, mask=f_ok, other=0.0).to(tl.float32)
                    gate = zf * tl.sigmoid(zf)
                    if GATE_FIRST:
                        yf = yf * gate
                    yf = yf * rstd * tl.load(NORM_W + fs, mask=f_ok, other=0.0).to(tl.float32)
                    if not GATE_FIRST:
                        yf = yf * gate
                    tl.store(Y + bi * d_ssm + fs, yf.to(Y.dtype.element_ty), mask=f_ok)
        tl.debug_barrier()
        _roll_store(cs_row, bc_rolled, chans, c_ok, cs_c, cs_w, W, BLOCK_W)


def _rule(problem, mode):
    """A ``(BLOCK_P, N)`` tile near 4K fp32 elements, four warps: every program also reads its group's B and C
    windows (2 N channels of W taps and weights, ~4 KB at N 128 against 16 KB of bf16 state rows in and out at 32
    rows), so halving the rows (the state update's tuner took 16 there) would double that share; one warp and 16 rows
    in the interpreter."""
    P, N = problem[1], problem[2]
    if mode.interpreted:
        return dict(BLOCK_P=min(16, next_power_of_2(P)), num_warps=1)
    return dict(BLOCK_P=max(1, min(next_power_of_2(P), 4096 // next_power_of_2(N))), num_warps=4)


# one candidate (the rule): the bound launches of op plans time nothing
mamba2_step_kernel = TunableKernel(
    "mamba2_step", _mamba2_step_kernel, rule=_rule, key=lambda p: p[1:], restore=("CONV_S", "SSM"),
    grid=lambda problem, kw: (cdiv(problem[1], kw["BLOCK_P"]), problem[0], problem[3]),
    flags=dict(HAS_CONV_B="CONV_B", HAS_NORM="NORM_W"))

# the tensors each call gives (a plan's vary), then its outputs
VARY = ("ZX", "CONV_S", "CONV_W", "CONV_B", "SSM", "A_LOG", "DT_BIAS", "D", "NORM_W", "CNT")
OUTS = ("Y", "PART")


def step_args(zx, conv_state, conv_w, conv_b, ssm_state, A_log, dt_bias, D, norm_w, cnt, y, part, *, ngroups: int,
              norm_size: int, eps: float, gate_first: bool):
    """``(problem, launch arguments)``: shapes as the module docstring says; ``part (b, H * ceil(P / BLOCK_P))``
    fp32 scratch for the norm's partial sums, ``cnt (b,)`` the state's zeroed counters."""
    bsz, H, P, N = ssm_state.shape
    conv_dim, W = conv_w.shape
    d_ssm = H * P
    problem = (bsz, P, N, H, W, zx.dtype, ssm_state.dtype, conv_state.dtype, norm_w is not None, gate_first,
               D.numel() != H)
    n_parts = H * cdiv(P, _rule(problem, _mode(zx))["BLOCK_P"])
    per_group = (norm_size // P) * (n_parts // H) if norm_w is not None else 1
    return problem, dict(
        ZX=zx, CONV_S=conv_state, CONV_W=conv_w, CONV_B=conv_b, SSM=ssm_state, A_LOG=A_log, DT_BIAS=dt_bias, D=D,
        NORM_W=norm_w, CNT=cnt, Y=y, PART=part,
        H=H, P=P, N=N, G=ngroups, heads_per_group=H // ngroups, d_ssm=d_ssm, conv_dim=conv_dim, norm_size=norm_size,
        norm_groups=d_ssm // norm_size, eps=float(eps),
        zx_b=zx.stride(0), cs_b=conv_state.stride(0), cs_c=conv_state.stride(1), cs_w=conv_state.stride(2),
        s_b=ssm_state.stride(0), s_h=ssm_state.stride(1), s_p=ssm_state.stride(2), s_n=ssm_state.stride(3),
        d_h=P if D.numel() != H else 1, d_p=1 if D.numel() != H else 0,
        W=W, GATE_FIRST=gate_first, BLOCK_N=next_power_of_2(N), BLOCK_W=next_power_of_2(W),
        BLOCK_F=min(4096, next_power_of_2(norm_size)), BLOCK_C=next_power_of_2(conv_dim - d_ssm),
        BLOCK_J=next_power_of_2(per_group))


def _mode(t):
    return run_mode(t.device)


def out_shapes(zx, ssm_state):
    """``(y, part)``'s shapes: ``(b, d_ssm)`` and ``(b, H * ceil(P / BLOCK_P))``."""
    bsz, H, P, N = ssm_state.shape
    block_p = _rule((bsz, P, N), _mode(zx))["BLOCK_P"]
    return (bsz, H * P), (bsz, H * cdiv(P, block_p))


def _outputs(zx, ssm_state):
    """The call's ``y`` and ``part`` (:func:`out_shapes`), empty."""
    y_shape, part_shape = out_shapes(zx, ssm_state)
    return (torch.empty(y_shape, device=zx.device, dtype=zx.dtype),
            torch.empty(part_shape, device=zx.device, dtype=torch.float32))


def step(zx, conv_state, conv_w, conv_b, ssm_state, A_log, dt_bias, D, norm_w, cnt, **opts):
    """One launch of the step (shapes as the module docstring says; the op checks them; ``cnt`` the state's
    counters, ``arrivals.counters``); updates both states in place and returns ``y (b, d_ssm)`` in ``zx``'s dtype."""
    y, part = _outputs(zx, ssm_state)
    problem, args = step_args(zx, conv_state, conv_w, conv_b, ssm_state, A_log, dt_bias, D, norm_w, cnt, y, part,
                              **opts)
    mamba2_step_kernel.launch(problem, **args)
    return y


def step_plan(*tensors, **opts) -> OneLaunch:
    """:func:`step` as an op plan (``ssm_triton/ops/_plans.py``): ``plan((zx, conv_state, conv_w, conv_b,
    ssm_state, A_log, dt_bias, D, norm_w, cnt)) -> [y, part]`` for tensors of these shapes, strides and dtypes."""
    zx, ssm_state = tensors[0], tensors[4]
    y, part = _outputs(zx, ssm_state)   # stand in for each call's
    problem, args = step_args(*tensors, y, part, **opts)
    take = tuple(i for i, t in enumerate(tensors) if t is not None)
    launch = Launch(mamba2_step_kernel, problem, args, tuple(VARY[i] for i in take) + OUTS)
    return OneLaunch(launch, take, ((tuple(y.shape), zx.dtype), (tuple(part.shape), torch.float32)), zx.device)
