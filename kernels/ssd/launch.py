"""Launchers for the SSD stages: block sizes, grids, scratch buffers, and the order the stages run in.

Inputs arrive contiguous and validated (``ssm_triton.ops.ssd``). Scratch is fp32:
``dtp (b, H, n_chunks * Q)``, ``cum (2, b, H, n_chunks * Q)`` (see ``cumsum.py``); the entering states ``hs (b, H, n_chunks, P, N)`` are kept in the
dtype the tensor cores read (fp32 for fp32 inputs and under the interpreter, else the inputs').
"""
import math
import os
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import triton.language as tl

from ..host import cdiv, fills_waves, next_power_of_2, step_stride
from ..tuning import TunablePlan, bucket, run_mode
from .bmm import bmm_kernel
from .common import TF32
from .bwd_dt import dt_bwd_kernel, gate_backward
from .bwd_pairs import db_dc_pairs_kernel, dc_states_kernel, dx_dd_kernel
from .chunk_scan import chunk_scan_kernel
from .chunk_state import MODE_ADJOINT, MODE_STATE, MODE_VARLEN, chunk_state_kernel
from .cumsum import dt_cumsum_kernel
from .fused import fused_forward, fused_plan, keeps, use_fused
from .state_passing import state_bwd_adjoint_kernel, state_bwd_kernel, state_fwd_kernel, state_fwd_own_kernel
from .walk_bwd import walk_bwd_kernel, walk_sums_kernel

STATE_BLOCK = 256
_TORCH_DOT = {tl.float32: torch.float32, TF32: torch.float32, tl.bfloat16: torch.bfloat16, tl.float16: torch.float16}


def fp32_matmul() -> str:
    """``"tf32"`` or ``"ieee"``: how PyTorch is set to multiply fp32 matrices, which the SSD follows for fp32
    inputs (``torch.backends.cuda.matmul.fp32_precision`` where it is set, else
    ``torch.get_float32_matmul_precision()``: "high" and "medium" allow TF32, "highest" does not)."""
    chosen = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if chosen in ("tf32", "ieee"):
        return chosen
    try:
        return "tf32" if torch.get_float32_matmul_precision() in ("high", "medium") else "ieee"
    except RuntimeError:  # the two APIs mixed: torch refuses to say; keep IEEE products
        return "ieee"


def precision_key(dtype: torch.dtype):
    """What a cache or replay key adds for inputs of ``dtype``: :func:`fp32_matmul` for fp32 (the setting
    steers those kernels' products), None for the half types (their products never depend on it)."""
    return fp32_matmul() if dtype == torch.float32 else None


def dot_for(dtype: torch.dtype):
    """The ``DOT`` the SSD kernels multiply in for inputs of ``dtype``."""
    if dtype == torch.float32:
        return TF32 if fp32_matmul() == "tf32" else tl.float32
    # the interpreter too (common.mm emulates the tensor cores' bf16/fp16 products there)
    return tl.bfloat16 if dtype == torch.bfloat16 else tl.float16


def tiles_env(name: str, count: int, tiles: int) -> tuple[int, ...]:
    """The comma-separated ints of environment variable ``name``: ``()`` where unset, else ``count`` of them whose
    first ``tiles`` are tile sides, powers of two of at least 16 (``tl.dot``'s smallest on a GPU)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return ()
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != count or any(v < 16 or v & (v - 1) for v in vals[:tiles]) or any(v < 1 for v in vals[tiles:]):
        raise ValueError(f"{name} must be {count} comma-separated positive ints, the first {tiles} powers of two of at "
                         f"least 16, got {text!r}")
    return vals


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
    # _dx_dd_kernel's own (None: bwd_warps / bwd_stages). One stage: 1.135 ms against 1.360 with two at b8 L4096
    # H64 P64 N128 chunk 256 bf16, 0.099 against 0.107 at b1 L2048, where the other pair stages lose with one
    # (H200, 2026-12-04, bench/sweep_ssd.py bwd_kernels)
    dx_warps: int | None = None
    dx_stages: int | None = 1
    # _db_dc_pairs_kernel's programs ordered by the pairs they walk, longest first: its ~4 waves at the headline
    # left 15% of the SMs' cycles idle in Nsight Compute; 1.715 -> 1.538 ms there, 0.237 -> 0.287 at b1 L2048
    # (one wave: nothing to balance) on the H200, 2026-12-04 (sweep_ssd bwd_kernels). The rule's many-rows plans
    # take it
    heavy_first: bool = False
    # the chunk scan's own step-slice tile and pipeline stages (None: block_k, stages)
    scan_block_k: int | None = None
    scan_stages: int | None = None
    # the chunk scan's split decay (chunk_scan.py SPLIT_DECAY) and its step blocks launched longest first
    scan_split: bool = False
    scan_longest_first: bool = False
    # the forward's chunk states' own channel tile (None: outer_p)
    state_outer_p: int | None = None
    min_programs: int = 528   # the pair stages' target program count: 4 per SM (the H100's and H200's 132)

    @property
    def torch_dot(self) -> torch.dtype:
        return _TORCH_DOT[self.dot]


_PLANS: dict = {}


def plan(x: torch.Tensor, N: int, chunk_size: int, block: int | None = None, mode=None, **overrides) -> Plan:
    """:func:`make_plan`, remembered per problem: every call of every op asks for it, and building a
    dataclass and its replacements costs microseconds each."""
    key = (x.shape, x.dtype, x.device, N, chunk_size, block, mode, tuple(sorted(overrides.items())),
           precision_key(x.dtype))
    p = _PLANS.get(key)
    if p is None:
        if len(_PLANS) > 4096:  # many lengths: start over rather than grow without bound
            _PLANS.clear()
        p = _PLANS[key] = make_plan(x, N, chunk_size, block, mode, **overrides)
    return p


# Pair-stage programs a SM for few (row, head) pairs. Each program's head block writes its own fp32 (b, L, N)
# slabs of dB and dC partials: 16 a SM (one head a program at b1 L2048 H64) made 128 MiB of them, a peak of 184 MiB
# against mamba_ssm's 93; 6 a SM gives four heads a program there, 65 MiB above the inputs instead of 161, and was
# faster too (0.493 against 0.550 ms of kernels a fwd+bwd; sweep_ssd bwd_kernels, H200, 2026-12-04g).
SMALL_PAIR_PROGRAMS = 6


def make_plan(x: torch.Tensor, N: int, chunk_size: int, block: int | None = None, mode=None, **overrides) -> Plan:
    """Default tiles; ``block`` sets every step tile (tests use it), ``overrides`` any field (the sweep).

    The GPU defaults come from ``python -m ssm_triton.bench.sweep_ssd`` on the H100 (2026-11-25, H=64 P=64
    N=128 chunk 256 bf16): with many (row, head) pairs (b=8 L=4096) the forward was fastest with
    64x32 step tiles and no pipelining (1.36 ms), the backward with 64x64 tiles, two stages and heads
    grouped down to ~528 programs (4.65 ms); a small prefill (b=1 L=2048) wanted 64x64 forward tiles
    in two stages and 32x32 backward tiles with one or two heads per program (four on the H200 since
    2026-12-04g: ``SMALL_PAIR_PROGRAMS``); its chunk scan 32-step slices in one stage with the split decay, launched
    longest first, and its chunk states 32 channels a program (2026-12-07).
    """
    bsz, L, H, P = x.shape
    mode = mode or run_mode(x.device)
    interp = mode.interpreted
    blk = min(block or (16 if interp else 64), chunk_size)
    dot = dot_for(x.dtype)
    pad = lambda n, hi: max(16, min(hi, next_power_of_2(n)))  # noqa: E731
    p = Plan(Q=chunk_size, block_m=blk, block_k=blk, block_p=pad(P, 64), block_n=pad(N, 256),
             outer_p=pad(P, 64), outer_n=pad(N, 128), dot=dot, bwd_block_m=blk, bwd_block_k=blk,
             min_programs=4 * mode.sm_count)
    if not interp and block is None:
        if bsz * L * H >= 1 << 20:
            p = replace(p, block_k=min(32, chunk_size), stages=1, heavy_first=True)
        else:
            small = min(32, chunk_size)
            # the chunk scan at 32-step slices in one stage with the split decay, its blocks launched longest
            # first, and the chunk states at 32 channels a program: the 130M Mamba2 LM's replayed prefill 2.088 ms
            # against 2.351 with the plan's 64x64 scan in two stages and 64-channel states (H100, 2026-12-07, tuner
            # off, bench/results/h100-2026-12-07g: the scan's form alone 2.194, with longest first 2.158, with the
            # states' tile 2.162; the split at 64x64 lost, 2.490)
            p = replace(p, bwd_block_m=small, bwd_block_k=small, min_programs=SMALL_PAIR_PROGRAMS * mode.sm_count,
                        scan_block_k=small, scan_stages=1, scan_split=True, scan_longest_first=True,
                        state_outer_p=min(32, p.outer_p))
    return replace(p, **overrides) if overrides else p


class SSDProblem(NamedTuple):
    """What the SSD tile plans' rules and keys read."""
    bsz: int
    L: int
    H: int
    P: int
    G: int
    N: int
    chunk_size: int
    dtype: torch.dtype
    has_z: bool
    has_seq: bool


