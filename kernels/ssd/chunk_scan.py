"""Stage 4: the output, ``y_t = exp(cum_t) C_t . h_enter + sum_{s<=t} (C_t . B_s) exp(cum_t - cum_s) dt_s x_s``
inside each chunk, then ``+ D x_t`` and ``* silu(z_t)``.

A program owns ``BLOCK_M`` steps of one chunk, one (batch row, head) and ``BLOCK_P`` channels. The
``(BLOCK_M, BLOCK_N)`` slice of ``C`` and the entering state give the first ``tl.dot``; then the
program walks the chunk's earlier steps in ``BLOCK_K`` slices: the group's ``C B^T`` (``bmm.py``), the
causal, same-sequence decay mask applied in registers, and a second ``tl.dot`` with ``x``. The decay
matrix never reaches memory. The pre-gate ``y`` is stored too when a backward with
``z`` will need it. With ``NORM_W`` (an inference call whose gated norm is deferred, ``ops/norm_defer.py``) the
output is ``g w`` for ``g = y silu(z)`` and the norm's weight ``w``, and ``SS (b, L, H, P blocks)`` fp32 gets each
program's ``sum g^2`` of a step: the norm's ``1 / rms`` is a per-step scale that commutes with out_proj.
"""
import triton
import triton.language as tl

from .common import chunk_bounds, cum_at, mm, row_block, row_block_longest_first
from ..hints import multiple
from ..tuning import Kernel


