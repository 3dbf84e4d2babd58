"""The SSD forward in one launch, for calls that keep nothing for a backward (inference, prefill).

A program owns one (batch row, head) and ``BLOCK_P`` channels and walks the row's chunks in order with
the ``(BLOCK_P, N)`` state in registers. Per chunk of ``Q`` steps it does what the five staged launches
(``launch.ssd_forward``) do across the whole problem: the step sizes and their decay sums, the output
``y_t = exp(cum_t) C_t . h_enter + sum_{s<=t} (C_t . B_s) exp(cum_t - cum_s) dt_s x_s`` (+ ``D x_t``,
``* silu(z_t)``), then the state carried on,
``h_exit = exp(cum_end) h_enter + sum_s exp(cum_end - cum_s) dt_s x_s B_s^T``.

Why: the staged forward pays five launches and their allocations (about 190 µs of host time a call on
the H200's host, 2026-12-02), which is the whole cost of a small prefill, and it writes every chunk's
entering state to memory and reads it back. Here nothing but the inputs, the output and the final state
touch memory. The chunks run one after another inside a program, so the rule takes this path for short
rows, or rows of moderate length when the (row, head) programs fill the GPU (``use_fused``, measured);
the chunk's length ``Q`` is the kernel's own tile (the result does not depend on it beyond rounding).

The decay sums are taken in fp64 and differenced as ``(hi, lo)`` fp32 pairs, as the staged cumsum does,
so that a chunk that decays by hundreds of nats keeps fp32 accuracy.

Rows of few (row, head) programs split into segments (:func:`segments`): the kernel runs twice, first a summary of
each segment (its end state from a zero state and its summed decay), then every segment's outputs from the
summaries of the segments before it, so that a segment's program walks a quarter or an eighth of the row
(b1 L2048 H64 on the H200: 0.18 -> 0.088 ms, 2026-12-04).
"""
import math
import os

import torch
import triton
import triton.language as tl

from ..activations import silu_and_slope
from ..hints import multiple
from ..host import cdiv, fills_waves, next_power_of_2
from .. import tuning as _tuning
from ..tuning import Launch, OneLaunch, TunableKernel, bucket, run_mode
from .common import mm
from .cumsum import raw_step, softplus_clamp, store_cum


