"""A Mamba language model on ssm_triton's kernels, laid out as mamba_ssm's ``MambaLMHeadModel`` (same
config fields and state-dict names, so its checkpoints load): token embedding, ``n_layer`` pre-norm
residual blocks of ``Mamba`` or ``Mamba2`` mixers, a final RMSNorm and an LM head tied to the embedding.

``generate`` prefills the prompt through the chunked kernels (selective scan / SSD) and then decodes
one token per step through the decode-step kernels, on per-layer conv and SSM states.
"""
import math
from collections import namedtuple
from dataclasses import dataclass, field

import torch
from torch import nn

from ..modules import Mamba, Mamba2, Mamba3
from ..modules.inference import cached_states
from ..modules.norm import RMSNorm
from ..ops import fused_step as fused
from ..ops import mamba3_fused_step as m3_fused
from ..ops._layout import records_graph
from ..ops.norm import add_rmsnorm
from ..ops.norm_defer import Deferred, materialized
from .generation import GenerateGraphs, generate
from .decode_graphs import DecodeGraphs
from .decode_graphs import enabled_by_env as decode_enabled_by_env
from .decode_graphs import replayable as decode_replayable
from .prefill import PrefillGraphs, enabled_by_env, replayable

# mamba_ssm's return type of the model's forward
CausalLMOutput = namedtuple("CausalLMOutput", ["logits"])


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


def left_padding_mask(attention_mask, input_ids):
    """``attention_mask (b, L)`` checked to be left padding (each row 0s then 1s, its last entry 1), as an
    int32 ``(b, L)``: an SSM's state runs left to right, so right padding cannot be undone."""
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(input_ids.shape):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must be (batch, L) = {tuple(input_ids.shape)} like input_ids, got {got}")
    m = attention_mask.to(torch.int32)
    ok = ((m == 0) | (m == 1)).all() & (m[:, 1:] >= m[:, :-1]).all() & (m[:, -1] == 1).all()
    if not bool(ok):   # one host sync per prefill, not per token
        raise ValueError("attention_mask must be left padding: each row 0s, then 1s up to its last position "
                         "(right padding is not supported)")
    return m


def _add_norm(norm, hidden_states, residual, residual_in_fp32):
    """``(norm(residual'.to(norm's dtype)), residual')`` with ``residual' = hidden + residual`` (fp32 when
    ``residual_in_fp32``). Inference takes one kernel for it (``add_rmsnorm``), which the add, the cast and
    the norm took three of (0.25 ms of the 130M model's 2.8 ms replayed prefill on the H200, 2026-12-02)."""
    raw = hidden_states.raw if isinstance(hidden_states, Deferred) else hidden_states
    if (not records_graph(raw, residual, norm.weight) and raw.dtype == norm.weight.dtype
            and raw.dtype in (torch.float32, torch.bfloat16, torch.float16)):
        keep = torch.float32 if residual_in_fp32 else (residual.dtype if residual is not None else raw.dtype)
        return add_rmsnorm(hidden_states, residual, norm.weight, norm.eps, keep)
    hidden_states = materialized(hidden_states)
    residual = hidden_states if residual is None else hidden_states + residual
    hidden_states = norm(residual.to(norm.weight.dtype))
    return hidden_states, residual.float() if residual_in_fp32 else residual


class Block(nn.Module):
    """Pre-norm residual block as mamba_ssm arranges it: it takes the running ``residual`` and the last
    mixer output, adds them, normalises, mixes; returns ``(mixer output, residual)``."""

    def __init__(self, mixer, d_model, residual_in_fp32, device=None, dtype=None):
        super().__init__()
        self.mixer, self.residual_in_fp32 = mixer, residual_in_fp32
        self.norm = RMSNorm(d_model, device=device, dtype=dtype)

    def forward(self, hidden_states, residual=None, inference_params=None, seq_mask=None):
        """``hidden_states``, and the output, may be a Mamba2 layer's ``Deferred`` (``ops/norm_defer.py``)."""
        # a Deferred reaching a decode step: the fused steps take tensors only (they decline it), so it goes the
        # composed way, whose add+norm applies its scale
        if inference_params is not None and inference_params.seqlen_offset > 0 and isinstance(self.mixer, (Mamba, Mamba2)):
            # a decode step: the add and the norm go into the fused step's first launch where it serves
            conv_state, ssm_state = cached_states(self.mixer, inference_params, hidden_states.shape[0])
            done = fused.step(self.mixer, hidden_states, conv_state, ssm_state, residual, self.norm,
                              self.residual_in_fp32)
            if done is not None:
                return done
        elif inference_params is not None and inference_params.seqlen_offset > 0 and isinstance(self.mixer, Mamba3):
            # the add and the norm go into in_proj's launch, the output norm into out_proj's (where switched on)
            states = cached_states(self.mixer, inference_params, hidden_states.shape[0])
            done = m3_fused.step(self.mixer, hidden_states, states, residual, self.norm, self.residual_in_fp32)
            if done is not None:
                return done
        hidden_states, residual = _add_norm(self.norm, hidden_states, residual, self.residual_in_fp32)
        extra = {} if seq_mask is None else {"seq_mask": seq_mask}
        if isinstance(self.mixer, Mamba2):   # its gated norm's scale left to the next add+norm where it fits
            extra["defer_norm"] = True
        return self.mixer(hidden_states, inference_params=inference_params, **extra), residual