def _problem(x, B, chunk_size, z, seq_idx) -> SSDProblem:
    bsz, L, H, P = x.shape
    return SSDProblem(bsz, L, H, P, B.shape[2], B.shape[3], chunk_size, x.dtype, z is not None, seq_idx is not None)


def _fitting(options: list[dict], chunk_size: int) -> list[dict]:
    """The options whose step tiles divide the chunk."""
    fields = ("block_m", "block_k", "bwd_block_m", "bwd_block_k")
    return [o for o in options if all(chunk_size % o.get(f, 1) == 0 for f in fields)]


# the chunk scan and chunk states as the plan's own tiles make them: no split decay, no order, no states' tile (the
# tuner's candidate against the few-rows rule's forms, and Mamba-3's plan, which keeps them)
PLAIN_SCAN = dict(scan_block_k=None, scan_stages=None, scan_split=False, scan_longest_first=False, state_outer_p=None)


# Tile plans the SSD stages are tuned over, as overrides of ``plan``'s rule: the runners-up of the H100
# sweep (bench/sweep_ssd.py, 2026-11-25) for many and for few (row, head) pairs.
def _forward_options(p: SSDProblem, mode):
    # the few-rows rule's chunk scan and chunk states forms and the plan's own, either way (make_plan)
    return _fitting([dict(block_k=64, stages=2), dict(block_k=32, stages=1), dict(block_m=32, block_k=32, stages=2),
                     dict(warps=8), dict(PLAIN_SCAN), dict(scan_split=True, scan_longest_first=True, state_outer_p=32)],
                    p.chunk_size)


def _backward_options(p: SSDProblem, mode):
    return _fitting([dict(bwd_block_m=64, bwd_block_k=64, min_programs=4 * mode.sm_count),
                     dict(bwd_block_m=32, bwd_block_k=32, min_programs=SMALL_PAIR_PROGRAMS * mode.sm_count),
                     dict(bwd_stages=1),
                     dict(bwd_warps=8), dict(dx_stages=2), dict(heavy_first=True), dict(heavy_first=False)],
                    p.chunk_size)


def _plan_key(p: SSDProblem) -> tuple:
    return (bucket(p.bsz * p.L), p.H, p.P, p.G, p.N, p.chunk_size, str(p.dtype), p.has_z, p.has_seq)


# the rule is plan()'s own defaults: no overrides
ssd_fwd_plan = TunablePlan("ssd_fwd", rule=lambda p, mode: {}, alternatives=_forward_options, key=_plan_key)
# the deterministic backward runs the rule's plan (see ssd_backward)
ssd_bwd_plan = TunablePlan("ssd_bwd", rule=lambda p, mode: {}, alternatives=_backward_options, key=_plan_key)


def _f32(*shape, device):
    return torch.empty(shape, device=device, dtype=torch.float32)


def lo_offset(cum: torch.Tensor) -> int:
    """Elements from the ``hi`` plane of ``cum (2, b, H, Lp)`` to its ``lo`` plane."""
    return cum.numel() // 2   # not cum[0].numel(): a view costs microseconds of host time


def _limits(dt_limit) -> tuple[float, float, bool]:
    """``(lo, hi, clamp?)`` as the kernels take them: ``hi`` finite, no clamp for the default ``(0, inf)``."""
    lo, hi = dt_limit
    return float(lo), float(min(hi, 3.0e38)), lo > 0.0 or hi != math.inf


class Saved(NamedTuple):
    """What the forward keeps for the backward."""
    dtp: torch.Tensor     # (b, H, Lp) fp32 step sizes after bias, softplus and clamp
    cum: torch.Tensor     # (2, b, H, Lp) fp32 hi and lo planes of the within-chunk cumulative dt*A
    hs: torch.Tensor      # (b, H, nc, P, N) the states entering each chunk, in the tensor cores' dtype
    y: torch.Tensor | None  # (b, L, H, P) the pre-gate output when z is given, else None


def dt_cumsum(dt, A, dt_bias, dt_softplus, dt_limit, p: Plan, a_log: bool = False):
    """``(dtp (b, H, Lp), cum (2, b, H, Lp))``, ``cum`` as fp32 ``hi`` and ``lo`` planes of an fp64 sum.
    ``a_log``: ``A`` holds ``log(-A)`` (the module's ``A_log``)."""
    bsz, L, H = dt.shape
    nc = cdiv(L, p.Q)
    dtp = _f32(bsz, H, nc * p.Q, device=dt.device)
    cum = _f32(2, bsz, H, nc * p.Q, device=dt.device)
    lo, hi, clamp = _limits(dt_limit)
    dt_cumsum_kernel((nc, bsz * H), DT=dt, DT_BIAS=dt_bias, A=A, DTP=dtp, CUM=cum, L=L, H=H, SDT=dt.stride(1),
                     Lp=nc * p.Q,
                     lo_off=lo_offset(cum), lo=lo, hi=hi, SOFTPLUS=dt_softplus, CLAMP=clamp, Q=p.Q, A_LOG=a_log)
    return dtp, cum


# the forward's chunk states' own tiles where set, "BLOCK_P,BLOCK_N,BLOCK_K,warps,stages" (powers of two, BLOCK_K
# dividing the chunk): a sweep's knob for the prefill graph, whose 24 heads x 8 chunks are 192 programs of a whole
# (P, N) state each on 132 SMs (10.3 us a layer, H100 12-07, against ~4 us of its reads and writes)
STATE_TILES = tiles_env("SSM_TRITON_STATE_TILES", 5, 3)


