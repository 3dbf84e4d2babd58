"""Stage 3 (and its adjoint): the short sequential scan over chunks, in fp32.

Forward: ``h_enter[0] = h0``, ``h_enter[c+1] = keep_c exp(cum_end_c) h_enter[c] + own_c``, where
``own_c`` is the chunk's own end state (stage 2) and ``keep_c`` is 0 when ``seq_idx`` starts a new
sequence inside chunk ``c`` (the chunk's end lies in another sequence than the step before it).
The scan runs in fp32; the entering states are stored in the dtype the tensor cores will read them in
(bf16 for bf16 inputs: half the bytes for the stages that re-read them once per block of steps);
``final`` is ``h_enter[n_chunks]`` in fp32.

Backward, the same recurrence reversed: ``dh_enter[c] = adj_c + keep_c exp(cum_end_c) dh_enter[c+1]``
(``adj_c`` from the adjoint outer products), overwriting ``adj_c`` with ``dh_enter[c+1]`` (the gradient
of chunk ``c``'s end state, which the dx/dB stage needs). It also writes
``keep_c exp(cum_end_c) <dh_enter[c+1], h_enter[c]>``, the part of the gradient of chunk ``c``'s total
decay that flows through the carried state, as one partial per program.
Each program owns one (batch row, head) and ``BLOCK`` entries of the flattened ``(P, N)`` state.

``_state_fwd_own_kernel`` (``SSM_TRITON_SSD_OWN_FUSED=1``) is the forward with each chunk's own end state (stage 2)
summed inside it, and ``_state_bwd_adjoint_kernel`` (``SSM_TRITON_SSD_ADJ_FUSED=1``) the backward with the adjoint
sums made inside it. Each of their programs owns a ``(BLOCK_P, BLOCK_N)`` tile of one (batch row, head)'s state and,
walking the chunks in order (in reverse for the backward), sums the chunk's tile over its steps in ``BLOCK_K``
slices before it is added. The ``(b, H, chunks, P, N)`` fp32 sums (268 MB at issue 18's headline with chunks of 256,
537 with 128) are then never stored: one write and one read of them less, and the call's peak memory without them.
"""
import triton
import triton.language as tl

from .chunk_state import chunk_sum
from .common import chunk_bounds
from ..tuning import Kernel


@triton.jit
def _carry(CUM, SEQ, bi, row, c, L, HAS_SEQ: tl.constexpr, Q: tl.constexpr):
    """keep_c * exp(total decay of chunk c)."""
    _, end, prev = chunk_bounds(c, L, Q)
    decay = tl.exp(tl.load(CUM + row + end))
    if HAS_SEQ:
        same = tl.load(SEQ + bi.to(tl.int64) * L + end) == tl.load(SEQ + bi.to(tl.int64) * L + prev)
        decay = tl.where(same, decay, 0.0)
    return decay


@triton.jit
def _program(START, H, Lp, nc, PN, PRESENT: tl.constexpr, BLOCK: tl.constexpr):
    """A (batch row x head, block of state entries) program's entries, their mask, its batch row, its
    rows of ``cum`` and of the per-chunk states, and the fp32 value its scan starts from (``START``,
    or zeros when absent)."""
    bh = tl.program_id(0)
    e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = e < PN
    if PRESENT:
        run = tl.load(START + bh.to(tl.int64) * PN + e, mask=ok, other=0.0).to(tl.float32)
    else:
        run = tl.zeros([BLOCK], dtype=tl.float32)
    return bh, e, ok, bh // H, bh.to(tl.int64) * Lp, bh.to(tl.int64) * nc * PN, run


@triton.jit
def _state_fwd_kernel(S, HS, CUM, SEQ, H0, FINAL, L, H, Lp, nc, PN,
                      HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK: tl.constexpr):
    bh, e, ok, bi, row, base, run = _program(H0, H, Lp, nc, PN, HAS_H0, BLOCK)
    # the next chunk's state is requested before this one's is stored: the loop is bound by memory
    # latency, not bandwidth, unless a load is in flight while the arithmetic runs
    own = tl.load(S + base + e, mask=ok, other=0.0)
    for c in range(nc):
        nxt = tl.load(S + base + ((c + 1) % nc) * PN + e, mask=ok, other=0.0)   # wraps at the end, unused
        tl.store(HS + base + c * PN + e, run.to(HS.dtype.element_ty), mask=ok)
        run = _carry(CUM, SEQ, bi, row, c, L, HAS_SEQ, Q) * run + own
        own = nxt
    tl.store(FINAL + bh.to(tl.int64) * PN + e, run, mask=ok)


@triton.jit
def _state_bwd_kernel(ADJ, HS, CUM, SEQ, DFINAL, DS, DH0, FPART, L, H, Lp, nc, PN,
                      HAS_DFINAL: tl.constexpr, HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK: tl.constexpr):
    bh, e, ok, bi, row, base, run = _program(DFINAL, H, Lp, nc, PN, HAS_DFINAL, BLOCK)
    blk = tl.program_id(1)
    n_blk = tl.num_programs(1)
    adj = tl.load(ADJ + base + (nc - 1) * PN + e, mask=ok, other=0.0)
    enter = tl.load(HS + base + (nc - 1) * PN + e, mask=ok, other=0.0).to(tl.float32)
    for i in range(nc):
        c = nc - 1 - i
        adj_next = tl.load(ADJ + base + ((c + nc - 1) % nc) * PN + e, mask=ok, other=0.0)   # prefetch, as above
        enter_next = tl.load(HS + base + ((c + nc - 1) % nc) * PN + e, mask=ok, other=0.0).to(tl.float32)
        tl.store(DS + base + c * PN + e, run.to(DS.dtype.element_ty), mask=ok)
        carry = _carry(CUM, SEQ, bi, row, c, L, HAS_SEQ, Q)
        tl.store(FPART + (bh.to(tl.int64) * nc + c) * n_blk + blk, carry * tl.sum(run * enter, axis=0))
        run = adj + carry * run
        adj = adj_next
        enter = enter_next
    tl.store(DH0 + bh.to(tl.int64) * PN + e, run, mask=ok)


