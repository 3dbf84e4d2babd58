"""Reference for the gated RMSNorm of Mamba-2's block (mamba_ssm's ``rmsnorm_fn``), differentiable.

Over groups of ``group_size`` features of the last dim (all of it by default):
``norm_before_gate=True``: ``y = rmsnorm(x) * w + b``, then ``* silu(z)``;
``norm_before_gate=False``: ``y = rmsnorm(x * silu(z)) * w + b``; ``rmsnorm(u) = u / sqrt(mean(u^2) + eps)``.
"""
import torch


def rmsnorm_torch(x, weight, bias=None, z=None, eps=1e-6, group_size=None, norm_before_gate=True):
    """Computes in the inputs' dtype (pass float64)."""
    D = x.shape[-1]
    group_size = group_size or D
    if z is not None and not norm_before_gate:
        x = x * torch.nn.functional.silu(z)
    u = x.reshape(*x.shape[:-1], D // group_size, group_size)
    y = (u * torch.rsqrt((u * u).mean(-1, keepdim=True) + eps)).reshape(x.shape) * weight
    if bias is not None:
        y = y + bias
    if z is not None and norm_before_gate:
        y = y * torch.nn.functional.silu(z)
    return y
