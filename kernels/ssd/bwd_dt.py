"""Elementwise ends of the backward: the ``silu(z)`` gate, and the step-size chain.

``_gate_bwd_kernel``: ``out = y silu(z)`` gives ``dy = dout silu(z)`` and ``dz = dout y silu'(z)``.

``_dt_bwd_kernel``, per (chunk, batch row, head): ``cum_t`` is the within-chunk sum of ``a_r = dt_r A``,
so ``d a_r = sum_{t >= r} d cum_t`` plus the gradient of the chunk's total decay. From the pair stages,
``d cum_t = rs_t + inter_t - cs_t - u_t`` (decays into step ``t`` minus decays out of it) and the total
decay gets ``sum_s u_s`` (through the chunk's own state) and ``f_c`` (through the carried state). Both
are summed so that nothing large cancels: ``rs - cs`` in fp64 (each without the diagonal pairs, which cancel:
``bwd_pairs.py``), and ``sum_s u_s - sum_{s >= r} u_s`` as the prefix ``sum_{s < r} u_s``. Then
``d dt_r = x_r.v_r + A d a_r``, ``dA = sum dt_r d a_r``, and ``d dt_r`` is pulled back through the clamp,
the softplus and the bias.
"""
import os

import torch
import triton
import triton.language as tl

from ..host import cdiv, next_power_of_2, step_stride
from ..tuning import Kernel
from ..activations import silu_and_slope
from .cumsum import chunk_row, raw_step, softplus_clamp


