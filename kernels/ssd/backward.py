"""The backward's two pair stages: the gradients that need the ``(t, s)`` pairs inside each chunk.

With ``dy`` the gradient of the pre-gate output, ``ds_c`` that of chunk ``c``'s end state (from the
reversed state passing), ``M_ts`` the causal, same-sequence mask and ``T_ts = M_ts (C_t.B_s)
exp(cum_t - cum_s) dt_s (dy_t.x_s)``:

* ``_dx_db_kernel`` (rows ``s``, walking ``t >= s``):
  ``v_s = sum_t M_ts (C_t.B_s) exp(cum_t - cum_s) dy_t + w_s exp(cum_end - cum_s) ds_c B_s``,
  ``dx_s = dt_s v_s + D dy_s``, ``dB_s = sum_t M_ts exp(..) dt_s (dy_t.x_s) C_t + w_s exp(..) dt_s ds_c^T x_s``,
  and for the step sizes ``x_s.v_s`` (the direct ``d dt_s``), ``sum_t T_ts`` and ``U_s = dt_s w_s exp(..) x_s.ds_c B_s``.
  The sums over ``s`` of ``T_ts`` go to ``rs[t]`` with fp32 atomics.
* ``_dc_kernel`` (rows ``t``, walking ``s <= t``): ``dC_t = sum_s M_ts exp(..) dt_s (dy_t.x_s) B_s
  + exp(cum_t) h_enter^T dy_t`` and the gradient of ``cum_t`` through the entering state's term.

``T`` is formed once per pair in fp32 from the same products, so the two sums that cancel when the
step-size gradient is assembled (``bwd_dt.py``) cancel to fp32 rounding, whatever precision the
tensor-core products had. A program loops over ``HEADS`` heads of one group and sums their ``dB``
(``dC``) in registers before writing one fp32 partial per head block.
"""
import triton
import triton.language as tl

from .common import chunk_bounds, mm


@triton.jit
def _rows(PTR, step, h, H, P, ps, ok, p_ok):
    """``(rows, BLOCK_P)`` of a ``(b, L, H, P)`` tensor."""
    return tl.load(PTR + ((step * H + h) * P)[:, None] + ps[None, :], mask=ok[:, None] & p_ok[None, :], other=0.0)


@triton.jit
def _group_rows(PTR, step, g, G, N, ns, ok, n_ok):
    """``(rows, BLOCK_N)`` of a ``(b, L, G, N)`` tensor."""
    return tl.load(PTR + ((step * G + g) * N)[:, None] + ns[None, :], mask=ok[:, None] & n_ok[None, :], other=0.0)


