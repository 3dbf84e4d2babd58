"""A Mamba2 layer's gated RMSNorm deferred past out_proj (inference calls).

The Mamba2 block ends with ``out_proj(rmsnorm(y silu(z)) w)``. Where the norm spans all of ``d_ssm`` (one group,
the gate first: the released Mamba2 models), its ``1 / rms`` is one number a step, and a number a step commutes
with the projection: ``out_proj(g w) / rms(g)`` for ``g = y silu(z)``. So the chunk scan's programs gate, multiply
by ``w`` and write ``g w`` with each row's partial sums of squares (``kernels/ssd/chunk_scan.py``), out_proj runs
on ``g w``, and the step's scale is taken by whatever reads the layer's output next: the next block's add+norm, or
the final norm, in the same kernel (``kernels/norm.py``'s ``SS``). The gated norm's launch and its read of ``y``
and ``z`` and write of the normed ``(b, L, d_ssm)`` are gone; the chunk scan reads ``z`` instead.

A decode step's composed route (past the fused steps' rows) defers it the same way: the state update gates, multiplies
by ``w`` and writes each channel's ``g^2`` (``kernels/state_update.py``'s ``NORM_W``), and the next add+norm sums
them (on: ``SSM_TRITON_NORM_DEFER_STEP=0`` turns it off; the 130M Mamba2 LM's replayed 16-row step 0.5915 ms against
0.6236 without, H100, 2026-12-07).

The LM's blocks ask for it (``models/lm.py``); ``SSM_TRITON_NORM_DEFER=0`` turns it off. A call it does not fit
(a gradient to come, an out_proj bias, several norm groups, the norm before the gate, a gated MLP part, a call
the one-launch SSD kernel would take) gets None and runs the usual op.
"""
import os
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..kernels import replay as _replay
from ..kernels import state_update as _ks
from ..kernels.ssd import launch as _k
from ._layout import contiguous, records_graph, step_strided
from .conv1d import split_conv
from .ssd import _route as _ssd_route

DEFER = os.environ.get("SSM_TRITON_NORM_DEFER", "1").strip() not in ("", "0")
# the decode steps' form: the 16-row replayed step of the 130M Mamba2 LM 0.5915 ms against 0.6236 without (H100,
# 2026-12-07, tuner off, bench/results/h100-2026-12-07g); "0" turns it off
DEFER_STEP = os.environ.get("SSM_TRITON_NORM_DEFER_STEP", "1").strip() not in ("", "0")


class Deferred(NamedTuple):
    """A Mamba2 layer's output ``raw * scale`` with the scale not yet applied: ``raw (b, L, d_model)`` out_proj's
    output of ``g w``; ``ss (b, L, k)`` fp32 partial sums of ``g^2`` a step; the step's scale is
    ``1 / sqrt(sum(ss) / dim + eps)``."""
    raw: Tensor
    ss: Tensor
    dim: int
    eps: float

    @property
    def shape(self) -> torch.Size:
        """The output's shape (``raw``'s)."""
        return self.raw.shape

    def scale(self) -> Tensor:
        """``(b, L)`` fp32."""
        return torch.rsqrt(self.ss.sum(-1) / self.dim + self.eps)

    def materialize(self) -> Tensor:
        """The layer's output as the usual route gives it, in ``raw``'s dtype."""
        return (self.raw.float() * self.scale()[..., None]).to(self.raw.dtype)


def materialized(hidden):
    """``hidden`` itself, or a :class:`Deferred`'s output."""
    return hidden.materialize() if isinstance(hidden, Deferred) else hidden


_REPLAYS = _replay.Replays()


