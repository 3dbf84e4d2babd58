"""Mamba-3 SISO's chunked scan against mamba_ssm's Triton kernels (``mamba_ssm.ops.triton.mamba3``), imported
past mamba_ssm's ``__init__`` (they need no build); MIMO (rank 4) against mamba_ssm's TileLang op where TileLang
is installed, and against our SISO at the same shape (the issue's aim: within 1.5x). The bytes and FLOPs are in
``counts.py``."""
import os

import torch

from . import counts
from .peers import load_past_package_init
from .workloads import Workload, keyword_impl, switched_impl


def _inputs(device, io, b, L, H, Hqk, P, N, S, R) -> dict:
    """A Block-like problem (steps in [0.001, 0.101], ADT = A DT with A in [-2.1, -0.1], biases near 1, D and Z) with
    its cotangent ``g``; MIMO's rank-R Q, K, biases and projections when ``R`` is given."""
    g = lambda *s: torch.randn(*s, device=device).to(io)  # noqa: E731
    f = lambda *s: torch.randn(*s, device=device)  # noqa: E731
    rank = () if R is None else (R,)
    dt = torch.rand(b, H, L, device=device) * 0.1 + 0.001
    x = {"Q": g(b, L, *rank, Hqk, N), "K": g(b, L, *rank, Hqk, N), "V": g(b, L, H, P),
         "ADT": -(torch.rand(b, H, L, device=device) * 2 + 0.1) * dt, "DT": dt, "Trap": f(b, H, L),
         "Q_bias": 1 + 0.1 * f(H, *rank, N), "K_bias": 1 + 0.1 * f(H, *rank, N), "Angles": f(b, L, H, S), "D": f(H),
         "Z": g(b, L, H, P)}
    if R is not None:
        x.update(MIMO_V=f(H, R, P) / R, MIMO_Z=f(H, R, P), MIMO_Out=f(H, R, P) / R)
    for v in x.values():
        v.requires_grad_()
    x["g"] = g(b, L, H, P)
    return x


def _walk_row(impl, direction: str) -> dict:
    """``SSM_TRITON_BENCH_WALK=1``: a fwd+bwd row ``ssm_triton_stages`` with the backward by the SSD's stages
    (``SSM_TRITON_WALK_BWD=0``; the default walks in one launch where its programs fill the GPU,
    ``kernels/ssd/walk_bwd.py``), beside the default route and the peers in one process."""
    if os.environ.get("SSM_TRITON_BENCH_WALK") != "1" or direction != "fwd+bwd":
        return {}
    from ssm_triton.kernels.ssd import launch
    return {"ssm_triton_stages": switched_impl(impl, launch, "WALK_BWD", "0")}


def mamba3_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """The issue's shape, B=8 L=4096 H=32 N=128 P=64 bf16 with one Q/K head, half the dimensions rotated,
    D and Z; and a small prefill (b=1, L=2048)."""
    from ssm_triton import mamba3_siso_combined

    H, Hqk, P, N, chunk = (2, 1, 8, 16, 16) if quick else (32, 1, 64, 128, 64)
    S = N // 4
    io = torch.float32 if quick else torch.bfloat16
    rows = [(1, 40)] if quick else [(8, 4096), (1, 2048)]
    peers = {}
    mod, why = load_past_package_init("mamba_ssm.ops.triton.mamba3.mamba3_siso_combined")
    if mod is None:
        notes.add(f"mamba_ssm mamba3 skipped: {why}")
    else:
        peers["mamba_ssm"] = mod.mamba3_siso_combined

    def make(b, L):
        return lambda: _inputs(device, io, b, L, H, Hqk, P, N, S, None)

    out = []
    for b, L in rows:
        for direction in ("fwd", "fwd+bwd"):
            nbytes, flops = counts.mamba3_siso(b, L, H, Hqk, P, N, S, chunk, torch.tensor([], dtype=io).element_size(),
                                               direction)
            impls = {"ssm_triton": keyword_impl(mamba3_siso_combined, chunk_size=chunk)}
            impls.update(_walk_row(keyword_impl(mamba3_siso_combined, chunk_size=chunk), direction))
            for name, fn in peers.items():
                impls[name] = keyword_impl(fn, chunk_size=chunk)
            out.append(Workload("mamba3_siso", (b, L, H, Hqk, P, N, S, chunk), io, direction, nbytes, flops,
                                make(b, L), impls))
    return out


def mamba3_mimo_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """Rank 4 at the SISO rows' shape (B=8 L=4096 H=32 N=128 P=64 bf16, one Q/K head, a quarter of the dimensions
    rotated as mamba_ssm's rope_fraction 0.5 gives, D and Z), chunks of 16 steps (64 rank-steps)."""
    from ssm_triton import mamba3_mimo

    H, Hqk, P, N, R, chunk = (2, 1, 8, 16, 2, 8) if quick else (32, 1, 64, 128, 4, 16)
    S = N // 4
    io = torch.float32 if quick else torch.bfloat16
    rows = [(1, 40)] if quick else [(8, 4096), (1, 2048)]
    peers = {}
    mod, why = load_past_package_init("mamba_ssm.ops.tilelang.mamba3.mamba3_mimo")
    if mod is None:
        notes.add(f"mamba_ssm mamba3_mimo skipped: {why}")
    else:
        peers["mamba_ssm"] = lambda **x: mod.mamba3_mimo(**x, rotary_dim_divisor=4, dtype=x["V"].dtype)

    def make(b, L):
        return lambda: _inputs(device, io, b, L, H, Hqk, P, N, S, R)

    out = []
    for b, L in rows:
        for direction in ("fwd", "fwd+bwd"):
            nbytes, flops = counts.mamba3_mimo(b, L, R, H, Hqk, P, N, S, chunk,
                                               torch.tensor([], dtype=io).element_size(), direction)
            impls = {"ssm_triton": keyword_impl(mamba3_mimo, chunk_size=chunk)}
            impls.update(_walk_row(keyword_impl(mamba3_mimo, chunk_size=chunk), direction))
            # SSM_TRITON_BENCH_MIMO_CHUNKS="32 64": our op at other chunk sizes too (the stages' pseudo-chunk is
            # R times it), to see what the chunk costs; the peers keep the row's chunk
            for c in os.environ.get("SSM_TRITON_BENCH_MIMO_CHUNKS", "").split():
                impls[f"ssm_triton_chunk{c}"] = keyword_impl(mamba3_mimo, chunk_size=int(c))
            for name, fn in peers.items():
                impls[name] = keyword_impl(fn, chunk_size=chunk)
            out.append(Workload("mamba3_mimo", (b, L, R, H, Hqk, P, N, S, chunk), io, direction, nbytes, flops,
                                make(b, L), impls))
    return out