class MixerModel(nn.Module):
    """The backbone: ``embedding``, ``layers``, ``norm_f``. ``input_ids (b, L)`` -> ``(b, L, d_model)``."""

    def __init__(self, config: MambaConfig, vocab_size: int, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        ssm_cfg = dict(config.ssm_cfg)
        layer = ssm_cfg.pop("layer", "Mamba1")
        mixers = {"Mamba1": Mamba, "Mamba2": Mamba2, "Mamba3": Mamba3}
        if layer not in mixers:
            raise ValueError(f"ssm_cfg['layer'] must be 'Mamba1', 'Mamba2' or 'Mamba3', got {layer!r}")
        self.embedding = nn.Embedding(vocab_size, config.d_model, **factory)
        self.layers = nn.ModuleList(
            Block(mixers[layer](config.d_model, layer_idx=i, **ssm_cfg, **factory), config.d_model,
                  config.residual_in_fp32, **factory) for i in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model, **factory)

    def forward(self, input_ids, inference_params=None, seq_mask=None):
        hidden_states, residual = self.embedding(input_ids), None
        for layer in self.layers:
            hidden_states, residual = layer(hidden_states, residual, inference_params=inference_params,
                                            seq_mask=seq_mask)
        return _add_norm(self.norm_f, hidden_states, residual, False)[0]


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
    """``forward(input_ids (b, L), position_ids=None, inference_params=None, num_last_tokens=0)`` ->
    ``CausalLMOutput(logits=(b, L, vocab))``. ``vocab`` is ``config.vocab_size`` padded up to
    ``pad_vocab_size_multiple``, as in mamba_ssm. ``generate``, ``from_pretrained`` and
    ``save_pretrained`` follow mamba_ssm's too."""

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
        # prefill from CUDA graphs (prefill.py): on unless SSM_TRITON_PREFILL_GRAPH=0 or set False here
        self.cuda_graph_prefill = enabled_by_env()
        self._prefill_graphs = PrefillGraphs()
        # eager decode steps from CUDA graphs (decode_graphs.py): on unless SSM_TRITON_DECODE_GRAPH=0 or set False here
        self.cuda_graph_decode = decode_enabled_by_env()
        self._decode_graphs = DecodeGraphs()
        # generate's states and decode step kept between calls (generation.KEEP_STEP; SSM_TRITON_GENERATE_CACHE=0 turns it off)
        self._generate_graphs = GenerateGraphs()

    def forward(self, input_ids, position_ids=None, inference_params=None, num_last_tokens=0, attention_mask=None,
                **mixer_kwargs):
        """``input_ids (b, L)`` -> ``CausalLMOutput(logits=(b, L, vocab))`` (the last ``num_last_tokens``
        positions only, when > 0), as mamba_ssm's model returns it. ``attention_mask (b, L)`` (beyond
        mamba_ssm's signature): 0 on left padding, 1 on tokens; each row's logits are then those of its
        tokens alone (the padding's are meaningless). ``position_ids`` and extra keywords are accepted for
        signature compatibility (an SSM needs no positions). With ``cuda_graph_prefill`` a plain inference
        call on CUDA replays the backbone from a CUDA graph per (batch, length bucket) (``prefill.py``)."""
        if (getattr(self, "cuda_graph_decode", False) and not self._decode_graphs.capturing
                and decode_replayable(input_ids, inference_params, attention_mask, mixer_kwargs)):
            weights = self._decode_graphs.model_fingerprint(self)
            return CausalLMOutput(logits=self._decode_graphs(self, weights, input_ids, inference_params))
        if self.cuda_graph_prefill and replayable(input_ids, inference_params, attention_mask, mixer_kwargs):
            hidden_states = self._prefill_graphs(self.backbone, input_ids)
        else:
            seq_mask = left_padding_mask(attention_mask, input_ids) if attention_mask is not None else None
            hidden_states = self.backbone(input_ids, inference_params=inference_params, seq_mask=seq_mask)
        if num_last_tokens > 0:
            hidden_states = hidden_states[:, -num_last_tokens:]
        return CausalLMOutput(logits=self.lm_head(hidden_states))

    def allocate_inference_cache(self, batch_size, max_seqlen, dtype=None):
        return {i: layer.mixer.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype)
                for i, layer in enumerate(self.backbone.layers)}

    def generate(self, input_ids, max_length=None, top_k=1, top_p=0.0, min_p=0.0, temperature=1.0,
                 repetition_penalty=1.0, return_dict_in_generate=False, output_scores=False, cg=None,
                 teacher_outputs=None, eos_token_id=None, streamer=None, *, max_new_tokens=None, generator=None,
                 attention_mask=None):
        """mamba_ssm's ``generate``: continues ``input_ids (b, L)`` up to ``max_length`` tokens in all (or by
        ``max_new_tokens``): one prefill over the prompt, then one decode step per token.

        Sampling: ``top_k=1`` (default) is greedy; otherwise a draw from the ``temperature``-scaled
        distribution cut to the ``top_k`` best (0: all), to probability mass ``top_p`` (0: off) and to tokens
        with at least ``min_p`` times the best one's probability; ``repetition_penalty`` > 1 discourages
        tokens already in the row; ``generator`` seeds the draws. ``teacher_outputs (b, >= max_length)``
        forces the tokens instead of sampling them. Rows stop at ``eos_token_id`` (later positions repeat
        it) and generation ends once every row has. ``cg=True`` replays the decode step from a captured
        CUDA graph (default: on for CUDA tensors). ``streamer`` gets ``put`` the prompt and each new token,
        then ``end``. ``attention_mask (b, L)`` (keyword only): 0 on left padding, 1 on the prompt's tokens,
        so that prompts of different lengths share a batch; each row continues as it would alone.

        Returns the sequences ``(b, L')`` (prompt included), or with ``return_dict_in_generate`` a
        ``GenerateOutput`` with ``.sequences`` and ``.scores`` (a tuple of ``(b, vocab)`` logits per new
        token when ``output_scores``)."""
        return generate(self, input_ids, max_length, top_k, top_p, min_p, temperature, repetition_penalty,
                        return_dict_in_generate, output_scores, cg, teacher_outputs, eos_token_id, streamer,
                        max_new_tokens=max_new_tokens, generator=generator, attention_mask=attention_mask)

    @classmethod
    def from_pretrained(cls, pretrained_model_name, device=None, dtype=None, **kwargs):
        """Loads a checkpoint saved by mamba_ssm (``config.json`` + ``pytorch_model.bin`` or
        ``model.safetensors``), by :meth:`save_pretrained`, or by transformers' ``MambaForCausalLM`` /
        ``Mamba2ForCausalLM`` (``model_type`` "mamba" / "mamba2"; weight names mapped onto these).
        ``pretrained_model_name`` is a directory or a hub id (resolved through huggingface_hub's cache
        when that package is installed). Weights are cast to ``dtype`` on the host and moved to ``device``
        one tensor at a time. ``kwargs`` override config fields. Unknown config keys are reported in a
        warning; a missing file, a missing or unexpected weight, or a shape mismatch is a ``ValueError``
        naming the file and the key."""
        from .checkpoint import load_pretrained
        return load_pretrained(cls, pretrained_model_name, device=device, dtype=dtype, **kwargs)

    def save_pretrained(self, save_directory, safe_serialization=False):
        """Writes ``config.json`` (mamba_ssm's ``MambaConfig`` fields) and ``pytorch_model.bin`` (or
        ``model.safetensors`` with ``safe_serialization``, which needs the safetensors package) to
        ``save_directory``: the layout mamba_ssm's ``from_pretrained`` reads."""
        from .checkpoint import save_pretrained
        save_pretrained(self, save_directory, safe_serialization)
