"""``RMSNorm``: the norm module of both blocks and the language model, on ssm_triton's norm kernel."""
import torch
from torch import nn

from ..ops.norm import rmsnorm_fn


class RMSNorm(nn.Module):
    """``weight (d,)`` (mamba_ssm's name for it). ``forward(x (..., d), z=None)``: ``x / rms(x) * weight``
    over groups of ``group_size`` features (all ``d`` when None), gated by ``silu(z)`` when ``z`` is given,
    before or after the norm as ``norm_before_gate`` says (see ``rmsnorm_fn``)."""

    def __init__(self, d, eps=1e-5, norm_before_gate=True, group_size=None, device=None, dtype=None):
        super().__init__()
        self.eps, self.norm_before_gate, self.group_size = eps, norm_before_gate, group_size
        self.weight = nn.Parameter(torch.ones(d, device=device, dtype=dtype))

    def forward(self, x, z=None):
        return rmsnorm_fn(x, self.weight, None, z=z, eps=self.eps, group_size=self.group_size,
                          norm_before_gate=self.norm_before_gate)
