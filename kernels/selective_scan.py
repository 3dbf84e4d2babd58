"""Mamba-1's fused selective scan, forward and backward; public as `ssm_triton.selective_scan_fn`.

One program owns a batch row and ``BLOCK_D`` channels and walks time in tiles of ``BLOCK_L``. Inside
a tile everything lives in registers as ``(BLOCK_D, BLOCK_L, BLOCK_N)``: the step size (bias,
softplus), the discretization ``exp(dt A)`` and ``dt B u``, a ``tl.associative_scan`` over time, the
``C`` contraction, ``D u`` and the ``silu(z)`` gate. Only ``out``, the last state and one state per
tile (``ckpt``, the state entering each tile, for a backward that recomputes instead of storing)
reach memory; the ``(b, d, L, N)`` states never do.

``B`` and ``C`` arrive as ``(b, G, N, L)`` (variable, ``G = 1`` for the ungrouped layout) or
``(d, N)`` (fixed). ``BLOCK_D`` divides the channels per group, so a program reads one group.
"""
import torch
import triton
import triton.language as tl

from .scan import first_order_combine


@triton.jit
def _load_bc(M, bi, gi, dd, d_ok, t, t_ok, n, n_ok, s_b, s_g, s_n, s_l, FIXED: tl.constexpr):
    """``B`` or ``C`` for this tile: ``(BLOCK_L, BLOCK_N)`` when variable, ``(BLOCK_D, BLOCK_N)`` when fixed.
    One return after the branch: Triton checks every return's shape, even under a constexpr ``if``."""
    if FIXED:
        tile = tl.load(M + dd[:, None] * s_n + n[None, :], mask=d_ok[:, None] & n_ok[None, :], other=0.0)
    else:
        base = M + bi.to(tl.int64) * s_b + gi * s_g
        tile = tl.load(base + n[None, :] * s_n + t[:, None] * s_l, mask=t_ok[:, None] & n_ok[None, :], other=0.0)
    return tile.to(tl.float32)