@triton.jit
def _tile(H, G, P, N, Lp, nc, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    """A (batch row x head, state tile) program's: row x head, tile, batch row, head, group, its ``(P, N)`` entries,
    their ``(BLOCK_P, BLOCK_N)`` offsets into a state and mask, its row of ``cum``, ``P N`` and where its
    per-chunk states start."""
    bh = tl.program_id(0)
    tile = tl.program_id(1)
    n_nb = tl.cdiv(N, BLOCK_N)
    ps = (tile // n_nb) * BLOCK_P + tl.arange(0, BLOCK_P)
    ns = (tile % n_nb) * BLOCK_N + tl.arange(0, BLOCK_N)
    h = bh % H
    pn_ok = (ps < P)[:, None] & (ns < N)[None, :]
    PN = bh.to(tl.int64) * 0 + P * N   # int64: a chunk's offset c P N can pass 2^31 in long rows of short chunks
    return (bh, tile, bh // H, h, h // (H // G), ps, ns, ps[:, None] * N + ns[None, :], pn_ok, bh.to(tl.int64) * Lp,
            PN, bh.to(tl.int64) * nc * PN)


@triton.jit
def _start(START, bh, PN, at, pn_ok, PRESENT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    """The fp32 tile a passing starts from: ``START``'s, or zeros when absent."""
    if PRESENT:
        return tl.load(START + bh.to(tl.int64) * PN + at, mask=pn_ok, other=0.0).to(tl.float32)
    return tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)


@triton.jit
def _state_fwd_own_kernel(X, B, DTP, CUM, SEQ, H0, HS, FINAL,
                          L, H, G, P, N, SX, SB, Lp, nc, lo_off,
                          HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK_K: tl.constexpr,
                          BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr):
    bh, tile, bi, h, g, ps, ns, at, pn_ok, row, PN, base = _tile(H, G, P, N, Lp, nc, BLOCK_P, BLOCK_N)
    run = _start(H0, bh, PN, at, pn_ok, HAS_H0, BLOCK_P, BLOCK_N)
    for c in range(nc):
        tl.store(HS + base + c * PN + at, run.to(HS.dtype.element_ty), mask=pn_ok)
        start, end, _ = chunk_bounds(c, L, Q)
        own = chunk_sum(X, B, DTP, CUM, SEQ, bi, h, g, row, start, end, end, L, P, N, SX, SB, lo_off, ps, ns, False,
                        HAS_SEQ, BLOCK_K, BLOCK_P, BLOCK_N, DOT)
        run = _carry(CUM, SEQ, bi, row, c, L, HAS_SEQ, Q) * run + own
    tl.store(FINAL + bh.to(tl.int64) * PN + at, run, mask=pn_ok)


@triton.jit
def _state_bwd_adjoint_kernel(DY, C, CUM, HS, SEQ, DFINAL, DS, DH0, FPART,
                              L, H, G, P, N, SDY, SC, Lp, nc, lo_off,
                              HAS_DFINAL: tl.constexpr, HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK_K: tl.constexpr,
                              BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr):
    bh, tile, bi, h, g, ps, ns, at, pn_ok, row, PN, base = _tile(H, G, P, N, Lp, nc, BLOCK_P, BLOCK_N)
    n_blk = tl.num_programs(1)
    run = _start(DFINAL, bh, PN, at, pn_ok, HAS_DFINAL, BLOCK_P, BLOCK_N)
    for i in range(nc):
        c = nc - 1 - i
        tl.store(DS + base + c * PN + at, run.to(DS.dtype.element_ty), mask=pn_ok)
        enter = tl.load(HS + base + c * PN + at, mask=pn_ok, other=0.0).to(tl.float32)
        carry = _carry(CUM, SEQ, bi, row, c, L, HAS_SEQ, Q)
        tl.store(FPART + (bh.to(tl.int64) * nc + c) * n_blk + tile, carry * tl.sum(tl.sum(run * enter, axis=1), axis=0))
        start, end, prev = chunk_bounds(c, L, Q)
        # (the adjoint weighs no step sizes: CUM stands in for DTP, unread)
        adj = chunk_sum(DY, C, CUM, CUM, SEQ, bi, h, g, row, start, end, prev, L, P, N, SDY, SC, lo_off, ps, ns, True,
                        HAS_SEQ, BLOCK_K, BLOCK_P, BLOCK_N, DOT)
        run = adj + carry * run
    tl.store(DH0 + bh.to(tl.int64) * PN + at, run, mask=pn_ok)


state_fwd_kernel = Kernel(_state_fwd_kernel, flags=dict(HAS_H0="H0", HAS_SEQ="SEQ"))
state_bwd_kernel = Kernel(_state_bwd_kernel, flags=dict(HAS_DFINAL="DFINAL", HAS_SEQ="SEQ"))
state_fwd_own_kernel = Kernel(_state_fwd_own_kernel, flags=dict(HAS_H0="H0", HAS_SEQ="SEQ"))
state_bwd_adjoint_kernel = Kernel(_state_bwd_adjoint_kernel, flags=dict(HAS_DFINAL="DFINAL", HAS_SEQ="SEQ"))
