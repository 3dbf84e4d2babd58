"""Mamba-2's decode step in two launches a layer at few rows, or one: the state update inside the input projection's
launch (``kernels/fused_step.py``'s ``_in_step_kernel`` plus ``kernels/state_update.py``), then the output projection
(``_out_step_kernel``), in a launch of its own or in the same one (``ONE``).

At batch 1 the fused step's three launches a layer are each a few microseconds of mostly latency (H200, 2026-12-04:
in_step 4.1 us, the state update 2.5, out_step 3.3); the state update moves 0.8 MB. Here the projection's programs
that own ``x`` channels also update those channels' state rows, once B, C and dt are there:

- Each program takes a **ticket** (an atomic count per batch row) and works on the column block the ticket names,
  in this order: the blocks of ``[B | C | dt]`` (and of ``z`` where the update gates with it), then those of ``x``,
  then the rest of ``z``. A program that waits has a later ticket than every program it waits on, and those were
  already running when they took theirs: the wait always ends, however few programs the GPU holds at once (the
  order in which blocks start is not what decides it).
- A program of the first group stores its columns and counts itself **ready** (release). A program of ``x``
  columns stores its ``x``, waits until every ready program has counted (acquire), then reads ``B, C`` and ``dt``
  of its channels' heads (L2, around the L1 that may hold old lines) and updates its ``(BLOCK_O, N)`` state rows in
  place, storing ``y``.
- Every program counts itself **done** at the end; the last resets the row's counters for the next launch (the
  tickets' count it lowers by the programs instead: the next launch may have taken tickets already).

Shapes: ``ZX (M, O)`` as the fused step's (``[z | x | B | C | dt]``, ``O = 2 d_ssm + 2 G N + H``), ``S (M, H, P, N)``,
``Y (M, d_ssm)``, ``CNT``: four int32 counters a row, each in its own 128-byte line (:data:`COUNTERS` a state
tensor), zero between launches.
"""
import os

import torch
import triton
import triton.language as tl

from .activations import softplus
from .fused_step import (ONE_TILE_ELEMENTS, _after_predecessor, _key, _one_tile_in, _one_tile_out, _out_tile_loads,
                         _rule as _in_rule, pdl_enabled)
from .host import cdiv, next_power_of_2
from .ssd.common import INTERPRETED
from .ssd.launch import dot_for
from .tuning import TunableKernel

# the most rows a launch takes (one program a row and column block): the counters a state tensor holds
MAX_ROWS = 4
# a row's four counts, each in its own 128-byte line (the spinning programs' loads and the others' atomics apart)
LINE = tl.constexpr(32)
# nanoseconds a waiting program sleeps between its reads of a count (0: none): hundreds of programs reading one
# line back to back queue at its L2 slice ahead of the atomics they wait for
SLEEP = tl.constexpr(0 if INTERPRETED else int(os.environ.get("SSM_TRITON_IN_UPDATE_SLEEP", "0")))
_SLEEP_ASM = tl.constexpr("{ nanosleep.u32 %d; mov.b32 $0, $1; }" % SLEEP.value)
COUNTERS = 4 * LINE.value * MAX_ROWS


