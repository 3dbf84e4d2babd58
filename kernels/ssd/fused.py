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
"""
import torch
import triton
import triton.language as tl

from ..activations import silu_and_slope
from ..host import cdiv, next_power_of_2
from ..tuning import Launch, OneLaunch, TunableKernel, bucket
from .common import mm
from .cumsum import raw_step, softplus_clamp


@triton.jit
def _ssd_fused_fwd_kernel(
    # pointers
    X, DT, DT_BIAS, A, B, C, D, Z, H0, OUT, FINAL,
    # sizes, the step strides of x, z, B, C and dt (a column slice of a projection has its own), the clamp
    L, H, G, P, N, SX, SZ, SB, SC, SDT, lo, hi,
    # meta-parameters
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr, HAS_D: tl.constexpr,
    D_PER_CHANNEL: tl.constexpr, HAS_Z: tl.constexpr, HAS_H0: tl.constexpr, HAS_FINAL: tl.constexpr,
    Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr, STATE_T: tl.constexpr,
):
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
    if HAS_H0:
        state = tl.load(H0 + state_at, mask=pn_ok, other=0.0).to(tl.float32)
    elif STATE_T:
        state = tl.zeros([BLOCK_N, BLOCK_P], dtype=tl.float32)
    else:
        state = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    a_h = tl.load(A + h).to(tl.float32)
    if HAS_D:
        if D_PER_CHANNEL:
            d_h = tl.load(D + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)[None, :]
        else:
            d_h = tl.load(D + h).to(tl.float32)
    r = tl.arange(0, Q)
    causal = r[:, None] >= r[None, :]
    for t0 in range(0, L, Q):
        t = t0 + r
        ok = t < L
        dt, _ = softplus_clamp(raw_step(DT, DT_BIAS, bi, h, t, ok, L, SDT, HAS_BIAS), lo, hi, SOFTPLUS, CLAMP)
        dt = tl.where(ok, dt, 0.0)
        a = (dt * a_h).to(tl.float64)
        cum = tl.cumsum(a, axis=0)
        total = tl.sum(a, axis=0)
        c_hi = cum.to(tl.float32)
        c_lo = (cum - c_hi.to(tl.float64)).to(tl.float32)
        step = bi.to(tl.int64) * L + t
        qn_ok = ok[:, None] & n_ok[None, :]
        if STATE_T:
            b_t = tl.load(B + (step * SB + g * N)[None, :] + ns[:, None], mask=n_ok[:, None] & ok[None, :],
                          other=0.0)                                                           # (BLOCK_N, Q)
        else:
            b_c = tl.load(B + (step * SB + g * N)[:, None] + ns[None, :], mask=qn_ok, other=0.0)   # (Q, BLOCK_N)
        c_c = tl.load(C + (step * SC + g * N)[:, None] + ns[None, :], mask=qn_ok, other=0.0)
        xp = ((step * H + h) * P)[:, None] + ps[None, :]                                        # (Q, BLOCK_P) of OUT
        qp_ok = ok[:, None] & p_ok[None, :]
        x_c = tl.load(X + (step * SX + h * P)[:, None] + ps[None, :], mask=qp_ok, other=0.0)

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
    if HAS_FINAL:
        tl.store(FINAL + state_at, state, mask=pn_ok)


def _rule(p, mode):
    # problem: (b, L, H, P, G, N, dtype, has_z); the interpreter takes small tiles so short tests cross chunks
    if mode.interpreted:
        return dict(Q=16, BLOCK_P=16, num_warps=4, num_stages=1, STATE_T=False)
    # tuned on the H200 (bench/tune_fused.py, 2026-12-02, H=64 P=64 N=128 bf16): 32-step chunks, 4 warps,
    # two stages everywhere; the channel tile the widest that still gives a program per SM (b=1: 16,
    # b=2: 32, b=8: 64). A wide state (N > 128) holds the tile to 32 channels (registers).
    b, _, H, P, _, N = p[:6]
    widest = min(_widest(P), 32 if N > 128 else 64)
    block_p = next((bp for bp in (64, 32) if bp <= widest and b * H * cdiv(P, bp) >= mode.sm_count), 16)
    return dict(Q=32, BLOCK_P=min(block_p, widest), num_warps=4, num_stages=2, STATE_T=False)


def _widest(P: int) -> int:
    return min(64, max(16, next_power_of_2(P)))


def _alternatives(p, mode):
    if mode.interpreted:
        return []
    # narrow channel tiles: more programs for a short batch (each recomputes its chunk's C B^T); the
    # transposed state only at the measured best chunk, warps and stages (it is untimed: the tuner decides)
    widest = _widest(p[3])
    tiles = sorted({16, 32, widest})
    return ([dict(Q=q, BLOCK_P=bp, num_warps=w, num_stages=st, STATE_T=False)
             for q in (32, 64) for bp in tiles if bp <= widest for w in (4, 8) for st in (1, 2)]
            + [dict(Q=32, BLOCK_P=bp, num_warps=4, num_stages=2, STATE_T=True) for bp in tiles if bp <= widest])


def _key(p):
    b, L, *rest = p
    return (bucket(b), bucket(L), *rest)


ssd_fused_fwd_kernel = TunableKernel(
    "ssd_fused_fwd", _ssd_fused_fwd_kernel, rule=_rule, alternatives=_alternatives, key=_key,
    grid=lambda p, kw: (cdiv(p[3], kw["BLOCK_P"]), p[0] * p[2]),
    flags=dict(HAS_BIAS="DT_BIAS", HAS_D="D", HAS_Z="Z", HAS_H0="H0", HAS_FINAL="FINAL"))


def use_fused(bsz: int, L: int, H: int, sm_count: int) -> bool:
    """Whether the one-launch forward suits a problem. A program walks its row's chunks in order, about
    2.8 µs a 32-step chunk on the H200, so long rows lose to the staged launches unless many (row, head)
    programs share the GPU. Measured there (2026-12-02, bench/tune_fused.py, both tuned, H=64): b=1 L=512
    and 2048, 116 and 178 µs against 250 and 266 µs staged; b=8 L=4096, 0.88 against 1.08 ms; but b=1
    L=8192, 0.68 against 0.34 ms, and b=2 L=16384, 1.42 against 1.08 ms."""
    return L <= 2048 or (L <= 4096 and bsz * H >= 2 * sm_count)


def fused_forward(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot):
    """``out (b, L, H, P)`` in ``x``'s dtype (contiguous) and the final state ``(b, H, P, N)`` fp32. ``x, z,
    B, C, dt`` are contiguous past their step dimension, each with its own step stride (the op layer's
    ``step_strided``); ``lo, hi, clamp`` the step-size clamp (``launch._limits``); ``dot`` the tensor-core
    dtype."""
    bsz, L, H, P = x.shape
    N = B.shape[3]
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    final = torch.empty((bsz, H, P, N), device=x.device, dtype=torch.float32)
    problem, args = _fused_args(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot)
    ssd_fused_fwd_kernel.launch(problem, None, **args, OUT=out, FINAL=final)
    return out, final


def _fused_args(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot):
    """``(problem, the kernel's arguments but OUT and FINAL)`` of :func:`fused_forward`."""
    bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    return (bsz, L, H, P, G, N, x.dtype, z is not None), dict(
        X=x, DT=dt, DT_BIAS=dt_bias, A=A, B=B, C=C, D=D, Z=z, H0=initial_states, L=L, H=H, G=G, P=P, N=N,
        SX=x.stride(1), SZ=z.stride(1) if z is not None else 0, SB=B.stride(1), SC=C.stride(1), SDT=dt.stride(1),
        lo=lo, hi=hi, SOFTPLUS=dt_softplus, CLAMP=clamp, D_PER_CHANNEL=D is not None and D.dim() == 2,
        BLOCK_N=max(16, next_power_of_2(N)), DOT=dot)


def fused_plan(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot,
               final: bool = True) -> OneLaunch:
    """:func:`fused_forward` as an op plan (``ssm_triton/ops/_plans.py``) for inputs of these shapes, strides,
    dtypes and device: ``plan((x, dt, A, B, C, D, z, dt_bias, initial_states)) -> [out, final]``; without
    ``final`` the state is neither allocated nor stored (``[out]``: one ``torch.empty`` less, 3-5 us of the
    H200's host)."""
    bsz, L, H, P = x.shape
    N = B.shape[3]
    problem, args = _fused_args(x, dt, A, B, C, D, z, dt_bias, initial_states, dt_softplus, lo, hi, clamp, dot)
    names = ("X", "DT", "A", "B", "C", "D", "Z", "DT_BIAS", "H0")
    take = tuple(i for i, t in enumerate((x, dt, A, B, C, D, z, dt_bias, initial_states)) if t is not None)
    outs = ((x.shape, x.dtype), ((bsz, H, P, N), torch.float32)) if final else ((x.shape, x.dtype),)
    if not final:
        args["FINAL"] = None
    launch = Launch(ssd_fused_fwd_kernel, problem, args, tuple(names[i] for i in take) + ("OUT", "FINAL")[:len(outs)])
    return OneLaunch(launch, take, outs, x.device)
