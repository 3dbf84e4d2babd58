"""Mamba-1's fused selective scan, forward and backward; public as `ssm_triton.selective_scan_fn`.

One program owns a batch row and ``BLOCK_D`` channels and walks time in chunks of ``BLOCK_L`` steps.
A chunk's inputs are loaded once into registers as ``(BLOCK_D, BLOCK_L)``: the step size (bias,
softplus), then for each state in turn the discretization ``exp(dt A)`` and ``dt B u``, a
``tl.associative_scan`` over time and the ``C`` contraction summed into ``y``; then ``D u`` and the
``silu(z)`` gate. Only ``out``, the last state and one state per chunk (``ckpt``, the state entering
each chunk, for a backward that recomputes instead of storing) reach memory; the ``(b, d, L, N)``
states never do.

``B`` and ``C`` arrive as ``(b, G, N, L)`` (variable, ``G = 1`` for the ungrouped layout) or
``(d, N)`` (fixed). ``BLOCK_D`` divides the channels per group, so a program reads one group.
"""
import torch
import triton
import triton.language as tl

from .activations import softplus
from .scan import first_order_combine
from .tuning import interpreting

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _bc_row(M, bi, gi, dd, d_ok, n, t, t_ok, s_b, s_g, s_n, s_l, FIXED: tl.constexpr, EVEN: tl.constexpr):
    """State ``n`` of ``B`` or ``C``: ``(1, BLOCK_L)`` along time when variable, ``(BLOCK_D, 1)`` per channel
    when fixed. ``EVEN``: the chunks tile ``L`` exactly, so the time mask (a select per element in the
    innermost loop) is dropped. One return after the branch: Triton checks every return's shape, even
    under a constexpr ``if``."""
    if FIXED:
        row = tl.load(M + dd * s_n + n, mask=d_ok, other=0.0)[:, None]
    elif EVEN:
        row = tl.load(M + bi.to(tl.int64) * s_b + gi * s_g + n * s_n + t * s_l)[None, :]
    else:
        row = tl.load(M + bi.to(tl.int64) * s_b + gi * s_g + n * s_n + t * s_l, mask=t_ok, other=0.0)[None, :]
    return row.to(tl.float32)


@triton.jit
def _with_previous_combine(a1, b1, pa1, pb1, a2, b2, pa2, pb2):
    """Composes steps ``h -> a h + b`` while also carrying the composition of all but a segment's last
    step, so one inclusive scan yields both ``h_t`` and ``h_{t-1}`` (the latter without the cancellation
    of ``h_t - drive_t``). A single step enters as ``(a, b, 1, 0)``."""
    return a1 * a2, b1 * a2 + b2, a1 * pa2, b1 * pa2 + pb2


