"""nn.Modules on ssm_triton's kernels, drop-in for mamba_ssm's: the Mamba-1 and Mamba-2 mixers and the
``InferenceParams`` their decoding reads."""
from .inference import InferenceParams
from .mamba import Mamba
from .mamba2 import Mamba2

__all__ = ["InferenceParams", "Mamba", "Mamba2"]