def chunk_state(V, W, dtp, cum, seq, mode, p: Plan, hprev=None, cu=None):
    """Per-chunk (or per-sequence, ``MODE_VARLEN``) ``(P, N)`` sums; see ``chunk_state.py``."""
    bsz, L, H, P = V.shape
    G, N = W.shape[2], W.shape[3]
    nc = cdiv(L, p.Q)
    bp, bn, bk, warps, stages = p.outer_p, p.outer_n, p.block_k, p.warps, p.stages
    if mode == MODE_STATE and len(STATE_TILES) == 5 and p.Q % STATE_TILES[2] == 0:
        bp, bn, bk, warps, stages = STATE_TILES
    elif mode == MODE_STATE and p.state_outer_p:
        bp = p.state_outer_p
    tiles = cdiv(P, bp) * cdiv(N, bn)
    if mode == MODE_VARLEN:
        S = cu.shape[0] - 1
        out = _f32(S, H, P, N, device=V.device)
        grid = (S, H, tiles)
    else:
        out = _f32(bsz, H, nc, P, N, device=V.device)
        grid = (nc, bsz * H, tiles)
    chunk_state_kernel(grid, V=V, W=W, DTP=dtp, CUM=cum, SEQ=seq, HPREV=hprev, OUT=out, CU=cu, L=L, H=H, G=G, P=P,
                       N=N, SV=V.stride(1), SW=W.stride(1), Lp=nc * p.Q, nc=nc, lo_off=lo_offset(cum), MODE=mode, Q=p.Q, BLOCK_K=bk,
                       BLOCK_P=bp, BLOCK_N=bn, DOT=p.dot, num_warps=warps, num_stages=stages)
    return out


def state_passing(own, cum, seq, h0, L, p: Plan):
    """``own (b, H, nc, P, N)`` fp32, each chunk's own state -> ``(hs, final)``: the states entering each
    chunk, in the tensor cores' dtype, and the last state, fp32."""
    bsz, H, nc, P, N = own.shape
    final = _f32(bsz, H, P, N, device=own.device)
    hs = torch.empty(own.shape, device=own.device, dtype=p.torch_dot)
    PN = P * N
    state_fwd_kernel((bsz * H, cdiv(PN, STATE_BLOCK)), S=own, HS=hs, CUM=cum, SEQ=seq, H0=h0, FINAL=final, L=L, H=H,
                     Lp=nc * p.Q, nc=nc, PN=PN, Q=p.Q, BLOCK=STATE_BLOCK)
    return hs, final


def state_passing_bwd(adj, hs, cum, seq, dfinal, L, p: Plan):
    """The reversed state passing: ``adj (b, H, nc, P, N)``, what each chunk's outputs send back to its
    entering state -> ``(ds, dh0, fpart)``: ``ds`` the gradient of each chunk's end state, in the tensor
    cores' dtype (only tensor-core products read it: stored as they would round it, it is half the bytes
    that the pair stages read four times over, once per row block of a chunk), ``dh0 (b, H, P, N)`` fp32 that
    of the initial state, ``fpart (b, H, nc, blocks)`` partial sums of the chunk-decay gradients."""
    bsz, H, nc, P, N = adj.shape
    PN = P * N
    n_blk = cdiv(PN, STATE_BLOCK)
    ds = torch.empty(adj.shape, device=adj.device, dtype=p.torch_dot)
    dh0 = _f32(bsz, H, P, N, device=adj.device)
    fpart = _f32(bsz, H, nc, n_blk, device=adj.device)
    state_bwd_kernel((bsz * H, n_blk), ADJ=adj, HS=hs, CUM=cum, SEQ=seq, DFINAL=dfinal, DS=ds, DH0=dh0, FPART=fpart,
                     L=L, H=H, Lp=nc * p.Q, nc=nc, PN=PN, Q=p.Q, BLOCK=STATE_BLOCK)
    return ds, dh0, fpart


# each chunk's own end state summed inside the state passing (one kernel, no fp32 per-chunk states stored): "1" on,
# anything else the two stages (the default: with ADJ_FUSED, no faster at chunk 128 and 3.6% slower at 256 on an
# H100, 2026-12-05, bench/results/h100-2026-12-05c)
OWN_FUSED = os.environ.get("SSM_TRITON_SSD_OWN_FUSED", "")


def _pass_tiles(P: int, N: int, p: Plan) -> tuple[int, int, int]:
    """``(BLOCK_P, BLOCK_N, tiles)`` of the state passings that make their chunks' sums: a program holds two fp32
    tiles (the carried state and the chunk's sum); at 64 x 64 and 8 warps sm_90 keeps them in ~176 registers without
    spills (64 x 128 at 4 warps spilled ~0.5 KB a thread; tests/sm90_compile.py --resources), with twice the
    forward's programs for a kernel whose programs each walk their chunks in order."""
    bp, bn = min(p.outer_p, 64), min(p.outer_n, 64)
    return bp, bn, cdiv(P, bp) * cdiv(N, bn)


def own_state_passing(x, B, dtp, cum, seq, h0, L, p: Plan):
    """Each chunk's own end state (``sum_s exp(cum_end - cum_s) dt_s x_s B_s^T``), then the state passing:
    ``(hs, final)`` as :func:`state_passing`. ``x (b, L, H, P)`` and ``B (b, L, G, N)`` with any step stride. With
    ``OWN_FUSED`` one kernel walks each state tile's chunks and makes each chunk's sum as it goes; otherwise
    :func:`chunk_state` stores the sums (fp32, ``(b, H, chunks, P, N)``) and :func:`state_passing` reads them."""
    if OWN_FUSED != "1":
        return state_passing(chunk_state(x, B, dtp, cum, seq, MODE_STATE, p), cum, seq, h0, L, p)
    bsz, _, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc = cdiv(L, p.Q)
    bp, bn, tiles = _pass_tiles(P, N, p)
    hs = torch.empty((bsz, H, nc, P, N), device=x.device, dtype=p.torch_dot)
    final = _f32(bsz, H, P, N, device=x.device)
    state_fwd_own_kernel((bsz * H, tiles), X=x, B=B, DTP=dtp, CUM=cum, SEQ=seq, H0=h0, HS=hs, FINAL=final, L=L, H=H,
                         G=G, P=P, N=N, SX=x.stride(1), SB=B.stride(1), Lp=nc * p.Q, nc=nc, lo_off=lo_offset(cum),
                         Q=p.Q, BLOCK_K=p.block_k, BLOCK_P=bp, BLOCK_N=bn, DOT=p.dot, num_warps=8,
                         num_stages=p.stages)
    return hs, final


# the backward's adjoint sums inside the reversed state passing (one kernel, no fp32 per-chunk sums stored): "1" on,
# anything else the two stages (the default; timed with OWN_FUSED, above)
ADJ_FUSED = os.environ.get("SSM_TRITON_SSD_ADJ_FUSED", "")


def adjoint_state_passing(dy, C, dtp, cum, hs, seq, dfinal, L, p: Plan):
    """What the outputs send back to each chunk's entering state (``sum_t exp(cum_t) dy_t C_t^T``), then the
    reversed state passing: ``(ds, dh0, fpart)`` as :func:`state_passing_bwd`. ``dy (b, L, H, P)`` and
    ``C (b, L, G, N)`` with any step stride (contiguous past it). With ``ADJ_FUSED`` one kernel walks each state
    tile's chunks in reverse and makes each chunk's sum as it goes; otherwise :func:`chunk_state`'s adjoint mode
    stores the sums (fp32, ``(b, H, chunks, P, N)``) and the reversed state passing reads them."""
    if ADJ_FUSED != "1":
        return state_passing_bwd(chunk_state(dy, C, dtp, cum, seq, MODE_ADJOINT, p), hs, cum, seq, dfinal, L, p)
    bsz, _, H, P = dy.shape
    G, N = C.shape[2], C.shape[3]
    nc = cdiv(L, p.Q)
    bp, bn, tiles = _pass_tiles(P, N, p)
    ds = torch.empty(hs.shape, device=dy.device, dtype=p.torch_dot)
    dh0 = _f32(bsz, H, P, N, device=dy.device)
    fpart = _f32(bsz, H, nc, tiles, device=dy.device)
    state_bwd_adjoint_kernel((bsz * H, tiles), DY=dy, C=C, CUM=cum, HS=hs, SEQ=seq, DFINAL=dfinal, DS=ds, DH0=dh0,
                             FPART=fpart, L=L, H=H, G=G, P=P, N=N, SDY=dy.stride(1), SC=C.stride(1), Lp=nc * p.Q,
                             nc=nc, lo_off=lo_offset(cum), Q=p.Q, BLOCK_K=p.block_k, BLOCK_P=bp,
                             BLOCK_N=bn, DOT=p.dot, num_warps=8, num_stages=p.stages)
    return ds, dh0, fpart


