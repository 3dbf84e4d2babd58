"""Eager decode steps (``model(token, inference_params=params)``) replayed from CUDA graphs, one per batch
size and state cache.

A decode step of a small model is some 75 short launches (three a layer for the fused Mamba-2 step); called
eagerly, their Python and launch cost sets the time: the 130M Mamba2 LM at b1 took 1.39 ms a step eagerly
against 0.223 ms replayed on the H200 (2026-12-04c), 1.3 ms of it host time. ``generate`` replays its steps
from a :class:`~.generation.DecodeGraph`; this does the same for a caller that steps the model itself.

The first eager step of a (batch, cache, weights) signature captures the whole step (two warm-up steps run and
are undone, as :class:`~.generation.DecodeGraph` does); later steps copy the token in, replay, and return a
copy of the logits (a replay overwrites its output, and a caller may keep the last step's). A graph reads the
tensors it was captured with by address, so the signature holds every cache tensor's storage, shape and dtype
and every parameter's storage (:meth:`~.graph_cache.GraphCache.fingerprint`); values changed in place (the
states between steps, ``load_state_dict``) are seen. At most ``capacity`` graphs are kept, least recently used
dropped first.

Only a plain decode call is replayed: CUDA tokens ``(b, 1)``, ``inference_params`` past the prefill
(``seqlen_offset > 0``), no graph recorded (``no_grad`` / ``inference_mode``), no ``attention_mask`` or mixer
keywords, not under ``torch.compile`` or inside another capture (``generate``'s own graph), with the
switches the step's launches read unchanged since the capture. Off by default until it is timed on a GPU:
``SSM_TRITON_DECODE_GRAPH=1`` (or the model's ``cuda_graph_decode = True``) turns it on.
"""
from __future__ import annotations

import os

import torch

from ..kernels import fused_step as _fused_kernels
from ..ops import fused_step as _fused
from .graph_cache import GraphCache


def enabled_by_env() -> bool:
    return os.environ.get("SSM_TRITON_DECODE_GRAPH", "0").strip() not in ("", "0")


def replayable(input_ids, inference_params, attention_mask, mixer_kwargs) -> bool:
    """Whether a forward call may take a decode graph (see the module docstring)."""
    if inference_params is None or attention_mask is not None or mixer_kwargs:
        return False
    if not (isinstance(input_ids, torch.Tensor) and input_ids.is_cuda and input_ids.dim() == 2
            and input_ids.shape[1] == 1) or torch.is_grad_enabled():
        return False
    if getattr(inference_params, "seqlen_offset", 0) <= 0:
        return False
    return not (torch.compiler.is_compiling() or torch.cuda.is_current_stream_capturing())


def _cache_signature(cache: dict) -> tuple:
    """Every state tensor's storage, shape, strides and dtype, by layer (what a captured step reads and writes)."""
    sig = []
    for k, states in cache.items():
        parts = states if isinstance(states, (tuple, list)) else (states,)
        sig.append((k, tuple((t.data_ptr(), t.shape, t.stride(), t.dtype) if isinstance(t, torch.Tensor) else t
                             for t in parts)))
    return tuple(sig)


class DecodeGraphs(GraphCache):
    """The captured decode steps of one model, by (batch, token dtype, device, cache signature, switches)."""

    def __init__(self, capacity: int = 4):
        super().__init__(capacity)
        self.capturing = False   # set while a DecodeGraph of the model captures: its warm-up steps run eagerly

    def __call__(self, model, weights: tuple, input_ids: torch.Tensor, inference_params) -> torch.Tensor:
        """``model(input_ids, inference_params=inference_params).logits`` through a graph (captured on the
        first call of its signature); ``weights``: the model's parameter fingerprint."""
        from .generation import DecodeGraph

        bsz = input_ids.shape[0]
        switches = (_fused.ENABLED, _fused_kernels.PDL_ENABLED)
        head = (bsz, input_ids.dtype, input_ids.device)

        def capture():   # DecodeGraph sets ``capturing`` meanwhile; a first step may allocate a layer's states
            graph = DecodeGraph(model, inference_params, bsz, input_ids.device)
            return graph, (*head, _cache_signature(inference_params.key_value_memory_dict), *switches)

        key = (*head, _cache_signature(inference_params.key_value_memory_dict), *switches)
        return self.graph(weights, key, capture)(input_ids).clone()[:, None]