@triton.jit
def _chunk_scan_fwd_kernel(
    # pointers
    X, B, C, CB, DTP, CUM, HS, D, DIAG, Z, SEQ, Y, OUT, NORM_W, SS,
    # sizes; the step strides of X, C and Z (contiguous past the step dimension; Y and OUT are contiguous)
    L, H, G, P, N, SX, SC, SZ, Lp, nc, lo_off,
    # meta-parameters
    HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_DIAG: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_SEQ: tl.constexpr, STORE_Y: tl.constexpr, Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr,
    SX_A: tl.constexpr = 1, SC_A: tl.constexpr = 1, SZ_A: tl.constexpr = 1, HAS_NORM: tl.constexpr = False,
    LONGEST_FIRST: tl.constexpr = False, SPLIT_DECAY: tl.constexpr = False,
):
    # the step strides' divisors (hints.py): z a column slice of in_proj's output in the blocks' training path
    SX, SC, SZ = multiple(SX, SX_A), multiple(SC, SC_A), multiple(SZ, SZ_A)
    if LONGEST_FIRST:
        t0, c, bh, bi, h, g = row_block_longest_first(H, G, nc, Q, BLOCK_M)
    else:
        t0, c, bh, bi, h, g = row_block(H, G, Q, BLOCK_M)
    start, _, prev = chunk_bounds(c, L, Q)
    t = t0 + tl.arange(0, BLOCK_M)
    t_ok = t < L
    ps = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = ps < P
    ns = tl.arange(0, BLOCK_N)
    n_ok = ns < N
    row = bh.to(tl.int64) * Lp
    step_t = bi.to(tl.int64) * L + t
    cum_t, cum_t_lo = cum_at(CUM, lo_off, row, t)
    c_t = tl.load(C + (step_t * SC + g * N)[:, None] + ns[None, :], mask=t_ok[:, None] & n_ok[None, :], other=0.0)

    # from the state entering the chunk (only for steps still in its sequence)
    enter = tl.load(HS + ((bh.to(tl.int64) * nc + c) * P + ps[None, :]) * N + ns[:, None],
                    mask=n_ok[:, None] & p_ok[None, :], other=0.0)                  # (BLOCK_N, BLOCK_P)
    if HAS_SEQ:
        seq_t = tl.load(SEQ + step_t, mask=t_ok, other=-1)
        enter_ok = seq_t == tl.load(SEQ + bi.to(tl.int64) * L + prev)
    cb_chunk = CB + ((bi.to(tl.int64) * G + g) * nc + c) * Q * Q
    s_first = start
    if SPLIT_DECAY:
        # the slices wholly before this block: e^{cum_t - cum_s} = e^{cum_t - cum_r} e^{cum_r - cum_s} at its first
        # step r, both factors at most 1: a column weight of C B^T and, after them, a row weight of the sum (with
        # the entering state's term, whose e^{cum_t} splits the same way): BLOCK_K exps a slice, not BLOCK_M BLOCK_K,
        # and no mask. A block past L (longest-first's padding) stores nothing; its loads stay masked
        cum_r, cum_r_lo = cum_at(CUM, lo_off, row, t0)
        enter_w = tl.exp(cum_r + tl.zeros_like(cum_t))
        if HAS_SEQ:
            enter_w = tl.where(enter_ok, enter_w, 0.0)
        acc = mm(c_t, enter, DOT) * enter_w[:, None]
        for i in range(0, (t0 - start) // BLOCK_K):
            s = start + i * BLOCK_K + tl.arange(0, BLOCK_K)
            s_ok = s < L
            step_s = bi.to(tl.int64) * L + s
            cb = tl.load(cb_chunk + (t - start)[:, None] * Q + (s - start)[None, :])
            cum_s, cum_s_lo = cum_at(CUM, lo_off, row, s)
            w = tl.exp((cum_r - cum_s) + (cum_r_lo - cum_s_lo)) * tl.load(DTP + row + s)
            cbw = cb * w[None, :]
            if HAS_SEQ:
                cbw = tl.where(tl.load(SEQ + step_s, mask=s_ok, other=-2)[None, :] == seq_t[:, None], cbw, 0.0)
            x_s = tl.load(X + (step_s * SX + h * P)[:, None] + ps[None, :], mask=s_ok[:, None] & p_ok[None, :],
                          other=0.0)
            acc += mm(cbw, x_s, DOT)
        acc *= tl.exp((cum_t - cum_r) + (cum_t_lo - cum_r_lo))[:, None]
        s_first = start + (t0 - start) // BLOCK_K * BLOCK_K
    else:
        scale = tl.exp(cum_t)
        if HAS_SEQ:
            scale = tl.where(enter_ok, scale, 0.0)
        acc = mm(c_t, enter, DOT) * scale[:, None]

    # inside the chunk: (C B^T) masked and decayed, times x
    for s0 in range(s_first, tl.minimum(t0 + BLOCK_M, L), BLOCK_K):
        s = s0 + tl.arange(0, BLOCK_K)
        s_ok = s < L
        step_s = bi.to(tl.int64) * L + s
        cb = tl.load(cb_chunk + (t - start)[:, None] * Q + (s - start)[None, :])   # (BLOCK_M, BLOCK_K)
        keep = (s[None, :] <= t[:, None]) & s_ok[None, :]
        if HAS_SEQ:
            keep &= tl.load(SEQ + step_s, mask=s_ok, other=-2)[None, :] == seq_t[:, None]
        cum_s, cum_s_lo = cum_at(CUM, lo_off, row, s)
        dt_s = tl.load(DTP + row + s)
        decay = tl.exp(tl.where(keep, (cum_t[:, None] - cum_s[None, :]) + (cum_t_lo[:, None] - cum_s_lo[None, :]),
                                  float("-inf"))) * dt_s[None, :]
        x_s = tl.load(X + (step_s * SX + h * P)[:, None] + ps[None, :], mask=s_ok[:, None] & p_ok[None, :], other=0.0)
        acc += mm(cb * decay, x_s, DOT)

    tp_ok = t_ok[:, None] & p_ok[None, :]
    at = ((step_t * H + h) * P)[:, None] + ps[None, :]
    if HAS_D or HAS_DIAG:
        skip = tl.zeros([BLOCK_M, BLOCK_P], dtype=tl.float32)
        if HAS_D:
            if D_PER_CHANNEL:
                skip += tl.load(D + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :]
            else:
                skip += tl.load(D + h).to(tl.float32)
        if HAS_DIAG:  # a per-step weight of x_t (Mamba-3's diagonal correction)
            skip += tl.load(DIAG + row + t)[:, None]
        acc += skip * tl.load(X + (step_t * SX + h * P)[:, None] + ps[None, :], mask=tp_ok, other=0.0).to(tl.float32)
    if STORE_Y:
        tl.store(Y + at, acc.to(Y.dtype.element_ty), mask=tp_ok)
    if HAS_Z:
        z = tl.load(Z + (step_t * SZ + h * P)[:, None] + ps[None, :], mask=tp_ok, other=0.0).to(tl.float32)
        acc = acc * z * tl.sigmoid(z)
    if HAS_NORM:   # the gated norm's deferred form (norm_defer.py): this tile's sum of squares, then the norm's weight
        blocks = tl.num_programs(2)
        tl.store(SS + (step_t * H + h) * blocks + tl.program_id(2), tl.sum(tl.where(tp_ok, acc * acc, 0.0), axis=1),
                 mask=t_ok)
        acc = acc * tl.load(NORM_W + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(OUT + at, acc.to(OUT.dtype.element_ty), mask=tp_ok)


chunk_scan_kernel = Kernel(_chunk_scan_fwd_kernel, flags=dict(HAS_D="D", HAS_DIAG="DIAG", HAS_Z="Z", HAS_SEQ="SEQ",
                                                           HAS_NORM="NORM_W"),
                           hints=dict(SX_A="SX", SC_A="SC", SZ_A="SZ"))