def split_conv1d_scan_deferred(zxbcdt: Tensor, conv1d_weight: Tensor, conv1d_bias: Optional[Tensor], dt_bias: Tensor,
                               A_log: Tensor, D: Tensor, chunk_size: int, seq_idx: Optional[Tensor], dt_limit,
                               return_final_states: bool, rmsnorm_weight: Tensor, rmsnorm_eps: float,
                               outproj_weight: Tensor, headdim: int, ngroups: int):
    """:func:`~.combined.split_conv1d_scan_from_log` with the gated norm over all of ``d_ssm``, the gate first, no
    out_proj bias, as a :class:`Deferred` (with the final states ``(b, H, P, N)`` fp32 when
    ``return_final_states``), or None where the route does not fit the call. Shapes as that function's:
    ``zxbcdt (b, L, 2 H P + 2 G N + H)``, ``conv1d_weight (H P + 2 G N, W)``, ``A_log, dt_bias (H,)``, ``D (H,)`` or
    ``(H, P)``, ``rmsnorm_weight (H P,)``, ``outproj_weight (d_model, H P)``."""
    if not DEFER or records_graph(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A_log, D, rmsnorm_weight,
                                  outproj_weight):
        return None
    H, P = D.shape[0], int(headdim)
    dim = H * P
    N = (conv1d_weight.shape[0] - dim) // (2 * ngroups)
    bsz, L, width = zxbcdt.shape
    if width != 2 * dim + 2 * ngroups * N + H or tuple(rmsnorm_weight.shape) != (dim,) \
            or outproj_weight.shape[-1] != dim or zxbcdt.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return None
    if _k.fused_dot_of((bsz, L, H, P), zxbcdt.dtype, zxbcdt.device, seq_idx, False) is not None:
        return None   # the one-launch kernel's call: it has no deferred form
    limits = (float(dt_limit[0]), float(dt_limit[1]))
    args = (zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A_log, D, seq_idx, rmsnorm_weight, outproj_weight)
    plain = (chunk_size, limits, return_final_states, H, P, N, ngroups)
    # the SSD's route switches in the key too: a recording made under one chunk scan form must not serve another
    out = _REPLAYS.run(_replay.key_of(args + plain, _ssd_route(zxbcdt)), lambda *a: _body(*a, *plain), args)
    raw, ss, final = out
    deferred = Deferred(raw, ss, dim, float(rmsnorm_eps))
    return (deferred, final) if return_final_states else deferred


def _body(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A_log, D, seq_idx, rmsnorm_weight, outproj_weight, chunk_size,
          limits, return_final_states, H, P, N, ngroups):
    bsz, L, _ = zxbcdt.shape
    dim = H * P
    _, _, z, x, B, C, dt = split_conv(zxbcdt, conv1d_weight, conv1d_bias, seq_idx, "silu", dim, ngroups, N, H)
    s = step_strided
    (gw, ss), final, _, _ = _k.ssd_forward(
        s(x.unflatten(-1, (H, P))), s(dt), contiguous(A_log), s(B.unflatten(-1, (ngroups, N))),
        s(C.unflatten(-1, (ngroups, N))), chunk_size, contiguous(D), s(z.unflatten(-1, (H, P))), contiguous(dt_bias),
        None, contiguous(seq_idx), None, True, limits, a_log=True, norm_w=contiguous(rmsnorm_weight))
    raw = F.linear(gw.reshape(bsz, L, dim), outproj_weight)
    return raw, ss, (final if return_final_states else None)


_STEP_REPLAYS = _replay.Replays()


def state_update_deferred(state: Tensor, x: Tensor, dt: Tensor, A_log: Tensor, B: Tensor, C: Tensor, D: Tensor,
                          z: Tensor, dt_bias: Tensor, norm_w: Tensor):
    """A Mamba2 decode step's state update (``state (b, H, P, N)`` updated in place; ``x, dt, z (b, H, P)``,
    ``A_log (H, P, N)``, ``B, C (b, G, N)``, ``D, dt_bias (H, P)``, any strides, as the composed step passes them;
    softplus on the step) with its gated norm deferred: ``(g w (b, H, P), ss (b, H P) fp32)``, ``ss`` each channel's
    ``g^2`` for ``g = y silu(z)``. For the module's own calls (no checks beyond the kernel's layout)."""
    args = (state, x, dt, A_log, B, C, D, z, dt_bias, norm_w)
    return _STEP_REPLAYS.run(_replay.key_of(args), _step_body, args)


def _step_body(state, x, dt, A_log, B, C, D, z, dt_bias, norm_w):
    return _ks.state_update(state, x, dt, A_log, B, C, D, z, dt_bias, True, None, a_is_log=True, norm_w=norm_w)
