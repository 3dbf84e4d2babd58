"""Launchers for the SSD stages: block sizes, grids, scratch buffers, and the order the stages run in.

Inputs arrive contiguous and validated (``ssm_triton.ops.ssd``). Scratch is fp32:
``dtp (b, H, n_chunks * Q)``, ``cum (2, b, H, n_chunks * Q)`` (see ``cumsum.py``); the entering states ``hs (b, H, n_chunks, P, N)`` are kept in the
dtype the tensor cores read (fp32 for fp32 inputs and under the interpreter, else the inputs').
"""
import math
from dataclasses import dataclass, replace

import torch
import triton.language as tl

from ..host import cdiv, next_power_of_2
from ..tuning import bucket, interpreting, tune_call
from .chunk_scan import _chunk_scan_fwd_kernel
from .chunk_state import MODE_ADJOINT, MODE_STATE, MODE_VARLEN, _chunk_outer_kernel
from .cumsum import _dt_cumsum_kernel
from .bmm import _bmm_kernel
from .backward import _db_kernel, _dc_kernel, _dx_kernel
from .bwd_dt import _dt_bwd_kernel, _gate_bwd_kernel
from .state_passing import _state_bwd_kernel, _state_fwd_kernel

STATE_BLOCK = 256
_TORCH_DOT = {tl.float32: torch.float32, tl.bfloat16: torch.bfloat16, tl.float16: torch.float16}


@dataclass(frozen=True)
class Plan:
    """Tile sizes for one problem. ``BLOCK_M``/``BLOCK_K`` divide ``Q``; P and N are padded to powers of
    two of at least 16 (tensor-core tiles), or tiled by ``BLOCK_P`` / ``BLOCK_N``."""
    Q: int
    block_m: int
    block_k: int
    block_p: int
    block_n: int
    outer_p: int
    outer_n: int
    dot: object
    warps: int = 4
    stages: int = 2
    bwd_block_m: int = 64
    bwd_block_k: int = 64
    bwd_warps: int = 4
    bwd_stages: int = 2
    min_programs: int = 528   # the pair stages' target: 4 per H100 SM

    @property
    def torch_dot(self) -> torch.dtype:
        return _TORCH_DOT[self.dot]


def plan(x: torch.Tensor, N: int, chunk_size: int, block: int | None = None, **overrides) -> Plan:
    """Default tiles; ``block`` sets every step tile (tests use it), ``overrides`` any field (the sweep).

    The GPU defaults come from ``python -m ssm_triton.bench.sweep_ssd`` on the H100 (2026-11-25, H=64 P=64
    N=128 chunk 256 bf16): with many (row, head) pairs (b=8 L=4096) the forward was fastest with
    64x32 step tiles and no pipelining (1.36 ms), the backward with 64x64 tiles, two stages and heads
    grouped down to ~528 programs (4.65 ms); a small prefill (b=1 L=2048) wanted 64x64 forward tiles
    in two stages and 32x32 backward tiles with one or two heads per program.
    """
    bsz, L, H, P = x.shape
    interp = interpreting()
    blk = min(block or (16 if interp else 64), chunk_size)
    # the interpreter multiplies bf16 wrongly in tl.dot (triton issue 11584): upcast there
    dot = tl.float32 if (interp or x.dtype == torch.float32) else (tl.bfloat16 if x.dtype == torch.bfloat16 else tl.float16)
    pad = lambda n, hi: max(16, min(hi, next_power_of_2(n)))  # noqa: E731
    p = Plan(Q=chunk_size, block_m=blk, block_k=blk, block_p=pad(P, 64), block_n=pad(N, 256),
             outer_p=pad(P, 64), outer_n=pad(N, 128), dot=dot, bwd_block_m=blk, bwd_block_k=blk)
    if not interp and block is None:
        if bsz * L * H >= 1 << 20:
            p = replace(p, block_k=min(32, chunk_size), stages=1)
        else:
            small = min(32, chunk_size)
            p = replace(p, bwd_block_m=small, bwd_block_k=small, min_programs=2112)
    return replace(p, **overrides) if overrides else p


# Tile plans the SSD stages are tuned over, as overrides of ``plan``'s rule ({} first): the runners-up of
# the H100 sweep (bench/sweep_ssd.py, 2026-11-25) for many and for few (row, head) pairs.
FORWARD_OPTIONS = [{}, dict(block_k=64, stages=2), dict(block_k=32, stages=1), dict(block_m=32, block_k=32, stages=2),
                   dict(warps=8)]
BACKWARD_OPTIONS = [{}, dict(bwd_block_m=64, bwd_block_k=64, min_programs=528),
                    dict(bwd_block_m=32, bwd_block_k=32, min_programs=2112), dict(bwd_stages=1), dict(bwd_warps=8)]


