"""The SSD stages with their per-step terms given: ``y_t = sum_{s <= t} exp(cs_t - cs_s) (q_t . k_s) scale_s x_s
+ exp(cs_t) H_in q_t`` (``cs`` the within-chunk sum of the decays ``a``), forward and backward.

Mamba-3's MIMO scan runs on it in pseudo-time (``ops/mamba3_mimo.py``): step ``(t, r)`` of rank ``r`` at
``t R + r``, with the decay only at ``r = 0``, so the chunk's tensor-core tiles see the ranks as steps. The terms
(rotations, the trapezoid's weights, the in-step R x R block) are computed around it.

``_decay_grad_kernel`` turns the pair stages' row sums into each step's decay gradient (the SSD's step-size
backward does the same inside ``_dt_bwd_kernel``, chained into ``dt``)."""
import torch
import triton
import triton.language as tl

from ..host import cdiv, next_power_of_2
from ..ssd import launch as ssd
from ..ssd.fused import mamba3_fused_forward
from ..ssd.bwd_dt import decay_grad
from ..ssd.chunk_state import MODE_VARLEN
from ..ssd.cumsum import chunk_row, store_cum
from ..tuning import Kernel


@triton.jit
def _decay_grad_kernel(RS, CS, INTER, US, FPART, DA, L, H, Lp, nc, n_f, Q: tl.constexpr, BLOCK_F: tl.constexpr):
    c, bh, _, _, t, ok = chunk_row(L, H, Q)
    d_a = decay_grad(RS, CS, INTER, US, FPART, bh.to(tl.int64) * Lp + t, bh, nc, c, ok, n_f, BLOCK_F)
    tl.store(DA + bh.to(tl.int64) * L + t, d_a, mask=ok)


decay_grad_kernel = Kernel(_decay_grad_kernel)


@triton.jit
def _pseudo_steps_kernel(SCALE, A, DTP, CUM, L, T, H, Lp, lo_off, R: tl.constexpr, Q: tl.constexpr):
    """One chunk of pseudo-steps ``t R + r`` of a (row, head): ``DTP`` the step's scale (every rank), ``CUM`` the
    within-chunk sum of the decay (only at ``r = 0``) in fp64, kept as fp32 (hi, lo) planes; zeros past ``T``."""
    _, bh, _, _, t, ok = chunk_row(T, H, Q)
    step = t // R
    src = bh.to(tl.int64) * L + step
    scale = tl.load(SCALE + src, mask=ok, other=0.0).to(tl.float32)
    a = tl.load(A + src, mask=ok & (t % R == 0), other=0.0).to(tl.float32)
    cum = tl.cumsum(a.to(tl.float64), axis=0)
    row = bh.to(tl.int64) * Lp + t
    tl.store(DTP + row, scale)
    store_cum(CUM, lo_off, row, cum)


pseudo_steps_kernel = Kernel(_pseudo_steps_kernel)


def pseudo_steps(scale: torch.Tensor, a: torch.Tensor, R: int, chunk_size: int):
    """``scale, a (b, H, L)`` fp32 -> ``(dtp (b, H, Lp), cum (2, b, H, Lp))`` over the ``T = L R`` pseudo-steps
    padded to whole chunks (``Lp``): one launch where the padding, the ranks' repeat and the fp64 sum were a
    dozen PyTorch ops (an fp64 scan of 0.43 ms among them at B8 L4096 R4 H32 on the H200, 2026-12-04b)."""
    b, H, L = scale.shape
    T = L * R
    nc = cdiv(T, chunk_size)
    Lp = nc * chunk_size
    dtp = torch.empty((b, H, Lp), device=scale.device, dtype=torch.float32)
    cum = torch.empty((2, b, H, Lp), device=scale.device, dtype=torch.float32)
    pseudo_steps_kernel((nc, b * H), SCALE=scale.contiguous(), A=a.contiguous(), DTP=dtp, CUM=cum, L=L, T=T, H=H,
                        Lp=Lp, lo_off=b * H * Lp, R=R, Q=chunk_size)
    return dtp, cum


