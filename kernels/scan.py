"""First-order linear recurrence ``h_t = a_t * h_{t-1} + b_t`` as a parallel associative scan.

Layout: ``a, b, h`` are contiguous ``(R, L)`` (the public API flattens the leading dims).
Each program owns ``BLOCK_R`` rows and walks the sequence in tiles of ``BLOCK_L``: inside a tile
the recurrence is a ``tl.associative_scan`` over the pairs ``(a, b)``; between tiles one fp32
state per row is carried. Loads and stores stay in the input dtype, arithmetic is fp32.

The backward is the adjoint recurrence run the other way,
``lam_t = g_t + a_{t+1} * lam_{t+1}`` (forward direction), giving
``db_t = lam_t``, ``da_t = lam_t * h_{t-1}`` and ``dh0 = a_0 * lam_0``.
"""
import os

import torch
import triton
import triton.language as tl

from .host import cdiv
from .precision import acc_dtypes
from .tuning import Launch, OneLaunch, TunableKernel, bucket


@triton.jit
def first_order_combine(a_left, b_left, a_right, b_right):
    # (a1, b1) then (a2, b2): h -> a2 * (a1 * h + b1) + b2
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def fold_in(a, b, carry, entry):
    """``b`` with the state entering a tile (``carry``, broadcast over the tile) folded into its entry step (where
    the mask ``entry`` holds: the scan's first step): the scan of ``(a, b)`` then yields the states themselves, with
    no multiply of the decay products by the carry after it (fewer instructions a step; the select folds away where
    the entry lane is known at compile time)."""
    return b + tl.where(entry, a * carry, 0.0)


@triton.jit
def _tile_index(i, n_tiles, BACKWARDS: tl.constexpr):
    if BACKWARDS:
        return n_tiles - 1 - i
    return i