@triton.jit
def _dx_db_kernel(X, B, C, CB, DY, DTP, CUM, ADJ, D, SEQ, DX, DB_PART, DD_PART, RS, CS, US, XV,
                  L, H, G, P, N, Lp, nc, HEADS,
                  HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_SEQ: tl.constexpr, Q: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                  DOT: tl.constexpr):
    s0 = tl.program_id(0) * BLOCK_M
    c = s0 // Q
    n_hb = H // HEADS
    bi = tl.program_id(1) // n_hb
    hb = tl.program_id(1) % n_hb
    g = (hb * HEADS) // (H // G)
    start, end, _ = chunk_bounds(c, L, Q)
    cb_chunk = CB + ((bi.to(tl.int64) * G + g) * nc + c) * Q * Q
    s = s0 + tl.arange(0, BLOCK_M)
    s_ok = s < L
    ps = tl.arange(0, BLOCK_P)
    p_ok = ps < P
    ns = tl.arange(0, BLOCK_N)
    n_ok = ns < N
    step_s = bi.to(tl.int64) * L + s
    b_s = _group_rows(B, step_s, g, G, N, ns, s_ok, n_ok)
    in_end_seq = s_ok
    if HAS_SEQ:
        seq_s = tl.load(SEQ + step_s, mask=s_ok, other=-1)
        in_end_seq &= seq_s == tl.load(SEQ + bi.to(tl.int64) * L + end)
    db = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for i in range(HEADS):
        h = hb * HEADS + i
        bh = bi * H + h
        row = bh.to(tl.int64) * Lp
        cum_s = tl.load(CUM + row + s)
        dt_s = tl.load(DTP + row + s)
        x_s = _rows(X, step_s, h, H, P, ps, s_ok, p_ok)
        dy_s = _rows(DY, step_s, h, H, P, ps, s_ok, p_ok)
        v = tl.zeros([BLOCK_M, BLOCK_P], dtype=tl.float32)
        cs = tl.zeros([BLOCK_M], dtype=tl.float32)
        for t0 in range(s0, end + 1, BLOCK_K):
            t = t0 + tl.arange(0, BLOCK_K)
            t_ok = t <= end
            step_t = bi.to(tl.int64) * L + t
            c_t = _group_rows(C, step_t, g, G, N, ns, t_ok, n_ok)
            dy_t = _rows(DY, step_t, h, H, P, ps, t_ok, p_ok)
            keep = (t[None, :] >= s[:, None]) & t_ok[None, :] & s_ok[:, None]
            if HAS_SEQ:
                keep &= tl.load(SEQ + step_t, mask=t_ok, other=-2)[None, :] == seq_s[:, None]
            cum_t = tl.load(CUM + row + t)
            decay = tl.exp(tl.where(keep, cum_t[None, :] - cum_s[:, None], float("-inf")))
            bc = tl.load(cb_chunk + (t - start)[None, :] * Q + (s - start)[:, None], mask=t_ok[None, :],
                         other=0.0) * decay                                  # C_t . B_s at (s, t)
            v += mm(bc, dy_t, DOT)
            xdy = mm(x_s, tl.trans(dy_t), DOT) * dt_s[:, None]
            pair = bc * xdy
            cs += tl.sum(pair, axis=1)
            tl.atomic_add(RS + row + t, tl.sum(pair, axis=0), mask=t_ok, sem="relaxed")
            db += mm(xdy * decay, c_t, DOT)
        # through chunk c's end state
        adj = ADJ + (bh.to(tl.int64) * nc + c) * P * N
        pn_ok = p_ok[:, None] & n_ok[None, :]
        ds = tl.load(adj + ps[:, None] * N + ns[None, :], mask=pn_ok, other=0.0)      # (P, N)
        w = tl.where(in_end_seq, tl.exp(tl.load(CUM + row + end) - cum_s), 0.0)
        vs = mm(b_s, tl.trans(ds), DOT) * w[:, None]
        v += vs
        db += mm(x_s, ds, DOT) * (w * dt_s)[:, None]
        x32 = x_s.to(tl.float32)
        dy32 = dy_s.to(tl.float32)
        tl.store(US + row + s, tl.sum(x32 * vs, axis=1) * dt_s, mask=s_ok)
        tl.store(CS + row + s, cs, mask=s_ok)
        tl.store(XV + row + s, tl.sum(x32 * v, axis=1), mask=s_ok)
        dx = dt_s[:, None] * v
        if HAS_D:
            if D_PER_CHANNEL:
                dx += tl.load(D + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :] * dy32
            else:
                dx += tl.load(D + h).to(tl.float32) * dy32
            part = DD_PART + ((tl.program_id(0).to(tl.int64) * (tl.num_programs(1) // n_hb) + bi) * H + h) * P
            tl.store(part + ps, tl.sum(dy32 * x32, axis=0), mask=p_ok)
        tl.store(DX + ((step_s * H + h) * P)[:, None] + ps[None, :], dx.to(DX.dtype.element_ty),
                 mask=s_ok[:, None] & p_ok[None, :])
    tl.store(DB_PART + ((step_s * n_hb + hb) * N)[:, None] + ns[None, :], db, mask=s_ok[:, None] & n_ok[None, :])


@triton.jit
def _dc_kernel(X, B, C, DY, DTP, CUM, HS, SEQ, DC_PART, INTER,
               L, H, G, P, N, Lp, nc, HEADS,
               HAS_SEQ: tl.constexpr, Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
               BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr):
    t0 = tl.program_id(0) * BLOCK_M
    c = t0 // Q
    n_hb = H // HEADS
    bi = tl.program_id(1) // n_hb
    hb = tl.program_id(1) % n_hb
    g = (hb * HEADS) // (H // G)
    start, _, prev = chunk_bounds(c, L, Q)
    t = t0 + tl.arange(0, BLOCK_M)
    t_ok = t < L
    ps = tl.arange(0, BLOCK_P)
    p_ok = ps < P
    ns = tl.arange(0, BLOCK_N)
    n_ok = ns < N
    step_t = bi.to(tl.int64) * L + t
    c_t = _group_rows(C, step_t, g, G, N, ns, t_ok, n_ok)
    in_prev_seq = t_ok
    if HAS_SEQ:
        seq_t = tl.load(SEQ + step_t, mask=t_ok, other=-1)
        in_prev_seq &= seq_t == tl.load(SEQ + bi.to(tl.int64) * L + prev)
    dc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for i in range(HEADS):
        h = hb * HEADS + i
        bh = bi * H + h
        row = bh.to(tl.int64) * Lp
        cum_t = tl.load(CUM + row + t)
        dy_t = _rows(DY, step_t, h, H, P, ps, t_ok, p_ok)
        enter = tl.load(HS + ((bh.to(tl.int64) * nc + c) * P + ps[:, None]) * N + ns[None, :],
                        mask=p_ok[:, None] & n_ok[None, :], other=0.0)          # (P, N)
        scale = tl.where(in_prev_seq, tl.exp(cum_t), 0.0)
        dyh = mm(dy_t, enter, DOT) * scale[:, None]
        tl.store(INTER + row + t, tl.sum(dyh * c_t.to(tl.float32), axis=1), mask=t_ok)
        dc += dyh
        for s0 in range(start, tl.minimum(t0 + BLOCK_M, L), BLOCK_K):
            s = s0 + tl.arange(0, BLOCK_K)
            s_ok = s < L
            step_s = bi.to(tl.int64) * L + s
            keep = (s[None, :] <= t[:, None]) & s_ok[None, :]
            if HAS_SEQ:
                keep &= tl.load(SEQ + step_s, mask=s_ok, other=-2)[None, :] == seq_t[:, None]
            cum_s = tl.load(CUM + row + s)
            dt_s = tl.load(DTP + row + s)
            x_s = _rows(X, step_s, h, H, P, ps, s_ok, p_ok)
            decay = tl.exp(tl.where(keep, cum_t[:, None] - cum_s[None, :], float("-inf"))) * dt_s[None, :]
            dyx = mm(dy_t, tl.trans(x_s), DOT)
            dc += mm(dyx * decay, _group_rows(B, step_s, g, G, N, ns, s_ok, n_ok), DOT)
    tl.store(DC_PART + ((step_t * n_hb + hb) * N)[:, None] + ns[None, :], dc, mask=t_ok[:, None] & n_ok[None, :])
