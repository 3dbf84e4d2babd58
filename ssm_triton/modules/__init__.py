"""nn.Modules on ssm_triton's kernels, drop-in for mamba_ssm's: the Mamba-1, Mamba-2 and Mamba-3 (SISO) mixers and the
``InferenceParams`` their decoding reads."""
from .inference import InferenceParams
from .mamba import Mamba
from .mamba2 import Mamba2
from .mamba3 import Mamba3

__all__ = ["InferenceParams", "Mamba", "Mamba2", "Mamba3"]
