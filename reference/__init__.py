"""Slow, obviously correct references. Installed as ``ssm_triton.reference``; imports nothing from the kernels.

Each op has a NumPy float64 loop (``*_np``) — the ground truth — and a PyTorch version usable under
autograd (``*_torch``), whose float64 gradients the kernels' backward passes are checked against.
"""
from .conv1d import causal_conv1d_torch, causal_conv1d_update_torch
from .discretize import discretize_np, discretize_torch
from .mamba3 import (mamba3_mimo_chunked, mamba3_mimo_loop, mamba3_mimo_step_ref, mamba3_siso_chunked, mamba3_siso_loop,
                     mamba3_siso_step_ref)
from .norm import rmsnorm_torch
from .scan import linear_scan_np, linear_scan_torch
from .selective_scan import selective_scan_np, selective_scan_ref
from .ssd import ssd_np, ssd_quadratic_torch
from .state_update import selective_state_update_np

__all__ = ["causal_conv1d_torch", "causal_conv1d_update_torch", "discretize_np", "discretize_torch",
           "linear_scan_np", "linear_scan_torch", "mamba3_mimo_chunked", "mamba3_mimo_loop", "mamba3_mimo_step_ref", "mamba3_siso_chunked", "mamba3_siso_loop", "mamba3_siso_step_ref", "rmsnorm_torch", "selective_scan_np", "selective_scan_ref",
           "selective_state_update_np", "ssd_np", "ssd_quadratic_torch"]