@triton.jit
def _step_size(DELTA, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(dt, d dt / d delta) for the given steps; zero where masked."""
    pre = tl.load(DELTA + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        pre += bias[:, None]
    if SOFTPLUS:
        dt = softplus(pre)
        slope = tl.sigmoid(pre)
    else:
        dt = pre
        slope = tl.full(pre.shape, 1.0, tl.float32)
    return tl.where(mask, dt, 0.0), slope


@triton.jit
def _pick(x, idx, i):
    """Column ``i`` of ``x (rows, cols)`` as a ``(rows,)`` vector; ``idx`` is ``arange(cols)``."""
    return tl.sum(tl.where(idx[None, :] == i, x, 0.0), axis=1)


@triton.jit
def _put(x, idx, i, col):
    """``x`` with column ``i`` replaced by ``col (rows,)``."""
    return tl.where(idx[None, :] == i, col[:, None], x)


@triton.jit
def _bc_grad(dst, t_ok, grad, acc, ns, n, FIXED: tl.constexpr, ATOMIC: tl.constexpr):
    """State ``n``'s share of ``dB`` or ``dC`` from ``grad (BLOCK_D, BLOCK_L)``: summed over time into
    column ``n`` of ``acc (BLOCK_D, BLOCK_N)`` when fixed (returned), else summed over the program's
    channels and added atomically, or stored as this program's partial, at ``dst`` (time-indexed)."""
    if FIXED:
        acc = _put(acc, ns, n, _pick(acc, ns, n) + tl.sum(grad, axis=1))
    elif ATOMIC:
        tl.atomic_add(dst, tl.sum(grad, axis=0), mask=t_ok, sem="relaxed")
    else:
        tl.store(dst, tl.sum(grad, axis=0), mask=t_ok)
    return acc


@triton.jit
def _state_or_zero(P, state_off, dn_ok, PRESENT: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """A ``(BLOCK_D, BLOCK_N)`` fp32 state read from ``P``, or zeros when the caller passed none."""
    if PRESENT:
        state = tl.load(P + state_off, mask=dn_ok, other=0.0).to(tl.float32)
    else:
        state = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    return state


@triton.jit
def _chunk(row, i, lane, d_ok, L, BLOCK_L: tl.constexpr):
    """Chunk ``i``'s steps ``t``, their masks and the ``(BLOCK_D, BLOCK_L)`` offsets into ``(b, d, L)`` tensors."""
    t = i * BLOCK_L + lane
    t_ok = t < L
    return t, t_ok, d_ok[:, None] & t_ok[None, :], row[:, None] + t[None, :]


@triton.jit
def _ckpt_offsets(bi, dim, dd, n_chunks, i, N, ns):
    """Where chunk ``i``'s entering state lives in ``ckpt (b, d, n_chunks, N)``."""
    return ((bi.to(tl.int64) * dim + dd[:, None]) * n_chunks + i) * N + ns[None, :]


@triton.jit
def _channel_block(D, DBIAS, dim, N, per_group, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr):
    """What a program (batch row, block of channels) holds for its whole walk along time: indices,
    masks, ``D`` and ``delta_bias`` (zeros when absent), and the offsets of its ``(BLOCK_D, BLOCK_N)`` states."""
    bi = tl.program_id(0)
    pd = tl.program_id(1)
    dd = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    gi = (pd * BLOCK_D) // per_group
    ns = tl.arange(0, BLOCK_N)
    lane = tl.arange(0, BLOCK_L)
    d_ok = dd < dim
    dn_ok = d_ok[:, None] & (ns < N)[None, :]
    state_off = (bi.to(tl.int64) * dim + dd[:, None]) * N + ns[None, :]
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(DBIAS + dd, mask=d_ok, other=0.0).to(tl.float32)
    skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        skip = tl.load(D + dd, mask=d_ok, other=0.0).to(tl.float32)
    return bi, pd, dd, gi, ns, lane, d_ok, dn_ok, state_off, bias, skip


@triton.jit
def _selective_scan_fwd_kernel(
    U, DELTA, A, B, C, D, Z, DBIAS, H0, OUT, LAST, CKPT,
    dim, L, N, per_group,
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, B_FIXED: tl.constexpr, C_FIXED: tl.constexpr, STORE_CKPT: tl.constexpr,
    EVEN: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Per chunk of ``BLOCK_L`` steps the ``(BLOCK_D, BLOCK_L)`` inputs are loaded once; the states are
    then walked one at a time, each a scan along time, and their ``C`` contractions summed into ``y``.
    Time is the tensors' contiguous axis, so the scan runs mostly inside each thread (as mamba_ssm's
    CUDA kernel arranges it); scanning a (channels, time, states) tile, whose time axis Triton spread
    across lanes and warps, was ~3x slower on the H100."""
    bi, pd, dd, gi, ns, lane, d_ok, dn_ok, state_off, bias, skip = _channel_block(
        D, DBIAS, dim, N, per_group, HAS_D, HAS_BIAS, BLOCK_D, BLOCK_L, BLOCK_N)
    h = _state_or_zero(H0, state_off, dn_ok, HAS_H0, BLOCK_D, BLOCK_N)
    row = (bi.to(tl.int64) * dim + dd) * L
    n_chunks = tl.cdiv(L, BLOCK_L)
    for i in range(n_chunks):
        t, t_ok, ok, offs = _chunk(row, i, lane, d_ok, L, BLOCK_L)
        if STORE_CKPT:  # the state entering this chunk, for a backward that recomputes from it
            tl.store(CKPT + _ckpt_offsets(bi, dim, dd, n_chunks, i, N, ns), h, mask=dn_ok)
        u = tl.load(U + offs, mask=ok, other=0.0).to(tl.float32)
        # padding steps get dt = 0: exp(0) = 1 and no input, the identity step
        dt, _ = _step_size(DELTA, offs, ok, bias, HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        y = skip[:, None] * u
        for n in range(N):
            # exp(dt A) as exp2(dt A log2 e), the scale folded into A once per state rather than per step
            a2_n = tl.load(A + dd * N + n, mask=d_ok, other=0.0).to(tl.float32) * LOG2E
            b_n = _bc_row(B, bi, gi, dd, d_ok, n, t, t_ok, sb_b, sb_g, sb_n, sb_l, B_FIXED, EVEN)
            c_n = _bc_row(C, bi, gi, dd, d_ok, n, t, t_ok, sc_b, sc_g, sc_n, sc_l, C_FIXED, EVEN)
            a_cum, b_cum = tl.associative_scan((tl.exp2(dt * a2_n[:, None]), dtu * b_n), 1, first_order_combine)
            hs = a_cum * _pick(h, ns, n)[:, None] + b_cum
            y += hs * c_n
            h = _put(h, ns, n, _pick(hs, lane, BLOCK_L - 1))
        if HAS_Z:
            zz = tl.load(Z + offs, mask=ok, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=ok)
    tl.store(LAST + state_off, h, mask=dn_ok)


@triton.jit
def _selective_scan_bwd_kernel(
    U, DELTA, A, B, C, D, Z, DBIAS, CKPT, DOUT, DLAST,
    DU, DDELTA, DZ, DA_PART, DD_PART, DBIAS_PART, DB, DC, DH0,
    dim, L, N, per_group, n_dblocks, n_groups,
    sb_b, sb_g, sb_n, sb_l, sc_b, sc_g, sc_n, sc_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr, B_FIXED: tl.constexpr, C_FIXED: tl.constexpr, ATOMIC: tl.constexpr,
    EVEN: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Walks the chunks from the last to the first and, inside one, the states one at a time: each
    state's values are recomputed from the chunk's checkpoint, and its adjoint
    ``lam_t = dy_t C_t + mu_{t+1}`` comes from a reverse scan of ``mu_t = exp(dt_t A) lam_t``, the adjoint
    carried back through step ``t``: ``mu_t = exp(dt_t A) (dy_t C_t + mu_{t+1})``. Scanning ``mu`` (with
    its exclusive value, as the forward gets ``h_{t-1}``) uses each step's own decay, already computed
    for the state, where scanning ``lam`` would need the next step's: one ``exp`` per element fewer,
    and one carried value per state between chunks (``mu`` at the chunk's first step). (On the H100
    that left the time as it was, 7.38 against 7.39 ms fwd+bwd at the headline shape: the kernel is not
    bound by ``exp``.)
    Sums over the channels of a group (``dB``, ``dC`` when they vary with time) are added atomically
    into fp32 buffers when ``ATOMIC``, else written as per-program partials the launcher adds up in a
    fixed order (deterministic). Sums over the batch (``dA``, ``dD``, ``delta_bias``, fixed ``B``/``C``)
    are always per-program partials."""
    bi, pd, dd, gi, ns, lane, d_ok, dn_ok, state_off, bias, skip = _channel_block(
        D, DBIAS, dim, N, per_group, HAS_D, HAS_BIAS, BLOCK_D, BLOCK_L, BLOCK_N)
    mu_in = _state_or_zero(DLAST, state_off, dn_ok, HAS_DLAST, BLOCK_D, BLOCK_N)  # mu after the last step
    g_a = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_bfix = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_cfix = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    g_skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    g_bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    row = (bi.to(tl.int64) * dim + dd) * L
    n_chunks = tl.cdiv(L, BLOCK_L)
    # where this program's dB / dC rows go: its group's rows (atomic) or its own partial rows
    if ATOMIC:
        bc_row0 = (bi.to(tl.int64) * n_groups + gi) * N * L
    else:
        bc_row0 = (bi.to(tl.int64) * n_dblocks + pd) * N * L
    for j in range(n_chunks):
        i = n_chunks - 1 - j
        t, t_ok, ok, offs = _chunk(row, i, lane, d_ok, L, BLOCK_L)
        h_in = tl.load(CKPT + _ckpt_offsets(bi, dim, dd, n_chunks, i, N, ns), mask=dn_ok, other=0.0)
        u = tl.load(U + offs, mask=ok, other=0.0).to(tl.float32)
        dt, slope = _step_size(DELTA, offs, ok, bias, HAS_BIAS, SOFTPLUS)
        dout = tl.load(DOUT + offs, mask=ok, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(Z + offs, mask=ok, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zz)
            dy = dout * zz * sig
        else:
            dy = dout
        dtu = dt * u
        y = skip[:, None] * u
        dx = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)    # sum_n lam B: d/d(dt u)
        d_dt = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)  # sum_n lam A exp(dt A) h_{t-1}
        for n in range(N):
            a_n = tl.load(A + dd * N + n, mask=d_ok, other=0.0).to(tl.float32)
            a2_n = a_n * LOG2E
            b_n = _bc_row(B, bi, gi, dd, d_ok, n, t, t_ok, sb_b, sb_g, sb_n, sb_l, B_FIXED, EVEN)
            c_n = _bc_row(C, bi, gi, dd, d_ok, n, t, t_ok, sc_b, sc_g, sc_n, sc_l, C_FIXED, EVEN)
            decay = tl.exp2(dt * a2_n[:, None])
            drive = dtu * b_n
            one = tl.full(decay.shape, 1.0, tl.float32)
            _, _, pa, pb = tl.associative_scan((decay, drive, one, one * 0.0), 1, _with_previous_combine)
            # decay_t h_{t-1}: what flows from the previous state into step t
            carried = decay * (pa * _pick(h_in, ns, n)[:, None] + pb)
            hs = carried + drive
            y += hs * c_n
            g = dy * c_n
            # reverse: (decay, decay g) per step; the exclusive part is what enters from after step t
            m_a, m_b, x_a, x_b = tl.associative_scan((decay, decay * g, one, one * 0.0), 1,
                                                     _with_previous_combine, reverse=True)
            mu_n = _pick(mu_in, ns, n)[:, None]
            lam = g + x_b + x_a * mu_n
            mu_in = _put(mu_in, ns, n, _pick(m_b + m_a * mu_n, lane, 0))
            dx += lam * b_n
            d_dt += lam * a_n[:, None] * carried
            g_a = _put(g_a, ns, n, _pick(g_a, ns, n) + tl.sum(lam * dt * carried, axis=1))
            g_bfix = _bc_grad(DB + bc_row0 + n * L + t, t_ok, lam * dtu, g_bfix, ns, n, B_FIXED, ATOMIC)
            g_cfix = _bc_grad(DC + bc_row0 + n * L + t, t_ok, dy * hs, g_cfix, ns, n, C_FIXED, ATOMIC)
        if HAS_Z:
            tl.store(DZ + offs, (dout * y * sig * (1.0 + zz * (1.0 - sig))).to(DZ.dtype.element_ty), mask=ok)
        d_delta = tl.where(ok, (dx * u + d_dt) * slope, 0.0)
        tl.store(DDELTA + offs, d_delta.to(DDELTA.dtype.element_ty), mask=ok)
        tl.store(DU + offs, (dx * dt + dy * skip[:, None]).to(DU.dtype.element_ty), mask=ok)
        g_skip += tl.sum(dy * u, axis=1)
        g_bias += tl.sum(d_delta, axis=1)
    # after the walk mu_in is the adjoint carried back through the first step: the initial state's gradient
    tl.store(DH0 + state_off, mu_in, mask=dn_ok)
    tl.store(DA_PART + state_off, g_a, mask=dn_ok)
    chan = bi.to(tl.int64) * dim + dd
    tl.store(DD_PART + chan, g_skip, mask=d_ok)
    tl.store(DBIAS_PART + chan, g_bias, mask=d_ok)
    if B_FIXED:
        tl.store(DB + state_off, g_bfix, mask=dn_ok)
    if C_FIXED:
        tl.store(DC + state_off, g_cfix, mask=dn_ok)


def _as_groups(M: torch.Tensor) -> tuple[torch.Tensor, bool, tuple[int, int, int, int]]:
    """(tensor, fixed?, strides (batch, group, n, l)) for B or C in any of the three layouts."""
    if M.dim() == 2:
        return M, True, (0, 0, M.stride(0), 0)
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M, False, tuple(M.stride())


def _layout(dim, B, C):
    Bg, b_fixed, sb = _as_groups(B)
    Cg, c_fixed, sc = _as_groups(C)
    groups = 1
    for M, fixed in ((Bg, b_fixed), (Cg, c_fixed)):
        if not fixed:
            groups = max(groups, M.shape[1])
    return Bg, b_fixed, sb, Cg, c_fixed, sc, groups, dim // groups


def default_block_d(groups: int, per_group: int, dim: int, limit: int = 1) -> int:
    """Channels per program: a power of two up to ``limit``, dividing the channels per group when there
    are several groups (a program reads one group). Under the interpreter 4, so tests cover several rows."""
    limit = 4 if interpreting() else limit
    if groups == 1:
        return min(limit, triton.next_power_of_2(dim))
    block = 1
    while block * 2 <= limit and per_group % (block * 2) == 0:
        block *= 2
    return block


def plan_block_l(L: int, inference: bool = False) -> int:
    """Steps per chunk, and so per checkpoint: a pure function of ``L``, so fake (meta) kernels can size
    the checkpoints. Short under the interpreter so that tests cross several chunks. On the H100
    (bench/sweep_selective.py, 2026-11-23, b8 d4096 L2048 N16 bf16) the backward was fastest at 256
    steps with one warp (5.97 ms; 7.5 ms at 512 or 1024), and a forward that writes no checkpoints at
    512 with one warp (1.15 ms)."""
    return max(1, min(triton.next_power_of_2(max(L, 1)), 16 if interpreting() else (512 if inference else 256)))


def checkpoint_shape(u: torch.Tensor, A: torch.Tensor) -> tuple[int, ...]:
    bsz, dim, L = u.shape
    return (bsz, dim, max(triton.cdiv(L, plan_block_l(L)), 1), A.shape[1])


def selective_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, block_l=None,
                           store_ckpt=True, block_d=None, num_warps=1):
    """Contiguous inputs as in ``reference.selective_scan``. Returns ``(out (b, d, L) in u's dtype,
    last_state (b, d, N) fp32, ckpt (b, d, n_chunks, N) fp32, block_l)``. With ``store_ckpt=False``
    (no backward to come) ``ckpt`` is empty. ``block_l``, ``block_d`` and ``num_warps`` override the
    defaults (tests and the config sweep use them)."""
    bsz, dim, L = u.shape
    N = A.shape[1]
    Bg, b_fixed, sb, Cg, c_fixed, sc, groups, per_group = _layout(dim, B, C)
    # a training forward (checkpoints at 256 steps) ran fastest with 4 channels per program (1.48 ms)
    block_d = block_d or default_block_d(groups, per_group, dim, limit=4 if store_ckpt else 1)
    block_l = block_l or plan_block_l(L, inference=not store_ckpt)
    n_chunks = triton.cdiv(L, block_l)
    out = torch.empty_like(u)
    last = torch.empty((bsz, dim, N), device=u.device, dtype=torch.float32)
    ckpt_shape = (bsz, dim, max(n_chunks, 1), N) if store_ckpt else (0,)
    ckpt = torch.empty(ckpt_shape, device=u.device, dtype=torch.float32)
    if L == 0:
        last.copy_(initial_state if initial_state is not None else torch.zeros_like(last))
        return out, last, ckpt, block_l
    dummy = u
    _selective_scan_fwd_kernel[(bsz, triton.cdiv(dim, block_d))](
        u, delta, A, Bg, Cg,
        D if D is not None else dummy, z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy,
        initial_state if initial_state is not None else dummy, out, last, ckpt,
        dim, L, N, per_group, *sb, *sc,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        HAS_H0=initial_state is not None, B_FIXED=b_fixed, C_FIXED=c_fixed, STORE_CKPT=store_ckpt,
        EVEN=L % block_l == 0, BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=triton.next_power_of_2(N), num_warps=num_warps,
    )
    return out, last, ckpt, block_l


