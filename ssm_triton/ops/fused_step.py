"""The blocks' decode steps fused (``kernels/fused_step.py``): Mamba-2's in three launches a layer,
Mamba-1's in five (the composed steps take eight to ten). The blocks' ``step`` and the language model's
decoding take them whenever they serve the call, and the composed step (the ops one by one) otherwise.
Inference only: nothing here records a graph.

``SSM_TRITON_FUSED_STEP=0`` (or ``ENABLED = False`` here) keeps the composed step everywhere, for
comparisons; the two agree up to the order in which products are summed.
"""
from __future__ import annotations

import os

import torch

from ..kernels import fused_step as _k
from ..kernels.state_update import state_update
from ._layout import records_graph

ENABLED = os.environ.get("SSM_TRITON_FUSED_STEP", "1").strip() not in ("", "0")
# Up to 4 rows the fused step's projections are matrix-vector products (one row a program); at 16 rows its
# tensor-core form lost to the composed step on the H200 (130M Mamba2 LM, replayed step: 1.02 vs 0.78 ms,
# 2026-12-02), so larger batches keep the composed step (cuBLAS)
MAX_BATCH = 4
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def serves(mixer, hidden_states, conv_state, ssm_state) -> bool:
    """Whether a fused step computes this ``Mamba2.step`` or ``Mamba.step`` call: enabled, no graph recorded
    (nor a ``torch.compile`` trace), states shaped as the block allocates them for this batch, one
    floating dtype for the input and the projections, batch ≤ ``MAX_BATCH``; for Mamba-2 no gated-MLP
    columns in in_proj. Anything else, bad input included, goes the composed way, which checks and
    reports it."""
    if not ENABLED or not isinstance(hidden_states, torch.Tensor) or hidden_states.dim() != 3:
        return False
    bsz, one, d_model = hidden_states.shape
    if not (one == 1 and 0 < bsz <= MAX_BATCH and d_model == mixer.d_model and hidden_states.dtype in _DTYPES
            and isinstance(conv_state, torch.Tensor) and isinstance(ssm_state, torch.Tensor)
            and ssm_state.dtype in _DTYPES and hidden_states.device == conv_state.device == ssm_state.device):
        return False
    if hasattr(mixer, "nheads"):   # Mamba-2
        weights = (mixer.in_proj.weight, mixer.out_proj.weight)
        fits = (mixer.d_ssm == mixer.d_inner and tuple(conv_state.shape) == (bsz, mixer.conv_dim, mixer.d_conv)
                and tuple(ssm_state.shape) == (bsz, mixer.nheads, mixer.headdim, mixer.d_state))
        params = (mixer.A_log, mixer.dt_bias, mixer.D)
    else:                          # Mamba-1
        weights = (mixer.in_proj.weight, mixer.x_proj.weight, mixer.dt_proj.weight, mixer.out_proj.weight)
        fits = (tuple(conv_state.shape) == (bsz, mixer.d_inner, mixer.d_conv)
                and tuple(ssm_state.shape) == (bsz, mixer.d_inner, mixer.d_state))
        params = (mixer.A_log, mixer.dt_proj.bias, mixer.D)
    return (fits and all(w.dtype == hidden_states.dtype and w.is_contiguous() and w.device == hidden_states.device
                         for w in weights) and mixer.conv1d.weight.is_contiguous()
            and not records_graph(hidden_states, *weights, *params))


