"""One decode step of a selective SSM, in place: ``selective_state_update`` (mamba_ssm's semantics).

Layout: the launcher views every input as multi-head, ``state (cache, H, P, N)``, ``x, dt, z (b, H, P)``,
``A (H, P, N)``, ``B, C (b, G, N)``, ``D, dt_bias (H, P)`` (a single-head call gets a head axis of size
1), and passes every stride: Mamba-2's step broadcasts ``dt``, ``A``, ``D`` and ``dt_bias`` over the
head dimension and state with stride-0 views, and the state is updated where it lies.

A program owns one (batch row, head) and ``BLOCK_P`` channels with all ``N`` states: it reads its
``(BLOCK_P, N)`` slice of the state once, writes it once, and writes ``BLOCK_P`` outputs. The step is
memory-bound: the state read and write are nearly all of the bytes.
"""
import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from .activations import softplus
from .hints import multiple
from .host import cdiv, next_power_of_2
from .tuning import Launch, OneLaunch, TunableKernel, bucket


@triton.jit
def _state_update_kernel(
    # pointers (D, Z, DT_BIAS, IDX, DT_W may be None)
    S, X, DT, A, B, C, D, Z, DT_BIAS, IDX, OUT, DT_W,
    # sizes (n_cache: the state's rows, the bound of IDX's values; R: DT's low rank under DT_LOW)
    P, N, heads_per_group, n_cache, R,
    # strides, named <tensor>_<axis>
    s_b, s_h, s_p, s_n, x_b, x_h, x_p, dt_b, dt_h, dt_p, a_h, a_p, a_n,
    b_b, b_g, b_n, c_b, c_g, c_n, d_h, d_p, z_b, z_h, z_p, bias_h, bias_p, o_b, o_h, o_p,
    # meta-parameters
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_IDX: tl.constexpr, A_PER_HEAD: tl.constexpr, DT_PER_HEAD: tl.constexpr, A_LOG: tl.constexpr, PDL: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, DT_LOW: tl.constexpr = False, BLOCK_R: tl.constexpr = 16,
    x_b_A: tl.constexpr = 1, b_b_A: tl.constexpr = 1, c_b_A: tl.constexpr = 1, z_b_A: tl.constexpr = 1,
    NORM_W=None, SS=None, HAS_NORM: tl.constexpr = False,
):
    """``NORM_W (H P,)`` with ``HAS_NORM`` (and ``Z``): the gated norm deferred (``ops/norm_defer.py``): ``OUT`` gets
    ``g w`` for the gated output ``g`` and ``SS (b, H P)`` fp32 each channel's ``g^2``, whose row sums the next
    add+norm takes (a row's sum, whatever the programs' channel tiles)."""
    # the row strides' divisors (hints.py): a step's x, B, C, z are read in place from in_proj's output rows
    x_b, b_b, c_b, z_b = multiple(x_b, x_b_A), multiple(b_b, b_b_A), multiple(c_b, c_b_A), multiple(z_b, z_b_A)
    # heads on the grid's second axis, rows on its third: programs launched one after another walk the state as it
    # lies, (b, H, P, N). With rows on the second axis each next program read 2 MB further on at Mamba-2's b64 H64
    # shape, where the op took 91.4% of a copy's bandwidth replayed on an H100 and a probe of the same tiles
    # walking in order 96.4% (2026-12-08, bench/results/gpu-2026-12-08/probe_state_bw.py)
    h = tl.program_id(1).to(tl.int64)
    bi = tl.program_id(2).to(tl.int64)
    g = h // heads_per_group
    ps = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    ns = tl.arange(0, BLOCK_N)
    p_ok = ps < P
    n_ok = ns < N
    pn_ok = p_ok[:, None] & n_ok[None, :]
    row = bi
    if HAS_IDX:
        # the indices are checked asynchronously, so a bad one may arrive: its row is neither read nor
        # written, and its output is NaN
        row = tl.load(IDX + bi).to(tl.int64)
        rows = ps * 0 + row    # as a vector: the interpreter rejects a scalar bool mixed into a mask
        row_ok = (rows >= 0) & (rows < n_cache)
        pn_ok = pn_ok & row_ok[:, None]
        row = tl.where((row >= 0) & (row < n_cache), row, 0)
    at = S + row * s_b + h * s_h + ps[:, None] * s_p + ns[None, :] * s_n
    state = tl.load(at, mask=pn_ok, other=0.0).to(tl.float32)
    if PDL:   # the fused decode step: the state is read before waiting (the previous step's update has ended:
              # the kernel before this one lets it start only after its own wait, kernels/fused_step.py's HOLD)
        gdc_launch_dependents()
        gdc_wait()
    x = tl.load(X + bi * x_b + h * x_h + ps * x_p, mask=p_ok, other=0.0).to(tl.float32)
    # Mamba-2 passes one dt (and dt_bias, A) per head as stride-0 views: one scalar load then, instead
    # of a broadcast load per element of the tile
    if DT_PER_HEAD:
        dt = tl.load(DT + bi * dt_b + h * dt_h).to(tl.float32)
        if HAS_BIAS:
            dt += tl.load(DT_BIAS + h * bias_h).to(tl.float32)
    elif DT_LOW:
        # Mamba-1's dt_proj inside the update: DT holds the low-rank rows (b, R), DT_W the weight (H * P, R) packed;
        # rounded to the weight's dtype, as the projection's own launch stores it
        dt = tl.zeros([BLOCK_P], dtype=tl.float32)
        w_rows = DT_W + (h * P + ps).to(tl.int64)[:, None] * R
        for r0 in range(0, R, BLOCK_R):
            rs = r0 + tl.arange(0, BLOCK_R)
            r_ok = rs < R
            low = tl.load(DT + bi * dt_b + rs, mask=r_ok, other=0.0).to(tl.float32)
            w = tl.load(w_rows + rs[None, :], mask=p_ok[:, None] & r_ok[None, :], other=0.0).to(tl.float32)
            dt += tl.sum(w * low[None, :], axis=1)
        dt = dt.to(DT_W.dtype.element_ty).to(tl.float32)
        if HAS_BIAS:
            dt += tl.load(DT_BIAS + h * bias_h + ps * bias_p, mask=p_ok, other=0.0).to(tl.float32)
    else:
        dt = tl.load(DT + bi * dt_b + h * dt_h + ps * dt_p, mask=p_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += tl.load(DT_BIAS + h * bias_h + ps * bias_p, mask=p_ok, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = softplus(dt)
    if DT_PER_HEAD:
        dt = tl.zeros([BLOCK_P], dtype=tl.float32) + dt
    if A_PER_HEAD:
        a = tl.load(A + h * a_h).to(tl.float32)
        if A_LOG:   # Mamba-2's A_log as the module keeps it: the step needs no launch for -exp(A_log)
            a = -tl.exp(a)
        decay = tl.exp(a * dt)[:, None]
    else:
        a = tl.load(A + h * a_h + ps[:, None] * a_p + ns[None, :] * a_n, mask=pn_ok, other=0.0).to(tl.float32)
        if A_LOG:
            a = -tl.exp(a)
        decay = tl.exp(a * dt[:, None])
    b = tl.load(B + bi * b_b + g * b_g + ns * b_n, mask=n_ok, other=0.0).to(tl.float32)
    c = tl.load(C + bi * c_b + g * c_g + ns * c_n, mask=n_ok, other=0.0).to(tl.float32)
    state = decay * state + (dt * x)[:, None] * b[None, :]
    # in place: where the tile is smaller than the block, several threads hold (and read) each element and one
    # stores it; the output's reduction may take a copy from a thread whose read came after that store (the
    # Mamba-3 step did so on the H200, 2026-12-04), so every read is done first
    tl.debug_barrier()
    tl.store(at, state.to(S.dtype.element_ty), mask=pn_ok)
    out = tl.sum(state * c[None, :], axis=1)
    if HAS_D:
        out += tl.load(D + h * d_h + ps * d_p, mask=p_ok, other=0.0).to(tl.float32) * x
    if HAS_Z:
        z = tl.load(Z + bi * z_b + h * z_h + ps * z_p, mask=p_ok, other=0.0).to(tl.float32)
        out = out * z * tl.sigmoid(z)
    if HAS_NORM:
        channel = (bi * tl.num_programs(1) + h) * P + ps
        tl.store(SS + channel, out * out, mask=p_ok)
        out = out * tl.load(NORM_W + h * P + ps, mask=p_ok, other=0.0).to(tl.float32)
    if HAS_IDX:
        out = tl.where(row_ok, out, float("nan"))
    tl.store(OUT + bi * o_b + h * o_h + ps * o_p, out.to(OUT.dtype.element_ty), mask=p_ok)


def _strides(t, n):
    return tuple(t.stride()) if t is not None else (0,) * n


def _rule(problem, mode):
    """A ``(BLOCK_P, N)`` fp32 tile near 4K elements (registers, not local memory), four warps. On the
    H100 every shape with at least 4 elements a thread ran within 2% of the others
    (bench/sweep_blocks.py, 2026-11-25)."""
    low = problem[9] if len(problem) > 11 else None   # ("dt_proj", R): the low-rank dt's form
    if mode.interpreted:
        return dict(BLOCK_P=16, num_warps=1)   # the LM tests step dozens of heads: few programs
    P, N = problem[1], problem[2]
    kw = dict(BLOCK_P=max(1, min(next_power_of_2(P), 4096 // next_power_of_2(N))), num_warps=4)
    if low:
        # the dt_proj rows (BLOCK_P, R) in one tile near 4K elements too, loaded at once: at Mamba-1's N 16 and
        # rank 48 that is 64 channels a program (24 programs at batch 1 for 1536 channels, not 6 of 256)
        r = next_power_of_2(low[1])
        kw.update(BLOCK_P=max(16, min(kw["BLOCK_P"], 4096 // max(r, next_power_of_2(N)))), BLOCK_R=min(r, 256))
    if problem[8]:   # pdl
        kw["launch_pdl"] = True
    return kw


def _alternatives(problem, mode):
    """Half and twice the tile, two or eight warps."""
    rule_p = _rule(problem, mode)["BLOCK_P"]
    alts = [dict(BLOCK_P=max(1, rule_p // 2)), dict(num_warps=8), dict(num_warps=2)]
    if rule_p * 2 <= next_power_of_2(problem[1]):
        alts.append(dict(BLOCK_P=rule_p * 2, num_warps=8))
    return alts


def _key(problem):
    rows, P, N, *rest = problem
    return (bucket(rows), bucket(P), N, *rest)


# the kernel updates the state in place: the tuner restores it around each timed run
state_update_kernel = TunableKernel(
    "state_update", _state_update_kernel, rule=_rule, alternatives=_alternatives, key=_key, restore=("S",),
    grid=lambda problem, kw: (cdiv(problem[1], kw["BLOCK_P"]), problem[-1], problem[-2]),
    flags=dict(HAS_D="D", HAS_Z="Z", HAS_BIAS="DT_BIAS", HAS_IDX="IDX", DT_LOW="DT_W", HAS_NORM="NORM_W"),
    hints=dict(x_b_A="x_b", b_b_A="b_b", c_b_A="c_b", z_b_A="z_b"))


def state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, config=None, a_is_log=False,
                 pdl=False, dt_weight=None, norm_w=None):
    """Multi-head views as in the module docstring; updates ``state`` in place and returns
    ``out (b, H, P)`` in ``x``'s dtype. ``config`` (launch keywords) overrides the tuned choice (sweeps;
    bench/sweep_blocks.py on the H100, 2026-11-25: every pair with >= 4 elements a thread within 2% of
    each other at the headline shape; evict-first / streaming-store hints on the state cost 4%).
    ``a_is_log``: ``A`` holds ``log(-A)`` (the fused Mamba-2 step passes the module's ``A_log``). ``pdl``:
    launched as a programmatic dependent launch, the state read before waiting on the previous kernel
    (the fused steps, ``kernels/fused_step.py``; never with ``state_batch_indices``). ``dt_weight (H * P, R)``,
    packed: ``dt`` holds low-rank rows ``(b, R)`` (row stride any, packed after it) that the kernel projects (Mamba-1's
    dt_proj, its output rounded to the weight's dtype). ``norm_w (H P,)`` (with ``z``): the gated norm deferred,
    ``(out, ss (b, H P) fp32)`` returned (the kernel's ``HAS_NORM``)."""
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    problem, args = state_update_args(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, out,
                                      a_is_log, pdl, dt_weight)
    if norm_w is not None:
        ss = torch.empty((x.shape[0], x.shape[1] * x.shape[2]), device=x.device, dtype=torch.float32)
        state_update_kernel.launch(problem, config, **{**args, "NORM_W": norm_w, "SS": ss})
        return out, ss
    state_update_kernel.launch(problem, config, **args)
    return out


def update_plan(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, out_shape, a_is_log=False) -> OneLaunch:
    """:func:`state_update` (multi-head views, no cache indices) as an op plan (``ssm_triton/ops/_plans.py``),
    ``plan((state, x, dt, A, B, C, D, z, dt_bias)) -> [out]`` with ``out`` of ``out_shape`` (the caller's, which
    a single-head call's views share their layout with), for tensors of these shapes, strides and dtypes."""
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)   # stands in for the strides of each call's
    problem, args = state_update_args(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, None, out, a_is_log)
    names = ("S", "X", "DT", "A", "B", "C", "D", "Z", "DT_BIAS")
    take = tuple(i for i, t in enumerate((state, x, dt, A, B, C, D, z, dt_bias)) if t is not None)
    launch = Launch(state_update_kernel, problem, args, tuple(names[i] for i in take) + ("OUT",))
    return OneLaunch(launch, take, ((tuple(out_shape), x.dtype),), x.device)


def state_update_args(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices, out, a_is_log=False,
                      pdl=False, dt_weight=None):
    """``(problem, launch arguments)`` of :func:`state_update` writing into ``out (b, H, P)`` (the fused
    steps' plans, ``ops/fused_step.py``, bind them once)."""
    bsz, H, P = x.shape
    N = state.shape[-1]
    G = B.shape[1]
    # one stride() call per tensor: each call costs about half a microsecond of host time, and this runs per token
    s_b, s_h, s_p, s_n = state.stride()
    x_b, x_h, x_p = x.stride()
    if dt_weight is not None:   # low-rank rows (b, R): a batch stride, nothing per head or channel
        dt_b, dt_h, dt_p = dt.stride(0), 0, 1
    else:
        dt_b, dt_h, dt_p = dt.stride()
    a_h, a_p, a_n = A.stride()
    b_b, b_g, b_n = B.stride()
    c_b, c_g, c_n = C.stride()
    d_h, d_p = _strides(D, 2)
    z_b, z_h, z_p = _strides(z, 3)
    bias_h, bias_p = _strides(dt_bias, 2)
    o_b, o_h, o_p = out.stride()
    a_per_head = a_p == 0 and a_n == 0
    dt_per_head = dt_weight is None and dt_p == 0 and (dt_bias is None or bias_p == 0)
    low = dt_weight is not None
    # the low-rank form's key has one entry more (the others' keys stay as their tuning caches hold them)
    problem = (bsz * H, P, N, state.dtype, x.dtype, a_per_head, dt_per_head, a_is_log, pdl) \
        + ((("dt_proj", dt_weight.shape[1]),) if low else ()) + (bsz, H)
    return problem, dict(
        S=state, X=x, DT=dt, A=A, B=B, C=C, D=D, Z=z, DT_BIAS=dt_bias, IDX=state_batch_indices, OUT=out, DT_W=dt_weight,
        P=P, N=N, heads_per_group=H // G, n_cache=state.shape[0], R=dt_weight.shape[1] if low else 1,
        s_b=s_b, s_h=s_h, s_p=s_p, s_n=s_n, x_b=x_b, x_h=x_h, x_p=x_p, dt_b=dt_b, dt_h=dt_h, dt_p=dt_p,
        a_h=a_h, a_p=a_p, a_n=a_n, b_b=b_b, b_g=b_g, b_n=b_n, c_b=c_b, c_g=c_g, c_n=c_n, d_h=d_h, d_p=d_p,
        z_b=z_b, z_h=z_h, z_p=z_p, bias_h=bias_h, bias_p=bias_p, o_b=o_b, o_h=o_h, o_p=o_p,
        SOFTPLUS=dt_softplus, A_PER_HEAD=a_per_head, DT_PER_HEAD=dt_per_head, A_LOG=a_is_log, PDL=pdl, BLOCK_N=next_power_of_2(N),
        NORM_W=None, SS=None)
