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
switches the step's launches read unchanged since the capture. On by default (H200, 2026-12-04d: the GPU test of
replayed against eager steps passes; the 130M Mamba2 LM's eager step took 1.03x its replay at b1 and 0.99x at b16,
74 us of host a call, where its launches one by one took 6.6x / 2.2x); ``SSM_TRITON_DECODE_GRAPH=0`` (or the
model's ``cuda_graph_decode = False``) turns it off. A captured graph holds its own memory pool, and the last call's state cache stays referenced
until the next call (``clear()`` drops both).
"""
from __future__ import annotations

import operator

import torch

from .graph_cache import GraphCache, step_switches, switched_on


def enabled_by_env() -> bool:
    return switched_on("SSM_TRITON_DECODE_GRAPH")


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


def _cache_objects(cache: dict) -> list:
    """The cache's layer keys and state objects in order: what the last signature was computed from."""
    objects = []
    for k, states in cache.items():
        objects.append(k)
        if isinstance(states, (tuple, list)):
            objects.extend(states)
        else:
            objects.append(states)
    return objects


class _Key:
    """A graph's key with its hash computed once: the signature holds a tuple per state tensor, and hashing
    it again at every step cost more than the replay's launch."""
    __slots__ = ("parts", "hash")

    def __init__(self, parts: tuple):
        self.parts, self.hash = parts, hash(parts)

    def __hash__(self):
        return self.hash

    def __eq__(self, other):
        return self is other or (isinstance(other, _Key) and self.hash == other.hash and self.parts == other.parts)


class DecodeGraphs(GraphCache):
    """The captured decode steps of one model, by (batch, token dtype, device, cache signature, switches)."""

    def __init__(self, capacity: int = 4):
        super().__init__(capacity)
        self.capturing = False   # set while a DecodeGraph of the model captures: its warm-up steps run eagerly
        self._seen = ([], None)  # the last call's cache objects and key: a step with the same ones skips the walk

    def clear(self) -> None:
        super().clear()
        self._seen = ([], None)

    def _key(self, head: tuple, cache: dict, switches: tuple) -> _Key:
        """The key of a call, from the last call's when the cache holds the same objects (kept alive by
        ``_seen``, so an address cannot have been handed to another tensor meanwhile)."""
        objects = _cache_objects(cache)
        seen, key = self._seen
        if (key is None or len(objects) != len(seen) or not all(map(operator.is_, objects, seen))
                or key.parts[:3] != head or key.parts[4:] != switches):
            key = _Key((*head, _cache_signature(cache), *switches))
            self._seen = (objects, key)
        return key

    def __call__(self, model, weights: tuple, input_ids: torch.Tensor, inference_params) -> torch.Tensor:
        """``model(input_ids, inference_params=inference_params).logits`` through a graph (captured on the
        first call of its signature); ``weights``: the model's parameter fingerprint."""
        from .generation import DecodeGraph

        bsz = input_ids.shape[0]
        switches = step_switches()
        head = (bsz, input_ids.dtype, input_ids.device)
        cache = inference_params.key_value_memory_dict

        def capture():   # DecodeGraph sets ``capturing`` meanwhile; a first step may allocate a layer's states
            graph = DecodeGraph(model, inference_params, bsz, input_ids.device)
            self._seen = ([], None)
            return graph, self._key(head, cache, switches)

        return self.graph(weights, self._key(head, cache, switches), capture)(input_ids).clone()[:, None]