def ssd_plan(x, N, chunk_size, **overrides):
    """The SSD stages' plan as Mamba-3 takes it (SISO and MIMO): two pipeline stages in the dx kernel and the pair
    kernel's programs in row order, where the SSD's rule runs one stage and the longest rows first (measured on the
    SSD's shapes only, 2026-12-04, not on Mamba-3's; the tuner tries both), and the chunk scan at the step tiles of
    the plan, without the split decay, order and chunk states' tile the SSD's few-rows rule takes (timed on the Mamba2
    prefill only, 2026-12-07)."""
    return ssd.plan(x, N, chunk_size, **{"dx_stages": None, "heavy_first": False, **ssd.PLAIN_SCAN, **overrides})


def core_plan(x, N, chunk_size, io_dtype):
    """The SSD plan for ``x`` whose tensor-core operands take ``io_dtype`` (bf16 or fp16 inputs; ``x`` and its
    gradients in that dtype too, or fp32). The interpreter emulates the tensor cores' products
    (``ssd/common.mm``)."""
    if io_dtype == torch.float32:
        return ssd_plan(x, N, chunk_size)
    return ssd_plan(x, N, chunk_size, dot=tl.bfloat16 if io_dtype == torch.bfloat16 else tl.float16)


def core_forward(x, k, q, scale, a, h0, chunk_size, io_dtype=torch.float32, seq=None, cu=None, R=1, inference=False):
    """``x (b, T, H, P)``, ``k, q (b, T, H, N)`` (cast to the plan's tensor-core dtype), ``scale, a (b, H, T / R)``
    fp32 per step (pseudo-step ``t R + r`` takes step ``t``'s scale, and its decay at ``r = 0`` only: see
    :func:`pseudo_steps`), ``h0 (b, H, P, N)`` fp32 or None; ``io_dtype`` the tensor cores' operand dtype (:func:`core_plan`);
    a packed row (batch 1): ``seq (1, T)`` int32 each step's sequence, ``cu (n + 1,)`` int32 their bounds.
    Returns ``(y (b, T, H, P) fp32 whatever x's dtype (the in-step correction added outside takes back terms
    the stages added: a rounded y would keep their rounding), final (b, H, P, N) fp32, varlen (n, H, P, N) fp32 or None,
    (dtp, cum, hs))``: the last is what :func:`core_backward` reads besides the inputs. ``inference``: nothing is
    kept for a backward (the last is None), and rows without packed sequences take the SSD's one-launch forward (or
    its segments) where its rule would, reading the steps' weights and decays as given."""
    b, T, H, P = x.shape
    N = k.shape[3]
    p = core_plan(x, N, chunk_size, io_dtype)
    x = x.contiguous()
    k = k.to(p.torch_dot).contiguous()
    q = q.to(p.torch_dot).contiguous()
    dot = None
    if seq is None:   # the SSD's one-launch forward: where its rule takes an inference call, FUSED_TRAIN a training one
        dot = (ssd.fused_dot(x, None, False, p.dot) if inference
               else ssd.fused_training_dot(x, None, False, chunk_size, p.dot))
    if dot is not None:
        made = mamba3_fused_forward(x, k, q, scale.float().contiguous(), a.float(), None, None, None,
                                    h0.float().contiguous() if h0 is not None else None, p.dot, R,
                                    keep=None if inference else (chunk_size, p.torch_dot), out_dtype=torch.float32)
        if inference:
            return made[0], made[1], None, None
    dtp, cum = pseudo_steps(scale, a, R, chunk_size)
    if dot is not None:   # it kept the entering states; the pseudo-steps' rows are what the backward reads of the steps
        return made[0], made[1], None, (dtp, cum, made[2][0])
    hs, final = ssd.own_state_passing(x, k, dtp, cum, seq, h0.float().contiguous() if h0 is not None else None, T, p)
    y, _ = ssd.chunk_scan(x, k, q, ssd.bmm(k, q, p), dtp, cum, hs, None, None, seq, p, store_y=False,
                          out_dtype=torch.float32)
    varlen = ssd.chunk_state(x, k, dtp, cum, seq, MODE_VARLEN, p, hprev=hs, cu=cu) if cu is not None else None
    return y, final, varlen, (dtp, cum, hs)


