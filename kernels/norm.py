"""Gated RMSNorm (Mamba-2's ``RMSNormGated``), forward and backward; public as ``ssm_triton.rmsnorm_fn``.

Rows are the flattened leading dims of ``x (..., D)``; each row splits into ``D / group_size`` groups,
each normalised on its own. A forward program owns ``BLOCK_R`` rows of one group, the whole group in
registers: one read of ``x`` (and ``z``), one write of ``y``, and the per-row ``1/rms`` kept for the
backward. With ``u = x * silu(z)`` (gate first) or ``u = x``:

    n = u / rms(u),  o = n w + b,  y = o * silu(z) (gate after) or o

and backward ``do = dy * (silu(z) or 1)``, ``dw = sum do n``, ``db = sum do``,
``du = (do w - n mean(do w n)) / rms``, then through the gate. In the backward a program loops over
row blocks, summing ``dw``/``db`` in registers; the per-program fp32 partials are added in a fixed
order afterwards (deterministic).
"""
import functools

import torch
import triton
import triton.language as tl

from .activations import silu_and_slope
from .host import cdiv, next_power_of_2
from .tuning import bucket, candidates, interpreting, launch_tuned, memoized_space, override


@triton.jit
def _tile(group_size, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """A program's rows, its group, the group's columns and which of them are real."""
    grp = tl.program_id(1)
    lane = tl.arange(0, BLOCK_G)
    return tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R), grp, grp * group_size + lane, lane < group_size


@triton.jit
def _load_rows(PTR, rows, cols, D, ok):
    return tl.load(PTR + rows.to(tl.int64)[:, None] * D + cols[None, :], mask=ok, other=0.0).to(tl.float32)


