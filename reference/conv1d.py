"""References for the causal depthwise conv1d of Mamba's block (the causal-conv1d package's functions).

``out[b, d, t] = act(bias[d] + sum_k weight[d, k] x[b, d, t - (W - 1) + k])`` with ``x`` zero before the
row starts and, with ``seq_idx``, zero where the window reaches into an earlier packed sequence.
``act`` is identity or silu. The update form rolls a ``(batch, dim, state_len)`` state.
"""
import torch


def causal_conv1d_torch(x, weight, bias=None, seq_idx=None, activation=None):
    """Differentiable; computes in the inputs' dtype. ``x (b, d, L)``, ``weight (d, W)``."""
    bsz, dim, L = x.shape
    W = weight.shape[1]
    out = torch.zeros_like(x) if bias is None else bias[None, :, None].expand(bsz, dim, L).clone()
    for k in range(W):
        shift = W - 1 - k
        xs = torch.nn.functional.pad(x, (shift, 0))[..., :L]                      # x[t - shift]
        if seq_idx is not None:
            ss = torch.nn.functional.pad(seq_idx, (shift, 0), value=-1)[..., :L]
            xs = xs * (ss == seq_idx)[:, None, :].to(x.dtype)
        out = out + weight[None, :, k, None] * xs
    return torch.nn.functional.silu(out) if activation in ("silu", "swish") else out


def causal_conv1d_update_torch(x, conv_state, weight, bias=None, activation=None):
    """``x (b, d)`` or ``(b, d, L)``; returns ``(out, new_state)`` without touching ``conv_state``."""
    single = x.dim() == 2
    xs = x[..., None] if single else x
    state_len, L, W = conv_state.shape[-1], xs.shape[-1], weight.shape[1]
    full = torch.cat([conv_state, xs], dim=-1)                                   # (b, d, state_len + L)
    out = torch.stack([(full[..., state_len + t - W + 1:state_len + t + 1] * weight).sum(-1) for t in range(L)], -1)
    if bias is not None:
        out = out + bias[None, :, None]
    if activation in ("silu", "swish"):
        out = torch.nn.functional.silu(out)
    return (out[..., 0] if single else out), full[..., -state_len:]
