"""What the Mamba and Mamba2 blocks share for decoding and initialisation: mamba_ssm's ``InferenceParams``,
the per-layer state cache, the conv state a prefill leaves behind, and the step-size bias initialisation."""
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module


@dataclass
class InferenceParams:
    """What ``forward(u, inference_params)`` reads, as mamba_ssm's ``InferenceParams``: each layer keeps
    ``(conv_state, ssm_state)`` under its ``layer_idx``; ``seqlen_offset`` is 0 for the prefill and
    the number of tokens already seen afterwards."""
    max_seqlen: int
    max_batch_size: int
    seqlen_offset: int = 0
    batch_size_offset: int = 0
    key_value_memory_dict: dict = field(default_factory=dict)

    def reset(self, max_seqlen, max_batch_size):
        self.max_seqlen, self.max_batch_size, self.seqlen_offset = max_seqlen, max_batch_size, 0


def cached_states(module, inference_params, batch_size):
    """This layer's ``(conv_state, ssm_state)`` in ``inference_params``, allocated (zeros) on first use."""
    if module.layer_idx is None:
        raise ValueError(f"{type(module).__name__} needs layer_idx to keep its states in inference_params")
    cache = inference_params.key_value_memory_dict
    if module.layer_idx not in cache:
        cache[module.layer_idx] = module.allocate_inference_cache(batch_size, inference_params.max_seqlen)
    return cache[module.layer_idx]


def states_or_step(module, inference_params, hidden_states, **step):
    """What a block's ``forward`` does with ``inference_params``: ``(None, None, None)`` without them;
    this layer's ``(conv_state, ssm_state, None)`` for a prefill (offset 0), which the forward fills;
    and ``(conv_state, ssm_state, out)`` after a one-token decode step (offset > 0; ``step``: the block's ``step``
    keywords)."""
    if inference_params is None:
        return None, None, None
    conv_state, ssm_state = cached_states(module, inference_params, hidden_states.shape[0])
    out = None
    if inference_params.seqlen_offset > 0:
        out, _, _ = module.step(hidden_states, conv_state, ssm_state, **step)
    return conv_state, ssm_state, out


def fill_conv_state(conv_state, x, seq_mask=None):
    """``conv_state (b, c, w)`` <- the last ``w`` columns of ``x (b, c, L)`` (times ``seq_mask (b, L)``'s, 0 on left
    padding), zeros on the left when L < w: what the conv window holds after the prefill. The columns are cut before
    anything else, so a prefill (a captured one too) pays one copy a layer, not a pad or a mask over its whole
    length."""
    w, L = conv_state.shape[-1], x.shape[-1]
    last = x[..., max(L - w, 0):]
    if seq_mask is not None:
        last = last * seq_mask[:, None, max(L - w, 0):].to(x.dtype)
    conv_state.copy_(last if L >= w else F.pad(last, (w - L, 0)))


def dt_bias_init(n, dt_min, dt_max, dt_init_floor, **factory):
    """softplus^-1(dt) for ``n`` step sizes drawn log-uniform in ``[dt_min, dt_max]`` and floored at
    ``dt_init_floor``: the bias that makes softplus(bias) start in that range (mamba_ssm's scheme)."""
    lo, hi = math.log(dt_min), math.log(dt_max)
    dt = torch.exp(torch.rand(n, **factory) * (hi - lo) + lo).clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


def plain(*modules) -> bool:
    """Whether these submodules compute exactly what their parameters say: ``nn.Linear`` or this package's
    ``RMSNorm`` themselves (not a subclass, not an adapter put in their place) with no forward hook on them or on
    every module. A block whose training call reads their weights directly (one autograd node) asks this first,
    and calls the modules otherwise."""
    from .norm import RMSNorm
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return False
    return all(m is None or (type(m) in (nn.Linear, RMSNorm) and not m._forward_hooks and not m._forward_pre_hooks)
               for m in modules)
