"""Gated RMSNorm (Mamba-2's ``RMSNormGated``), forward and backward; public as ``ssm_triton.rmsnorm_fn``.

Rows are the flattened leading dims of ``x (..., F)``; each row splits into ``F / group_size`` groups,
each normalised on its own. A forward program owns ``BLOCK_R`` rows of one group, the whole group in
registers: one read of ``x`` (and ``z``), one write of ``y``, and the per-row ``1/rms`` kept for the
backward. With ``u = x * silu(z)`` (gate first) or ``u = x``:

    n = u / rms(u),  o = n w + b,  y = o * silu(z) (gate after) or o

and backward ``do = dy * (silu(z) or 1)``, ``dw = sum do n``, ``db = sum do``,
``du = (do w - n mean(do w n)) / rms``, then through the gate. In the backward a program loops over
row blocks, summing ``dw``/``db`` in registers; the per-program fp32 partials are added in a fixed
order afterwards (deterministic).
"""
import torch
import triton
import triton.language as tl

from .activations import silu_and_slope
from .hints import multiple
from .host import cdiv, next_power_of_2
from .tuning import Launch, OneLaunch, TunableKernel, bucket, run_mode


@triton.jit
def _tile(group_size, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """A program's rows, its group, the group's columns and which of them are real."""
    grp = tl.program_id(1)
    lane = tl.arange(0, BLOCK_G)
    return tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R), grp, grp * group_size + lane, lane < group_size


@triton.jit
def _load_rows(PTR, rows, cols, stride, ok):
    return tl.load(PTR + rows.to(tl.int64)[:, None] * stride + cols[None, :], mask=ok, other=0.0).to(tl.float32)