@triton.jit
def _in_update_kernel(
    HID, RES, NORM_W, RES_OUT, WIN, BIN, CONV_W, CONV_B, CONV_S, ZX,   # the in_step's (RES, NORM_W, RES_OUT, BIN, CONV_B may be None)
    S, A_LOG, D, DT_BIAS, Y, CNT,                                       # the update's (D may be None)
    GATE_W, WOUT, BOUT, OUT,                                            # the out step's, with ONE (GATE_W, BOUT may be None)
    M, K: tl.constexpr, O, d_ssm, conv_dim, eps, h_m, r_m, cs_b, cs_c, cs_w,
    P, N, heads_per_group, s_b, s_h, s_p, s_n, d_h, d_p, d_model, group_size, gate_eps,
    HAS_NORM: tl.constexpr, HAS_RES: tl.constexpr, HAS_BIN: tl.constexpr, HAS_CONV_B: tl.constexpr,
    HAS_D: tl.constexpr, GATE: tl.constexpr, W: tl.constexpr, DOT: tl.constexpr, PDL: tl.constexpr,
    ONE: tl.constexpr, HAS_GATE_NORM: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BOUT: tl.constexpr,
    BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_OO: tl.constexpr,
    BLOCK_KO: tl.constexpr,
):
    """``ZX`` as ``_in_step_kernel`` writes it (one row a program, the whole reduction one tile), ``S`` updated in
    place, ``Y`` the update's output (gated by ``silu(z)`` with ``GATE``, the block without its norm). With ``ONE``
    also ``OUT (M, d_model)``: ``_out_step_kernel``'s gated norm and out_proj (its ``group_size``, ``gate_eps``), by
    programs of ``BLOCK_OO`` output columns whose tickets come after every other's; they wait until every x block
    has stored its ``y`` and, where the norm gates with ``z``, every z block its ``z``.

    An x block reads its state rows after its projection, before waiting on the ready count: read before waiting on
    the previous launch (as the state update kernel does) they were held across the projection (sm_90, triton 3.6,
    the 130M block's tile in bf16: 168 registers against 125, three programs an SM instead of four), and a block
    stepped on its own could read them while the previous step's launch, already letting this one start, still
    writes them."""
    row = tl.program_id(1).to(tl.int64)
    cnt = CNT + row * (4 * LINE)                 # ticket, ready, y stored, done: cnt + 0, 1, 2, 3 lines
    n_z = d_ssm // BLOCK_O                       # blocks of z, and of x
    n_tail = tl.cdiv(O - 2 * d_ssm, BLOCK_O)     # of [B | C | dt]
    n_in = tl.cdiv(O, BLOCK_O)
    n_prog = n_in
    if ONE:
        n_prog += tl.cdiv(d_model, BLOCK_OO)
    # Taken before waiting on the previous launch, which may be this launch's previous run (a block stepped on its
    # own, one launch a step, or the out step between that lets its dependents start at once): that run may still
    # hold its last tickets' counts, so the count is not reset but taken modulo the programs, and lowered by as many
    # when a run ends. Every other count is read and written after the wait (the previous run has ended).
    ticket = tl.atomic_add(cnt, 1, sem="relaxed") % n_prog
    ready_at = cnt + LINE
    stored_at = cnt + 2 * LINE
    rows = row + tl.arange(0, 1)
    m_ok = rows < M
    if ticket < n_in:
        _in_part(HID, RES, NORM_W, RES_OUT, WIN, BIN, CONV_W, CONV_B, CONV_S, ZX, S, A_LOG, D, DT_BIAS, Y, ready_at,
                 stored_at, ticket,
                 row, rows, m_ok, n_z, n_tail, K, O, d_ssm, conv_dim, eps, h_m, r_m, cs_b, cs_c, cs_w, P, N,
                 heads_per_group, s_b, s_h, s_p, s_n, d_h, d_p, HAS_NORM, HAS_RES, HAS_BIN, HAS_CONV_B, HAS_D, GATE, W,
                 DOT, PDL, ONE, BLOCK_O, BLOCK_K, BLOCK_N)
    elif ONE:   # a program of the out step's column blocks
        cols = (ticket - n_in) * BLOCK_OO + tl.arange(0, BLOCK_OO)
        o_ok = cols < d_model
        ks = tl.arange(0, BLOCK_KO)
        w, bias, nw = _out_tile_loads(WOUT, BOUT, GATE_W, cols, o_ok, ks, d_ssm, HAS_GATE_NORM, HAS_BOUT, 1, BLOCK_OO)
        # what it writes may still be read by the previous launch (the allocator's stream order, which a dependent
        # launch runs ahead of)
        _after_predecessor(PDL, False)
        # every x block's y, and (where the norm gates with it and z came after x) every z block's z
        _wait_for(stored_at, n_z if GATE else 2 * n_z)
        acc = _one_tile_out(Y, ZX, w, bias, nw, rows, m_ok, ks, d_ssm, group_size, gate_eps, O, OUT.dtype.element_ty,
                            HAS_GATE_NORM, GATE_FIRST, DOT, 1, True)
        tl.store(OUT + row * d_model + cols[None, :], acc.to(OUT.dtype.element_ty), mask=o_ok[None, :])
    tl.debug_barrier()
    done = tl.atomic_add(cnt + 3 * LINE, 1, sem="acq_rel")
    if done == n_prog - 1:   # the row's last program: every ticket is taken and every wait has ended
        tl.atomic_add(cnt, -n_prog)
        tl.atomic_xchg(ready_at, 0)
        tl.atomic_xchg(stored_at, 0)
        tl.atomic_xchg(cnt + 3 * LINE, 0)


@triton.jit
def _wait_for(AT, n):
    """Until the count at ``AT`` reaches ``n``: plain volatile reads from L2 (no atomic traffic on the line while
    waiting), then one acquire, so that this program sees what the counted programs stored before counting."""
    seen = tl.load(AT, volatile=True)
    while seen < n:
        if SLEEP > 0:
            seen = _pause(seen)
        seen = tl.load(AT, volatile=True)
    # the acquire (an ld.global.gpu.acquire on sm_90), its result used: triton 3.6 drops one that nothing reads
    seen = tl.atomic_add(AT, 0, sem="acquire")
    while seen < n:
        seen = tl.atomic_add(AT, 0, sem="acquire")


