"""``C B^T`` inside each chunk, once per group: ``cb (b, G, n_chunks, Q, Q)`` fp32.

Every head of a group needs the same ``C_t . B_s`` for each pair of steps of a chunk; computing it once
here and reading it from L2 in the forward's output stage and the backward's dx/dB stage halves their
tensor-core work when many heads share a group (Mamba-2: 64 or more heads, one group). The blocks
above the diagonal are computed too but never read: this stage is a head's worth of work, no more.
"""
import triton
import triton.language as tl

from .common import mm
from ..tuning import Kernel


@triton.jit
def _bmm_kernel(B, C, CB, L, G, N, SB, SC, nc, Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                BLOCK_N: tl.constexpr, DOT: tl.constexpr):
    per: tl.constexpr = Q // BLOCK_M
    c = tl.program_id(0) // (per * per)
    mb = (tl.program_id(0) // per) % per
    kb = tl.program_id(0) % per
    bg = tl.program_id(1)
    bi = bg // G
    g = bg % G
    t = c * Q + mb * BLOCK_M + tl.arange(0, BLOCK_M)
    s = c * Q + kb * BLOCK_K + tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)
        n_ok = ns < N
        c_t = tl.load(C + ((bi.to(tl.int64) * L + t) * SC + g * N)[:, None] + ns[None, :],
                      mask=(t < L)[:, None] & n_ok[None, :], other=0.0)
        b_s = tl.load(B + ((bi.to(tl.int64) * L + s) * SB + g * N)[None, :] + ns[:, None],
                      mask=(s < L)[None, :] & n_ok[:, None], other=0.0)
        acc += mm(c_t, b_s, DOT)
    dst = CB + ((bg.to(tl.int64) * nc + c) * Q + (mb * BLOCK_M + tl.arange(0, BLOCK_M)))[:, None] * Q \
        + (kb * BLOCK_K + tl.arange(0, BLOCK_K))[None, :]
    tl.store(dst, acc)


bmm_kernel = Kernel(_bmm_kernel)