# the backward of one-group-a-head SSDs (Mamba-3's) in one launch (walk_bwd.py): "1" always where it can, "0" never
# (the stages), unset: where its programs fill the GPU's waves (``WALK_FILL``). Its b H programs hold one SM each
# (255 registers a thread at 8 warps), each walking its row in order: it is fast only with every SM busy. H100,
# 2026-12-05 (bench/walk_choice.py, 32-step blocks, H32 P64 N128 bf16): B8 L4096 (256 programs, 97% of two waves)
# SISO fwd+bwd 6.29-6.34 ms against the stages' 6.82-6.84, MIMO rank 4 34.3 against 38.6; b1 L2048 (32 programs)
# SISO 0.99 against 0.80-0.84, MIMO 4.24 against 2.31, until rows walked in segments: SISO there in four, 0.532
# against 0.625 ms of kernels a fwd+bwd (MIMO b1 in segments not yet timed)
WALK_BWD = os.environ.get("SSM_TRITON_WALK_BWD", "")
WALK_FILL = 0.85
# the largest state and chunk a walking program holds in registers (dh, the entering state, a chunk's (Q, Q) tiles):
# 64 x 128 and 64 steps, Mamba-3's default shape
WALK_STATE = 64 * 128
WALK_CHUNK = 64
# a sweep's knobs until the tuner takes them (H100, 2026-12-05, SISO B8 L4096: 8 warps 3.64 ms of kernel with 64-step
# blocks, 4 warps 7.55 and 16 warps 12.40 ms of fwd+bwd against 7.29; 2 pipeline stages 8.43 against 6.33 with
# 32-step blocks)
WALK_WARPS = int(os.environ.get("SSM_TRITON_WALK_WARPS", "8"))
WALK_STAGES = int(os.environ.get("SSM_TRITON_WALK_STAGES", "1"))
WALK_SUB = int(os.environ.get("SSM_TRITON_WALK_SUB", "32"))
# a register cap for the walk (ptx .maxnreg; 0: none): at 8 warps and 255 registers a thread one program holds an SM
# (Nsight Compute, H100, 2026-12-05: 12.5% occupancy, latency-bound); 128 lets two share one at the price of spills,
# as mamba_ssm's autotuner weighs for its walk. Untimed (walk_choice --ab "WALK_MAXNREG=128")
WALK_MAXNREG = int(os.environ.get("SSM_TRITON_WALK_MAXNREG", "0") or 0)
# each walked block issues the loads of the next one's tiles and entering state before it computes (walk_bwd's
# AHEAD; "0" turns it off): H100, 2026-12-06, SISO B8 L4096 fwd+bwd 4.91-4.97 ms against 5.11, MIMO 26.5-26.6
# against 27.2-27.4
WALK_AHEAD = os.environ.get("SSM_TRITON_WALK_AHEAD", "1")
# "1": the walk's carried-state decay term <dh, H_in> from a running scalar (walk_bwd's FREC) in place of a (P, N)
# product summed each block (ablated on 2026-12-06, H100: that sum cost ~0.24 ms of the 2.37 ms walk), summed directly
# again where the running difference's error bound passes 2^-16 of it (strong decays; on the bench's decays 25 of 30
# blocks kept the difference, CPU 2026-12-06); off: slower as timed (H100, 2026-12-06, SISO B8 L4096: walk 2.736 ms
# against 2.238, fwd+bwd 5.10-5.16 against 4.61; the bound's bookkeeping costs more than the product it skips)
WALK_FREC = os.environ.get("SSM_TRITON_WALK_FREC", "")
# the walk casts dh once for its two products and sums x . v, x . v_s and dy . x in one reduction (walk_bwd's MERGE;
# sm_90, triton 3.6, compiled aligned as a launch is: 67 barriers a block against 68, spill stack 256 bytes against 248
# (unaligned, as first read: 54 against 60, 632 against 680); "0" turns it off): H100,
# 2026-12-06, SISO B8 L4096 walk 2.196 ms against 2.238, fwd+bwd 4.565-4.617 against 4.606-4.607
WALK_MERGE = os.environ.get("SSM_TRITON_WALK_MERGE", "1")
# few (row, head) pairs walk their rows in segments side by side (walk_bwd._walk_sums_kernel gives each segment the
# state gradient from the later ones): "" the count by waves (walk_segments), a number forces it
WALK_SEGMENTS = os.environ.get("SSM_TRITON_WALK_SEGMENTS", "")
# "32" stores the walk's dk, dq in fp32 whatever the cores' dtype (walk_backward: bf16 for 16-bit cores otherwise)
WALK_KQ = os.environ.get("SSM_TRITON_WALK_KQ", "")
WALK_MOST_SEGMENTS = 16


def walk_block(Q: int) -> int:
    """The steps :func:`walk_backward`'s programs take at a time: half of a 64-step chunk (32 steps held 2.2 KB a
    thread less of spills at sm_90; the walk's kernel took 2.64 ms at Mamba-3 SISO's B8 L4096 against 3.64 with
    64-step blocks: H100, 2026-12-05), else the chunk; ``SSM_TRITON_WALK_SUB`` sets it (the chunk or half of it)."""
    return WALK_SUB if Q == 2 * WALK_SUB and WALK_SUB >= 16 else Q


def walk_segments(programs: int, nc: int, sm_count: int) -> int:
    """Into how many segments :func:`walk_backward` cuts each row's ``nc`` chunks (walked side by side, each
    program of ``programs * segments`` one an SM): the count up to ``WALK_MOST_SEGMENTS`` whose waves times chunks a
    program are fewest, the smallest on a tie; ``SSM_TRITON_WALK_SEGMENTS`` sets it."""
    if WALK_SEGMENTS:
        return max(1, min(nc, int(WALK_SEGMENTS)))
    cost = lambda n: cdiv(programs * n, sm_count) * cdiv(nc, n)  # noqa: E731
    return min(range(1, min(nc, WALK_MOST_SEGMENTS) + 1), key=lambda n: (cost(n), n))


def walks(bsz: int, H: int, P: int, N: int, L: int, seq, p: Plan, device: torch.device) -> bool:
    """Whether :func:`walk_backward` takes this backward: no packed sequences, a chunk and a padded state small
    enough for one program's registers, a chunk of 16 steps or more (the tensor cores' least), and then
    ``SSM_TRITON_WALK_BWD``'s word, or unset, its programs (``bsz H`` times :func:`walk_segments`) filling at least
    ``WALK_FILL`` of the waves of one program an SM they take (compiled runs only: the interpreter keeps the stages
    unless told)."""
    if (WALK_BWD == "0" or seq is not None or not 16 <= p.Q <= WALK_CHUNK
            or max(16, next_power_of_2(P)) * max(16, next_power_of_2(N)) > WALK_STATE):
        return False
    if WALK_BWD == "1":
        return True
    mode = run_mode(device)
    if mode.interpreted:
        return False
    programs = bsz * H * walk_segments(bsz * H, cdiv(L, p.Q), mode.sm_count)
    return fills_waves(programs, mode.sm_count, WALK_FILL)