def core_backward(dy, dfinal, x, k, q, kept, chunk_size, deterministic=False, io_dtype=torch.float32, seq=None, R=1):
    """Gradients of :func:`core_forward`: ``(dx, dk, dq, dscale, da, dh0)`` (``dk, dq, dscale, da, dh0`` fp32,
    ``dscale`` and ``da`` per step, ``(b, H, T / R)``; ``dh0`` always computed). ``dy`` None: only the final
    state's gradient flows. A packed row takes no final-state gradient (``dfinal`` None)."""
    dtp, cum, hs = kept
    b, T, H, P = x.shape
    N = k.shape[3]
    p = core_plan(x, N, chunk_size, io_dtype)
    k = k.to(p.torch_dot).contiguous()   # as the forward cast them
    q = q.to(p.torch_dot).contiguous()
    dy = torch.zeros_like(x) if dy is None else dy.to(x.dtype).contiguous()
    dfinal = dfinal.float().contiguous() if dfinal is not None else None
    if ssd.walks(b, H, P, N, T, seq, p, x.device):   # one launch walking each (row, head)'s chunks in reverse
        g = ssd.walk_backward(x, k, q, dy, dtp, cum, hs, dfinal, None, None, p, dd=False)
    else:
        g = staged_backward(dy, dfinal, x, k, q, dtp, cum, hs, seq, p, deterministic, heads=1)
    # per step: the ranks' scales summed, the decay's gradient where it acts (r = 0)
    dscale, da = g.dscale[..., :T], g.da
    dscale = dscale.reshape(b, H, T // R, R).sum(-1) if R > 1 else dscale
    da = da.view(b, H, T // R, R)[..., 0] if R > 1 else da
    return g.dx, g.dk, g.dq, dscale, da, g.dh0


def staged_backward(dy, dfinal, x, k, q, dtp, cum, hs, seq, p, deterministic, D=None, diag=None, dd=False,
                    heads=None) -> ssd.WalkGrads:
    """The backward of an SSD whose heads each have their own ``k, q (b, T, H, N)`` by the SSD's stages (the
    adjoint state passing, the pair stages, the decay's gradient once per chunk): the fields
    :func:`~..ssd.launch.walk_backward` gives in one launch (``dscale``, ``ddiag`` over the padded rows). ``D``,
    ``diag``, ``dd``, ``heads`` as :func:`~..ssd.launch.pair_grads` takes them."""
    b, T, H, P = x.shape
    N = k.shape[3]
    nc = cdiv(T, p.Q)
    # the fp32 adjoint sums (b, H, chunks, P, N), where they are stored, are not held through the pair stage
    ds, dh0, fpart = ssd.adjoint_state_passing(dy, q, dtp, cum, hs, seq, dfinal, T, p)
    dx, s = ssd.pair_grads(x, k, q, dy, dtp, cum, hs, ds, D, seq, p, heads, deterministic, diag=diag, dd=dd)
    da = torch.empty((b, H, T), device=x.device, dtype=torch.float32)
    decay_grad_kernel((nc, b * H), RS=s.pair_rows, CS=s.pair_cols, INTER=s.entering_terms, US=s.state_terms,
                      FPART=fpart, DA=da, L=T, H=H, Lp=nc * p.Q, nc=nc, n_f=fpart.shape[-1], Q=p.Q,
                      BLOCK_F=next_power_of_2(fpart.shape[-1]))
    # one head per group (each head has its own k, q), so the pair stages' head blocks are the heads
    return ssd.WalkGrads(dx, s.db_part.view(b, T, H, N), s.dc_part.view(b, T, H, N), s.direct_terms, s.diag_grads,
                         da, dh0, s.dd)
