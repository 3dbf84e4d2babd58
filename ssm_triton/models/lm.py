"""A Mamba language model on ssm_triton's kernels, laid out as mamba_ssm's ``MambaLMHeadModel`` (same
config fields and state-dict names, so its checkpoints load): token embedding, ``n_layer`` pre-norm
residual blocks of ``Mamba`` or ``Mamba2`` mixers, a final RMSNorm and an LM head tied to the embedding.

``generate`` prefills the prompt through the chunked kernels (selective scan / SSD) and then decodes
one token per step through the decode-step kernels, on per-layer conv and SSM states.
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..modules import InferenceParams, Mamba, Mamba2
from ..modules.norm import RMSNorm


@dataclass
class MambaConfig:
    """mamba_ssm's fields. ``ssm_cfg["layer"]`` picks the mixer: ``"Mamba1"`` (default) or ``"Mamba2"``;
    the rest of ``ssm_cfg`` goes to its constructor. Attention layers and MLPs (``attn_layer_idx``,
    ``d_intermediate``) are not supported: a non-empty/non-zero value is an error."""
    d_model: int = 2560
    d_intermediate: int = 0
    n_layer: int = 64
    vocab_size: int = 50277
    ssm_cfg: dict = field(default_factory=dict)
    attn_layer_idx: list = field(default_factory=list)
    attn_cfg: dict = field(default_factory=dict)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True


class Block(nn.Module):
    """Pre-norm residual block as mamba_ssm arranges it: it takes the running ``residual`` and the last
    mixer output, adds them, normalises, mixes; returns ``(mixer output, residual)``."""

    def __init__(self, mixer, d_model, residual_in_fp32, device=None, dtype=None):
        super().__init__()
        self.mixer, self.residual_in_fp32 = mixer, residual_in_fp32
        self.norm = RMSNorm(d_model, device=device, dtype=dtype)

    def forward(self, hidden_states, residual=None, inference_params=None):
        residual = hidden_states if residual is None else hidden_states + residual
        hidden_states = self.norm(residual.to(self.norm.weight.dtype))
        if self.residual_in_fp32:
            residual = residual.float()
        return self.mixer(hidden_states, inference_params=inference_params), residual


class MixerModel(nn.Module):
    """The backbone: ``embedding``, ``layers``, ``norm_f``. ``input_ids (b, L)`` -> ``(b, L, d_model)``."""

    def __init__(self, config: MambaConfig, vocab_size: int, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        ssm_cfg = dict(config.ssm_cfg)
        layer = ssm_cfg.pop("layer", "Mamba1")
        mixers = {"Mamba1": Mamba, "Mamba2": Mamba2}
        if layer not in mixers:
            raise ValueError(f"ssm_cfg['layer'] must be 'Mamba1' or 'Mamba2', got {layer!r}")
        self.embedding = nn.Embedding(vocab_size, config.d_model, **factory)
        self.layers = nn.ModuleList(
            Block(mixers[layer](config.d_model, layer_idx=i, **ssm_cfg, **factory), config.d_model,
                  config.residual_in_fp32, **factory) for i in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model, **factory)

    def forward(self, input_ids, inference_params=None):
        hidden_states, residual = self.embedding(input_ids), None
        for layer in self.layers:
            hidden_states, residual = layer(hidden_states, residual, inference_params=inference_params)
        residual = hidden_states + residual
        return self.norm_f(residual.to(self.norm_f.weight.dtype))


def _init_weights(module, n_layer, initializer_range=0.02):
    """mamba_ssm's scheme: zero biases (except the step-size bias), normal embeddings, and out_proj
    re-drawn then scaled by 1/sqrt(n_layer) so the residual stream's variance does not grow with depth."""
    if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    for name, p in module.named_parameters():
        if name == "out_proj.weight":
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            with torch.no_grad():
                p /= math.sqrt(n_layer)


