"""Discretization of a diagonal continuous SSM, elementwise over ``(batch, dim, L, N)``.

With ``z = delta * A``:

* ``zoh`` (exact for diagonal A): ``Abar = exp(z)``, ``Bbar = delta * phi1(z) * B`` where
  ``phi1(z) = (exp(z) - 1) / z``, taken from a series near 0 so that A -> 0 stays finite and accurate;
* ``mamba``: ``Abar = exp(z)``, ``Bbar = delta * B``;
* ``bilinear`` (Tustin): ``Abar = (1 + z/2) / (1 - z/2)``, ``Bbar = delta * B / (1 - z/2)``.

Every method has the form ``Bbar = k(delta, A) * B``; kernels compute ``Abar`` and ``k`` and, in the
backward, their partial derivatives by ``delta`` and ``A``.
"""
import torch
import triton
import triton.language as tl

from .host import cdiv, next_power_of_2
from .precision import acc_dtypes
from .tuning import Kernel, Launch, OneLaunch, TunableKernel, bucket

METHODS = {"zoh": 0, "mamba": 1, "bilinear": 2}

# Below this |z| the closed forms of phi1 and phi1' lose bits to cancellation; the series, cut
# after z^14, is accurate to ~1e-14 relative there, so fp64 gets full accuracy too.
_SERIES_RADIUS = tl.constexpr(0.5)


@triton.jit
def _phi1(z, e):
    """(exp(z) - 1) / z, with e = exp(z) already computed."""
    s = 1.0 / 1307674368000.0
    s = s * z + 1.0 / 87178291200.0
    s = s * z + 1.0 / 6227020800.0
    s = s * z + 1.0 / 479001600.0
    s = s * z + 1.0 / 39916800.0
    s = s * z + 1.0 / 3628800.0
    s = s * z + 1.0 / 362880.0
    s = s * z + 1.0 / 40320.0
    s = s * z + 1.0 / 5040.0
    s = s * z + 1.0 / 720.0
    s = s * z + 1.0 / 120.0
    s = s * z + 1.0 / 24.0
    s = s * z + 1.0 / 6.0
    s = s * z + 1.0 / 2.0
    s = s * z + 1.0 / 1.0
    small = tl.abs(z) < _SERIES_RADIUS
    return tl.where(small, s, (e - 1.0) / tl.where(small, 1.0, z))


@triton.jit
def _phi1_prime(z, e):
    """d/dz phi1(z) = (e (z - 1) + 1) / z^2; series sum_k k z^(k-1) / (k+1)!."""
    s = 14.0 / 1307674368000.0
    s = s * z + 13.0 / 87178291200.0
    s = s * z + 12.0 / 6227020800.0
    s = s * z + 11.0 / 479001600.0
    s = s * z + 10.0 / 39916800.0
    s = s * z + 9.0 / 3628800.0
    s = s * z + 8.0 / 362880.0
    s = s * z + 7.0 / 40320.0
    s = s * z + 6.0 / 5040.0
    s = s * z + 5.0 / 720.0
    s = s * z + 4.0 / 120.0
    s = s * z + 3.0 / 24.0
    s = s * z + 2.0 / 6.0
    s = s * z + 1.0 / 2.0
    small = tl.abs(z) < _SERIES_RADIUS
    zz = tl.where(small, 1.0, z)
    return tl.where(small, s, (e * (z - 1.0) + 1.0) / (zz * zz))


@triton.jit
def _coefficients(dt, a, METHOD: tl.constexpr):
    """Returns (Abar, k) with Bbar = k * B."""
    z = dt * a
    if METHOD == 2:
        w = 1.0 - 0.5 * z
        return (1.0 + 0.5 * z) / w, dt / w
    e = tl.exp(z)
    if METHOD == 1:
        return e, dt + 0.0 * z
    return e, dt * _phi1(z, e)


@triton.jit
def _partials(dt, a, METHOD: tl.constexpr):
    """Returns (dAbar/ddt, dAbar/dA, dk/ddt, dk/dA, k)."""
    z = dt * a
    if METHOD == 2:
        w = 1.0 - 0.5 * z
        iw2 = 1.0 / (w * w)
        return a * iw2, dt * iw2, iw2, 0.5 * dt * dt * iw2, dt / w
    e = tl.exp(z)
    if METHOD == 1:
        return a * e, dt * e, 1.0 + 0.0 * z, 0.0 * z, dt + 0.0 * z
    # d/ddt [ (exp(dt A) - 1) / A ] = exp(dt A)
    return a * e, dt * e, e, dt * dt * _phi1_prime(z, e), dt * _phi1(z, e)