def _fitting(options: list[dict], chunk_size: int) -> list[dict]:
    """The options whose step tiles divide the chunk."""
    fields = ("block_m", "block_k", "bwd_block_m", "bwd_block_k")
    return [o for o in options if all(chunk_size % o.get(f, 1) == 0 for f in fields)] or options[:1]


def _tune_key(x, B, chunk_size, z, seq_idx) -> tuple:
    bsz, L, H, P = x.shape
    return (bucket(bsz * L), H, P, B.shape[2], B.shape[3], chunk_size, str(x.dtype), z is not None, seq_idx is not None)


def _f32(*shape, device):
    return torch.empty(shape, device=device, dtype=torch.float32)


def lo_offset(cum: torch.Tensor) -> int:
    """Elements from the ``hi`` plane of ``cum (2, b, H, Lp)`` to its ``lo`` plane."""
    return cum[0].numel()


def _limits(dt_limit) -> tuple[float, float, bool]:
    """``(lo, hi, clamp?)`` as the kernels take them: ``hi`` finite, no clamp for the default ``(0, inf)``."""
    lo, hi = dt_limit
    return float(lo), float(min(hi, 3.0e38)), lo > 0.0 or hi != math.inf


def dt_cumsum(dt, A, dt_bias, dt_softplus, dt_limit, p: Plan):
    """``(dtp (b, H, Lp), cum (2, b, H, Lp))``, ``cum`` as fp32 ``hi`` and ``lo`` planes of an fp64 sum."""
    bsz, L, H = dt.shape
    nc = cdiv(L, p.Q)
    dtp = _f32(bsz, H, nc * p.Q, device=dt.device)
    cum = _f32(2, bsz, H, nc * p.Q, device=dt.device)
    lo, hi, clamp = _limits(dt_limit)
    _dt_cumsum_kernel[(nc, bsz * H)](
        dt, dt_bias if dt_bias is not None else dt, A, dtp, cum, L, H, nc * p.Q, lo_offset(cum), lo, hi,
        HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus, CLAMP=clamp, Q=p.Q)
    return dtp, cum


def chunk_outer(V, W, dtp, cum, seq, mode, p: Plan, hprev=None, cu=None):
    """Per-chunk (or per-sequence, ``MODE_VARLEN``) ``(P, N)`` sums; see ``chunk_state.py``."""
    bsz, L, H, P = V.shape
    G, N = W.shape[2], W.shape[3]
    nc = cdiv(L, p.Q)
    tiles = cdiv(P, p.outer_p) * cdiv(N, p.outer_n)
    if mode == MODE_VARLEN:
        S = cu.shape[0] - 1
        out = _f32(S, H, P, N, device=V.device)
        grid = (S, H, tiles)
    else:
        out = _f32(bsz, H, nc, P, N, device=V.device)
        grid = (nc, bsz * H, tiles)
    _chunk_outer_kernel[grid](
        V, W, dtp, cum, seq if seq is not None else cum, hprev if hprev is not None else cum, out,
        cu if cu is not None else cum, L, H, G, P, N, nc * p.Q, nc, lo_offset(cum),
        MODE=mode, HAS_SEQ=seq is not None, Q=p.Q, BLOCK_K=p.block_k, BLOCK_P=p.outer_p, BLOCK_N=p.outer_n,
        DOT=p.dot, num_warps=p.warps, num_stages=p.stages)
    return out


def state_passing(own, cum, seq, h0, L, p: Plan):
    """``own (b, H, nc, P, N)`` fp32, each chunk's own state -> ``(hs, final)``: the states entering each
    chunk, in the tensor cores' dtype, and the last state, fp32."""
    bsz, H, nc, P, N = own.shape
    final = _f32(bsz, H, P, N, device=own.device)
    hs = torch.empty(own.shape, device=own.device, dtype=p.torch_dot)
    PN = P * N
    _state_fwd_kernel[(bsz * H, cdiv(PN, STATE_BLOCK))](
        own, hs, cum, seq if seq is not None else cum, h0 if h0 is not None else own, final, L, H, nc * p.Q, nc, PN,
        HAS_H0=h0 is not None, HAS_SEQ=seq is not None, Q=p.Q, BLOCK=STATE_BLOCK)
    return hs, final


def bmm(B, C, p: Plan):
    bsz, L, G, N = B.shape
    nc = cdiv(L, p.Q)
    cb = _f32(bsz, G, nc, p.Q, p.Q, device=B.device)
    per = p.Q // p.block_m
    _bmm_kernel[(nc * per * per, bsz * G)](B, C, cb, L, G, N, nc, Q=p.Q, BLOCK_M=p.block_m, BLOCK_K=p.block_m,
                                           BLOCK_N=min(p.block_n, 64), DOT=p.dot, num_warps=p.warps)
    return cb