@triton.jit
def _rmsnorm_fwd_kernel(
    X, Z, W, BIAS, Y, RSTD,           # pointers: X, Z, Y (R, F); W, BIAS (F,); RSTD (R, F / group_size)
    RES, RES_OUT,                     # the residual stream in and out (R, F) contiguous, or None
    R, F, SX, SZ, group_size, eps,    # sizes, the row strides of X and Z (Y is contiguous), the norm's epsilon
    HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
    STORE_RES: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr, HAS_RSTD: tl.constexpr,
    SX_A: tl.constexpr = 1, SZ_A: tl.constexpr = 1, F_A: tl.constexpr = 1,
    SS=None, ss_w=1, ss_dim=1.0, ss_eps=0.0, HAS_SCALE: tl.constexpr = False, BLOCK_S: tl.constexpr = 1,
):
    """``SS (R, ss_w)`` fp32 with ``HAS_SCALE``: ``x`` is an out_proj output whose gated norm was deferred
    (``ops/norm_defer.py``), each row scaled by ``1 / sqrt(sum(SS row) / ss_dim + ss_eps)`` before anything else."""
    # the row strides' divisors (hints.py): z is a column slice of in_proj's output, 3352 wide in the 130M Mamba2
    SX, SZ, F = multiple(SX, SX_A), multiple(SZ, SZ_A), multiple(F, F_A)
    rows, grp, cols, c_ok = _tile(group_size, BLOCK_R, BLOCK_G)
    ok = (rows < R)[:, None] & c_ok[None, :]
    u = _load_rows(X, rows, cols, SX, ok)
    if HAS_SCALE:
        k = tl.arange(0, BLOCK_S)
        parts = tl.load(SS + rows.to(tl.int64)[:, None] * ss_w + k[None, :], mask=(rows < R)[:, None] & (k < ss_w)[None, :],
                        other=0.0)
        u = u * (1.0 / tl.sqrt(tl.sum(parts, axis=1) / ss_dim + ss_eps))[:, None]
    if STORE_RES:   # a pre-norm block's "residual = x + residual", stored in its dtype, then normalised as x's
        if HAS_RES:
            u += _load_rows(RES, rows, cols, F, ok)
        kept = u.to(RES_OUT.dtype.element_ty)
        tl.store(RES_OUT + rows.to(tl.int64)[:, None] * F + cols[None, :], kept, mask=ok)
        u = kept.to(tl.float32).to(X.dtype.element_ty).to(tl.float32)
    if HAS_Z:
        gate, _ = silu_and_slope(_load_rows(Z, rows, cols, SZ, ok))
        if GATE_FIRST:
            u = u * gate
    rstd = 1.0 / tl.sqrt(tl.sum(u * u, axis=1) / group_size + eps)
    o = u * rstd[:, None] * tl.load(W + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        o += tl.load(BIAS + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_Z and not GATE_FIRST:
        o = o * gate
    tl.store(Y + rows.to(tl.int64)[:, None] * F + cols[None, :], o.to(Y.dtype.element_ty), mask=ok)
    if HAS_RSTD:   # for a backward; an inference call's plan stores none
        n_groups = F // group_size
        tl.store(RSTD + rows.to(tl.int64) * n_groups + grp, rstd, mask=rows < R)


@triton.jit
def _rmsnorm_bwd_rows(DY, X, Z, W, BIAS, RSTD, DX, DZ, rows, grp, cols, c_ok, w, R, F, SX, SZ, SDZ, group_size, eps,
                      HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_G: tl.constexpr):
    """dx (and dz) of one block of rows; returns that block's ``do * n`` and ``do`` summed over its rows."""
    r_ok = rows < R
    ok = r_ok[:, None] & c_ok[None, :]
    x = _load_rows(X, rows, cols, SX, ok)
    dy = _load_rows(DY, rows, cols, F, ok)
    rstd = tl.load(RSTD + rows.to(tl.int64) * (F // group_size) + grp, mask=r_ok, other=0.0)
    u = x
    if HAS_Z:
        z = _load_rows(Z, rows, cols, SZ, ok)
        gate, slope = silu_and_slope(z)
        if GATE_FIRST:
            u = x * gate
    n = u * rstd[:, None]
    do = dy
    if HAS_Z and not GATE_FIRST:
        o = n * w
        if HAS_BIAS:
            o += tl.load(BIAS + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
        do = dy * gate
        tl.store(DZ + rows.to(tl.int64)[:, None] * SDZ + cols[None, :], (dy * o * slope).to(DZ.dtype.element_ty),
                 mask=ok)
    dwn = do * w
    if BLOCK_G == 1:
        # one feature: n = u / sqrt(u^2 + eps), whose slope eps rstd^3 the general form would get as
        # 1 - n^2, a difference of two numbers near 1
        du = dwn * (eps * rstd * rstd * rstd)[:, None]
    else:
        du = (dwn - n * (tl.sum(dwn * n, axis=1) / group_size)[:, None]) * rstd[:, None]
    dx = du
    if HAS_Z and GATE_FIRST:
        dx = du * gate
        tl.store(DZ + rows.to(tl.int64)[:, None] * SDZ + cols[None, :], (du * x * slope).to(DZ.dtype.element_ty),
                 mask=ok)
    tl.store(DX + rows.to(tl.int64)[:, None] * F + cols[None, :], dx.to(DX.dtype.element_ty), mask=ok)
    return tl.sum(do * n, axis=0), tl.sum(do, axis=0)


@triton.jit
def _rmsnorm_bwd_kernel(
    DY, X, Z, W, BIAS, RSTD,          # pointers: as the forward's, DY (R, F)
    DX, DZ, DW_PART, DB_PART,         # outputs: DZ iff Z, DB_PART iff BIAS; fp32 partials (programs, F)
    R, F, SX, SZ, SDZ, group_size, eps,  # sizes, X's, Z's and DZ's row strides (column slices in place), the epsilon
    HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr,
    SX_A: tl.constexpr = 1, SZ_A: tl.constexpr = 1, SDZ_A: tl.constexpr = 1, F_A: tl.constexpr = 1,
):
    SX, SZ, SDZ, F = multiple(SX, SX_A), multiple(SZ, SZ_A), multiple(SDZ, SDZ_A), multiple(F, F_A)
    # a program walks every num_programs-th block of rows, keeping its dw / db sums in registers: the
    # partials written are (programs, F), not (row blocks, F), which at one row per block were as
    # large as x itself in fp32
    _, grp, cols, c_ok = _tile(group_size, BLOCK_R, BLOCK_G)
    w = tl.load(W + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    dw = tl.zeros([BLOCK_G], dtype=tl.float32)
    db = tl.zeros([BLOCK_G], dtype=tl.float32)
    step = tl.num_programs(0) * BLOCK_R
    for start in range(tl.program_id(0) * BLOCK_R, R, step):
        rows = start + tl.arange(0, BLOCK_R)
        dw_rows, db_rows = _rmsnorm_bwd_rows(DY, X, Z, W, BIAS, RSTD, DX, DZ, rows, grp, cols, c_ok, w, R, F, SX, SZ, SDZ,
                                             group_size, eps, HAS_Z, GATE_FIRST, HAS_BIAS, BLOCK_G)
        dw += dw_rows
        db += db_rows
    part = tl.program_id(0).to(tl.int64) * F + cols
    tl.store(DW_PART + part, dw, mask=c_ok)
    if HAS_BIAS:
        tl.store(DB_PART + part, db, mask=c_ok)


def _block_g(group_size: int) -> int:
    return next_power_of_2(group_size)


def _rule(problem, mode):
    """About 4K fp32 elements a program, eight warps from 4K up (the forward ran at 96% of the copy
    bandwidth on the H100, 2026-11-25). Under the interpreter an eighth of the rows, at least two: tests cross
    row blocks, and the backward's three programs loop over several; few programs, as each costs the
    interpreter per operation whatever its size (``interpreted_tile``)."""
    R, F, group_size = problem[:3]
    block_g = _block_g(group_size)
    if mode.interpreted:
        return dict(BLOCK_R=max(2, next_power_of_2(R) // 8), num_warps=4)
    block_r = max(1, min(next_power_of_2(R), 4096 // block_g))
    return dict(BLOCK_R=block_r, num_warps=8 if block_r * block_g >= 4096 else 4)


def _warp_alternatives(problem, mode):
    w = _rule(problem, mode)["num_warps"]
    return [dict(num_warps=16 if w == 8 else 8), dict(num_warps=2 if w == 4 else 4)]


def _fwd_alternatives(problem, mode):
    """The other warp counts, and half and twice the rows."""
    R, F, group_size = problem[:3]
    block_r = _rule(problem, mode)["BLOCK_R"]
    alts = _warp_alternatives(problem, mode) + [dict(BLOCK_R=max(1, block_r // 2), num_warps=4)]
    if block_r * 2 * _block_g(group_size) <= 16384 and block_r < next_power_of_2(R):
        alts.append(dict(BLOCK_R=block_r * 2, num_warps=8))
    return alts


def _key(problem):
    R, *rest = problem
    return (bucket(R), *rest)


_OPTIONAL = dict(HAS_Z="Z", HAS_BIAS="BIAS")
rmsnorm_fwd = TunableKernel("rmsnorm_fwd", _rmsnorm_fwd_kernel, rule=_rule, alternatives=_fwd_alternatives, key=_key,
                            grid=lambda p, kw: (cdiv(p[0], kw["BLOCK_R"]), p[1] // p[2]),
                            flags=dict(_OPTIONAL, HAS_RES="RES", STORE_RES="RES_OUT", HAS_RSTD="RSTD", HAS_SCALE="SS"),
                            hints=dict(SX_A="SX", SZ_A="SZ", F_A="F"))
# the row block sizes the backward's partials (with the program count), so only the warps are tuned
rmsnorm_bwd = TunableKernel("rmsnorm_bwd", _rmsnorm_bwd_kernel, rule=_rule, alternatives=_warp_alternatives, key=_key,
                            grid=lambda p, kw: (_bwd_programs(p, run_mode()), p[1] // p[2]), fixed=("BLOCK_R",),
                            flags=_OPTIONAL, hints=dict(SX_A="SX", SZ_A="SZ", SDZ_A="SDZ", F_A="F"))


def _bwd_programs(problem, mode) -> int:
    """Enough programs to fill the device a few times over; each loops over its share of the rows
    (under the interpreter 3, so that tests cross the loop)."""
    R, F, group_size = problem[:3]
    programs = 3 if mode.interpreted else max(1, 4 * mode.sm_count // (F // group_size))
    return min(cdiv(R, _rule(problem, mode)["BLOCK_R"]), programs)


def rmsnorm_forward(x, weight, bias, z, eps, group_size, gate_first, config=None, residual=None, res_out=None,
                    scale=None):
    """``x, z (R, F)``, each row contiguous (any row stride: a slice of a projection's columns is read in
    place) -> ``(y (R, F) contiguous in x's dtype, rstd (R, F / group_size) fp32)``. With ``res_out (R, F)``
    (contiguous): ``res_out = x + residual`` (``residual`` None: ``x``) in ``res_out``'s dtype, and the norm
    is of that sum rounded to ``x``'s dtype, as a pre-norm block computes it in two steps. ``scale``:
    ``(ss (R, k) fp32 contiguous, dim, eps)``, each row of ``x`` first scaled by ``1 / sqrt(sum(ss row) / dim +
    eps)`` (a deferred gated norm, ``ops/norm_defer.py``)."""
    R, F = x.shape
    y = torch.empty((R, F), device=x.device, dtype=x.dtype)
    rstd = torch.empty((R, F // group_size), device=x.device, dtype=torch.float32)
    extra = {}
    if scale is not None:
        ss, dim, ss_eps = scale
        extra = dict(SS=ss, ss_w=ss.shape[1], ss_dim=float(dim), ss_eps=float(ss_eps),
                     BLOCK_S=next_power_of_2(ss.shape[1]))
    rmsnorm_fwd.launch((R, F, group_size, x.dtype, z is not None), config, RES=residual, RES_OUT=res_out,
                       X=x, Z=z, W=weight, BIAS=bias, Y=y, RSTD=rstd, R=R, F=F, SX=x.stride(0),
                       SZ=z.stride(0) if z is not None else 0, group_size=group_size, eps=float(eps),
                       GATE_FIRST=gate_first, BLOCK_G=_block_g(group_size), **{"SS": None, **extra})
    return y, rstd


def rmsnorm_plan(x, weight, bias, z, eps, group_size, gate_first, shape) -> OneLaunch:
    """:func:`rmsnorm_forward` (no residual) as an op plan (``ssm_triton/ops/_plans.py``),
    ``plan((x, weight, bias, z)) -> [y]`` with ``y`` of ``shape`` (the caller's ``x``, whose rows ``x
    (R, F)`` views in place), for tensors of these shapes, strides and dtypes. No ``rstd``: a plan serves
    calls that keep nothing for a backward (one ``torch.empty`` less a call)."""
    R, F = x.shape
    args = dict(RES=None, RES_OUT=None, SS=None, X=x, Z=z, W=weight, BIAS=bias, Y=None, RSTD=None, R=R, F=F, SX=x.stride(0),
                SZ=z.stride(0) if z is not None else 0, group_size=group_size, eps=float(eps), GATE_FIRST=gate_first,
                BLOCK_G=_block_g(group_size))
    names = ("X", "W", "BIAS", "Z")
    take = tuple(i for i, t in enumerate((x, weight, bias, z)) if t is not None)
    launch = Launch(rmsnorm_fwd, (R, F, group_size, x.dtype, z is not None), args, tuple(names[i] for i in take) + ("Y",))
    return OneLaunch(launch, take, ((tuple(shape), x.dtype),), x.device)


def rmsnorm_backward(dy, x, weight, bias, z, rstd, eps, group_size, gate_first, config=None, dz_out=None):
    """Returns ``(dx, dweight, dbias or None, dz or None)``; ``dweight``, ``dbias`` fp32. ``dy (R, F)`` contiguous,
    in any float dtype (read as fp32); ``x, z (R, F)`` each row contiguous, any row stride (slices of a projection's
    columns are read in place); ``dx, dz`` contiguous, in x's and z's dtypes, or ``dz`` written into ``dz_out (R, F)``
    (each row contiguous, any row stride: a slice of the caller's gradient buffer)."""
    R, F = x.shape
    problem = (R, F, group_size, x.dtype, z is not None)
    n_rb = _bwd_programs(problem, run_mode(x.device))
    dx = torch.empty((R, F), device=x.device, dtype=x.dtype)
    dz = dz_out if dz_out is not None or z is None else torch.empty((R, F), device=z.device, dtype=z.dtype)
    dw_part = torch.empty((n_rb, F), device=x.device, dtype=torch.float32)
    db_part = torch.empty_like(dw_part) if bias is not None else None
    rmsnorm_bwd.launch(problem, config, DY=dy, X=x, Z=z, W=weight, BIAS=bias, RSTD=rstd, DX=dx, DZ=dz,
                       DW_PART=dw_part, DB_PART=db_part, R=R, F=F, SX=x.stride(0), SZ=z.stride(0) if z is not None else 0,
                       SDZ=dz.stride(0) if dz is not None else 0,
                       group_size=group_size, eps=float(eps), GATE_FIRST=gate_first, BLOCK_G=_block_g(group_size))
    return dx, dw_part.sum(0), db_part.sum(0) if bias is not None else None, dz