@triton.jit
def _step_size(DELTA, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(dt, d dt / d delta) for the given steps; zero where masked."""
    pre = tl.load(DELTA + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        pre += bias[:, None]
    if SOFTPLUS:
        dt = tl.where(pre > 20.0, pre, tl.log(1.0 + tl.exp(tl.minimum(pre, 20.0))))
        slope = tl.sigmoid(pre)
    else:
        dt = pre
        slope = tl.full(pre.shape, 1.0, tl.float32)
    return tl.where(mask, dt, 0.0), slope


@triton.jit
def _channel_block(A, D, DBIAS, dim, N, per_group, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr):
    """What a program (batch row, block of channels) holds for its whole walk along time: indices,
    masks, ``A``, ``D`` and ``delta_bias`` (zeros when absent), and the offsets of its states."""
    bi = tl.program_id(0)
    pd = tl.program_id(1)
    dd = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    gi = (pd * BLOCK_D) // per_group
    n = tl.arange(0, BLOCK_N)
    lane = tl.arange(0, BLOCK_L)
    d_ok = dd < dim
    n_ok = n < N
    dn_ok = d_ok[:, None] & n_ok[None, :]
    # padding states get A = 0 and B = C = 0: they stay zero and add nothing to y
    a = tl.load(A + dd[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
    state_off = (bi.to(tl.int64) * dim + dd[:, None]) * N + n[None, :]
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(DBIAS + dd, mask=d_ok, other=0.0).to(tl.float32)
    skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        skip = tl.load(D + dd, mask=d_ok, other=0.0).to(tl.float32)
    return bi, pd, dd, gi, n, lane, d_ok, n_ok, dn_ok, a, state_off, bias, skip


@triton.jit
def _tile(U, DELTA, B, C, a, bias, bi, gi, dd, d_ok, n, n_ok, row, i, L, lane,
          sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
          HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, B_FIXED: tl.constexpr, C_FIXED: tl.constexpr,
          BLOCK_L: tl.constexpr):
    """Everything tile ``i`` needs, for the forward and for the backward's recomputation: masks,
    offsets, ``u``, ``dt`` (and its slope), ``B`` and ``C`` broadcast to ``(BLOCK_D, BLOCK_L, BLOCK_N)``,
    the per-step decay ``exp(dt A)`` and drive ``dt u B``."""
    t = i * BLOCK_L + lane
    t_ok = t < L
    ok = d_ok[:, None] & t_ok[None, :]
    offs = row[:, None] + t[None, :]
    u = tl.load(U + offs, mask=ok, other=0.0).to(tl.float32)
    # padding steps get dt = 0: exp(0) = 1 and no input, the identity step
    dt, slope = _step_size(DELTA, offs, ok, bias, HAS_BIAS, SOFTPLUS)
    b_t = _load_bc(B, bi, gi, dd, d_ok, t, t_ok, n, n_ok, sb_b, sb_g, sb_n, sb_l, B_FIXED)
    c_t = _load_bc(C, bi, gi, dd, d_ok, t, t_ok, n, n_ok, sc_b, sc_g, sc_n, sc_l, C_FIXED)
    if B_FIXED:
        b3 = b_t[:, None, :]
    else:
        b3 = b_t[None, :, :]
    if C_FIXED:
        c3 = c_t[:, None, :]
    else:
        c3 = c_t[None, :, :]
    decay = tl.exp(dt[:, :, None] * a[:, None, :])
    drive = (dt * u)[:, :, None] * b3
    return t, t_ok, ok, offs, u, dt, slope, b3, c3, decay, drive


@triton.jit
def _selective_scan_fwd_kernel(
    U, DELTA, A, B, C, D, Z, DBIAS, H0, OUT, LAST, CKPT,
    dim, L, N, per_group,
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, B_FIXED: tl.constexpr, C_FIXED: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    bi, pd, dd, gi, n, lane, d_ok, n_ok, dn_ok, a, state_off, bias, skip = _channel_block(
        A, D, DBIAS, dim, N, per_group, HAS_D, HAS_BIAS, BLOCK_D, BLOCK_L, BLOCK_N)
    if HAS_H0:
        h = tl.load(H0 + state_off, mask=dn_ok, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    row = (bi.to(tl.int64) * dim + dd) * L
    n_tiles = tl.cdiv(L, BLOCK_L)
    for i in range(n_tiles):
        t, t_ok, ok, offs, u, dt, _, b3, c3, decay, drive = _tile(
            U, DELTA, B, C, a, bias, bi, gi, dd, d_ok, n, n_ok, row, i, L, lane,
            sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l, HAS_BIAS, SOFTPLUS, B_FIXED, C_FIXED, BLOCK_L)
        # the state entering this tile, for a backward that recomputes the tile from it
        tl.store(CKPT + ((bi.to(tl.int64) * dim + dd[:, None]) * n_tiles + i) * N + n[None, :], h, mask=dn_ok)
        a_cum, b_cum = tl.associative_scan((decay, drive), 1, first_order_combine)
        hs = a_cum * h[:, None, :] + b_cum
        y = tl.sum(hs * c3, axis=2)
        h = tl.sum(tl.where(lane[None, :, None] == BLOCK_L - 1, hs, 0.0), axis=1)
        if HAS_D:
            y += skip[:, None] * u
        if HAS_Z:
            zz = tl.load(Z + offs, mask=ok, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=ok)
    tl.store(LAST + state_off, h, mask=dn_ok)


@triton.jit
def _selective_scan_bwd_kernel(
    U, DELTA, A, B, C, D, Z, DBIAS, CKPT, DOUT, DLAST,
    DU, DDELTA, DZ, DA_PART, DD_PART, DBIAS_PART, DB_PART, DC_PART, DH0,
    dim, L, N, per_group, n_dblocks,
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr, B_FIXED: tl.constexpr, C_FIXED: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Walks the tiles from the last to the first. Each tile's states are recomputed from its
    checkpoint; the adjoint lam_t = dy_t C_t + exp(dt_{t+1} A) lam_{t+1} is a reverse associative scan
    with one carried state between tiles. Sums over channels of a group (dB, dC when they vary) and
    over batch (dA, dD, dbias, fixed dB/dC) are written as fp32 partials the launcher adds up: no
    atomics, so results are deterministic."""
    bi, pd, dd, gi, n, lane, d_ok, n_ok, dn_ok, a, state_off, bias, skip = _channel_block(
        A, D, DBIAS, dim, N, per_group, HAS_D, HAS_BIAS, BLOCK_D, BLOCK_L, BLOCK_N)
    if HAS_DLAST:
        carry = tl.load(DLAST + state_off, mask=dn_ok, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_a = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    g_bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    g_bfix = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_cfix = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    mu_first = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    row = (bi.to(tl.int64) * dim + dd) * L
    n_tiles = tl.cdiv(L, BLOCK_L)
    for j in range(n_tiles):
        i = n_tiles - 1 - j
        t, t_ok, ok, offs, u, dt, slope, b3, c3, decay, drive = _tile(
            U, DELTA, B, C, a, bias, bi, gi, dd, d_ok, n, n_ok, row, i, L, lane,
            sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l, HAS_BIAS, SOFTPLUS, B_FIXED, C_FIXED, BLOCK_L)
        h_in = tl.load(CKPT + ((bi.to(tl.int64) * dim + dd[:, None]) * n_tiles + i) * N + n[None, :], mask=dn_ok, other=0.0)
        a_cum, b_cum = tl.associative_scan((decay, drive), 1, first_order_combine)
        hs = a_cum * h_in[:, None, :] + b_cum
        dout = tl.load(DOUT + offs, mask=ok, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(Z + offs, mask=ok, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zz)
            y = tl.sum(hs * c3, axis=2) + skip[:, None] * u
            tl.store(DZ + offs, (dout * y * sig * (1.0 + zz * (1.0 - sig))).to(DZ.dtype.element_ty), mask=ok)
            dy = dout * zz * sig
        else:
            dy = dout
        # decay of the step after each one (the next tile's first step at the tile's end)
        nxt_ok = d_ok[:, None] & ((t + 1) < L)[None, :]
        dt_next, _ = _step_size(DELTA, offs + 1, nxt_ok, bias, HAS_BIAS, SOFTPLUS)
        decay_next = tl.where(nxt_ok[:, :, None], tl.exp(dt_next[:, :, None] * a[:, None, :]), 1.0)
        c_cum, lam = tl.associative_scan((decay_next, dy[:, :, None] * c3), 1, first_order_combine, reverse=True)
        lam = lam + c_cum * carry[:, None, :]
        carry = tl.sum(tl.where(lane[None, :, None] == 0, lam, 0.0), axis=1)
        mu_first = tl.sum(tl.where(lane[None, :, None] == 0, lam * decay, 0.0), axis=1)
        # exp(dt_t A) h_{t-1} = h_t - drive_t: the previous state without a shifted load
        carried = hs - drive
        dx = tl.sum(lam * b3, axis=2)
        d_dt = dx * u + tl.sum(lam * a[:, None, :] * carried, axis=2)
        d_delta = tl.where(ok, d_dt * slope, 0.0)
        tl.store(DDELTA + offs, d_delta.to(DDELTA.dtype.element_ty), mask=ok)
        tl.store(DU + offs, (dx * dt + dy * skip[:, None]).to(DU.dtype.element_ty), mask=ok)
        g_a += tl.sum(lam * dt[:, :, None] * carried, axis=1)
        g_skip += tl.sum(dy * u, axis=1)
        g_bias += tl.sum(d_delta, axis=1)
        gb = lam * (dt * u)[:, :, None]
        gc = dy[:, :, None] * hs
        ln_ok = t_ok[:, None] & n_ok[None, :]
        part = (bi.to(tl.int64) * n_dblocks + pd) * N * L
        if B_FIXED:
            g_bfix += tl.sum(gb, axis=1)
        else:
            tl.store(DB_PART + part + n[None, :] * L + t[:, None], tl.sum(gb, axis=0), mask=ln_ok)
        if C_FIXED:
            g_cfix += tl.sum(gc, axis=1)
        else:
            tl.store(DC_PART + part + n[None, :] * L + t[:, None], tl.sum(gc, axis=0), mask=ln_ok)
    tl.store(DH0 + state_off, mu_first, mask=dn_ok)
    tl.store(DA_PART + state_off, g_a, mask=dn_ok)
    chan = bi.to(tl.int64) * dim + dd
    tl.store(DD_PART + chan, g_skip, mask=d_ok)
    tl.store(DBIAS_PART + chan, g_bias, mask=d_ok)
    if B_FIXED:
        tl.store(DB_PART + state_off, g_bfix, mask=dn_ok)
    if C_FIXED:
        tl.store(DC_PART + state_off, g_cfix, mask=dn_ok)


def _as_groups(M: torch.Tensor) -> tuple[torch.Tensor, bool, tuple[int, int, int, int]]:
    """(tensor, fixed?, strides (batch, group, n, l)) for B or C in any of the three layouts."""
    if M.dim() == 2:
        return M, True, (0, 0, M.stride(0), 0)
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M, False, tuple(M.stride())


def _block_d(groups: int, per_group: int, dim: int, limit: int = 4) -> int:
    """Channels per program: up to ``limit``; with several groups, a power of two dividing the group."""
    if groups == 1:
        return min(limit, triton.next_power_of_2(dim))
    block = 1
    while block * 2 <= limit and per_group % (block * 2) == 0:
        block *= 2
    return block


def plan_block_l(dim: int, L: int, N: int, B: torch.Tensor, C: torch.Tensor) -> int:
    """Time steps per tile: a pure function of the shapes, so fake (meta) kernels can size the checkpoints."""
    block_d = _layout(dim, B, C)[-1]
    return max(1, min(triton.next_power_of_2(max(L, 1)), 2048 // (block_d * triton.next_power_of_2(N))))


def checkpoint_shape(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> tuple[int, ...]:
    bsz, dim, L = u.shape
    N = A.shape[1]
    return (bsz, dim, max(triton.cdiv(L, plan_block_l(dim, L, N, B, C)), 1), N)


def selective_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, block_l=None):
    """Contiguous inputs as in ``reference.selective_scan``. Returns ``(out (b, d, L) in u's dtype,
    last_state (b, d, N) fp32, ckpt (b, d, n_tiles, N) fp32, block_l)``."""
    bsz, dim, L = u.shape
    N = A.shape[1]
    Bg, b_fixed, sb, Cg, c_fixed, sc, groups, per_group, block_d = _layout(dim, B, C)
    block_n = triton.next_power_of_2(N)
    if block_l is None:
        block_l = plan_block_l(dim, L, N, B, C)
    n_tiles = triton.cdiv(L, block_l)
    out = torch.empty_like(u)
    last = torch.empty((bsz, dim, N), device=u.device, dtype=torch.float32)
    ckpt = torch.empty((bsz, dim, max(n_tiles, 1), N), device=u.device, dtype=torch.float32)
    if L == 0:
        last.copy_(initial_state if initial_state is not None else torch.zeros_like(last))
        return out, last, ckpt, block_l
    dummy = u
    grid = (bsz, triton.cdiv(dim, block_d))
    _selective_scan_fwd_kernel[grid](
        u, delta, A, Bg, Cg,
        D if D is not None else dummy, z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy,
        initial_state if initial_state is not None else dummy, out, last, ckpt,
        dim, L, N, per_group if groups > 1 else dim,
        *sb, *sc,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        HAS_H0=initial_state is not None, B_FIXED=b_fixed, C_FIXED=c_fixed,
        BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=block_n,
    )
    return out, last, ckpt, block_l


def _layout(dim, B, C):
    Bg, b_fixed, sb = _as_groups(B)
    Cg, c_fixed, sc = _as_groups(C)
    groups = 1
    for M, fixed in ((Bg, b_fixed), (Cg, c_fixed)):
        if not fixed:
            groups = max(groups, M.shape[1])
    per_group = dim // groups
    return Bg, b_fixed, sb, Cg, c_fixed, sc, groups, per_group, _block_d(groups, per_group, dim)


def selective_scan_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, ckpt, block_l):
    """Gradients of :func:`selective_scan_forward` given ``dout (b, d, L)`` and ``dlast (b, d, N)`` or None.
    Returns ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state)``; the sums are fp32."""
    bsz, dim, L = u.shape
    N = A.shape[1]
    Bg, b_fixed, sb, Cg, c_fixed, sc, groups, per_group, block_d = _layout(dim, B, C)
    block_n = triton.next_power_of_2(N)
    n_dblocks = triton.cdiv(dim, block_d)
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    da_part = torch.empty((bsz, dim, N), **f32)
    dh0 = torch.empty((bsz, dim, N), **f32)
    dd_part = torch.empty((bsz, dim), **f32)
    dbias_part = torch.empty((bsz, dim), **f32)
    part_shape = lambda fixed: (bsz, dim, N) if fixed else (bsz, n_dblocks, N, L)
    db_part = torch.empty(part_shape(b_fixed), **f32)
    dc_part = torch.empty(part_shape(c_fixed), **f32)
    if L == 0:
        zeros = lambda x: torch.zeros_like(x) if x is not None else None
        dh0 = dlast.float() if dlast is not None else torch.zeros((bsz, dim, N), **f32)
        return (du, ddelta, zeros(A), zeros(B), zeros(C), zeros(D), dz, zeros(delta_bias), dh0)
    dummy = u
    _selective_scan_bwd_kernel[(bsz, n_dblocks)](
        u, delta, A, Bg, Cg, D if D is not None else dummy, z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy, ckpt, dout, dlast if dlast is not None else dummy,
        du, ddelta, dz if dz is not None else dummy, da_part, dd_part, dbias_part, db_part, dc_part, dh0,
        dim, L, N, per_group if groups > 1 else dim, n_dblocks, *sb, *sc,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        HAS_DLAST=dlast is not None, B_FIXED=b_fixed, C_FIXED=c_fixed,
        BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=block_n,
    )

    def reduce_bc(part, fixed, M):
        if fixed:
            return part.sum(0)                                    # (d, N)
        if groups == 1:
            return part.sum(1).view(M.shape)                      # (b, N, L) or (b, 1, N, L)
        return part.view(bsz, groups, n_dblocks // groups, N, L).sum(2).view(M.shape)

    return (du, ddelta, da_part.sum(0), reduce_bc(db_part, b_fixed, B), reduce_bc(dc_part, c_fixed, C),
            dd_part.sum(0) if D is not None else None, dz,
            dbias_part.sum(0) if delta_bias is not None else None, dh0)