class WalkGrads(NamedTuple):
    """What :func:`walk_backward` returns (fp32 but ``dx``, in x's dtype, and the walk's ``dk, dq``), and Mamba-3's
    staged route alike (``kernels/mamba3/core.staged_backward``, all fp32 but ``dx``)."""
    dx: torch.Tensor            # (b, L, H, P)
    dk: torch.Tensor            # (b, L, H, N); the walk's in bf16 where the cores multiply in 16 bits
    dq: torch.Tensor            # (b, L, H, N); the same
    dscale: torch.Tensor        # (b, H, Lp), steps past L unwritten
    ddiag: torch.Tensor | None  # (b, H, Lp), with ``diag``
    da: torch.Tensor            # (b, H, L) the decays' gradients
    dh0: torch.Tensor           # (b, H, P, N)
    dD: torch.Tensor | None     # D's shape, with ``dd``


def walk_backward(x, k, q, dy, dtp, cum, hs, dfinal, D, diag, p: Plan, dd: bool) -> WalkGrads:
    """The backward of an SSD whose heads each have their own ``k, q (b, L, H, N)`` (contiguous, the tensor
    cores' dtype), one program a (batch row, head) walking its chunks in reverse (``walk_bwd.py``): what
    :func:`adjoint_state_passing`, :func:`pair_grads` and the decay's gradient give together. ``x, dy (b, L, H,
    P)`` of any step stride, ``dtp, cum, hs`` the forward's, ``dfinal (b, H, P, N)`` or None, ``diag (b, H, Lp)``
    a per-step weight of ``x`` or None; ``dd``: ``D``'s gradient from these ``dy`` (a per-program partial
    summed here: deterministic). A gated scan's gate backward stays its own kernel: made in the walk (``dy = dout
    silu(z)`` per block, ``dz`` stored there) it cost Mamba-3 SISO's B8 L4096 fwd+bwd 7.69-7.72 ms against 6.23-6.28
    (H100, 2026-12-05e: the walk, one 8-warp block an SM at 255 registers, spilled more), and was taken out.

    ``dk, dq`` (a value a head, which Mamba-3's prep backward turns back and sums over the heads) are stored in
    bf16 where the cores multiply in 16 bits (fp32 for fp32 cores): at Mamba-3 SISO's B8 L4096 H32 N128 they are
    1.07 GB in fp32, and in bf16 that fwd+bwd peaks at 2176 MiB instead of 2688 (H100, 2026-12-05e; the walk 2.55
    ms instead of 2.62, the prep backward reading them unchanged)."""
    bsz, L, H, P = x.shape
    N = k.shape[3]
    nc = cdiv(L, p.Q)
    Lp = nc * p.Q
    dev = x.device
    dx = torch.empty((bsz, L, H, P), device=dev, dtype=x.dtype)
    # bf16's range: fp16's could overflow
    kq = torch.float32 if p.dot == tl.float32 or WALK_KQ == "32" else torch.bfloat16
    dk, dq = torch.empty((2, bsz, L, H, N), device=dev, dtype=kq).unbind(0)
    rows = _f32(1 + (diag is not None), bsz, H, Lp, device=dev)
    da = _f32(bsz, H, L, device=dev)
    dh0 = _f32(bsz, H, P, N, device=dev)
    nseg = walk_segments(bsz * H, nc, run_mode(dev).sm_count)
    cps = cdiv(nc, nseg)
    nseg = cdiv(nc, cps)   # no empty segment
    part = _f32(bsz, H, nseg, P, device=dev) if D is not None and dd else None
    bn = max(16, next_power_of_2(N))
    bp = max(16, next_power_of_2(P))
    sub = walk_block(p.Q)
    seg_a = seg_dec = None
    if nseg > 1:
        seg_a = _f32(bsz * H, nseg, P, N, device=dev)
        seg_dec = _f32(bsz * H, nseg, device=dev)
        walk_sums_kernel((bsz * H, nseg - 1), DY=dy, QQ=q, CUM=cum, SEG_A=seg_a, SEG_DEC=seg_dec, L=L, H=H, P=P, N=N,
                         Lp=Lp, nc=nc, lo_off=lo_offset(cum), SDY=step_stride(dy), cps=cps, nseg=nseg, Q=p.Q, SUB=sub,
                         BLOCK_P=bp, BLOCK_N=bn, DOT=p.dot, num_warps=4)
    walk_bwd_kernel((bsz * H, nseg), X=x, K=k, QQ=q, DY=dy, DTP=dtp, CUM=cum, HS=hs, DFINAL=dfinal, D=D, DIAG=diag,
                    SEG_A=seg_a, SEG_DEC=seg_dec, DX=dx, DK=dk, DQ=dq, XV=rows[0],
                    DDIAG=rows[1] if diag is not None else None, DA=da, DH0=dh0, DD_PART=part, L=L, H=H, P=P, N=N,
                    Lp=Lp, nc=nc, lo_off=lo_offset(cum), SX=step_stride(x), SDY=step_stride(dy), cps=cps, nseg=nseg,
                    D_PER_CHANNEL=D is not None and D.dim() == 2, Q=p.Q, SUB=sub, BLOCK_P=bp, BLOCK_N=bn, DOT=p.dot,
                    AHEAD=WALK_AHEAD != "0", FREC=WALK_FREC == "1",
                    MERGE=WALK_MERGE != "0", num_warps=WALK_WARPS, num_stages=WALK_STAGES,
                    **({"maxnreg": WALK_MAXNREG} if WALK_MAXNREG else {}))
    dD = None
    if part is not None:
        dD = part.sum((0, 2)) if D.dim() == 2 else part.sum((0, 2, 3))
    return WalkGrads(dx, dk, dq, rows[0], rows[1] if diag is not None else None, da, dh0, dD)


def bmm(B, C, p: Plan):
    bsz, L, G, N = B.shape
    nc = cdiv(L, p.Q)
    cb = _f32(bsz, G, nc, p.Q, p.Q, device=B.device)
    per = p.Q // p.block_m
    bmm_kernel((nc * per * per, bsz * G), B=B, C=C, CB=cb, L=L, G=G, N=N, SB=B.stride(1), SC=C.stride(1), nc=nc, Q=p.Q, BLOCK_M=p.block_m,
               BLOCK_K=p.block_m, BLOCK_N=min(p.block_n, 64), DOT=p.dot, num_warps=p.warps)
    return cb


# the chunk scan's own tiles where set, "BLOCK_M,BLOCK_K,warps,stages" (each step tile a power of two dividing the
# chunk; the other stages keep the plan's): a sweep's knob for the prefill graph's occupancy-bound chunk scan (its
# 64x64 tiles hold 168 registers and 74.5 KB of shared memory a block, 3 blocks a SM; sm90_compile offline)
SCAN_TILES = tiles_env("SSM_TRITON_SCAN_TILES", 4, 2)
# the chunk scan's step blocks launched longest first (``row_block_longest_first``): an A/B of its last wave's tail
SCAN_LONGEST_FIRST = os.environ.get("SSM_TRITON_SCAN_ORDER", "").strip()   # "1" / "0" force it, else the plan's
# the chunk scan's slices before a program's own steps weighted by a column and a row factor of the decay
# (``chunk_scan.py``'s ``SPLIT_DECAY``) instead of a masked exp per element: the few-rows plans take it (make_plan)
SCAN_SPLIT = os.environ.get("SSM_TRITON_SCAN_SPLIT", "").strip()   # "1" / "0" force it, else the plan's
# the backward's dx and pair kernels likewise (``bwd_pairs.py``'s ``SPLIT_DECAY``: the slices after a block's steps)
DX_SPLIT = os.environ.get("SSM_TRITON_DX_SPLIT", "0").strip() == "1"
# a register cap for the chunk scan (ptx .maxnreg; 0: none): the split decay compiles to 204 registers at 64x64 tiles
# and 4 warps (2 blocks a SM) and to 168 without a spill under a cap of 168 (sm_90, triton 3.6, offline)
SCAN_MAXNREG = int(os.environ.get("SSM_TRITON_SCAN_MAXNREG", "0") or 0)