@triton.jit
def _scan_fwd_kernel(
    A, B, H, H0,                      # pointers: (R, L) rows, H0 (R,) or None
    R, L,                             # sizes
    HAS_H0: tl.constexpr, REVERSE: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    base = rows.to(tl.int64) * L
    lane = tl.arange(0, BLOCK_L)
    if HAS_H0:
        carry = tl.load(H0 + rows, mask=row_ok, other=0.0).to(ACC)
    else:
        carry = tl.zeros([BLOCK_R], dtype=ACC)
    # The lane that holds the state handed to the next tile: the last one in time order,
    # or the first when the recurrence runs from the end.
    out_lane = 0 if REVERSE else BLOCK_L - 1
    in_lane = BLOCK_L - 1 if REVERSE else 0   # where the carry enters: the tile's first step in scan order
    n_tiles = tl.cdiv(L, BLOCK_L)
    for i in range(n_tiles):
        t = _tile_index(i, n_tiles, REVERSE) * BLOCK_L + lane
        ok = row_ok[:, None] & (t < L)[None, :]
        offs = base[:, None] + t[None, :]
        # padding lanes get the identity pair (1, 0) so they pass the state through unchanged
        a = tl.load(A + offs, mask=ok, other=1.0).to(ACC)
        b = tl.load(B + offs, mask=ok, other=0.0).to(ACC)
        b = fold_in(a, b, carry[:, None], lane[None, :] == in_lane)
        _, h = tl.associative_scan((a, b), 1, first_order_combine, reverse=REVERSE)
        tl.store(H + offs, h.to(H.dtype.element_ty), mask=ok)
        carry = tl.sum(tl.where(lane[None, :] == out_lane, h, 0.0), axis=1)


@triton.jit
def _exclusive_combine(m_l, v_l, mx_l, vx_l, m_r, v_r, mx_r, vx_r):
    """Affine maps ``x -> m x + v`` composed as :func:`first_order_combine` does, each carrying a second
    map: the segment's composition without the element nearest the scan's start (``mx, vx``; the identity
    for one element). Applied to the carry, the first gives the inclusive value at a position, the
    second the value one step before it in scan order (associative: the second map of a union is the
    second map of its later part after the whole earlier part)."""
    return m_l * m_r, m_r * v_l + v_r, m_l * mx_r, mx_r * v_l + vx_r


@triton.jit
def _scan_bwd_kernel(
    G, A, H, H0, DA, DB, DH0,         # pointers: (R, L) rows; H0, DH0 (R,) or None
    R, L,                             # sizes
    HAS_H0: tl.constexpr, REVERSE: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
    ALIGNED: tl.constexpr, REV_GATHER: tl.constexpr = False,
):
    """The neighbours ``a[t + STEP]`` and ``h[t - STEP]`` are loaded one element off, which cannot be
    vectorised; moving them inside the tile with ``tl.gather`` instead compiled to ~8000 shuffles a
    tile for sm_90 (Triton 3.9, 2026-12-03) and was dropped. ``ALIGNED`` drops the first of them:
    it scans ``z_t = a_t lam_t`` (``z_t = a_t g_t + a_t z_{t+STEP}``: every operand at ``t``) with
    :func:`_exclusive_combine`, which also yields ``z_{t+STEP}``, and ``lam_t = g_t + z_{t+STEP}``;
    the carry between tiles is then ``z``, and ``dh0`` the last carry. Not among the tuner's
    candidates until it has been timed on a GPU (``SSM_TRITON_SCAN_ALIGNED=1`` adds it).

    ``REV_GATHER`` (not with ``ALIGNED``): the adjoint's scan runs the other way along the tile than the tensors' lanes;
    Triton 3.6 (the GPU machine's) reverses a reverse scan's inputs and results lane by lane with five butterfly
    shuffles a register (3.9 with one). Here the inputs are read backwards through ``tl.gather``, scanned forward and
    gathered back (``SSM_TRITON_SCAN_REV_GATHER=1`` adds it to the tuner's candidates; untimed)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    base = rows.to(tl.int64) * L
    lane = tl.arange(0, BLOCK_L)
    # STEP is the forward's direction of time: the forward read h[t - STEP] as the previous
    # state, so the adjoint at t receives lam[t + STEP] weighted by a[t + STEP].
    STEP: tl.constexpr = -1 if REVERSE else 1
    if HAS_H0:
        h0 = tl.load(H0 + rows, mask=row_ok, other=0.0).to(ACC)
    else:
        h0 = tl.zeros([BLOCK_R], dtype=ACC)
    carry = tl.zeros([BLOCK_R], dtype=ACC)
    out_lane = BLOCK_L - 1 if REVERSE else 0
    in_lane = 0 if REVERSE else BLOCK_L - 1   # where the carry enters the adjoint's scan
    rev = tl.broadcast_to((BLOCK_L - 1 - lane)[None, :], [BLOCK_R, BLOCK_L])
    n_tiles = tl.cdiv(L, BLOCK_L)
    for i in range(n_tiles):
        t = _tile_index(i, n_tiles, not REVERSE) * BLOCK_L + lane
        t_ok = t < L
        ok = row_ok[:, None] & t_ok[None, :]
        offs = base[:, None] + t[None, :]
        # padding lanes must stay identities, so 'next' and 'previous' only exist for real steps
        prv = t - STEP
        prv_ok = ok & ((prv >= 0) & (prv < L))[None, :]
        g = tl.load(G + offs, mask=ok, other=0.0).to(ACC)
        h_prev = tl.load(H + offs - STEP, mask=prv_ok, other=0.0).to(ACC)
        h_prev = tl.where(prv_ok, h_prev, h0[:, None])
        if ALIGNED:
            # padding lanes: a = 1, g = 0, the identity map
            a = tl.load(A + offs, mask=ok, other=1.0).to(ACC)
            one = tl.full(a.shape, 1.0, ACC)
            m, v, m_x, v_x = tl.associative_scan((a, a * g, one, tl.zeros_like(a)), 1, _exclusive_combine,
                                                 reverse=not REVERSE)
            lam = g + (m_x * carry[:, None] + v_x)
            z = m * carry[:, None] + v
        else:
            nxt = t + STEP
            nxt_ok = ok & ((nxt >= 0) & (nxt < L))[None, :]
            c = tl.load(A + offs + STEP, mask=nxt_ok, other=1.0).to(ACC)
            g_in = fold_in(c, g, carry[:, None], lane[None, :] == in_lane)
            if REV_GATHER and BLOCK_L > 1:   # the scan's direction along the lanes, read backwards and back
                _, lam = tl.associative_scan((tl.gather(c, rev, 1), tl.gather(g_in, rev, 1)), 1, first_order_combine,
                                             reverse=REVERSE)
                lam = tl.gather(lam, rev, 1)
            else:
                _, lam = tl.associative_scan((c, g_in), 1, first_order_combine, reverse=not REVERSE)
            z = lam
        tl.store(DB + offs, lam.to(DB.dtype.element_ty), mask=ok)
        tl.store(DA + offs, (lam * h_prev).to(DA.dtype.element_ty), mask=ok)
        carry = tl.sum(tl.where(lane[None, :] == out_lane, z, 0.0), axis=1)
    if ALIGNED and HAS_H0:
        tl.store(DH0 + rows, carry.to(DH0.dtype.element_ty), mask=row_ok)   # z at the first step: a lam
    elif HAS_H0:
        first = L - 1 if REVERSE else 0
        a_first = tl.load(A + base + first, mask=row_ok, other=0.0).to(ACC)
        tl.store(DH0 + rows, (a_first * carry).to(DH0.dtype.element_ty), mask=row_ok)


# (rows per program, tile length, warps): the tuner's candidates; the rules pick among them by dtype.
# 1x2048 with 8 warps ranked in the top four of the first ten in 9 of the 12 (size, dtype, direction)
# cases of the H100 sweep (python -m ssm_triton.bench.sweep, 2026-11-23). The last three keep 16-32 steps
# a thread, as accelerated-scan's kernel does; on the H200 (2026-12-03) they were the best 16-bit tiles.
TILES = [(1, 2048, 8), (1, 1024, 4), (1, 4096, 8), (2, 1024, 4), (2, 2048, 8),
         (4, 512, 4), (4, 1024, 8), (8, 256, 4), (8, 512, 8), (16, 128, 4),
         (1, 2048, 4), (1, 4096, 4), (1, 1024, 2)]


def _tile(r, l, w):
    return dict(BLOCK_R=r, BLOCK_L=l, num_warps=w)


def _rule(problem, mode):
    return _tile(2, 16, 1) if mode.interpreted else _tile(*TILES[0])


def _bwd_rule(problem, mode):
    """The H200's best backward tiles (bench/sweep.py headline, 2026-12-03, 12288 rows of 4096): 16-bit I/O
    1x1024 with 2 warps (218 us; the forward's rule took well over 230), fp32 16x128 with 4 warps (275 us).
    The backward reads a[t + 1] and h[t - 1] one element off, unvectorised: Nsight Compute put the 8-warp
    tile at 90% of L1 throughput and 43% of DRAM's."""
    if mode.interpreted:
        tile = _rule(problem, mode)
    elif problem[2] != torch.float32:
        tile = _tile(1, 1024, 2)
    else:   # 16 rows a program only where that still gives every SM several programs (few long rows would not)
        tile = _tile(16, 128, 4) if problem[0] >= 16 * 4 * mode.sm_count else _tile(*TILES[0])
    return {**tile, "ALIGNED": False}


def _fwd_rule(problem, mode):
    """16-bit I/O: 1x2048 with 4 warps (77.7 us at the same shape, 3.9 TB/s); fp32 keeps TILES[0] (146.6 us,
    within 2% of the best)."""
    if not mode.interpreted and problem[2] in (torch.bfloat16, torch.float16):
        return _tile(1, 2048, 4)
    return _rule(problem, mode)


def _alternatives(problem, mode):
    return [_tile(*t) for t in TILES]


# The backward's aligned form (``ALIGNED``, _scan_bwd_kernel's docstring) joins its candidates with
# SSM_TRITON_SCAN_ALIGNED=1, for the benchmark that times it (tested through the interpreter, 2026-12-03)
ALIGNED_TUNED = os.environ.get("SSM_TRITON_SCAN_ALIGNED", "0").strip() not in ("", "0")


# The backward reading its tile backwards through tl.gather (``REV_GATHER``, _scan_bwd_kernel's docstring; sm_90,
# triton 3.6, fp32: the 16x128 4-warp tile 816 -> 544 instructions, 340 -> 20 butterfly shuffles; the tiles whose
# steps span warps gather through shared memory and grow, 600 -> 1016 at 1x2048 with 8 warps) joins its candidates
# with SSM_TRITON_SCAN_REV_GATHER=1, for the benchmark that times it (tested through the interpreter, 2026-12-06)
REV_GATHER_TUNED = os.environ.get("SSM_TRITON_SCAN_REV_GATHER", "0").strip() not in ("", "0")


def _bwd_alternatives(problem, mode):
    alts = _alternatives(problem, mode)
    out = list(alts)
    if ALIGNED_TUNED:
        out += [dict(a, ALIGNED=True) for a in [{}, *alts]]
    if REV_GATHER_TUNED:
        out += [dict(a, REV_GATHER=True) for a in [{}, *alts]]
    return out


def _key(problem):
    R, L, dtype, acc, has_h0, reverse = problem
    return bucket(L), bucket(R), dtype, str(acc), has_h0, reverse


def _grid(problem, kw):
    return (cdiv(problem[0], kw["BLOCK_R"]),)


scan_fwd = TunableKernel("scan_fwd_kernel", _scan_fwd_kernel, grid=_grid, rule=_fwd_rule, alternatives=_alternatives, key=_key,
                         flags=dict(HAS_H0="H0"))
scan_bwd = TunableKernel("scan_bwd_kernel", _scan_bwd_kernel, grid=_grid, rule=_bwd_rule, alternatives=_bwd_alternatives,
                         key=_key, flags=dict(HAS_H0="H0"))


def scan_forward(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool,
                 config: dict | None = None) -> torch.Tensor:
    """``a, b``: contiguous ``(..., L)``, read as ``R`` rows of ``L``; ``h0``: contiguous ``(...)`` or None. Returns
    ``h`` shaped like ``b``, in its dtype. ``config`` (launch keywords) bypasses autotuning (tests use it to run
    every candidate)."""
    L = b.shape[-1]
    R = b.numel() // L if L else 0
    h = torch.empty_like(b)
    if h.numel() == 0:
        return h
    acc = acc_dtypes(a, b, h0)[0]
    scan_fwd.launch((R, L, b.dtype, acc, h0 is not None, reverse), config,
                    A=a, B=b, H=h, H0=h0, R=R, L=L, REVERSE=reverse, ACC=acc)
    return h


def scan_plan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool) -> OneLaunch | None:
    """:func:`scan_forward` as an op plan (``ssm_triton/ops/_plans.py``), ``plan((a, b, h0)) -> [h]`` with ``h``
    shaped like ``b``, for contiguous ``a, b (..., L)`` and ``h0 (...)`` of these shapes and dtypes; None for an
    empty one."""
    L = b.shape[-1]
    R = b.numel() // L if L else 0
    if R == 0 or L == 0:
        return None
    acc = acc_dtypes(a, b, h0)[0]
    args = dict(A=a, B=b, H=None, H0=h0, R=R, L=L, REVERSE=reverse, ACC=acc)
    take = (0, 1, 2) if h0 is not None else (0, 1)
    launch = Launch(scan_fwd, (R, L, b.dtype, acc, h0 is not None, reverse), args,
                    ("A", "B", "H0", "H") if h0 is not None else ("A", "B", "H"))
    return OneLaunch(launch, take, ((b.shape, b.dtype),), b.device)


def scan_backward(
    grad: torch.Tensor, a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None, reverse: bool,
    config: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients of :func:`scan_forward`. All contiguous ``(..., L)`` (``h0``: ``(...)``); returns ``(da, db, dh0 or
    None)`` shaped like ``a``, ``h`` and ``h0``."""
    L = h.shape[-1]
    R = h.numel() // L if L else 0
    da = torch.empty_like(a)
    db = torch.empty_like(h)
    dh0 = torch.empty_like(h0) if h0 is not None else None
    if h.numel() == 0:
        if dh0 is not None:
            dh0.zero_()
        return da, db, dh0
    acc = acc_dtypes(a, h, h0)[0]
    scan_bwd.launch((R, L, h.dtype, acc, h0 is not None, reverse), config,
                    G=grad, A=a, H=h, H0=h0, DA=da, DB=db, DH0=dh0, R=R, L=L, REVERSE=reverse, ACC=acc)
    return da, db, dh0