@triton.jit
def _gate_bwd_kernel(DOUT, Y, Z, X, DY, DZ, DD_PART, rows, HP, SX,
                     HAS_DD: tl.constexpr, ROWS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Over ``rows = b L`` rows of ``HP = H P`` channels, ``ROWS`` rows per program. With ``D``, the
    partial ``sum_rows dy x`` per channel is taken here from the fp32 ``dy``: the pair stages only see
    ``dy`` rounded to the input dtype, and a sum of rounded terms that nearly cancels loses its digits. ``SX``:
    x's row stride (``HP`` when contiguous); the other tensors are contiguous."""
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < HP
    acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for r0 in range(0, ROWS, BLOCK_R):
        rs = tl.program_id(0).to(tl.int64) * ROWS + r0 + tl.arange(0, BLOCK_R)
        ok = (rs < rows)[:, None] & c_ok[None, :]
        i = rs[:, None] * HP + cs[None, :]
        dout = tl.load(DOUT + i, mask=ok, other=0.0).to(tl.float32)
        y = tl.load(Y + i, mask=ok, other=0.0).to(tl.float32)
        z = tl.load(Z + i, mask=ok, other=0.0).to(tl.float32)
        gate, slope = silu_and_slope(z)
        dy = dout * gate
        tl.store(DY + i, dy.to(DY.dtype.element_ty), mask=ok)
        tl.store(DZ + i, (dout * y * slope).to(DZ.dtype.element_ty), mask=ok)
        if HAS_DD:
            x = tl.load(X + rs[:, None] * SX + cs[None, :], mask=ok, other=0.0)
            acc += tl.sum(dy * x.to(tl.float32), axis=0)
    if HAS_DD:
        tl.store(DD_PART + tl.program_id(0).to(tl.int64) * HP + cs, acc, mask=c_ok)


@triton.jit
def decay_grad(RS, CS, INTER, US, FPART, row, bh, nc, c, ok, n_f, BLOCK_F: tl.constexpr):
    """``d a_r`` for the steps ``r`` of chunk ``c`` (``row`` their offsets in the ``(b, H, Lp)`` rows): the
    gradient of each step's own decay term ``a_r`` (``dt_r A`` for Mamba-2, ``ADT_r`` for Mamba-3). ``FPART (b, H,
    nc, n_f)``: the reversed state passing's partial sums of the chunk's total-decay gradient, added up here (a
    PyTorch sum over them was one more launch of the backward)."""
    fs = tl.arange(0, BLOCK_F)
    f = tl.sum(tl.load(FPART + (bh.to(tl.int64) * nc + c) * n_f + fs, mask=fs < n_f, other=0.0), axis=0)
    # pairs inside the chunk: sum_{t >= r} (rs_t - cs_t), in fp64 (the two nearly cancel)
    pairs = (tl.load(RS + row, mask=ok, other=0.0) - tl.load(CS + row, mask=ok, other=0.0)
             + tl.load(INTER + row, mask=ok, other=0.0).to(tl.float64))
    d_a = (tl.sum(pairs, axis=0) - tl.cumsum(pairs, axis=0) + pairs).to(tl.float32)
    # through the chunk's own state: the steps before r (the later ones cancel against the total)
    u = tl.load(US + row, mask=ok, other=0.0)
    d_a += tl.cumsum(u, axis=0) - u + f
    return tl.where(ok, d_a, 0.0)


@triton.jit
def _dt_bwd_kernel(
    # pointers
    DT, DT_BIAS, A, DTP, RS, INTER, CS, US, XV, FPART, DDT, DA, DBIAS,
    # sizes (``SDT``, ``SDDT``: dt's and ddt's step strides)
    L, H, SDT, SDDT, Lp, nc, lo, hi, n_f,
    # meta-parameters
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr, ATOMIC: tl.constexpr, Q: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    """``ATOMIC``: each program adds its chunk's share of ``dA`` and ``d dt_bias`` into ``DA, DBIAS (H,)`` (zeroed);
    else it stores it at ``(b, H, nc)`` for a sum afterwards in a fixed order (deterministic algorithms)."""
    c, bh, bi, h, t, ok = chunk_row(L, H, Q)
    row = bh.to(tl.int64) * Lp + t
    d_a = decay_grad(RS, CS, INTER, US, FPART, row, bh, nc, c, ok, n_f, BLOCK_F)
    a_h = tl.load(A + h).to(tl.float32)
    ddt = tl.load(XV + row, mask=ok, other=0.0) + a_h * d_a
    da = tl.sum(tl.load(DTP + row) * d_a, axis=0)
    _, slope = softplus_clamp(raw_step(DT, DT_BIAS, bi, h, t, ok, L, SDT, HAS_BIAS), lo, hi, SOFTPLUS, CLAMP)
    ddt = tl.where(ok, ddt * slope, 0.0)
    tl.store(DDT + (bi.to(tl.int64) * L + t) * SDDT + h, ddt.to(DDT.dtype.element_ty), mask=ok)
    if ATOMIC:
        tl.atomic_add(DA + h, da)
        if HAS_BIAS:
            tl.atomic_add(DBIAS + h, tl.sum(ddt, axis=0))
    else:
        tl.store(DA + bh.to(tl.int64) * nc + c, da)
        if HAS_BIAS:
            tl.store(DBIAS + bh.to(tl.int64) * nc + c, tl.sum(ddt, axis=0))


gate_bwd_kernel = Kernel(_gate_bwd_kernel, flags=dict(HAS_DD="DD_PART"))
dt_bwd_kernel = Kernel(_dt_bwd_kernel, flags=dict(HAS_BIAS="DT_BIAS"))


# the gate backward's tiles: rows a program (0: 256 past 4096 rows, else 32), elements a tile, warps. H100, 2026-12-06
# (bench/walk_choice.py --ab "bwd_dt.GATE_TILE=4096 bwd_dt.GATE_WARPS=8", Mamba-3 SISO B8 L4096 H32 P64 bf16, three
# processes): 4096-element tiles at 8 warps 0.312-0.319 ms against 0.350-0.351 at 1024 and 4; 8192 at 8 warps 0.386;
# 4096 at 4 warps over 512 rows 0.319
GATE_ROWS = int(os.environ.get("SSM_TRITON_GATE_ROWS", "0"))
GATE_TILE = int(os.environ.get("SSM_TRITON_GATE_TILE", "4096"))
GATE_WARPS = int(os.environ.get("SSM_TRITON_GATE_WARPS", "8"))


def gate_backward(dout, y, z, x, D):
    """``dy, dz`` of ``out = y silu(z)`` (each in its input's dtype; ``dout, y, z (b, L, H, P)`` contiguous, ``x``
    of any step stride), and ``dD`` (``D``'s shape, fp32) from the unrounded ``dy`` when ``D`` is given, else None."""
    bsz, L, H, P = x.shape
    rows, hp = bsz * L, H * P
    dy, dz = torch.empty(x.shape, device=x.device, dtype=x.dtype), torch.empty_like(z)
    block_c = min(128, next_power_of_2(hp))
    per = GATE_ROWS or (256 if rows >= 4096 else 32)   # rows per program: a short partial sum, few programs when small
    # GATE_TILE elements a tile (16 a thread in each of the five tensors at 8 warps), inside the program's rows
    block_r = min(per, max(1, GATE_TILE // block_c))
    part = torch.empty((cdiv(rows, per), hp), device=x.device, dtype=torch.float32) if D is not None else None
    gate_bwd_kernel((cdiv(rows, per), cdiv(hp, block_c)), DOUT=dout, Y=y, Z=z, X=x, DY=dy, DZ=dz,
                    DD_PART=part, rows=rows, HP=hp, SX=step_stride(x), ROWS=per, BLOCK_R=block_r, BLOCK_C=block_c,
                    num_warps=GATE_WARPS)
    dD = None
    if D is not None:
        # one reduction either way (a per-head D summed over rows and channels together, not in two launches)
        dD = part.sum(0).view(H, P) if D.dim() == 2 else part.view(-1, H, P).sum((0, 2))
    return dy, dz, dD
