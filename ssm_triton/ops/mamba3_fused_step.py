"""A ``Mamba3`` block's decode step inside the LM with its projections in the fused steps' kernels
(on by default; ``SSM_TRITON_M3_FUSED_PROJ=0`` keeps the module's step; H100 2026-12-07, the 130M-size Mamba3 LM
replayed: 0.353 / 0.511 / 0.775 ms a token at b1 / b4 / b16 against 0.489 / 0.534 / 0.775): the pre-norm block's
add and RMSNorm with in_proj in one launch (``kernels/fused_step.in_step``), the block's step between the
projections as ``Mamba3.step_from_projection`` takes it (one step kernel), then the output norm (where the block has
one) with out_proj in one launch (``out_step``). Three launches a layer where the LM took four (its add+norm, cuBLAS in_proj, the step kernel,
cuBLAS out_proj; the 130M-size Mamba3 LM at b1 on the H200, 2026-12-07: 0.452 ms of kernels a token, the two
projections 0.243 of it and the norm 0.042), and the two projections' launches wait on their predecessors the
programmatic way, their weights loaded before that wait.

MIMO blocks with ``is_outproj_norm`` (each rank normalised, then summed through ``mimo_o``) keep the module's step.
"""
from __future__ import annotations

import os

import torch

from ..kernels import fused_step as _k
from ..modules.inference import plain
from ._layout import records_graph
from ._spec import compiling
from . import fused_step as _fs

FUSED_PROJ = os.environ.get("SSM_TRITON_M3_FUSED_PROJ", "1").strip() not in ("", "0")


def serves(mixer, hidden_states, norm) -> bool:
    """Whether :func:`step` takes this decode step: switched on (and the fused steps enabled), no graph recorded
    nor traced, ``hidden_states (b, 1, d_model)`` with ``b`` up to the fused steps' rows (the replayed steps' while a
    CUDA graph is captured), the input, the LM's norm and both projections in one floating dtype, plain modules
    (no hooks, no adapters), and no per-rank output norm (MIMO with ``is_outproj_norm``)."""
    if not (FUSED_PROJ and _fs.ENABLED) or compiling() or type(hidden_states) is not torch.Tensor:
        return False
    if hidden_states.dim() != 3 or mixer.is_mimo and mixer.is_outproj_norm:
        return False
    bsz, one, d_model = hidden_states.shape
    most = _fs.MAX_BATCH["Mamba2"] if _fs.capturing(hidden_states) else _fs.MAX_EAGER_BATCH
    weights = (mixer.in_proj.weight, mixer.out_proj.weight, norm.weight)
    modules = (mixer.in_proj, mixer.out_proj, norm, mixer.norm if mixer.is_outproj_norm else None)
    return (one == 1 and 0 < bsz <= most and d_model == mixer.d_model and hidden_states.dtype in _fs._DTYPES
            and all(w.dtype == hidden_states.dtype and w.is_contiguous() and w.device == hidden_states.device
                    for w in weights)
            and plain(*modules) and not records_graph(hidden_states, *weights))


def step(mixer, hidden_states, states, residual, norm, residual_in_fp32):
    """One token through the LM block ``norm -> mixer`` with ``mixer`` a ``Mamba3``: ``hidden_states (b, 1,
    d_model)`` the last block's output, ``residual`` the running residual or None, ``states`` the block's four
    inference states (updated in place). Returns the LM block's ``(mixer output (b, 1, d_model), residual')``, or
    None where :func:`serves` says no (the caller takes the composed route)."""
    if not serves(mixer, hidden_states, norm):
        return None
    bsz = hidden_states.shape[0]
    pdl = _k.pdl_enabled(hidden_states.device, bsz, _fs.PDL_ROWS["Mamba2"])
    proj, res_out = _k.in_step(*_fs._in_rows(hidden_states, residual, norm, residual_in_fp32), mixer.in_proj.weight,
                               mixer.in_proj.bias, pdl=pdl)
    parts = torch.split(proj, mixer.split_sizes(), dim=-1)
    y = mixer.step_from_projection(parts, states).reshape(bsz, mixer.d_inner)
    if y.stride(-1) != 1 or y.stride(0) != mixer.d_inner:
        y = y.contiguous()
    if mixer.is_outproj_norm:   # norm(y) * silu(z) over each head's channels, z in proj's first d_inner columns
        gate = (*_fs._norm_args(mixer.norm), mixer.norm.group_size or mixer.d_inner, not mixer.norm.norm_before_gate)
    else:                       # y gated inside the step
        gate = (None, 0.0, mixer.d_inner, False)
    out = _k.out_step(y, proj, *gate, mixer.out_proj.weight, mixer.out_proj.bias, pdl=pdl)
    return out[:, None], res_out.view(hidden_states.shape) if res_out is not None else None