@triton.jit
def _step_rows(DT, ADT, DT_BIAS, bi, bh, h, t, ok, L, Lp, La, SDT, RANKS: tl.constexpr, STEPS_GIVEN: tl.constexpr,
               HAS_BIAS: tl.constexpr):
    """What steps ``t`` read of the step sizes: with ``STEPS_GIVEN`` each (rank-)step's weight ``DT (b, H, Lp)`` and
    its decay ``ADT (b, H, La)`` (at ``r = 0`` only); else the raw ``dt`` (with its bias) twice."""
    if STEPS_GIVEN:
        dt = tl.load(DT + bh.to(tl.int64) * Lp + t // RANKS, mask=ok, other=0.0)
        a = tl.load(ADT + bh.to(tl.int64) * La + t // RANKS, mask=ok & (t % RANKS == 0), other=0.0)
        return dt, a
    raw = raw_step(DT, DT_BIAS, bi, h, t, ok, L, SDT, HAS_BIAS)
    return raw, raw


@triton.jit
def _ssd_fused_fwd_kernel(
    # pointers
    X, DT, DT_BIAS, A, B, C, D, Z, H0, OUT, FINAL, SEG_STATE, SEG_DECAY, ADT, DIAG,
    # what a backward reads (KEEP): the step sizes, their decay sums by chunk, the chunks' entering states, y
    KEEP_DT, KEEP_CUM, KEEP_HS, KEEP_Y,
    # sizes, the step strides of x, z, B, C and dt (a column slice of a projection has its own), the clamp,
    # the segments' steps and count (MODE 1 and 2), the rows' length of the given step weights (STEPS_GIVEN),
    # the kept rows' length (whole chunks of KQ steps), their chunk count and the offset of their decays' lo plane
    L, H, G, P, N, SX, SZ, SB, SC, SDT, lo, hi, seg_len, nseg, Lp, La, Lk, nck, k_lo,
    # meta-parameters
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr, HAS_D: tl.constexpr,
    D_PER_CHANNEL: tl.constexpr, HAS_Z: tl.constexpr, HAS_H0: tl.constexpr, HAS_FINAL: tl.constexpr,
    Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr, STATE_T: tl.constexpr,
    MODE: tl.constexpr, CARRIED: tl.constexpr, STEPS_GIVEN: tl.constexpr, HAS_DIAG: tl.constexpr,
    RANKS: tl.constexpr, KEEP: tl.constexpr, KQ: tl.constexpr, AHEAD: tl.constexpr = False,
    A_LOG: tl.constexpr = False, SX_A: tl.constexpr = 1, SZ_A: tl.constexpr = 1, SB_A: tl.constexpr = 1,
    SC_A: tl.constexpr = 1,
):
    # the step strides' divisors (hints.py): x, z, B, C may be column slices of in_proj's output
    SX, SZ, SB, SC = multiple(SX, SX_A), multiple(SZ, SZ_A), multiple(SB, SB_A), multiple(SC, SC_A)
    """MODE 0: a program walks its whole row. MODE 1 (a segment's summary): a program per (channel tile, row x
    head, segment but the last) walks its segment from a zero state, writing no output: the state it leaves with into
    ``SEG_STATE (b, H, nseg, P, N)`` fp32 and the segment's summed decay ``dt A`` into ``SEG_DECAY (b, H, nseg)``.
    MODE 2: each segment's program enters with ``H0`` carried through the summaries of the segments before it
    (``h <- exp(decay_j) h + state_j``), then walks its segment as MODE 0 walks a row; the last segment writes
    ``FINAL``; with ``CARRIED``, ``SEG_STATE`` holds each segment's entering state already (``H0`` included:
    ``_ssd_segment_carry_kernel`` ran between the two), read once instead of carried through every summary.
    ``STEPS_GIVEN`` (Mamba-3's scans): each step's weight of ``x`` is ``DT (b, H, Lp)`` and its decay ``ADT (b, H,
    La)``, as its prep kernel computed them, instead of ``dt`` and ``dt A`` from the raw step size; ``HAS_DIAG`` adds
    ``DIAG (b, H, Lp)`` times ``x_t`` to each output (Mamba-3's diagonal correction). ``RANKS`` > 1 (MIMO): the row's
    ``L`` steps are rank-steps ``t R + r`` of ``La`` steps, each taking its step's weight, and its decay at ``r = 0``
    only. ``KEEP`` (a training forward; MODE 0 and 2): also what the staged forward keeps for the backward, by chunks
    of ``KQ`` steps (the call's chunk size, a multiple of ``Q``; segments start on a chunk): each step's size
    ``KEEP_DT (b, H, Lk)`` and the decay summed from its chunk's start, fp64 as two fp32 planes ``KEEP_CUM (2, b, H,
    Lk)`` (``cumsum.store_cum``), written by the first channel tile, past ``L`` up to ``Lk`` too (size 0, flat
    sums) as ``_dt_cumsum_kernel`` writes them (not with ``STEPS_GIVEN``: the caller's rows are those); the state
    entering each chunk ``KEEP_HS (b, H, nck, P, N)`` in its dtype; with ``z``, the output before the gate ``KEEP_Y
    (b, L, H, P)``.

    ``AHEAD``: the next chunk's step sizes (and decays, with ``STEPS_GIVEN``) are read while a chunk computes; the
    chunk's products wait on them first (its decays), where ``B``, ``C``, ``x`` come through the pipelined loads."""
    bh = tl.program_id(1)
    bi = bh // H
    h = bh % H
    g = h // (H // G)
    ps = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = ps < P
    ns = tl.arange(0, BLOCK_N)
    n_ok = ns < N
    # STATE_T (a tuning candidate): the state held as (N, P) and B read as (N, Q), so that no product needs a
    # transposed operand; else the state is (P, N), as it lies in memory
    if STATE_T:
        state_at = (bh.to(tl.int64) * P + ps[None, :]) * N + ns[:, None]      # (BLOCK_N, BLOCK_P) in (b, H, P, N)
        pn_ok = n_ok[:, None] & p_ok[None, :]
    else:
        state_at = (bh.to(tl.int64) * P + ps[:, None]) * N + ns[None, :]      # (BLOCK_P, BLOCK_N)
        pn_ok = p_ok[:, None] & n_ok[None, :]
    if HAS_H0 and (MODE == 0 or (MODE == 2 and not CARRIED)):
        state = tl.load(H0 + state_at, mask=pn_ok, other=0.0).to(tl.float32)
    elif STATE_T:
        state = tl.zeros([BLOCK_N, BLOCK_P], dtype=tl.float32)
    else:
        state = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    seg = tl.program_id(2)
    if MODE == 0:
        start = 0
        end = L
    else:
        start = seg * seg_len
        end = tl.minimum(L, start + seg_len)
    # the segment's rows of SEG_STATE are at the same (P, N) offsets as the state's in FINAL, (nseg - 1) (P, N)
    # blocks a row later per row before it
    seg_at = state_at + (bh.to(tl.int64) * (nseg - 1) * P * N)
    if MODE == 2:
        if CARRIED:
            state = tl.load(SEG_STATE + seg_at + seg * P * N, mask=pn_ok, other=0.0)
        else:
            for j in range(0, seg):
                decay_j = tl.load(SEG_DECAY + bh.to(tl.int64) * nseg + j)
                state = state * tl.exp(decay_j) + tl.load(SEG_STATE + seg_at + j * P * N, mask=pn_ok, other=0.0)
    seg_total = tl.zeros([1], dtype=tl.float64)
    if not STEPS_GIVEN:
        a_h = tl.load(A + h).to(tl.float32)
        if A_LOG:   # the module's A_log: A = -exp(A_log) here, not in three PyTorch launches a layer
            a_h = -tl.exp(a_h)
    if HAS_D:
        if D_PER_CHANNEL:
            d_h = tl.load(D + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :]
        else:
            d_h = tl.load(D + h).to(tl.float32)
    r = tl.arange(0, Q)
    causal = r[:, None] >= r[None, :]
    SAVING: tl.constexpr = KEEP and MODE != 1
    stop = end
    if SAVING:
        keep_run = tl.zeros([1], dtype=tl.float64)   # the decay summed from the kept chunk's start to this tile's
        if not STEPS_GIVEN:
            if end >= L:   # the row's last program walks the kept chunks' padding too (masked: size 0, no output)
                stop = Lk
    if AHEAD:
        s1_nx, s2_nx = _step_rows(DT, ADT, DT_BIAS, bi, bh, h, start + r, start + r < end, L, Lp, La, SDT, RANKS,
                                  STEPS_GIVEN, HAS_BIAS)
    for t0 in range(start, stop, Q):
        t = t0 + r
        ok = t < end
        if AHEAD:   # this chunk's rows came in during the last one; the next one's now
            s1 = s1_nx
            s2 = s2_nx
            s1_nx, s2_nx = _step_rows(DT, ADT, DT_BIAS, bi, bh, h, t + Q, t + Q < end, L, Lp, La, SDT, RANKS,
                                      STEPS_GIVEN, HAS_BIAS)
        else:
            s1, s2 = _step_rows(DT, ADT, DT_BIAS, bi, bh, h, t, ok, L, Lp, La, SDT, RANKS, STEPS_GIVEN, HAS_BIAS)
        if STEPS_GIVEN:
            dt = s1
            a = s2.to(tl.float64)
        else:
            dt, _ = softplus_clamp(s1, lo, hi, SOFTPLUS, CLAMP)
            dt = tl.where(ok, dt, 0.0)
            a = (dt * a_h).to(tl.float64)
        cum = tl.cumsum(a, axis=0)
        total = tl.sum(a, axis=0)
        seg_total += total
        c_hi = cum.to(tl.float32)
        c_lo = (cum - c_hi.to(tl.float64)).to(tl.float32)
        if SAVING:
            if t0 % KQ == 0:   # a kept chunk starts: the state entering it
                keep_run = tl.zeros([1], dtype=tl.float64)
                tl.store(KEEP_HS + state_at + (bh.to(tl.int64) * (nck - 1) + t0 // KQ) * P * N,
                         state.to(KEEP_HS.dtype.element_ty), mask=pn_ok)
            if not STEPS_GIVEN:   # given steps: their rows are the caller's already
                if tl.program_id(0) == 0:
                    kept_at = bh.to(tl.int64) * Lk + t
                    tl.store(KEEP_DT + kept_at, dt)
                    store_cum(KEEP_CUM, k_lo, kept_at, keep_run + cum)
            keep_run += total
        step = bi.to(tl.int64) * L + t
        qn_ok = ok[:, None] & n_ok[None, :]
        if STATE_T:
            b_t = tl.load(B + (step * SB + g * N)[None, :] + ns[:, None], mask=n_ok[:, None] & ok[None, :],
                          other=0.0)                                                           # (BLOCK_N, Q)
        else:
            b_c = tl.load(B + (step * SB + g * N)[:, None] + ns[None, :], mask=qn_ok, other=0.0)   # (Q, BLOCK_N)
        qp_ok = ok[:, None] & p_ok[None, :]
        x_c = tl.load(X + (step * SX + h * P)[:, None] + ps[None, :], mask=qp_ok, other=0.0)
        if MODE != 1:   # a summary writes no output
            c_c = tl.load(C + (step * SC + g * N)[:, None] + ns[None, :], mask=qn_ok, other=0.0)
            xp = ((step * H + h) * P)[:, None] + ps[None, :]                                    # (Q, BLOCK_P) of OUT

            # inside the chunk: (C B^T) under the causal decay, times dt_s x_s
            diff = (c_hi[:, None] - c_hi[None, :]) + (c_lo[:, None] - c_lo[None, :])
            decay = tl.where(causal, tl.exp(tl.where(causal, diff, 0.0)), 0.0)
            if STATE_T:
                w = mm(c_c, b_t, DOT) * decay * dt[None, :]
            else:
                w = mm(c_c, tl.trans(b_c), DOT) * decay * dt[None, :]
            y = mm(w, x_c, DOT)
            # from the state entering the chunk
            if STATE_T:
                y += mm(c_c, state, DOT) * tl.exp(c_hi)[:, None]
            else:
                y += mm(c_c, tl.trans(state), DOT) * tl.exp(c_hi)[:, None]
            if HAS_D:
                y += d_h * x_c.to(tl.float32)
            if HAS_DIAG:
                y += tl.load(DIAG + bh.to(tl.int64) * Lp + t, mask=ok, other=0.0)[:, None] * x_c.to(tl.float32)
            if SAVING and HAS_Z:
                tl.store(KEEP_Y + xp, y.to(KEEP_Y.dtype.element_ty), mask=qp_ok)
            if HAS_Z:
                gate, _ = silu_and_slope(tl.load(Z + (step * SZ + h * P)[:, None] + ps[None, :], mask=qp_ok,
                                                 other=0.0).to(tl.float32))
                y *= gate
            tl.store(OUT + xp, y.to(OUT.dtype.element_ty), mask=qp_ok)

        # the state leaving the chunk
        xw = x_c.to(tl.float32) * (tl.exp((total - cum).to(tl.float32)) * dt)[:, None]
        if STATE_T:
            state = state * tl.exp(total.to(tl.float32)) + mm(b_t, xw, DOT)
        else:
            state = state * tl.exp(total.to(tl.float32)) + mm(tl.trans(xw), b_c, DOT)
    if MODE == 1:
        tl.store(SEG_STATE + seg_at + seg * P * N, state, mask=pn_ok)
        tl.store(SEG_DECAY + bh.to(tl.int64) * nseg + seg + tl.arange(0, 1), seg_total.to(tl.float32))
    elif HAS_FINAL:
        if seg == nseg - 1:
            tl.store(FINAL + state_at, state, mask=pn_ok)


@triton.jit
def _ssd_segment_carry_kernel(SEG_STATE, SEG_DECAY, H0, nseg, PN, HAS_H0: tl.constexpr, BLOCK: tl.constexpr):
    """Between the summary and output launches of a row in many segments: each segment's summary
    ``SEG_STATE (b, H, nseg, P N)`` replaced by the state it enters with, ``h <- H0`` (or zeros), then for each
    segment ``j`` in order ``SEG_STATE[j] <- h``, ``h <- exp(SEG_DECAY[j]) h + summary_j``. A program per (row x
    head, ``BLOCK`` state elements): the output launch's carry-in then costs one read a program, where walking
    the summaries costs a read per earlier segment (quadratic in them)."""
    bh = tl.program_id(1).to(tl.int64)
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < PN
    if HAS_H0:
        h = tl.load(H0 + bh * PN + i, mask=ok, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK], dtype=tl.float32)
    at = SEG_STATE + bh * nseg * PN + i
    for j in range(0, nseg - 1):   # the last segment has no summary (nothing enters from its end)
        summary = tl.load(at + j * PN, mask=ok, other=0.0)
        tl.store(at + j * PN, h, mask=ok)
        h = h * tl.exp(tl.load(SEG_DECAY + bh * nseg + j)) + summary
    tl.store(at + (nseg - 1) * PN, h, mask=ok)


def _carry_rule(p, mode):
    # problem: (b, H, nseg, P N); a streaming pass, 4 elements a thread
    return dict(BLOCK=64 if mode.interpreted else 512, num_warps=4)


ssd_segment_carry_kernel = TunableKernel(
    "ssd_segment_carry", _ssd_segment_carry_kernel, rule=_carry_rule, alternatives=lambda p, mode: [],
    key=lambda p: p, grid=lambda p, kw: (cdiv(p[3], kw["BLOCK"]), p[0] * p[1]), flags=dict(HAS_H0="H0"))


def _rule(p, mode):
    # problem: (b, L, H, P, G, N, dtype, has_z, mode, segments, carried, steps given, ranks, kept chunk); the
    # interpreter takes small tiles so short tests cross chunks
    if mode.interpreted:   # the step rows read ahead, so every test takes that path (the candidates' test the other)
        return dict(Q=16, BLOCK_P=16, num_warps=4, num_stages=1, STATE_T=False, AHEAD=True)
    # tuned on the H200 (bench/tune_fused.py, 2026-12-02, H=64 P=64 N=128 bf16): 32-step chunks, 4 warps,
    # two stages everywhere; the channel tile the widest that still gives a program per SM (b=1: 16,
    # b=2: 32, b=8: 64), counting each segment's programs. A wide state (N > 128) holds the tile to 32
    # channels (registers).
    b, _, H, P, _, N = p[:6]
    rows = b * H * p[9]
    widest = min(_widest(P), 32 if N > 128 else 64)
    block_p = next((bp for bp in (64, 32) if bp <= widest and rows * cdiv(P, bp) >= mode.sm_count), 16)
    # a training forward's tiles fit whole in its kept chunks (multiples of 16: ``keeps``)
    return dict(Q=16 if p[13] % 32 else 32, BLOCK_P=min(block_p, widest), num_warps=4, num_stages=2, STATE_T=False)


def _widest(P: int) -> int:
    return min(64, max(16, next_power_of_2(P)))


def _alternatives(p, mode):
    if mode.interpreted:
        return []
    # narrow channel tiles: more programs for a short batch (each recomputes its chunk's C B^T); the
    # transposed state only at the measured best chunk, warps and stages (it is untimed: the tuner decides)
    widest = _widest(p[3])
    tiles = sorted({16, 32, widest})
    fits = lambda q: not p[13] or p[13] % q == 0   # noqa: E731 - a training forward's tiles fit in its chunks
    # register caps (ptx .maxnreg): at 255 registers two 4-warp programs share an SM and the walk waits on latency
    # (Nsight Compute, H100, 2026-12-06: 12.5% occupancy, issue slots 27% busy, b1 L2048); 168 fits three, 128 four,
    # at the price of spills (sm_90, triton 3.6: 432 / 680 bytes a thread at 32 x 64 tiles). Untimed until a GPU
    # session's tuner runs them
    capped = [dict(Q=32, BLOCK_P=bp, num_warps=4, num_stages=2, STATE_T=False, maxnreg=cap)
              for bp in tiles if bp <= widest and bp >= 32 for cap in (168, 128) if fits(32)]
    # the step rows read a chunk ahead (the kernel's AHEAD), at the rule's chunk, warps and stages, capped or not
    ahead = [dict(Q=32, BLOCK_P=bp, num_warps=4, num_stages=2, STATE_T=False, AHEAD=True, **cap)
             for bp in tiles if bp <= widest and fits(32) for cap in ({}, dict(maxnreg=168))] if AHEAD_TUNED else []
    return ([dict(Q=q, BLOCK_P=bp, num_warps=w, num_stages=st, STATE_T=False)
             for q in (32, 64) if fits(q) for bp in tiles if bp <= widest for w in (4, 8) for st in (1, 2)]
            + [dict(Q=32, BLOCK_P=bp, num_warps=4, num_stages=2, STATE_T=True) for bp in tiles if bp <= widest
               if fits(32)] + capped + ahead)


# the step rows read a chunk ahead among the candidates (SSM_TRITON_SSD_FUSED_AHEAD=0 drops them): the tuner took one
# at b1 L2048 H64 bf16 in 4 segments, 82.0 us eager / 82.5 replayed against 89.4 / 82.8 without (H200, 2026-12-07,
# call 19); at L512 it kept a tile without
AHEAD_TUNED = os.environ.get("SSM_TRITON_SSD_FUSED_AHEAD", "1").strip() not in ("", "0")


def _key(p):
    b, L, *rest = p
    return (bucket(b), bucket(L), *rest)


ssd_fused_fwd_kernel = TunableKernel(
    "ssd_fused_fwd", _ssd_fused_fwd_kernel, rule=_rule, alternatives=_alternatives, key=_key,
    # the summaries of every segment but the last: no later segment enters from its end
    grid=lambda p, kw: (cdiv(p[3], kw["BLOCK_P"]), p[0] * p[2], (p[9] - 1 if p[8] == 1 else p[9]) if p[8] else 1),
    flags=dict(HAS_BIAS="DT_BIAS", HAS_D="D", HAS_Z="Z", HAS_H0="H0", HAS_FINAL="FINAL", HAS_DIAG="DIAG"),
    hints=dict(SX_A="SX", SZ_A="SZ", SB_A="SB", SC_A="SC"))

# segments forced (SSM_TRITON_SSD_SEGMENTS=k, or set here; bench/tune_fused.py --segments): "" follows the rule
SEGMENTS = os.environ.get("SSM_TRITON_SSD_SEGMENTS", "")
# a segment's steps are a multiple of this (None: 64 on a GPU, whole chunks of every tile; 16 in the interpreter).
# Any length is correct (a chunk past a segment's end is masked): the tests set 16 to split short rows on a GPU
ALIGN = None
MOST_SEGMENTS = 8   # each segment's program carries every earlier segment's (P, N) state in: quadratic in them
# the carry pass (``_ssd_segment_carry_kernel``, a third launch) for rows in more than MOST_SEGMENTS segments (only
# forced counts: the rule's stop at MOST_SEGMENTS; never timed on a GPU yet); SSM_TRITON_SSD_CARRY=1 takes it for
# any segmented row, 0 never
CARRY = os.environ.get("SSM_TRITON_SSD_CARRY", "")


def carried(nseg: int) -> bool:
    """Whether a row in ``nseg`` segments takes the carry pass between its two launches."""
    if nseg <= 1 or CARRY == "0":
        return False
    return CARRY == "1" or nseg > MOST_SEGMENTS


def segments(bsz: int, L: int, H: int, P: int, sm_count: int, interpreted: bool = False,
             whole: int = 1) -> tuple[int, int]:
    """``(segments, steps a segment)`` of the one-launch forward for a problem: one segment (a program walks its
    whole row) unless the (row, head, channel tile) programs are too few to fill the GPU and the row is long
    enough to pay for a second launch (a summary of each segment, then the outputs: ``_ssd_fused_fwd_kernel``'s
    MODE 1 and 2). A segment's steps are a multiple of 64 (16 in the interpreter), whole chunks of every tile, and
    of ``whole`` (a training forward's chunk size: its kept chunks are never split)."""
    align = math.lcm(ALIGN or (16 if interpreted else 64), whole)
    if SEGMENTS:
        k = int(SEGMENTS)
    elif interpreted or L < 512 or 2 * bsz * H * cdiv(P, 64) > sm_count:
        k = 1
    else:   # H200, 2026-12-04 (bench/tune_fused.py, rule tiles): b1 H64 eager L1024 99 -> 67 us with 4,
        # L2048 189 -> 87 with 4 (8: 87), L4096 369 -> 157 with 8 (4: 166), L8192 728 -> 291 with 8 (4: 315);
        # b2 neither gains nor loses, b4 L2048 loses (232 -> 288 with 2). L512: 51.8 -> 30.6 there; in the tuned
        # benchmark 0.0585 whole against 0.0439 in 4, one warm process (a first run read 0.106: tuning still
        # settling, not repeated)
        k = 4 if L <= 2048 else MOST_SEGMENTS
    seg_len = cdiv(cdiv(L, max(k, 1)), align) * align
    return cdiv(L, seg_len), seg_len


def keeps(chunk: int) -> bool:
    """Whether a training forward in one launch can keep its backward's tensors at chunks of ``chunk`` steps: its
    tiles (16 or 32 steps, 16 interpreted) must fit whole in them (Mamba-3 MIMO's chunks of rank-steps may be 4 R)."""
    return chunk % 16 == 0


# how full the one-launch forward's waves of (row, head) programs must be where rows past 4096 steps take it (the
# walk backward's rule: launch.WALK_FILL)
FILL = 0.85


def use_fused(bsz: int, L: int, H: int, sm_count: int, P: int = 64) -> bool:
    """Whether the one-launch forward suits a problem. A program walks its row's chunks (or its segment's) in
    order, about 2.8 µs a 32-step chunk on the H200, so long rows lose to the staged launches unless many (row,
    head) programs share the GPU, or the row splits into segments (:func:`segments`). Measured there (2026-12-02,
    bench/tune_fused.py, both tuned, H=64): b=1 L=512 and 2048, 116 and 178 µs against 250 and 266 µs staged;
    b=8 L=4096, 0.88 against 1.08 ms; but b=1 L=8192, 0.68 against 0.34 ms, and b=2 L=16384, 1.42 against 1.08
    ms. In 8 segments (2026-12-04, eager, rule tiles): b=1 L=4096 157 against 200 µs, L=8192 291 against 338.
    Waves that the programs fill are enough, at least to 16384 steps (H100, 2026-12-05,
    bench/results/h100-2026-12-05e, walk_choice --forward): Mamba-3's B8 H32 (256 programs on 132 SMs, two waves
    97% full) fwd+bwd, SISO at L=4096 5.58-5.60 ms against 6.23-6.28 staged (forward kernels 0.76 against 1.37 ms),
    MIMO rank 4 (rows of 16384 rank-steps) 30.0 against 33.7. A wave's worth of programs more than a full one
    doubles the one-launch kernel's time where the stages grow by their share (their programs are chunks), so past
    4096 steps waves left less than :data:`FILL` full keep the stages (not measured). To 4096 steps the one launch
    wins even so (H100, 2026-12-05, bench/results/h100-2026-12-05f/tune-fused.txt, H64 G1 bf16, eager): b3, 192
    programs in two waves 73% full, 442 against 535 µs staged; b4 439 against 588 (the stages' fixed part is large
    there); under a wave's worth of programs (too many to segment) it is not measured."""
    programs = bsz * H
    filled = programs >= sm_count and fills_waves(programs, sm_count, FILL)
    return (L <= 2048 or (L <= 4096 and programs >= sm_count) or (L <= 16384 and filled)
            or (L <= 8192 and segments(bsz, L, H, P, sm_count)[0] > 1))


def fused_forward(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot, adt=None,
                  diag=None, ranks=1, keep=None, out_dtype=None, a_log=False):
    """``out (b, L, H, P)`` in ``out_dtype`` (``x``'s when None; contiguous) and the final state ``(b, H, P, N)``
    fp32. ``x, z, B, C, dt`` are contiguous past their step dimension, each with its own step stride (the op layer's
    ``step_strided``); ``lo, hi, clamp`` the step-size clamp (``launch._limits``); ``dot`` the tensor-core
    dtype. One launch, or two over segments of the row (:func:`segments`). ``adt``, ``diag``: see
    :func:`mamba3_fused_forward`. ``keep = (chunk size, the states' dtype)``: a training forward, which also
    returns what the staged forward keeps for the backward, ``(dtp (b, H, Lk), cum (2, b, H, Lk), hs (b, H, nc, P,
    N), y (b, L, H, P) or None)`` with ``Lk = nc * chunk size`` (``launch.Saved``'s fields). ``a_log``: ``A`` holds
    ``log(-A)`` (the module's ``A_log``)."""
    bsz, L, H, P = x.shape
    N = B.shape[3]
    out = torch.empty(x.shape, device=x.device, dtype=out_dtype or x.dtype)
    final = torch.empty((bsz, H, P, N), device=x.device, dtype=torch.float32)
    problem, args = _fused_args(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot, adt,
                                diag, ranks, keep[0] if keep else 0, a_log)
    kept = None
    if keep:
        nck = cdiv(L, keep[0])
        f32 = dict(device=x.device, dtype=torch.float32)
        steps = adt is None   # given steps (Mamba-3): their rows are the caller's
        kept = (torch.empty((bsz, H, nck * keep[0]), **f32) if steps else None,
                torch.empty((2, bsz, H, nck * keep[0]), **f32) if steps else None,
                torch.empty((bsz, H, nck, P, N), device=x.device, dtype=keep[1]),
                torch.empty_like(out) if z is not None else None)
        args.update(KEEP_DT=kept[0], KEEP_CUM=kept[1], KEEP_HS=kept[2], KEEP_Y=kept[3], Lk=nck * keep[0], nck=nck,
                    k_lo=bsz * H * nck * keep[0])
    nseg = problem[9]
    if nseg > 1:
        seg_state = torch.empty((bsz, H, nseg, P, N), device=x.device, dtype=torch.float32)
        seg_decay = torch.empty((bsz, H, nseg), device=x.device, dtype=torch.float32)
        args.update(SEG_STATE=seg_state, SEG_DECAY=seg_decay)
        ssd_fused_fwd_kernel.launch(_summary(problem), None, **_summary_args(args))
        if problem[10]:
            ssd_segment_carry_kernel.launch(_carry_problem(problem), None, **_carry_args(args))
    ssd_fused_fwd_kernel.launch(problem, None, **args, OUT=out, FINAL=final)
    return (out, final, kept) if keep else (out, final)


def mamba3_fused_forward(x, k, q, scale, adt, diag, D, z, h0, dot, ranks=1, keep=None, out_dtype=None):
    """Mamba-3 SISO's scan after its prep kernel, for a call that keeps nothing for a backward, in the one-launch
    forward (or its segments): ``x (b, L, H, P)``, ``k, q (b, L, H, N)`` (k~, q~: one group a head), ``scale, diag
    (b, H, Lp)`` fp32 each step's weight of ``x`` in the state and its diagonal correction, ``adt (b, H, L)`` fp32
    each step's decay, ``D (H,)`` or None, ``z (b, L, H, P)`` or None, ``h0 (b, H, P, N)`` fp32 or None. Returns
    ``(out (b, L, H, P) in out_dtype (x's when None), final (b, H, P, N) fp32)``: the staged launches' (chunk
    states, state passing, the C B^T products, the outputs) in one or two. MIMO (``ranks`` R > 1): the rows are ``L = T R``
    rank-steps and ``scale, adt (b, H, T)`` per step (each rank-step takes its step's weight, the first its decay).
    ``keep = (chunk size, the states' dtype)``: a training forward, which also returns ``(hs (b, H, nc, P, N), y or
    None)`` (the staged launches' entering states and pre-gate output; the steps' rows are the caller's)."""
    made = fused_forward(x, scale, None, k, q, D, z, None, h0, False, 0.0, 0.0, False, dot, adt.contiguous(), diag,
                         ranks, keep, out_dtype)
    return made if keep is None else (made[0], made[1], made[2][2:])


def _summary(problem):
    return (*problem[:8], 1, problem[9], False, *problem[11:13], 0)


def _summary_args(args) -> dict:
    """A segmented forward's summary launch: no output, nothing kept."""
    return dict(args, OUT=None, FINAL=None, MODE=1, CARRIED=False, KEEP=False, KQ=1, KEEP_DT=None, KEEP_CUM=None,
                KEEP_HS=None, KEEP_Y=None)


def _carry_problem(problem):
    b, _, H, P, _, N = problem[:6]
    return (b, H, problem[9], P * N)


def _carry_args(args) -> dict:
    return dict(SEG_STATE=args["SEG_STATE"], SEG_DECAY=args["SEG_DECAY"], H0=args["H0"], nseg=args["nseg"],
                PN=args["P"] * args["N"])


def _fused_args(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot, adt=None,
                diag=None, ranks=1, keep=0, a_log=False):
    """``(problem, the kernel's arguments but OUT and FINAL)`` of :func:`fused_forward`'s last launch: MODE 0, or
    2 where the row splits into ``problem[9]`` segments (:func:`segments`; its ``SEG_STATE``, ``SEG_DECAY`` then to
    be filled in), after the carry pass where ``problem[10]`` (:func:`carried`). ``adt (b, H, L)``: the steps'
    decays given (``dt`` then the steps' weights ``(b, H, Lp)``; ``problem[11]``), with ``diag (b, H, Lp)`` or
    None (:func:`mamba3_fused_forward`). ``keep``: a training forward's chunk size (its ``KEEP_*`` buffers and sizes
    then to be filled in), else 0."""
    bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    run = run_mode(x.device)
    nseg, seg_len = segments(bsz, L, H, P, run.sm_count, run.interpreted, keep or 1)
    mode = 2 if nseg > 1 else 0
    carry = carried(nseg)
    given = adt is not None
    return (bsz, L, H, P, G, N, x.dtype, z is not None, mode, nseg, carry, given, ranks, keep), dict(
        X=x, DT=dt, DT_BIAS=dt_bias, A=A, B=B, C=C, D=D, Z=z, H0=initial_states, SEG_STATE=None, SEG_DECAY=None,
        ADT=adt, DIAG=diag, KEEP_DT=None, KEEP_CUM=None, KEEP_HS=None, KEEP_Y=None, Lk=0, nck=1, k_lo=0,
        L=L, H=H, G=G, P=P, N=N, SX=x.stride(1), SZ=z.stride(1) if z is not None else 0,
        SB=B.stride(1), SC=C.stride(1), SDT=dt.stride(1), lo=lo, hi=hi, seg_len=seg_len, nseg=nseg,
        Lp=dt.shape[-1] if given else L, La=adt.shape[-1] if given else L, SOFTPLUS=dt_softplus, CLAMP=clamp,
        D_PER_CHANNEL=D is not None and D.dim() == 2, BLOCK_N=max(16, next_power_of_2(N)), DOT=dot, MODE=mode,
        CARRIED=carry, STEPS_GIVEN=given, RANKS=ranks, KEEP=bool(keep), KQ=keep or 1, A_LOG=a_log)


def fused_plan(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot,
               final: bool = True, a_log: bool = False) -> "OneLaunch | TwoLaunches":
    """:func:`fused_forward` as an op plan (``ssm_triton/ops/_plans.py``) for inputs of these shapes, strides,
    dtypes and device: ``plan((x, dt, A, B, C, D, z, dt_bias, initial_states)) -> [out, final]``; without
    ``final`` the state is neither allocated nor stored (``[out]``: one ``torch.empty`` less, 3-5 us of the
    H200's host)."""
    bsz, L, H, P = x.shape
    N = B.shape[3]
    problem, args = _fused_args(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot,
                                a_log=a_log)
    nseg = problem[9]
    names = ("X", "DT", "A", "B", "C", "D", "Z", "DT_BIAS", "H0")
    take = tuple(i for i, t in enumerate((x, dt, A, B, C, D, z, dt_bias, initial_states)) if t is not None)
    outs = ((x.shape, x.dtype), ((bsz, H, P, N), torch.float32)) if final else ((x.shape, x.dtype),)
    if not final:
        args["FINAL"] = None
    vary = tuple(names[i] for i in take)
    if nseg == 1:
        launch = Launch(ssd_fused_fwd_kernel, problem, args, vary + ("OUT", "FINAL")[:len(outs)])
        return OneLaunch(launch, take, outs, x.device)
    summary = Launch(ssd_fused_fwd_kernel, _summary(problem), _summary_args(args), vary + ("SEG_STATE", "SEG_DECAY"))
    last = Launch(ssd_fused_fwd_kernel, problem, args,
                  vary + ("SEG_STATE", "SEG_DECAY", "OUT", "FINAL")[:2 + len(outs)])
    middle = h0_at = None
    if problem[10]:
        has_h0 = initial_states is not None
        middle = Launch(ssd_segment_carry_kernel, _carry_problem(problem), _carry_args(args),
                        ("H0", "SEG_STATE", "SEG_DECAY") if has_h0 else ("SEG_STATE", "SEG_DECAY"))
        h0_at = take.index(8) if has_h0 else None   # initial_states among the tensors the plan is given
    return TwoLaunches(summary, last, take, (bsz, H, nseg, P, N), outs, x.device, middle, h0_at)


class TwoLaunches:
    """The segmented forward as an op plan: ``plan(tensors) -> outputs``. Each call allocates the outputs and one
    fp32 scratch buffer (the segments' states, then their decays from a 16-byte boundary), and issues the two
    bound :class:`~..tuning.Launch` es with addresses (a tensor's launch for either that cannot), with the carry
    pass (``middle``) between them where the row takes it (``h0_at``: the initial state's place among the given
    tensors, which the carry pass reads)."""
    __slots__ = ("first", "last", "take", "states", "decays", "outs", "device", "dev", "middle", "h0_at")

    def __init__(self, first, last, take, states: tuple, outs, device, middle=None, h0_at=None):
        self.first, self.last, self.take, self.outs, self.device = first, last, take, outs, device
        self.middle, self.h0_at = middle, h0_at
        self.states = states
        self.decays = cdiv(math.prod(states), 4) * 4          # the decays' offset, in fp32 elements
        self.dev = _tuning.device_index(device)

    def __call__(self, tensors) -> list:
        made = [torch.empty(shape, device=self.device, dtype=dtype) for shape, dtype in self.outs]
        rows = self.states[:3]
        scratch = torch.empty(self.decays + math.prod(rows), device=self.device, dtype=torch.float32)
        stream = _tuning._raw_stream(self.dev) if self.dev >= 0 else None
        given = [tensors[i] for i in self.take]
        ats = _tuning.addresses(given) if self.last.bound is not None else None
        seg = lambda: (scratch[:math.prod(self.states)].view(self.states), scratch[self.decays:].view(rows))  # noqa: E731
        middle = self.middle
        if ats is not None:
            base = scratch.data_ptr()
            seg_at = [base, base + 4 * self.decays]
            h0 = [ats[self.h0_at]] if self.h0_at is not None else []
            ats += seg_at
            if self.first.at(stream, ats):
                if middle is not None and not middle.at(stream, h0 + seg_at):
                    middle(stream, *([given[self.h0_at]] if self.h0_at is not None else []), *seg())
                if not self.last.at(stream, ats + [t.data_ptr() for t in made]):
                    self.last(stream, *given, *seg(), *made)
                return made
        views = seg()
        self.first(stream, *given, *views)
        if middle is not None:
            middle(stream, *([given[self.h0_at]] if self.h0_at is not None else []), *views)
        self.last(stream, *given, *views, *made)
        return made