def mamba2_step(mixer, hidden_states, conv_state, ssm_state, residual=None, norm=None, residual_in_fp32=False):
    """One token through a ``Mamba2`` block, states updated in place; call where :func:`serves` says so.

    ``hidden_states (b, 1, d_model)``. Without ``norm`` it is the block's input and the result is
    ``(out (b, 1, d_model), None)``. With ``norm`` (the LM block's pre-norm ``RMSNorm``) the block's input
    is ``norm(hidden_states + residual)`` (``residual`` (b, 1, d_model) or None) and the result
    ``(out, hidden_states + residual)``, the sum in fp32 when ``residual_in_fp32``: the LM block's
    ``(mixer output, residual)``."""
    bsz = hidden_states.shape[0]
    H, P, N, G, d_ssm = mixer.nheads, mixer.headdim, mixer.d_state, mixer.ngroups, mixer.d_ssm
    zx, res_out = _in_projection(mixer, hidden_states, conv_state, residual, norm, residual_in_fp32, d_ssm)
    gn = G * N
    z = zx[:, :d_ssm].view(bsz, H, P)
    x = zx[:, d_ssm:2 * d_ssm].view(bsz, H, P)
    B = zx[:, 2 * d_ssm:2 * d_ssm + gn].view(bsz, G, N)
    C = zx[:, 2 * d_ssm + gn:2 * d_ssm + 2 * gn].view(bsz, G, N)
    dt = zx[:, 2 * d_ssm + 2 * gn:][..., None].expand(bsz, H, P)
    D = mixer.D.view(H, P) if mixer.D_has_hdim else mixer.D[:, None].expand(H, P)
    y = state_update(ssm_state, x, dt, mixer.A_log[:, None, None].expand(H, P, N), B, C, D,
                     None if mixer.rmsnorm else z, mixer.dt_bias[:, None].expand(H, P), True, None, a_is_log=True,
                     pdl=_k.pdl_enabled(hidden_states.device, bsz))
    gate = mixer.norm if mixer.rmsnorm else None
    out = _k.out_step(y.view(bsz, d_ssm), zx, gate.weight if gate is not None else None,
                      gate.eps if gate is not None else 0.0, d_ssm // G, not mixer.norm_before_gate,
                      mixer.out_proj.weight, mixer.out_proj.bias)
    return out[:, None], res_out


def mamba_step(mixer, hidden_states, conv_state, ssm_state, residual=None, norm=None, residual_in_fp32=False):
    """One token through a Mamba-1 ``Mamba`` block, states updated in place; call where :func:`serves` says
    so. Arguments and result as :func:`mamba2_step`. Five launches: [add + norm +] in_proj with the conv
    windows of ``x``; x_proj; dt_proj; the state update (``A`` read as ``A_log``, gate ``silu(z)``); out_proj."""
    bsz = hidden_states.shape[0]
    d, N, R = mixer.d_inner, mixer.d_state, mixer.dt_rank
    xz, res_out = _in_projection(mixer, hidden_states, conv_state, residual, norm, residual_in_fp32, 0)
    x = xz[:, :d]
    x_dbl, _ = _k.in_step(x, None, None, 0.0, None, mixer.x_proj.weight, None)
    dt, _ = _k.in_step(x_dbl[:, :R], None, None, 0.0, None, mixer.dt_proj.weight, None)
    y = state_update(ssm_state[:, None], x[:, None], dt[:, None], mixer.A_log[None], x_dbl[:, None, R:R + N],
                     x_dbl[:, None, R + N:], mixer.D[None], xz[:, None, d:], mixer.dt_proj.bias[None], True, None,
                     a_is_log=True, pdl=_k.pdl_enabled(hidden_states.device, bsz))
    out = _k.out_step(y.view(bsz, d), xz, None, 0.0, d, False, mixer.out_proj.weight, mixer.out_proj.bias)
    return out[:, None], res_out


def _in_projection(mixer, hidden_states, conv_state, residual, norm, residual_in_fp32, conv_lo):
    """The first launch of both steps: [the pre-norm block's add and norm ->] in_proj -> the conv windows of
    the columns from ``conv_lo`` on. ``(projection (b, O), residual' (b, 1, d_model) or None)``."""
    bsz = hidden_states.shape[0]
    rows = hidden_states.reshape(bsz, -1)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    res_rows, norm_w, eps, keep = None, None, 0.0, None
    if norm is not None:
        res_rows = residual.reshape(bsz, -1).contiguous() if residual is not None else None
        norm_w, eps = norm.weight, norm.eps
        keep = torch.float32 if residual_in_fp32 else (residual.dtype if residual is not None else hidden_states.dtype)
    conv = mixer.conv1d
    zx, res_out = _k.in_step(rows, res_rows, norm_w, eps, keep, mixer.in_proj.weight, mixer.in_proj.bias,
                             conv.weight.squeeze(1), conv.bias, conv_state, conv_lo)
    return zx, res_out.view(hidden_states.shape) if res_out is not None else None
