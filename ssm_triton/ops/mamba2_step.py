"""Mamba-2's decode step between its projections in one launch (``kernels/mamba2_step.py``): the conv window,
the state update and the gated RMSNorm, from in_proj's output row to out_proj's input. ``Mamba2.step`` takes it
wherever the three-launch fused step (``ops/fused_step.py``, which puts the projections in Triton too) does not
serve: past its batch limits, where cuBLAS's projections are the faster; the composed step (the three ops one by
one) keeps the calls this one does not compute (hooks on the norm, a gated-MLP part, ``torch.compile`` traces,
odd layouts). Off by default (``SSM_TRITON_M2_STEP=1`` turns it on; ``SSM_TRITON_FUSED_STEP=0`` keeps the composed
step everywhere): its first form, timed on an H100 (2026-12-07, the 130M LM's replayed step at 16 rows), took 0.6754
ms against the three ops' 0.6543 (its kernel 10.9 us a layer against their 10.8: the row's last program finished the
norm and the B/C windows alone; plus a counter fill a layer the graph replayed); the tail in one round trip a part
and the counters made with the cache are untimed. Inference only: the states are updated in place.
"""
import os

import torch

from ..kernels import mamba2_step as _k
from ..kernels.arrivals import counters
from ..modules.inference import plain
from . import _plans
from . import fused_step as fused
from ._spec import compiling

ENABLED = os.environ.get("SSM_TRITON_M2_STEP", "0").strip() not in ("", "0")
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_PLANS = _plans.Plans()


def serves(mixer, zx, conv_state, ssm_state) -> bool:
    """Whether :func:`step` computes this call of ``mixer.step`` (``zx (b, O)``: in_proj's output rows): no
    gated-MLP columns, states shaped as the block allocates them, one floating dtype a tensor, packed parameters,
    a plain norm whose groups hold whole heads, nothing recorded by autograd or traced."""
    if not (ENABLED and fused.ENABLED) or compiling() or mixer.d_ssm != mixer.d_inner:
        return False
    bsz = zx.shape[0]
    H, P, N, G = mixer.nheads, mixer.headdim, mixer.d_state, mixer.ngroups
    if not (zx.dim() == 2 and zx.shape[1] == 2 * mixer.d_ssm + 2 * G * N + H and zx.stride(1) == 1
            and tuple(conv_state.shape) == (bsz, mixer.conv_dim, mixer.d_conv)
            and tuple(ssm_state.shape) == (bsz, H, P, N)
            and zx.dtype in _DTYPES and conv_state.dtype in _DTYPES and ssm_state.dtype in _DTYPES
            and zx.device == conv_state.device == ssm_state.device):
        return False
    params = [mixer.conv1d.weight, mixer.conv1d.bias, mixer.A_log, mixer.dt_bias, mixer.D]
    if mixer.rmsnorm:
        norm = mixer.norm
        size = norm.group_size or mixer.d_ssm
        if not plain(norm) or size % P or mixer.d_ssm % size:
            return False
        params.append(norm.weight)
    if any(t is not None and (not t.is_contiguous() or t.device != zx.device) for t in params):
        return False
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (zx, *params)))


def step(mixer, zx, conv_state, ssm_state) -> torch.Tensor:
    """``y (b, d_ssm)`` in ``zx``'s dtype, out_proj's input; rolls ``conv_state`` and updates ``ssm_state`` in
    place. Call only where :func:`serves` says so (it checks the call)."""
    norm = mixer.norm if mixer.rmsnorm else None
    conv_w = mixer.conv1d.weight.view(mixer.conv_dim, mixer.d_conv)
    tensors = (zx, conv_state, conv_w, mixer.conv1d.bias, ssm_state, mixer.A_log, mixer.dt_bias, mixer.D,
               None if norm is None else norm.weight, counters(ssm_state, ssm_state.shape[0]))
    opts = dict(ngroups=mixer.ngroups, norm_size=(norm.group_size or mixer.d_ssm) if norm is not None else mixer.d_ssm,
                eps=norm.eps if norm is not None else 0.0, gate_first=norm is not None and not norm.norm_before_gate)
    plan, key = _plans.lookup(_PLANS, tensors, tuple(opts.values()))
    if plan:
        return plan(tensors)[0]
    y = _k.step(*tensors, **opts)
    _plans.remember(_PLANS, key, lambda: _k.step_plan(*tensors, **opts))
    return y