def chunk_scan(x, B, C, cb, dtp, cum, hs, D, z, seq, p: Plan, store_y: bool, diag=None, out_dtype=None, norm_w=None):
    """``(out, y or None)`` (b, L, H, P) in ``out_dtype`` (x's when None). ``norm_w (H P,)`` (with ``z``, nothing
    stored for a backward): the gated norm deferred (``chunk_scan.py``), ``(out, ss (b, L, H k) fp32)`` instead."""
    bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc = cdiv(L, p.Q)
    out = torch.empty(x.shape, device=x.device, dtype=out_dtype or x.dtype)   # contiguous whatever x's step stride
    y = torch.empty_like(out) if store_y else out
    ss = None if norm_w is None else _f32(bsz, L, H * cdiv(P, p.block_p), device=x.device)
    if len(SCAN_TILES) == 4 and p.Q % SCAN_TILES[0] == 0 and p.Q % SCAN_TILES[1] == 0:
        p = replace(p, block_m=SCAN_TILES[0], block_k=SCAN_TILES[1], warps=SCAN_TILES[2], stages=SCAN_TILES[3],
                    scan_block_k=None, scan_stages=None)
    longest_first = SCAN_LONGEST_FIRST == "1" if SCAN_LONGEST_FIRST in ("0", "1") else p.scan_longest_first
    split = SCAN_SPLIT == "1" if SCAN_SPLIT in ("0", "1") else p.scan_split
    rows = nc * (p.Q // p.block_m) if longest_first else cdiv(L, p.block_m)
    chunk_scan_kernel((rows, bsz * H, cdiv(P, p.block_p)), NORM_W=norm_w, SS=ss, LONGEST_FIRST=longest_first,
                      SPLIT_DECAY=split,
                      X=x, B=B, C=C, CB=cb, DTP=dtp, CUM=cum, HS=hs, D=D, DIAG=diag, Z=z, SEQ=seq, Y=y, OUT=out, L=L, H=H, G=G,
                      P=P, N=N, SX=x.stride(1), SC=C.stride(1), SZ=z.stride(1) if z is not None else 0, Lp=nc * p.Q, nc=nc, lo_off=lo_offset(cum), D_PER_CHANNEL=D is not None and D.dim() == 2,
                      STORE_Y=store_y, Q=p.Q, BLOCK_M=p.block_m, BLOCK_K=p.scan_block_k or p.block_k, BLOCK_P=p.block_p,
                      BLOCK_N=p.block_n, DOT=p.dot, num_warps=p.warps, num_stages=p.scan_stages or p.stages,
                      **({"maxnreg": SCAN_MAXNREG} if SCAN_MAXNREG else {}))
    if norm_w is not None:
        return out, ss
    return out, (y if store_y else None)


def seq_idx_from_cu_seqlens(cu_seqlens: torch.Tensor, L: int) -> torch.Tensor:
    """``(1, L)`` int32 sequence ids of the packed row that ``cu_seqlens (S + 1,)`` describes. The
    boundaries are made non-decreasing within ``[0, L]`` first: they are checked asynchronously, and bad
    ones must not make ``repeat_interleave`` write past ``L`` entries."""
    bounds = torch.cummax(cu_seqlens.clamp(0, L), 0).values
    lengths = bounds[1:] - bounds[:-1]
    ids = torch.arange(lengths.shape[0], device=cu_seqlens.device, dtype=torch.int32)
    return torch.repeat_interleave(ids, lengths, output_size=L)[None]


def ssd_forward(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None,
                cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, math.inf), want_varlen=False,
                for_backward=False, block=None, tiles=None, a_log=False, norm_w=None):
    """Returns ``(out, final_states (b, H, P, N) fp32, varlen_states (S, H, P, N) fp32 or None, saved)``;
    ``saved`` (:class:`Saved`) is what :func:`ssd_backward` reads, its ``y`` the pre-gate output when
    ``z`` is given and a backward is to come. ``block`` (every step tile) and ``tiles`` (plan fields)
    override the tuned plan. ``a_log``: ``A`` holds ``log(-A)`` (a call that keeps nothing for a backward).
    ``norm_w (H P,)`` (with ``z``, no backward): the gated norm deferred, ``out`` is ``(g w, ss)`` (:func:`chunk_scan`)."""
    bsz, L, H, P = x.shape
    N = B.shape[3]
    dot = fused_training_dot(x, seq_idx, want_varlen, chunk_size) if for_backward and block is None and tiles is None \
        and not a_log and norm_w is None else None
    if dot is not None:
        lo, hi, clamp = _limits(dt_limit)
        out, final, kept = fused_forward(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp,
                                         dot, keep=(chunk_size, _TORCH_DOT[dot]))
        return out, final, None, Saved(*kept)
    if block is None:
        tiles = ssd_fwd_plan.pick(
            _problem(x, B, chunk_size, z, seq_idx),
            lambda t: ssd_forward(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens,
                                  dt_softplus, dt_limit, want_varlen, for_backward, tiles=t, a_log=a_log, norm_w=norm_w),
            config=tiles)
    p = plan(x, N, chunk_size, block, **(tiles or {}))
    seq = seq_idx.to(torch.int32).contiguous() if seq_idx is not None else None
    dtp, cum = dt_cumsum(dt, A, dt_bias, dt_softplus, dt_limit, p, a_log)
    hs, final = own_state_passing(x, B, dtp, cum, seq, initial_states, L, p)
    cb = bmm(B, C, p)
    out, y = chunk_scan(x, B, C, cb, dtp, cum, hs, D, z, seq, p, store_y=for_backward and z is not None, norm_w=norm_w)
    if norm_w is not None:
        out, y = (out, y), None
    varlen = None
    if want_varlen:
        varlen = chunk_state(x, B, dtp, cum, seq, MODE_VARLEN, p, hprev=hs, cu=cu_seqlens.to(torch.int32).contiguous())
    return out, final, varlen, Saved(dtp, cum, hs, y)


# the one-launch inference forward (fused.py): "0" never, "1" wherever it applies, else its size rule
FUSED = os.environ.get("SSM_TRITON_SSD_FUSED", "")
# the one-launch forward for calls that keep what a backward reads (its KEEP outputs): "1" (the default) where the
# inference forward's route takes the call, anything else never. On the H200 (2026-12-05,
# bench/results/h200-2026-12-05) fwd+bwd against the stages, same process: SSD b1 L512 1.035 vs 1.160 ms, b1 L2048
# 0.981 vs 1.133, b8 L4096 4.515 vs 4.563; Mamba-3 SISO b1 L2048 1.173 vs 1.250, MIMO 2.526 vs 2.630; the rest even
FUSED_TRAIN = os.environ.get("SSM_TRITON_SSD_FUSED_TRAIN", "1")
# the staged forward's chunk length for a call that keeps nothing for a backward (a CUDA graph's capture takes the
# stages): "" the caller's chunk_size, else this length (16-256, a power of two). The outputs do not depend on it
# but for rounding, and no state is kept per chunk, so the caller's choice (the model's training chunk) need not
# bind an inference call; the 130M Mamba2 LM's prefill graph runs its 24 layers' SSD at 256.
INF_CHUNK = os.environ.get("SSM_TRITON_SSD_INF_CHUNK", "")


