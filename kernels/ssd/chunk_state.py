"""Stage 2 (and its adjoint): per-chunk sums of weighted outer products, one ``(P, N)`` matrix each.

``MODE_STATE``  each chunk's own end state ``sum_s exp(cum_end - cum_s) dt_s x_s B_s^T`` over the steps
                of the chunk in the sequence it ends in (``seq_idx``), as if it started from zero;
``MODE_ADJOINT`` the backward's mirror, what the chunk's outputs send back to the state entering it:
                ``sum_t exp(cum_t) dy_t C_t^T`` over the steps in the entering state's sequence;
``MODE_VARLEN`` the state after the last step of each packed sequence (``cu_seqlens``): the
                first sum up to that step, plus the decayed state that entered its chunk.

Each program owns one (chunk or sequence, head) and a ``(BLOCK_P, BLOCK_N)`` tile of the matrix, and
walks its steps in ``BLOCK_K`` slices: one ``tl.dot`` of ``(BLOCK_P, BLOCK_K) @ (BLOCK_K, BLOCK_N)`` each.
"""
import triton
import triton.language as tl

from .common import cum_at, mm
from ..tuning import Kernel

MODE_STATE = 0
MODE_ADJOINT = 1
MODE_VARLEN = 2
_ADJOINT = tl.constexpr(MODE_ADJOINT)  # what the kernel body compares against
_VARLEN = tl.constexpr(MODE_VARLEN)


@triton.jit
def chunk_sum(V, W, DTP, CUM, SEQ, bi, h, g, row, start, end, at_seq, L, P, N, SV, SW, lo_off, ps, ns,
              ADJOINT: tl.constexpr, HAS_SEQ: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
              BLOCK_N: tl.constexpr, DOT: tl.constexpr):
    """One ``(BLOCK_P, BLOCK_N)`` tile of a sum over steps ``start..end`` of a row (``row`` into ``cum``), those in
    the sequence of step ``at_seq`` (with ``SEQ``): ``ADJOINT`` ``sum_t exp(cum_t) v_t w_t^T``, else
    ``sum_s exp(cum_end - cum_s) dt_s v_s w_s^T``. ``V (b, L, H, P)``, ``W (b, L, G, N)`` of step strides ``SV, SW``.
    Shared by this file's kernel and the state passings that make their chunks' sums (state_passing.py)."""
    cum_end, cum_end_lo = cum_at(CUM, lo_off, row, end)
    want = 0
    if HAS_SEQ:
        want = tl.load(SEQ + bi.to(tl.int64) * L + at_seq)
    acc = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    for s0 in range(start, end + 1, BLOCK_K):
        s = s0 + tl.arange(0, BLOCK_K)
        ok = s <= end
        cum_s, cum_s_lo = cum_at(CUM, lo_off, row, s)   # s < start + Q: inside the padded row
        if ADJOINT:
            wgt = tl.exp(cum_s + cum_s_lo)
        else:
            wgt = tl.exp((cum_end - cum_s) + (cum_end_lo - cum_s_lo)) * tl.load(DTP + row + s, mask=ok, other=0.0)
        if HAS_SEQ:
            ok &= tl.load(SEQ + bi.to(tl.int64) * L + s, mask=ok, other=-1) == want
        wgt = tl.where(ok, wgt, 0.0)
        step = bi.to(tl.int64) * L + s
        v = tl.load(V + (step * SV + h * P)[None, :] + ps[:, None], mask=ok[None, :] & (ps < P)[:, None], other=0.0)
        w = tl.load(W + (step * SW + g * N)[:, None] + ns[None, :], mask=ok[:, None] & (ns < N)[None, :], other=0.0)
        acc += mm(v.to(tl.float32) * wgt[None, :], w, DOT)
    return acc


@triton.jit
def _chunk_state_kernel(
    # pointers
    V, W, DTP, CUM, SEQ, HPREV, OUT, CU,
    # sizes; SV, SW the step strides of V and W (contiguous past the step dimension)
    L, H, G, P, N, SV, SW, Lp, nc, lo_off,
    # meta-parameters
    MODE: tl.constexpr, HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr, DOT: tl.constexpr,
):
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    tile = tl.program_id(2)
    n_nb = tl.cdiv(N, BLOCK_N)
    ps = (tile // n_nb) * BLOCK_P + tl.arange(0, BLOCK_P)
    ns = (tile % n_nb) * BLOCK_N + tl.arange(0, BLOCK_N)
    pn_ok = (ps < P)[:, None] & (ns < N)[None, :]
    if MODE == _VARLEN:  # one packed row (batch 1); pid is the sequence
        bi = bh * 0
        h = bh
        # clamped into the row: cu_seqlens is checked asynchronously, so a bad one may arrive
        end = tl.minimum(tl.maximum(tl.load(CU + pid + 1), 1), L) - 1
        c = end // Q
    else:
        bi = bh // H
        h = bh % H
        c = pid
        end = tl.minimum(c * Q + Q, L) - 1
    start = c * Q
    g = h // (H // G)
    row = bh.to(tl.int64) * Lp
    prev = tl.maximum(start - 1, 0)
    acc = chunk_sum(V, W, DTP, CUM, SEQ, bi, h, g, row, start, end, prev if MODE == _ADJOINT else end, L, P, N, SV,
                    SW, lo_off, ps, ns, MODE == _ADJOINT, HAS_SEQ, BLOCK_K, BLOCK_P, BLOCK_N, DOT)
    if MODE == _VARLEN:
        keep = tl.exp(tl.load(CUM + row + end))
        if HAS_SEQ:
            keep = tl.where(tl.load(SEQ + bi.to(tl.int64) * L + end) == tl.load(SEQ + bi.to(tl.int64) * L + prev), keep,
                            0.0)
        enter = tl.load(HPREV + ((h.to(tl.int64) * nc + c) * P + ps[:, None]) * N + ns[None, :], mask=pn_ok,
                        other=0.0).to(tl.float32)
        acc += keep * enter
        dst = OUT + ((pid.to(tl.int64) * H + h) * P + ps[:, None]) * N + ns[None, :]
    else:
        dst = OUT + ((bh.to(tl.int64) * nc + c) * P + ps[:, None]) * N + ns[None, :]
    tl.store(dst, acc, mask=pn_ok)


# SEQ, HPREV and CU may be None (HPREV and CU are read in MODE_VARLEN only)
chunk_state_kernel = Kernel(_chunk_state_kernel, flags=dict(HAS_SEQ="SEQ"))
