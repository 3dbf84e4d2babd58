"""ssm_triton: pure-Triton kernels for selective state-space models.

Importing this package decides, once, how kernels run: compiled for CUDA when a GPU is present,
otherwise through the Triton interpreter on CPU tensors (``TRITON_INTERPRET=1`` is set for you unless
you set it yourself). See ``ssm_triton._runtime``.
"""
from . import _runtime  # noqa: F401  (first: decides compiled vs interpreted before any kernel is defined)
from ._runtime import INTERPRET
from . import distributed  # noqa: F401  (context parallelism: ssm_triton.distributed.cp_*)
from .modules import InferenceParams, Mamba, Mamba2, Mamba3
from .ops.combined import mamba_inner_fn, mamba_split_conv1d_scan_combined
from .ops.conv1d import causal_conv1d_fn, causal_conv1d_update
from .ops.discretize import discretize
from .ops.mamba3 import mamba3_mimo_step, mamba3_siso_combined, mamba3_siso_step
from .ops.mamba3_mimo import mamba3_mimo
from .ops.norm import rmsnorm_fn
from .ops.scan import linear_scan
from .ops.selective_scan import selective_scan_fn
from .ops.ssd import mamba_chunk_scan_combined
from .ops.state_update import selective_state_update

__version__ = "0.1.0"
__all__ = ["INTERPRET", "InferenceParams", "Mamba", "Mamba2", "Mamba3", "causal_conv1d_fn", "causal_conv1d_update", "discretize", "linear_scan", "mamba3_mimo", "mamba3_mimo_step", "mamba3_siso_combined", "mamba3_siso_step", "mamba_chunk_scan_combined", "mamba_inner_fn",
           "mamba_split_conv1d_scan_combined", "rmsnorm_fn", "selective_scan_fn",
           "selective_state_update", "__version__"]