@triton.jit
def _rmsnorm_fwd_kernel(X, Z, W, BIAS, Y, RSTD, R, D, group_size, eps,
                        HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BIAS: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    rows, grp, cols, c_ok = _tile(group_size, BLOCK_R, BLOCK_G)
    ok = (rows < R)[:, None] & c_ok[None, :]
    u = _load_rows(X, rows, cols, D, ok)
    if HAS_Z:
        gate, _ = silu_and_slope(_load_rows(Z, rows, cols, D, ok))
        if GATE_FIRST:
            u = u * gate
    rstd = 1.0 / tl.sqrt(tl.sum(u * u, axis=1) / group_size + eps)
    o = u * rstd[:, None] * tl.load(W + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        o += tl.load(BIAS + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_Z and not GATE_FIRST:
        o = o * gate
    tl.store(Y + rows.to(tl.int64)[:, None] * D + cols[None, :], o.to(Y.dtype.element_ty), mask=ok)
    n_groups = D // group_size
    tl.store(RSTD + rows.to(tl.int64) * n_groups + grp, rstd, mask=rows < R)


@triton.jit
def _rmsnorm_bwd_rows(DY, X, Z, W, BIAS, RSTD, DX, DZ, rows, grp, cols, c_ok, w, R, D, group_size, eps,
                      HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_G: tl.constexpr):
    """dx (and dz) of one block of rows; returns that block's ``do * n`` and ``do`` summed over its rows."""
    r_ok = rows < R
    ok = r_ok[:, None] & c_ok[None, :]
    x = _load_rows(X, rows, cols, D, ok)
    dy = _load_rows(DY, rows, cols, D, ok)
    rstd = tl.load(RSTD + rows.to(tl.int64) * (D // group_size) + grp, mask=r_ok, other=0.0)
    u = x
    if HAS_Z:
        z = _load_rows(Z, rows, cols, D, ok)
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
        tl.store(DZ + rows.to(tl.int64)[:, None] * D + cols[None, :], (dy * o * slope).to(DZ.dtype.element_ty), mask=ok)
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
        tl.store(DZ + rows.to(tl.int64)[:, None] * D + cols[None, :], (du * x * slope).to(DZ.dtype.element_ty), mask=ok)
    tl.store(DX + rows.to(tl.int64)[:, None] * D + cols[None, :], dx.to(DX.dtype.element_ty), mask=ok)
    return tl.sum(do * n, axis=0), tl.sum(do, axis=0)


@triton.jit
def _rmsnorm_bwd_kernel(DY, X, Z, W, BIAS, RSTD, DX, DZ, DW_PART, DB_PART, R, D, group_size, eps,
                        HAS_Z: tl.constexpr, GATE_FIRST: tl.constexpr, HAS_BIAS: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    # a program walks every num_programs-th block of rows, keeping its dw / db sums in registers: the
    # partials written are (programs, D), not (row blocks, D), which at one row per block were as
    # large as x itself in fp32
    _, grp, cols, c_ok = _tile(group_size, BLOCK_R, BLOCK_G)
    w = tl.load(W + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    dw = tl.zeros([BLOCK_G], dtype=tl.float32)
    db = tl.zeros([BLOCK_G], dtype=tl.float32)
    step = tl.num_programs(0) * BLOCK_R
    for start in range(tl.program_id(0) * BLOCK_R, R, step):
        rows = start + tl.arange(0, BLOCK_R)
        dw_rows, db_rows = _rmsnorm_bwd_rows(DY, X, Z, W, BIAS, RSTD, DX, DZ, rows, grp, cols, c_ok, w, R, D,
                                             group_size, eps, HAS_Z, GATE_FIRST, HAS_BIAS, BLOCK_G)
        dw += dw_rows
        db += db_rows
    part = tl.program_id(0).to(tl.int64) * D + cols
    tl.store(DW_PART + part, dw, mask=c_ok)
    if HAS_BIAS:
        tl.store(DB_PART + part, db, mask=c_ok)


@functools.lru_cache(maxsize=None)
def _sm_count(device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _blocks(R: int, group_size: int) -> tuple[int, int]:
    block_g = next_power_of_2(group_size)
    # about 4K fp32 elements per program; few rows under the interpreter so tests cross row blocks
    block_r = 2 if interpreting() else max(1, min(next_power_of_2(R), 4096 // block_g))
    return block_r, block_g


def _warps(block_r: int, block_g: int) -> int:
    return 8 if block_r * block_g >= 4096 else 4


@memoized_space
def norm_space(R: int, group_size: int, rows_free: bool = True) -> list[triton.Config]:
    """The rule (about 4K fp32 elements a program, eight warps from 4K up; the forward ran at 96% of the
    copy bandwidth on the H100, 2026-11-25) first, then the other warp counts and, where the row block
    shapes no scratch buffer (``rows_free``), half and twice the rows."""
    block_r, block_g = _blocks(R, group_size)
    w = _warps(block_r, block_g)
    if interpreting():
        return candidates(dict(BLOCK_R=block_r), [], num_warps=w)
    alts = [dict(num_warps=16 if w == 8 else 8), dict(num_warps=2 if w == 4 else 4)]
    if rows_free:
        alts.append(dict(BLOCK_R=max(1, block_r // 2), num_warps=4))
        if block_r * 2 * block_g <= 16384 and block_r < next_power_of_2(R):
            alts.append(dict(BLOCK_R=block_r * 2, num_warps=8))
    return candidates(dict(BLOCK_R=block_r), alts, num_warps=w)


def rmsnorm_forward(x, weight, bias, z, eps, group_size, gate_first, num_warps=None):
    """``x, z (R, D)`` contiguous -> ``(y (R, D) in x's dtype, rstd (R, D / group_size) fp32)``."""
    R, D = x.shape
    _, block_g = _blocks(R, group_size)
    y = torch.empty_like(x)
    rstd = torch.empty((R, D // group_size), device=x.device, dtype=torch.float32)
    space = norm_space(R, group_size)
    key = (bucket(R), D, group_size, str(x.dtype), z is not None)
    launch_tuned("rmsnorm_fwd", _rmsnorm_fwd_kernel, lambda meta: (cdiv(R, meta["BLOCK_R"]), D // group_size),
                 key, (x, z if z is not None else x, weight, bias if bias is not None else weight, y, rstd, R, D,
                       group_size, float(eps)),
                 dict(HAS_Z=z is not None, GATE_FIRST=gate_first, HAS_BIAS=bias is not None, BLOCK_G=block_g),
                 space, config=override(space, num_warps))
    return y, rstd


def rmsnorm_backward(dy, x, weight, bias, z, rstd, eps, group_size, gate_first, num_warps=None):
    """Returns ``(dx, dweight, dbias or None, dz or None)``; ``dweight``, ``dbias`` fp32."""
    R, D = x.shape
    block_r, block_g = _blocks(R, group_size)
    # enough programs to fill the device a few times over; each then loops over its share of the rows
    # (under the interpreter, 3 programs, so that tests cross the loop). The row block sizes the
    # partials, so only the warps are tuned.
    programs = 3 if interpreting() else max(1, 4 * _sm_count(x.device) // (D // group_size))
    n_rb = min(cdiv(R, block_r), programs)
    dx = torch.empty_like(x)
    dz = torch.empty_like(z) if z is not None else None
    dw_part = torch.empty((n_rb, D), device=x.device, dtype=torch.float32)
    db_part = torch.empty_like(dw_part) if bias is not None else dw_part
    space = norm_space(R, group_size, rows_free=False)
    key = (bucket(R), D, group_size, str(x.dtype), z is not None)
    launch_tuned("rmsnorm_bwd", _rmsnorm_bwd_kernel, lambda meta: (n_rb, D // group_size), key,
                 (dy, x, z if z is not None else x, weight, bias if bias is not None else weight, rstd, dx,
                  dz if dz is not None else dx, dw_part, db_part, R, D, group_size, float(eps)),
                 dict(HAS_Z=z is not None, GATE_FIRST=gate_first, HAS_BIAS=bias is not None, BLOCK_G=block_g),
                 space, fixed=("BLOCK_R",), config=override(space, num_warps))
    return dx, dw_part.sum(0), db_part.sum(0) if bias is not None else None, dz