@triton.jit
def _discretize_fwd_kernel(
    DT, A, B, ABAR, BBAR,             # pointers: DT (b, dim, L), A (dim, N), B (b, N, L), outputs (b, dim, L, N)
    dim, L, N,                        # sizes
    METHOD: tl.constexpr, ACC: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    row = tl.program_id(0)  # flattened (batch, dim)
    bi = row // dim
    di = row % dim
    t = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    n = tl.arange(0, BLOCK_N)
    t_ok = t < L
    n_ok = n < N
    ok = t_ok[:, None] & n_ok[None, :]
    dt = tl.load(DT + row.to(tl.int64) * L + t, mask=t_ok, other=0.0).to(ACC)
    a = tl.load(A + di * N + n, mask=n_ok, other=0.0).to(ACC)
    b = tl.load(B + bi.to(tl.int64) * N * L + n[None, :] * L + t[:, None], mask=ok, other=0.0).to(ACC)
    abar, k = _coefficients(dt[:, None], a[None, :], METHOD)
    out = (row.to(tl.int64) * L + t[:, None]) * N + n[None, :]
    tl.store(ABAR + out, abar.to(ABAR.dtype.element_ty), mask=ok)
    tl.store(BBAR + out, (k * b).to(BBAR.dtype.element_ty), mask=ok)


@triton.jit
def _discretize_bwd_kernel(
    DT, A, B, GABAR, GBBAR,           # pointers: inputs as the forward's; GABAR, GBBAR or None
    DDT, DA_PART, DB_PART,            # outputs: DDT (b, dim, L); fp32 partials of dA and dB
    dim, L, N, D_PER_SPLIT,           # sizes
    METHOD: tl.constexpr, ACC: tl.constexpr, HAS_GA: tl.constexpr, HAS_GB: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: batch bi, time tile lt, a slice of channels. It loops over its channels,
    writing d(delta) directly and fp32 partial sums for dA (over this time tile) and dB (over this
    slice of channels), which the launcher adds up."""
    bi = tl.program_id(0)
    lt = tl.program_id(1)
    split = tl.program_id(2)
    n_lt = tl.num_programs(1)
    t = lt * BLOCK_L + tl.arange(0, BLOCK_L)
    n = tl.arange(0, BLOCK_N)
    t_ok = t < L
    n_ok = n < N
    ok = t_ok[:, None] & n_ok[None, :]
    b = tl.load(B + bi.to(tl.int64) * N * L + n[None, :] * L + t[:, None], mask=ok, other=0.0).to(ACC)
    db = tl.zeros([BLOCK_L, BLOCK_N], dtype=ACC)
    d_lo = split * D_PER_SPLIT
    for j in range(D_PER_SPLIT):
        di = d_lo + j
        # channel-in-range as vectors: the interpreter rejects a scalar bool mixed into a mask
        dt_ok = t_ok & ((t * 0 + di) < dim)
        dn_ok = n_ok & ((n * 0 + di) < dim)
        d_ok = dt_ok[:, None] & dn_ok[None, :]
        row = bi.to(tl.int64) * dim + di
        dt = tl.load(DT + row * L + t, mask=dt_ok, other=0.0).to(ACC)
        a = tl.load(A + di * N + n, mask=dn_ok, other=0.0).to(ACC)
        dA_ddt, dA_da, dk_ddt, dk_da, k = _partials(dt[:, None], a[None, :], METHOD)
        out = (row * L + t[:, None]) * N + n[None, :]
        g_dt = tl.zeros([BLOCK_L, BLOCK_N], dtype=ACC)
        g_a = tl.zeros([BLOCK_L, BLOCK_N], dtype=ACC)
        if HAS_GA:
            ga = tl.load(GABAR + out, mask=d_ok, other=0.0).to(ACC)
            g_dt += ga * dA_ddt
            g_a += ga * dA_da
        if HAS_GB:
            gb = tl.load(GBBAR + out, mask=d_ok, other=0.0).to(ACC)
            g_dt += gb * b * dk_ddt
            g_a += gb * b * dk_da
            db += gb * k
        tl.store(DDT + row * L + t, tl.sum(g_dt, axis=1).to(DDT.dtype.element_ty), mask=dt_ok)
        part = ((bi.to(tl.int64) * n_lt + lt) * dim + di) * N + n
        tl.store(DA_PART + part, tl.sum(g_a, axis=0), mask=dn_ok)
    db_out = ((split.to(tl.int64) * tl.num_programs(0) + bi) * N + n[None, :]) * L + t[:, None]
    tl.store(DB_PART + db_out, db, mask=ok)


discretize_bwd = Kernel(_discretize_bwd_kernel, flags=dict(HAS_GA="GABAR", HAS_GB="GBBAR"))


def _fwd_rule(problem, mode):
    return dict(BLOCK_L=8, num_warps=1) if mode.interpreted else dict(BLOCK_L=32, num_warps=4)


def _fwd_alternatives(problem, mode):
    # tiles of (L, N) values within a register budget
    block_n = problem[3]
    return [dict(BLOCK_L=l, num_warps=w) for l in (32, 16, 64, 128) for w in (4, 2, 8) if l * block_n <= 8192]


def _fwd_key(problem):
    rows, L, N, block_n, *types = problem
    return (bucket(L), block_n, *types)


discretize_fwd = TunableKernel(
    "discretize_fwd_kernel", _discretize_fwd_kernel, rule=_fwd_rule, alternatives=_fwd_alternatives, key=_fwd_key,
    grid=lambda problem, kw: (problem[0], cdiv(problem[1], kw["BLOCK_L"])))


def discretize_forward(dt, A, B, method: str, out_dtype: torch.dtype, config: dict | None = None):
    """``dt (b, d, L)``, ``A (d, N)``, ``B (b, N, L)``, contiguous -> ``(Abar, Bbar)`` each ``(b, d, L, N)``.
    ``config`` (launch keywords) bypasses autotuning (tests use it to run every candidate)."""
    bsz, dim, L = dt.shape
    N = A.shape[1]
    abar = torch.empty((bsz, dim, L, N), device=dt.device, dtype=out_dtype)
    bbar = torch.empty_like(abar)
    if abar.numel() == 0:
        return abar, bbar
    problem, args = _forward_launch(dt, A, B, method, out_dtype)
    discretize_fwd.launch(problem, config, **args, ABAR=abar, BBAR=bbar)
    return abar, bbar


def _forward_launch(dt, A, B, method: str, out_dtype: torch.dtype) -> tuple[tuple, dict]:
    """The forward's tuning problem and its arguments but the outputs, shared by the launch and its plan."""
    bsz, dim, L = dt.shape
    N = A.shape[1]
    acc = acc_dtypes(dt, A, B)[0]
    block_n = next_power_of_2(N)
    problem = (bsz * dim, L, N, block_n, str(dt.dtype), str(out_dtype), str(acc), method)
    return problem, dict(DT=dt, A=A, B=B, dim=dim, L=L, N=N, METHOD=METHODS[method], ACC=acc, BLOCK_N=block_n)


def forward_plan(dt, A, B, method: str, out_dtype: torch.dtype) -> "OneLaunch | None":
    """:func:`discretize_forward` as an op plan (``ssm_triton/ops/_plans.py``), ``plan((dt, A, B)) -> [Abar,
    Bbar]``, for contiguous tensors of these shapes and dtypes; None where there is nothing to launch."""
    bsz, dim, L = dt.shape
    N = A.shape[1]
    if bsz * dim * L * N == 0 or not all(t.is_contiguous() for t in (dt, A, B)):
        return None
    problem, args = _forward_launch(dt, A, B, method, out_dtype)
    launch = Launch(discretize_fwd, problem, dict(args, ABAR=None, BBAR=None), ("DT", "A", "B", "ABAR", "BBAR"))
    out = ((bsz, dim, L, N), out_dtype)
    return OneLaunch(launch, (0, 1, 2), (out, out), dt.device)


def _backward_blocks(bsz, dim, L, N, on_gpu):
    block_n = next_power_of_2(N)
    block_l = max(1, min(next_power_of_2(L), 4096 // block_n, 64 if on_gpu else 8))
    n_lt = cdiv(L, block_l)
    # Enough programs to fill a GPU; under the interpreter fewer, larger loops are cheaper.
    splits = max(1, min(dim, cdiv(1024, bsz * n_lt))) if on_gpu else max(1, min(dim, 2))
    return block_l, block_n, n_lt, splits


def discretize_backward(g_abar, g_bbar, dt, A, B, method: str):
    """Gradients of :func:`discretize_forward`; either output gradient may be None.
    Returns ``(ddt (b, d, L), dA (d, N), dB (b, N, L))``, dA and dB in the accumulation dtype."""
    bsz, dim, L = dt.shape
    N = A.shape[1]
    ddt = torch.empty_like(dt)
    if dt.numel() == 0 or N == 0:
        return ddt.zero_(), torch.zeros_like(A), torch.zeros_like(B)
    block_l, block_n, n_lt, splits = _backward_blocks(bsz, dim, L, N, dt.is_cuda)
    d_per = cdiv(dim, splits)
    splits = cdiv(dim, d_per)
    acc, acc_torch = acc_dtypes(dt, A, B)
    da_part = torch.empty((bsz, n_lt, dim, N), device=dt.device, dtype=acc_torch)
    db_part = torch.empty((splits, bsz, N, L), device=dt.device, dtype=acc_torch)
    discretize_bwd((bsz, n_lt, splits), DT=dt, A=A, B=B, GABAR=g_abar, GBBAR=g_bbar, DDT=ddt, DA_PART=da_part,
                   DB_PART=db_part, dim=dim, L=L, N=N, D_PER_SPLIT=d_per, METHOD=METHODS[method], ACC=acc,
                   BLOCK_L=block_l, BLOCK_N=block_n)
    return ddt, da_part.sum(dim=(0, 1)), db_part.sum(dim=0)