def chunk_scan(x, B, C, cb, dtp, cum, hs, D, z, seq, p: Plan, store_y: bool):
    bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc = cdiv(L, p.Q)
    out = torch.empty_like(x)
    y = torch.empty_like(x) if store_y else out
    _chunk_scan_fwd_kernel[(cdiv(L, p.block_m), bsz * H, cdiv(P, p.block_p))](
        x, B, C, cb, dtp, cum, hs, D if D is not None else cum, z if z is not None else x,
        seq if seq is not None else cum, y, out, L, H, G, P, N, nc * p.Q, nc, lo_offset(cum),
        HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2, HAS_Z=z is not None,
        HAS_SEQ=seq is not None, STORE_Y=store_y, Q=p.Q, BLOCK_M=p.block_m, BLOCK_K=p.block_k,
        BLOCK_P=p.block_p, BLOCK_N=p.block_n, DOT=p.dot, num_warps=p.warps, num_stages=p.stages)
    return out, (y if store_y else None)


def seq_idx_from_cu_seqlens(cu_seqlens: torch.Tensor, L: int) -> torch.Tensor:
    """``(1, L)`` int32 sequence ids of the packed row that ``cu_seqlens (S + 1,)`` describes."""
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    ids = torch.arange(lengths.shape[0], device=cu_seqlens.device, dtype=torch.int32)
    return torch.repeat_interleave(ids, lengths, output_size=L)[None]


def ssd_forward(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None,
                cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, math.inf), want_varlen=False,
                for_backward=False, block=None, tiles=None):
    """Returns ``(out, final_states (b, H, P, N) fp32, varlen_states (S, H, P, N) fp32 or None, saved)``;
    ``saved`` is what :func:`ssd_backward` reads: ``(dtp, cum, hs, y)``, ``y`` the pre-gate output when
    ``z`` is given and a backward is to come, else None."""
    bsz, L, H, P = x.shape
    N = B.shape[3]
    if tiles is None and block is None:
        tiles = tune_call("ssd_fwd", _tune_key(x, B, chunk_size, z, seq_idx), _fitting(FORWARD_OPTIONS, chunk_size),
                          lambda t: ssd_forward(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx,
                                                cu_seqlens, dt_softplus, dt_limit, want_varlen, for_backward,
                                                tiles=t))
    p = plan(x, N, chunk_size, block, **(tiles or {}))
    seq = seq_idx.to(torch.int32).contiguous() if seq_idx is not None else None
    dtp, cum = dt_cumsum(dt, A, dt_bias, dt_softplus, dt_limit, p)
    hs, final = state_passing(chunk_outer(x, B, dtp, cum, seq, MODE_STATE, p), cum, seq, initial_states, L, p)
    cb = bmm(B, C, p)
    out, y = chunk_scan(x, B, C, cb, dtp, cum, hs, D, z, seq, p, store_y=for_backward and z is not None)
    varlen = None
    if want_varlen:
        varlen = chunk_outer(x, B, dtp, cum, seq, MODE_VARLEN, p, hprev=hs, cu=cu_seqlens.to(torch.int32).contiguous())
    return out, final, varlen, (dtp, cum, hs, y)


