"""The LM's prefill replayed from CUDA graphs, one per (batch, length bucket).

A prefill of a small model is some 150 short launches (about six per layer) whose Python and launch cost,
not their kernels, sets the time: the 130M Mamba2 LM at b=1 L=2048 took 17.9 ms on the H200 with 18.4 ms
of host time a call (2026-12-02, ``bench/results/h200-2026-12-02d``). A graph replay issues them all at once.

Rows are padded on the right up to a bucket (the next power of two up to 1024 steps, then the next multiple of
1024), so a handful of graphs serve every length: every layer is causal, so a position's hidden state never
sees the padding after it, and the real positions are sliced out. Only the backbone is captured; the LM head
runs eagerly on the positions asked for. A graph holds its own memory pool (its activations), so at most
``capacity`` graphs are kept, the least recently used dropped first.

Only a plain inference call is replayed: CUDA tensors, no graph recorded (``no_grad`` / ``inference_mode``),
no ``inference_params`` (a generate's cache is new each call), no ``attention_mask``, not under
``torch.compile`` or inside another capture. Everything else runs eagerly, as before.
"""
from __future__ import annotations


import torch

from .graph_cache import GraphCache, capture, switched_on


def bucket(L: int) -> int:
    """The padded length a prefill of ``L`` steps is captured at."""
    if L <= 1024:
        return 1 << max(L - 1, 0).bit_length()
    return -(-L // 1024) * 1024


def padded_backbone(backbone, input_ids: torch.Tensor, length: int) -> torch.Tensor:
    """The backbone over ``input_ids (b, L)`` padded on the right to ``length`` with token 0, sliced back to
    ``(b, L, d_model)``: equal to ``backbone(input_ids)`` since every layer is causal."""
    bsz, L = input_ids.shape
    ids = input_ids.new_zeros((bsz, length))
    ids[:, :L] = input_ids
    return backbone(ids)[:, :L]


def enabled_by_env() -> bool:
    # on by default (the 130M LM's prefill at b=1 L=2048 on the H200, 2026-12-02: 11.6 ms eager, 6.7 ms
    # replayed, its GPU test passing); SSM_TRITON_PREFILL_GRAPH=0 turns it off
    return switched_on("SSM_TRITON_PREFILL_GRAPH")


class _Graph:
    """One captured backbone forward at ``(bsz, length)``: ``ids`` in, ``hidden`` out, both static."""

    def __init__(self, backbone, bsz: int, length: int, device: torch.device):
        self.ids = torch.zeros(bsz, length, dtype=torch.long, device=device)
        self.graph, self.hidden = capture(lambda: backbone(self.ids), device)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        L = input_ids.shape[1]
        self.ids[:, :L].copy_(input_ids)   # what the padding holds does not matter: the layers are causal
        self.graph.replay()
        return self.hidden[:, :L]


class PrefillGraphs(GraphCache):
    """The captured graphs of one model, by ``(bsz, bucket, device)``; dropped when any of the model's
    tensors is replaced (``.to()`` or a new Parameter makes new storage, which a graph would not see;
    values changed in place, as ``load_state_dict`` does, are seen)."""

    def __call__(self, backbone, input_ids: torch.Tensor) -> torch.Tensor:
        """``backbone(input_ids)`` through a graph (captured on the first call of its bucket)."""
        # a graph reads the tensors it was captured with: any replaced storage means recapture
        bsz, L = input_ids.shape
        key = (bsz, bucket(L), input_ids.device)
        graph = self.graph(self.fingerprint(backbone), key,
                           lambda: (_Graph(backbone, bsz, key[1], input_ids.device), key))
        return graph(input_ids)


def replayable(input_ids, inference_params, attention_mask, mixer_kwargs) -> bool:
    """Whether a forward call may take a prefill graph (see the module docstring)."""
    if not (isinstance(input_ids, torch.Tensor) and input_ids.is_cuda) or torch.is_grad_enabled():
        return False
    if inference_params is not None or attention_mask is not None or mixer_kwargs:
        return False
    if torch.compiler.is_compiling() or torch.cuda.is_current_stream_capturing():
        return False
    return input_ids.dim() == 2 and input_ids.shape[1] >= 1