def ssd_inference(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None,
                  cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, math.inf), want_varlen=False, a_log=False):
    """The forward for a call that keeps nothing for a backward: ``(out, final_states, varlen_states or
    None)``. Rows without packed sequences take the one-launch kernel (``fused.py``) where its rule (or
    ``FUSED``) says so; the rest take the staged :func:`ssd_forward`. ``x, dt, B, C, z`` may have any step
    stride (contiguous past it).

    A call captured into a CUDA graph keeps the stages: there launches cost nothing at replay, and the
    stages run the chunks side by side where the one-launch kernel walks them in order. The 130M Mamba2
    LM's prefill at b=1 L=2048 (24 heads) replayed in 6.55 ms of kernels with the one-launch forward
    against 4.13 ms with the stages (H200, 2026-12-02, ``bench/results/h200-2026-12-02e``)."""
    dot = fused_dot(x, seq_idx, want_varlen)
    if dot is not None:
        lo, hi, clamp = _limits(dt_limit)
        out, final = fused_forward(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot,
                                   a_log=a_log)
        return out, final, None
    out, final, varlen, _ = ssd_forward(x, dt, A, B, C, int(INF_CHUNK) if INF_CHUNK else chunk_size, D, z, dt_bias,
                                        initial_states, seq_idx, cu_seqlens, dt_softplus, dt_limit,
                                        want_varlen=want_varlen, a_log=a_log)
    return out, final, varlen


def fused_dot(x, seq_idx, want_varlen, dot=None):
    """The tensor-core dtype of the one-launch forward where :func:`ssd_inference` takes it for ``x``, else
    None. ``dot``: the caller's operand dtype (Mamba-3 MIMO's fp32 ``x`` multiplies in bf16), else ``x``'s."""
    return fused_dot_of(x.shape, x.dtype, x.device, seq_idx, want_varlen, dot)


def fused_dot_of(shape, dtype, device, seq_idx, want_varlen, dot=None):
    """:func:`fused_dot` for an ``x`` of ``shape (b, L, H, P)``, ``dtype`` on ``device``, without the tensor (the
    deferred norm's route check, ``ops/norm_defer.py``, asks before it cuts ``x`` from in_proj's output)."""
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if seq_idx is None and not want_varlen and FUSED != "0" and (FUSED == "1" or not capturing):
        bsz, L, H, P = shape
        mode = run_mode(device)
        dot = dot if dot is not None else dot_for(dtype)
        # IEEE fp32 products compile to a kernel that spills kilobytes a thread (sm90_compile.py --resources)
        # and were never timed: they keep the stages on a GPU
        if FUSED == "1" or (use_fused(bsz, L, H, mode.sm_count, P) and (mode.interpreted or dot != tl.float32)):
            return dot
    return None


def fused_training_dot(x, seq_idx, want_varlen, chunk_size, dot=None):
    """The tensor-core dtype of the one-launch forward where a call that keeps what its backward reads takes it
    (``FUSED_TRAIN``, then :func:`fused_dot`'s route: its size rule, no packed sequences, no capture), else None.
    It writes the stages' saved tensors itself: the step sizes, their decay sums and each chunk's entering state at
    the call's chunk size, and the output before the gate. ``dot`` as for :func:`fused_dot` (Mamba-3's scans)."""
    return fused_dot(x, seq_idx, want_varlen, dot) if FUSED_TRAIN == "1" and keeps(chunk_size) else None


def inference_plan(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, dt_limit, final=True, a_log=False):
    """:func:`ssd_inference` of these inputs (no packed sequences, no varlen states) as a one-launch op plan,
    ``plan((x, dt, A, B, C, D, z, dt_bias, initial_states)) -> [out, final]`` (``[out]`` without ``final``),
    where it takes the one-launch forward; else None. The inputs as the op layer passes them
    (``ops/_layout.step_strided``)."""
    dot = fused_dot(x, None, False)
    if dot is None:
        return None
    lo, hi, clamp = _limits(dt_limit)
    return fused_plan(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot, final, a_log)


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


class PairScratch(NamedTuple):
    """The pair stages' outputs besides ``dx``: fp32 partial sums, added up by the launcher, and the
    per-step terms the step-size gradient assembles."""
    db_part: torch.Tensor             # (b, L, head blocks, N) dB per head block
    dc_part: torch.Tensor             # (b, L, head blocks, N) dC per head block (atomic adds by default)
    dd: torch.Tensor | None           # dD (D's shape) fp32, when D is given and dd
    sums: torch.Tensor | None         # (2 H,) fp32 zeros, where the step-size backward adds dA and d dt_bias
    #                                   (None under deterministic algorithms: it stores partials, summed in order)
    pair_rows: torch.Tensor           # (b, H, Lp) fp64: sum over s < t of the pair terms T_ts (the "rs" of bwd_pairs)
    pair_cols: torch.Tensor           # (b, H, Lp) fp64: sum over t > s of T_ts (the "cs")
    state_terms: torch.Tensor         # (b, H, Lp) fp32: U_s = dt_s x_s . (state part of v_s) (the "us")
    direct_terms: torch.Tensor        # (b, H, Lp) fp32: x_s . v_s, the direct d dt_s (the "xv")
    entering_terms: torch.Tensor      # (b, H, Lp) fp32: d cum_t through the entering state (the "inter")
    diag_grads: torch.Tensor | None = None  # (b, H, Lp) fp32: dy_s . x_s, the gradient of a per-step weight of x_s