def heads_per_program(row_blocks: int, H: int, G: int, target: int) -> int:
    """Heads a pair-stage program loops over: the most that still leave ``target`` programs, dividing
    the heads of a group (a program's heads share ``B`` and ``C``). Fewer heads per program means more
    fp32 partials of ``dB`` / ``dC`` to add up afterwards."""
    per_group = H // G
    best = 1
    for k in range(1, per_group + 1):
        if per_group % k == 0 and row_blocks * (H // k) >= target:
            best = k
    return best


def ssd_backward(dout, dfinal, saved, x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                 initial_states=None, seq_idx=None, dt_softplus=False, dt_limit=(0.0, math.inf), block=None,
                 heads=None, tiles=None, deterministic=False):
    """Gradients of :func:`ssd_forward` given ``dout (b, L, H, P)`` and ``dfinal (b, H, P, N)`` or None.
    Returns ``(dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states)`` (None for absent inputs);
    ``ddt`` in ``dt``'s dtype, ``dx, dz`` in ``x``'s, the rest fp32. ``deterministic``: ``dC`` without
    atomics (a second pass over the pairs). The step-size sums use fp64 atomics in both modes: their
    order perturbs fp64 rounding only, which can flip the last bit of an fp32 ``ddt`` / ``dA``, rarely."""
    dtp, cum, hs, y = saved
    bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    if tiles is None and block is None and heads is None and not deterministic:  # deterministic: the rule's plan
        tiles = tune_call("ssd_bwd", _tune_key(x, B, chunk_size, z, seq_idx), _fitting(BACKWARD_OPTIONS, chunk_size),
                          lambda t: ssd_backward(dout, dfinal, saved, x, dt, A, B, C, chunk_size, D, z, dt_bias,
                                                 initial_states, seq_idx, dt_softplus, dt_limit,
                                                 tiles=t, deterministic=deterministic))
    p = plan(x, N, chunk_size, block, **(tiles or {}))
    nc = cdiv(L, p.Q)
    Lp = nc * p.Q
    dev = x.device
    seq = seq_idx.to(torch.int32).contiguous() if seq_idx is not None else None
    dummy = cum
    dz = None
    if z is not None:
        dy, dz = torch.empty_like(x), torch.empty_like(z)
        n = x.numel()
        _gate_bwd_kernel[(cdiv(n, 1024),)](dout, y, z, dy, dz, n, BLOCK=1024)
    else:
        dy = dout.to(x.dtype).contiguous()

    # what the outputs send back to each chunk's entering state, then the reversed state passing
    adj = chunk_outer(dy, C, dtp, cum, seq, MODE_ADJOINT, p)
    PN = P * N
    n_blk = cdiv(PN, STATE_BLOCK)
    dh0 = _f32(bsz, H, P, N, device=dev)
    fpart = _f32(bsz, H, nc, n_blk, device=dev)
    _state_bwd_kernel[(bsz * H, n_blk)](
        adj, hs, cum, seq if seq is not None else dummy, dfinal if dfinal is not None else dummy, dh0, fpart,
        L, H, Lp, nc, PN, HAS_DFINAL=dfinal is not None, HAS_SEQ=seq is not None, Q=p.Q, BLOCK=STATE_BLOCK)

    rows = cdiv(L, p.bwd_block_m)
    k = heads or heads_per_program(rows * bsz, H, G, target=p.min_programs)
    n_hb = H // k
    dx = torch.empty_like(x)
    db_part = _f32(bsz, L, n_hb, N, device=dev)
    dc_part = _f32(bsz, L, n_hb, N, device=dev) if deterministic else torch.zeros((bsz, L, n_hb, N), device=dev)
    dd_part = _f32(rows, bsz, H, P, device=dev) if D is not None else dummy
    rs = torch.zeros((bsz, H, Lp), device=dev, dtype=torch.float64)
    cs = torch.zeros_like(rs)
    us, xv, inter = (torch.empty_like(rs, dtype=torch.float32) for _ in range(3))
    common = dict(HAS_SEQ=seq is not None, Q=p.Q, BLOCK_M=p.bwd_block_m, BLOCK_K=p.bwd_block_k,
                  BLOCK_P=max(16, next_power_of_2(P)), BLOCK_N=max(16, next_power_of_2(N)),
                  DOT=p.dot, num_warps=p.bwd_warps, num_stages=p.bwd_stages)
    seq_arg = seq if seq is not None else dummy
    cb = bmm(B, C, p)
    _dx_kernel[(rows, bsz * H)](
        x, B, cb, dy, dtp, cum, adj, D if D is not None else dummy, seq_arg, dx, dd_part, us, xv,
        L, H, G, P, N, Lp, nc, lo_offset(cum), HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2, **common)
    _db_kernel[(rows, bsz * n_hb)](x, B, C, cb, dy, dtp, cum, adj, seq_arg, db_part, dc_part, rs, cs,
                                   L, H, G, P, N, Lp, nc, lo_offset(cum), k, ATOMIC_DC=not deterministic, **common)
    _dc_kernel[(rows, bsz * n_hb)](x, B, C, dy, dtp, cum, hs, seq_arg, dc_part, inter, L, H, G, P, N, Lp, nc, lo_offset(cum), k,
                                   PAIRS=deterministic,
                                   **common)

    ddt = torch.empty_like(dt)
    da_part = _f32(bsz, H, nc, device=dev)
    dbias_part = torch.empty_like(da_part)
    lo, hi, clamp = _limits(dt_limit)
    _dt_bwd_kernel[(nc, bsz * H)](
        dt, dt_bias if dt_bias is not None else dummy, A, dtp, rs, inter, cs, us, xv, fpart.sum(-1), ddt, da_part,
        dbias_part, L, H, Lp, nc, lo, hi, HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus, CLAMP=clamp, Q=p.Q)

    per_group_blocks = n_hb // G
    dB = db_part.view(bsz, L, G, per_group_blocks, N).sum(3)
    dC = dc_part.view(bsz, L, G, per_group_blocks, N).sum(3)
    dD = None
    if D is not None:
        dD = dd_part.sum((0, 1))
        if D.dim() == 1:
            dD = dD.sum(1)
    return (dx, ddt, da_part.sum((0, 2)), dB, dC, dD, dz,
            dbias_part.sum((0, 2)) if dt_bias is not None else None,
            dh0 if initial_states is not None else None)