class MambaLMHeadModel(nn.Module):
    """``forward(input_ids (b, L), inference_params=None, num_last_tokens=0)`` -> logits ``(b, L, vocab)``
    (the last ``num_last_tokens`` positions only, when > 0). ``vocab`` is ``config.vocab_size`` padded up
    to ``pad_vocab_size_multiple``, as in mamba_ssm."""

    def __init__(self, config: MambaConfig, device=None, dtype=None):
        super().__init__()
        if config.attn_layer_idx or config.d_intermediate:
            raise ValueError("attention layers (attn_layer_idx) and MLPs (d_intermediate) are not supported")
        self.config = config
        vocab = config.vocab_size
        if vocab % config.pad_vocab_size_multiple:
            vocab += config.pad_vocab_size_multiple - vocab % config.pad_vocab_size_multiple
        self.backbone = MixerModel(config, vocab, device=device, dtype=dtype)
        self.lm_head = nn.Linear(config.d_model, vocab, bias=False, device=device, dtype=dtype)
        self.apply(lambda m: _init_weights(m, config.n_layer))
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def forward(self, input_ids, inference_params=None, num_last_tokens=0):
        hidden_states = self.backbone(input_ids, inference_params=inference_params)
        if num_last_tokens > 0:
            hidden_states = hidden_states[:, -num_last_tokens:]
        return self.lm_head(hidden_states)

    def allocate_inference_cache(self, batch_size, max_seqlen, dtype=None):
        return {i: layer.mixer.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype)
                for i, layer in enumerate(self.backbone.layers)}

    @torch.inference_mode()
    def generate(self, input_ids, max_new_tokens, temperature=1.0, top_k=1, top_p=0.0, eos_token_id=None,
                 generator=None, return_logits=False, cuda_graph=None):
        """Continues ``input_ids (b, L)`` by ``max_new_tokens`` tokens: one prefill over the prompt, then
        one decode step per token. ``top_k=1`` (default) is greedy; otherwise samples from the
        ``temperature``-scaled distribution cut to the ``top_k`` best (0: all) and to the smallest set of
        probability ``top_p`` (0: off). Rows stop at ``eos_token_id`` (later positions repeat it).
        ``cuda_graph`` (default: on for CUDA tensors) replays the decode step from a captured CUDA graph.
        Returns ``(b, L + max_new_tokens)`` token ids, and the logits of each new token
        ``(b, max_new_tokens, vocab)`` with ``return_logits``."""
        if input_ids.dim() != 2 or input_ids.shape[1] < 1:
            raise ValueError(f"input_ids must be (batch, L) with L >= 1, got shape {tuple(input_ids.shape)}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        bsz, L = input_ids.shape
        params = InferenceParams(max_seqlen=L + max_new_tokens, max_batch_size=bsz)
        params.key_value_memory_dict = self.allocate_inference_cache(bsz, L + max_new_tokens)
        tokens, all_logits = [input_ids], []
        logits = self(input_ids, inference_params=params, num_last_tokens=1)[:, -1]
        params.seqlen_offset = L
        if cuda_graph is None:
            cuda_graph = input_ids.is_cuda
        step = (lambda tok: self(tok, inference_params=params)[:, -1])  # noqa: E731
        if cuda_graph and max_new_tokens > 1:
            step = DecodeGraph(self, params, bsz, input_ids.device)
        done = torch.zeros(bsz, dtype=torch.bool, device=input_ids.device)
        for i in range(max_new_tokens):
            if i:
                logits = step(tokens[-1])
                params.seqlen_offset += 1
            logits = logits[:, :self.config.vocab_size]
            if return_logits:  # a graph replay overwrites its logits: keep a copy
                all_logits.append(logits.float().clone())
            nxt = sample(logits, temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done |= nxt == eos_token_id
            tokens.append(nxt[:, None])
        out = torch.cat(tokens, dim=1)
        return (out, torch.stack(all_logits, 1) if all_logits else None) if return_logits else out


class DecodeGraph:
    """The whole model's decode step captured once as a CUDA graph and replayed per token. At small
    batch a step is a few dozen short kernels, and launching them from Python costs more than running
    them; a replay launches them all at once. The states in ``params`` are updated in place by the replay
    as by an eager step; capturing runs two warm-up steps, whose effect on the states is undone."""

    def __init__(self, model, params, bsz, device):
        cache = params.key_value_memory_dict
        saved = {k: tuple(t.clone() for t in v) for k, v in cache.items()}
        self.tok = torch.zeros(bsz, 1, dtype=torch.long, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # compile and tune every kernel before capture
            for _ in range(2):
                model(self.tok, inference_params=params)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = model(self.tok, inference_params=params)[:, -1]
        for k, v in saved.items():
            for t, s in zip(cache[k], v):
                t.copy_(s)

    def __call__(self, tok):
        self.tok.copy_(tok)
        self.graph.replay()
        return self.logits


def sample(logits, temperature=1.0, top_k=1, top_p=0.0, generator=None):
    """``logits (b, vocab)`` -> token ids ``(b,)``: greedy for ``top_k == 1`` or ``temperature == 0``."""
    if top_k == 1 or temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        srt, idx = torch.sort(logits, descending=True, dim=-1)
        probs = F.softmax(srt, dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop = probs.cumsum(-1) - probs > top_p
        logits = logits.scatter(-1, idx, srt.masked_fill(drop, float("-inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