def selective_scan_backward(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus, ckpt, block_l,
                            deterministic=False, block_d=None, num_warps=None):
    """Gradients of :func:`selective_scan_forward` given ``dout (b, d, L)`` and ``dlast (b, d, N)`` or None.
    Returns ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state)``; the sums are fp32.
    ``deterministic``: no atomics; a time-varying dB / dC then costs fp32 partials of
    ``(b, d / block_d, N, L)`` each."""
    bsz, dim, L = u.shape
    N = A.shape[1]
    Bg, b_fixed, sb, Cg, c_fixed, sc, groups, per_group = _layout(dim, B, C)
    # deterministic partials take one (N, L) slice per program: more channels per program keep them
    # smaller (H100 sweep: 12.8 ms at 4 channels and two warps, against 6.0 ms with atomics)
    block_d = block_d or default_block_d(groups, per_group, dim, limit=4 if deterministic else 1)
    num_warps = num_warps or (2 if deterministic else 1)
    n_dblocks = triton.cdiv(dim, block_d)
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    da_part = torch.empty((bsz, dim, N), **f32)
    dh0 = torch.empty((bsz, dim, N), **f32)
    dd_part = torch.empty((bsz, dim), **f32)
    dbias_part = torch.empty((bsz, dim), **f32)

    def bc_buffer(fixed):
        if fixed:
            return torch.empty((bsz, dim, N), **f32)
        if deterministic:
            return torch.empty((bsz, n_dblocks, N, L), **f32)
        return torch.zeros((bsz, groups, N, L), **f32)

    db, dc = bc_buffer(b_fixed), bc_buffer(c_fixed)
    if L == 0:
        zeros = lambda x: torch.zeros_like(x) if x is not None else None
        dh0 = dlast.float() if dlast is not None else torch.zeros((bsz, dim, N), **f32)
        return (du, ddelta, zeros(A), zeros(B), zeros(C), zeros(D), dz, zeros(delta_bias), dh0)
    dummy = u
    _selective_scan_bwd_kernel[(bsz, n_dblocks)](
        u, delta, A, Bg, Cg, D if D is not None else dummy, z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy, ckpt, dout, dlast if dlast is not None else dummy,
        du, ddelta, dz if dz is not None else dummy, da_part, dd_part, dbias_part, db, dc, dh0,
        dim, L, N, per_group, n_dblocks, groups, *sb, *sc,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        HAS_DLAST=dlast is not None, B_FIXED=b_fixed, C_FIXED=c_fixed, ATOMIC=not deterministic,
        EVEN=L % block_l == 0, BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=triton.next_power_of_2(N), num_warps=num_warps,
    )

    def reduce_bc(buf, fixed, M):
        if fixed:
            return buf.sum(0)                                     # (d, N)
        if not deterministic:
            return buf.view(M.shape)                              # (b, N, L) or (b, G, N, L)
        return buf.view(bsz, groups, n_dblocks // groups, N, L).sum(2).view(M.shape)

    return (du, ddelta, da_part.sum(0), reduce_bc(db, b_fixed, B), reduce_bc(dc, c_fixed, C),
            dd_part.sum(0) if D is not None else None, dz,
            dbias_part.sum(0) if delta_bias is not None else None, dh0)