def pair_grads(x, B, C, dy, dtp, cum, hs, ds, D, seq, p: Plan, heads, deterministic, diag=None, dd=True,
               step_sums=False, db_dtype=torch.float32, dx_out=None, db_out=None):
    """dx, and the partials of dB, dC and dD, from the pairs inside each chunk (``bwd_pairs.py``).
    ``diag (b, H, Lp)``: a per-step weight of ``x`` the forward added (Mamba-3). ``dd=False``: no dD partials
    (the gate's backward took them from the unrounded ``dy``). ``step_sums``: zeroed room for the step-size
    backward's atomic sums of dA and d dt_bias (``PairScratch.sums``, not under deterministic algorithms).
    ``db_dtype``: the dtype of ``PairScratch.db_part`` where a program's heads are all of its group's (dB itself then,
    one head block a group; fp32 partials otherwise). ``dx_out``, ``db_out`` (x's and B's shapes, one step stride
    each): where to write dx, and dB where the pair kernel writes it whole (``db_part`` is then ``db_out``).
    Returns ``(dx, PairScratch)``."""
    bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc = cdiv(L, p.Q)
    Lp = nc * p.Q
    dev = x.device
    rows = cdiv(L, p.bwd_block_m)
    k = heads or heads_per_program(rows * bsz, H, G, target=p.min_programs)
    n_hb = H // k
    dx = dx_out if dx_out is not None else torch.empty(x.shape, device=dev, dtype=x.dtype)
    # the pair rows' and columns' fp64 atomic sums from one zero-filled buffer (one fill launched, not two)
    rs, cs = torch.zeros((2, bsz, H, Lp), device=dev, dtype=torch.float64).unbind(0)
    # dD added up by the programs themselves (atomics) next to room for dA and d dt_bias, zeroed in one fill; under
    # deterministic algorithms, per-row-block partials summed here in order
    has_dd = D is not None and dd
    sums = dd_grad = dd_part = None
    room = 2 * H if step_sums else 0
    if not deterministic and room + (D.numel() if has_dd else 0):
        sums = torch.zeros(room + (D.numel() if has_dd else 0), device=dev, dtype=torch.float32)
        dd_grad = dd_part = sums[room:].view(D.shape) if has_dd else None
    elif has_dd:
        dd_part = _f32(rows, bsz, H, P, device=dev)
    s = PairScratch(
        db_part=db_out if db_out is not None and n_hb == G and db_out.dtype == db_dtype else
        torch.empty((bsz, L, n_hb, N), device=dev, dtype=db_dtype if n_hb == G else torch.float32),
        dc_part=_f32(bsz, L, n_hb, N, device=dev),   # stored whole by dc_states_kernel, which runs first
        dd=dd_grad, sums=sums[:room] if sums is not None and room else None,
        pair_rows=rs, pair_cols=cs,
        state_terms=torch.empty_like(rs, dtype=torch.float32), direct_terms=torch.empty_like(rs, dtype=torch.float32),
        entering_terms=torch.empty_like(rs, dtype=torch.float32),
        diag_grads=torch.empty_like(rs, dtype=torch.float32) if diag is not None else None)
    sizes = dict(L=L, H=H, G=G, P=P, N=N, Lp=Lp, nc=nc, lo_off=lo_offset(cum), SX=step_stride(x), SB=step_stride(B))
    meta = dict(Q=p.Q, BLOCK_M=p.bwd_block_m, BLOCK_K=p.bwd_block_k, BLOCK_P=max(16, next_power_of_2(P)),
                BLOCK_N=max(16, next_power_of_2(N)), DOT=p.dot, num_warps=p.bwd_warps, num_stages=p.bwd_stages)
    cb = bmm(B, C, p)
    dx_dd_kernel((rows, bsz * H), X=x, B=B, CB=cb, DY=dy, DTP=dtp, CUM=cum, ADJ=ds, D=D, DIAG=diag, SEQ=seq, DX=dx,
                 DD_PART=dd_part, DDIAG=s.diag_grads, US=s.state_terms, XV=s.direct_terms, **sizes, SDX=step_stride(dx),
                 D_PER_CHANNEL=D is not None and D.dim() == 2, ATOMIC_DD=not deterministic, SPLIT_DECAY=DX_SPLIT,
                 **{**meta, "num_warps": p.dx_warps or p.bwd_warps, "num_stages": p.dx_stages or p.bwd_stages})
    dc_states_kernel((rows, bsz * n_hb), X=x, B=B, C=C, DY=dy, DTP=dtp, CUM=cum, HS=hs, SEQ=seq,
                     DC_PART=s.dc_part, INTER=s.entering_terms, **sizes, SC=step_stride(C), HEADS=k, PAIRS=deterministic, **meta)
    grid = (nc * bsz * n_hb, p.Q // p.bwd_block_m) if p.heavy_first else (rows, bsz * n_hb)
    db_dc_pairs_kernel(grid, X=x, B=B, C=C, CB=cb, DY=dy, DTP=dtp, CUM=cum, ADJ=ds, SEQ=seq,
                       DB_PART=s.db_part, DC_PART=s.dc_part, RS=s.pair_rows, CS=s.pair_cols, **sizes,
                       SC=step_stride(C), SDB=step_stride(s.db_part), HEADS=k,
                       ATOMIC_DC=not deterministic, HEAVY_FIRST=p.heavy_first, SPLIT_DECAY=DX_SPLIT, **meta)
    if dd_part is not None and deterministic:
        s = s._replace(dd=dd_part.sum((0, 1)) if D.dim() == 2 else dd_part.sum((0, 1, 3)))
    return dx, s


def ssd_backward(dout, dfinal, saved, x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                 initial_states=None, seq_idx=None, dt_softplus=False, dt_limit=(0.0, math.inf), block=None,
                 heads=None, tiles=None, deterministic=False, ddt_out=None, dx_out=None, db_out=None):
    """Gradients of :func:`ssd_forward` given ``dout (b, L, H, P)`` and ``dfinal (b, H, P, N)`` or None.
    Returns ``(dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_states)`` (None for absent inputs);
    ``ddt`` in ``dt``'s dtype, ``dx, dz`` in ``x``'s, ``dB`` in ``B``'s where one head block covers a group, the
    rest fp32. ``deterministic``: ``dC`` without
    atomics (a second pass over the pairs). The step-size sums use fp64 atomics in both modes: their
    order perturbs fp64 rounding only, which can flip the last bit of an fp32 ``ddt`` / ``dA``, rarely.
    ``ddt_out``, ``dx_out``, ``db_out``: column slices of the caller's gradient buffer (one step stride each) that
    ``ddt``, ``dx`` and (where the pair kernel writes it whole, in B's dtype) ``dB`` are written into.

    The stages mirror the forward's (see the table in ``kernels/ssd/__init__.py``): the gate, the
    adjoint chunk sums, the reversed state passing, the pair gradients, the step-size gradients."""
    dtp, cum, hs, y = saved
    bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    if block is None and heads is None and not deterministic:  # deterministic: the rule's plan
        tiles = ssd_bwd_plan.pick(
            _problem(x, B, chunk_size, z, seq_idx),
            lambda t: ssd_backward(dout, dfinal, saved, x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states,
                                   seq_idx, dt_softplus, dt_limit, tiles=t, deterministic=deterministic), config=tiles)
    p = plan(x, N, chunk_size, block, **(tiles or {}))
    nc = cdiv(L, p.Q)
    seq = seq_idx.to(torch.int32).contiguous() if seq_idx is not None else None
    dz = dD = None
    if z is not None:
        dy, dz, dD = gate_backward(dout, y, z, x, D)
    else:
        dy = dout.to(x.dtype).contiguous()

    # what the outputs send back to each chunk's entering state, then the reversed state passing
    ds, dh0, fpart = adjoint_state_passing(dy, C, dtp, cum, hs, seq, dfinal, L, p)
    # dB in B's dtype straight from the pair kernel where it can be (one cast launch fewer a call)
    dx, s = pair_grads(x, B, C, dy, dtp, cum, hs, ds, D, seq, p, heads, deterministic, dd=z is None,
                       step_sums=True, db_dtype=B.dtype, dx_out=dx_out, db_out=db_out)

    # contiguous where dt is a column slice, or the caller's ``ddt_out`` (dt's shape and dtype, one step stride: a
    # column slice of its own gradient buffer)
    ddt = ddt_out if ddt_out is not None else torch.empty(dt.shape, device=dt.device, dtype=dt.dtype)
    if s.sums is not None:   # added up by the kernel's programs
        da, dbias = s.sums[:H], s.sums[H:]
    else:
        da = _f32(bsz, H, nc, device=x.device)
        dbias = torch.empty_like(da) if dt_bias is not None else None
    lo, hi, clamp = _limits(dt_limit)
    dt_bwd_kernel((nc, bsz * H), DT=dt, SDT=dt.stride(1), SDDT=step_stride(ddt[..., None]), DT_BIAS=dt_bias, A=A, DTP=dtp, RS=s.pair_rows,
                  INTER=s.entering_terms,
                  CS=s.pair_cols, US=s.state_terms, XV=s.direct_terms, FPART=fpart, DDT=ddt, DA=da, DBIAS=dbias, L=L,
                  H=H, Lp=nc * p.Q, nc=nc, lo=lo, hi=hi, n_f=fpart.shape[-1], SOFTPLUS=dt_softplus, CLAMP=clamp,
                  ATOMIC=s.sums is not None, Q=p.Q, BLOCK_F=next_power_of_2(fpart.shape[-1]))
    if s.sums is None:
        da = da.sum((0, 2))
        dbias = dbias.sum((0, 2)) if dbias is not None else None

    per_group_blocks = s.db_part.shape[2] // G
    if per_group_blocks == 1:   # one head block a group: the partials are the sums (no launch)
        dB, dC = s.db_part.view(bsz, L, G, N), s.dc_part.view(bsz, L, G, N)
    else:
        dB = s.db_part.view(bsz, L, G, per_group_blocks, N).sum(3)
        dC = s.dc_part.view(bsz, L, G, per_group_blocks, N).sum(3)
    if D is not None and z is None:
        dD = s.dd
    return (dx, ddt, da, dB, dC, dD, dz, dbias if dt_bias is not None else None,
            dh0 if initial_states is not None else None)