@triton.jit
def _pause(x):
    """``x``, after sleeping about :data:`SLEEP` nanoseconds (``nanosleep``: sm_70 on)."""
    return tl.inline_asm_elementwise(_SLEEP_ASM, "=r,r", [x], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _in_part(HID, RES, NORM_W, RES_OUT, WIN, BIN, CONV_W, CONV_B, CONV_S, ZX, S, A_LOG, D, DT_BIAS, Y, ready_at, stored_at,
             ticket,
             row, rows, m_ok, n_z, n_tail, K: tl.constexpr, O, d_ssm, conv_dim, eps, h_m, r_m, cs_b, cs_c, cs_w, P, N,
             heads_per_group, s_b, s_h, s_p, s_n, d_h, d_p, HAS_NORM: tl.constexpr, HAS_RES: tl.constexpr,
             HAS_BIN: tl.constexpr, HAS_CONV_B: tl.constexpr, HAS_D: tl.constexpr, GATE: tl.constexpr,
             W: tl.constexpr, DOT: tl.constexpr, PDL: tl.constexpr, ONE: tl.constexpr, BLOCK_O: tl.constexpr,
             BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """A program of the input projection's column blocks (``ticket < n_in``): the block its ticket names, and for an
    x block the update of its channels' state rows; counts ``ready`` (B, C, dt [, z]) or ``y stored``."""
    n_ready = n_tail
    if GATE:
        n_ready += n_z
    u = ticket - n_tail
    if GATE:     # [B C dt], z, x
        blk = tl.where(ticket < n_tail, 2 * n_z + ticket, u)
    else:        # [B C dt], x, z
        blk = tl.where(ticket < n_tail, 2 * n_z + ticket, tl.where(u < n_z, n_z + u, u - n_z))
    cols = blk * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = cols < O
    ch = cols - d_ssm
    is_x = (ch >= 0) & (ch < d_ssm)        # a block's columns are all x or none
    ch = tl.where(is_x, ch, 0)
    hd = (ch // P).to(tl.int64)
    p = ch % P
    ns = tl.arange(0, BLOCK_N)
    pn_ok = is_x[:, None] & (ns < N)[None, :]
    at = S + row * s_b + hd[:, None] * s_h + p[:, None] * s_p + ns[None, :] * s_n
    ks = tl.arange(0, BLOCK_K)
    out = _one_tile_in(HID, RES, NORM_W, RES_OUT, WIN, BIN, CONV_W, CONV_B, CONV_S, ZX, rows, m_ok, cols, o_ok, ks, K,
                       d_ssm, conv_dim, eps, h_m, r_m, cs_b, cs_c, cs_w, ticket == 0, HAS_NORM, HAS_RES, HAS_BIN, True,
                       HAS_CONV_B, W, DOT, PDL, 1, BLOCK_O)
    ZX_ROW = ZX + row * O
    tl.store(ZX_ROW + cols[None, :], out.to(ZX.dtype.element_ty), mask=o_ok[None, :])
    # every thread's stores before the count that publishes them
    tl.debug_barrier()
    if ticket < n_ready:
        tl.atomic_add(ready_at, 1, sem="release")
    elif ticket < n_ready + n_z:   # an x block
        state = tl.load(at, mask=pn_ok, other=0.0).to(tl.float32)
        a = -tl.exp(tl.load(A_LOG + hd, mask=is_x, other=0.0).to(tl.float32))
        bias = tl.load(DT_BIAS + hd, mask=is_x, other=0.0).to(tl.float32)
        if HAS_D:
            dd = tl.load(D + hd * d_h + p * d_p, mask=is_x, other=0.0).to(tl.float32)
        _wait_for(ready_at, n_ready)
        g = hd // heads_per_group
        gn = (d_ssm // P // heads_per_group) * N
        b = tl.load(ZX_ROW + 2 * d_ssm + g[:, None] * N + ns[None, :], mask=pn_ok, other=0.0,
                    cache_modifier=".cg").to(tl.float32)
        c = tl.load(ZX_ROW + 2 * d_ssm + gn + g[:, None] * N + ns[None, :], mask=pn_ok, other=0.0,
                    cache_modifier=".cg").to(tl.float32)
        dt = tl.load(ZX_ROW + 2 * d_ssm + 2 * gn + hd, mask=is_x, other=0.0, cache_modifier=".cg").to(tl.float32)
        dt = softplus(dt + bias)
        x = tl.sum(out, axis=0)            # the row's x, rounded as stored
        x = x.to(ZX.dtype.element_ty).to(tl.float32)
        state = tl.exp(a * dt)[:, None] * state + (dt * x)[:, None] * b
        # in place: every thread's read of the old rows before any store (several threads hold each element)
        tl.debug_barrier()
        tl.store(at, state.to(S.dtype.element_ty), mask=pn_ok)
        y = tl.sum(state * c, axis=1)
        if HAS_D:
            y += dd * x
        if GATE:
            z = tl.load(ZX_ROW + ch, mask=is_x, other=0.0, cache_modifier=".cg").to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(Y + row * d_ssm + ch, y.to(Y.dtype.element_ty), mask=is_x)
        if ONE:   # the out step's programs wait on every x block's y
            tl.debug_barrier()
            tl.atomic_add(stored_at, 1, sem="release")
    elif ONE:     # a z block after the x blocks (not GATE): the out step's gated norm reads z too
        tl.atomic_add(stored_at, 1, sem="release")


def _blocks(d_ssm: int, block_o: int) -> int:
    """The largest power of two up to ``block_o`` that divides ``d_ssm`` (a column block is z, x or neither)."""
    while block_o > 1 and d_ssm % block_o:
        block_o //= 2
    return block_o


def _rule(problem, mode):
    """The fused step's one-row matrix-vector form with the reduction in one tile (``kernels/fused_step.py``'s
    rule), its column block cut to divide ``d_ssm``; with the out step in the launch, that step's tile too."""
    M, O, K, d_ssm, N = problem[:5]
    one, pdl = problem[-2], problem[-1]
    kw = _in_rule((M, O, K, pdl), mode)
    kw.update(BLOCK_K=next_power_of_2(max(16, K)), BLOCK_N=next_power_of_2(N))
    kw["BLOCK_O"] = _blocks(d_ssm, min(kw["BLOCK_O"], max(1, ONE_TILE_ELEMENTS // kw["BLOCK_K"])))
    kw.pop("AHEAD", None)
    kw.pop("BLOCK_M")
    if one is not None:
        out = _in_rule((M, one[0], d_ssm, pdl), mode)
        kw["BLOCK_KO"] = next_power_of_2(max(16, d_ssm))
        kw["BLOCK_OO"] = max(1, min(out["BLOCK_O"], ONE_TILE_ELEMENTS // kw["BLOCK_KO"]))
    else:
        kw.update(BLOCK_OO=1, BLOCK_KO=16)
    return kw


def _alternatives(problem, mode):
    """Half and twice the column block, two or eight warps; with the out step, half and twice its block."""
    kw = _rule(problem, mode)
    bo, d_ssm = kw["BLOCK_O"], problem[3]
    alts = [dict(num_warps=8), dict(num_warps=2)]
    if bo > 1:
        alts.append(dict(BLOCK_O=bo // 2))
    if d_ssm % (2 * bo) == 0 and bo * kw["BLOCK_K"] <= ONE_TILE_ELEMENTS:
        alts.append(dict(BLOCK_O=2 * bo))
    if problem[-2] is not None:
        oo = kw["BLOCK_OO"]
        alts += [dict(BLOCK_OO=max(1, oo // 2)), dict(BLOCK_OO=2 * oo)]
    return alts


def _grid(problem, kw):
    one = problem[-2]
    return (cdiv(problem[1], kw["BLOCK_O"]) + (cdiv(one[0], kw["BLOCK_OO"]) if one is not None else 0), problem[0])


in_update_kernel = TunableKernel("mamba2_in_update", _in_update_kernel, rule=_rule, alternatives=_alternatives,
                                 key=_key, grid=_grid, restore=("CONV_S", "S"),
                                 flags=dict(HAS_RES="RES", HAS_NORM="NORM_W", HAS_BIN="BIN", HAS_CONV_B="CONV_B",
                                            HAS_D="D", HAS_GATE_NORM="GATE_W", HAS_BOUT="BOUT"))


def fits(M: int, K: int, d_ssm: int, one: bool = False) -> bool:
    """Whether the launch takes this step: at most :data:`MAX_ROWS` rows, a reduction one tile holds (``K`` up to
    4096; with the out step in the launch ``d_ssm`` too), column blocks of at least 4 that divide ``d_ssm``."""
    return 0 < M <= MAX_ROWS and K <= 4096 and d_ssm % 4 == 0 and (not one or d_ssm <= 4096)


def in_update_args(hidden, residual, norm_weight, eps, weight, bias, conv_weight, conv_bias, conv_state, state, A_log,
                   D, dt_bias, gate, cnt, zx, y, res_out, pdl, *, d_ssm: int, ngroups: int, out_step=None):
    """``(problem, launch arguments)`` of :func:`in_update` writing into ``zx (M, O)``, ``y (M, d_ssm)`` and
    ``res_out`` (the plans bind them once); ``out_step``: ``(gate norm weight or None, its eps, group size, gate
    first, out_proj weight (d_model, d_ssm), its bias or None, out (M, d_model))`` for the out step in the launch."""
    M, K = hidden.shape[0], weight.shape[1]
    O = weight.shape[0]
    conv_dim, W = conv_weight.shape
    _, H, P, N = state.shape
    s_b, s_h, s_p, s_n = state.stride()
    d_h, d_p = (P, 1) if D is not None and D.dim() == 2 else (1, 0)
    gate_w, gate_eps, group_size, gate_first, w_out, b_out, out = out_step or (None, 0.0, 1, False, None, None, None)
    one = (w_out.shape[0], gate_w is not None, gate_first, b_out is not None) if out_step is not None else None
    problem = (M, O, K, d_ssm, N, P, weight.dtype, state.dtype, norm_weight is not None, residual is not None, W, gate,
               one, pdl)
    return problem, dict(
        HID=hidden, RES=residual, NORM_W=norm_weight, RES_OUT=res_out, WIN=weight, BIN=bias, CONV_W=conv_weight,
        CONV_B=conv_bias, CONV_S=conv_state, ZX=zx, S=state, A_LOG=A_log, D=D, DT_BIAS=dt_bias, Y=y, CNT=cnt,
        GATE_W=gate_w, WOUT=w_out, BOUT=b_out, OUT=out,
        M=M, K=K, O=O, d_ssm=d_ssm, conv_dim=conv_dim, eps=float(eps), h_m=hidden.stride(0),
        r_m=residual.stride(0) if residual is not None else 0, cs_b=conv_state.stride(0), cs_c=conv_state.stride(1),
        cs_w=conv_state.stride(2), P=P, N=N, heads_per_group=H // ngroups, s_b=s_b, s_h=s_h, s_p=s_p, s_n=s_n,
        d_h=d_h, d_p=d_p, d_model=one[0] if one else 1, group_size=group_size if gate_w is not None else d_ssm,
        gate_eps=float(gate_eps), GATE=gate, W=W, DOT=dot_for(weight.dtype), PDL=pdl, ONE=one is not None,
        GATE_FIRST=gate_first)


def in_update(hidden, residual, norm_weight, eps, residual_dtype, weight, bias, conv_weight, conv_bias, conv_state,
              state, A_log, D, dt_bias, gate, cnt, *, d_ssm: int, ngroups: int, out_step=None, config=None, pdl=None):
    """``hidden (M, K)`` (rows contiguous) -> ``(zx (M, O), y (M, d_ssm), residual_out (M, K) or None, out)``; the
    conv windows rolled and ``state (M, H, P, N)`` updated in place. The input as
    :func:`kernels.fused_step.in_step`'s; ``A_log, dt_bias (H,)``, ``D (H,)``, ``(H, P)`` or None; ``gate``: ``y``
    gated by ``silu(z)``; ``cnt``: the state's :data:`COUNTERS` int32 counters (zero). ``out_step``: ``(gate norm
    weight or None, eps, group size, gate first, out_proj weight, bias or None)``: the block's output ``out (M,
    d_model)`` from the same launch (else ``out`` is None). Call where :func:`fits` says so."""
    M, K = hidden.shape
    zx = torch.empty((M, weight.shape[0]), device=hidden.device, dtype=weight.dtype)
    y = torch.empty((M, d_ssm), device=hidden.device, dtype=weight.dtype)
    res_out = torch.empty((M, K), device=hidden.device, dtype=residual_dtype) if norm_weight is not None else None
    out = None
    if out_step is not None:
        w_out = out_step[4]
        out = torch.empty((M, w_out.shape[0]), device=hidden.device, dtype=w_out.dtype)
        out_step = (*out_step, out)
    problem, args = in_update_args(hidden, residual, norm_weight, eps, weight, bias, conv_weight, conv_bias, conv_state,
                                   state, A_log, D, dt_bias, gate, cnt, zx, y, res_out,
                                   pdl_enabled(hidden.device, M) if pdl is None else pdl, d_ssm=d_ssm, ngroups=ngroups,
                                   out_step=out_step)
    in_update_kernel.launch(problem, config, **args)
    return zx, y, res_out, out
