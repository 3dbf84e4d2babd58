"""Every benchmarked op by name, as ``python -m ssm_triton bench --ops`` takes them."""
from .workloads import (discretize_workloads, linear_scan_workloads, selective_scan_workloads, ssd_workloads,
                        state_update_workloads)
from .workloads_blocks import conv1d_workloads, norm_workloads
from .workloads_lm import hf_workloads, lm_compiled_workloads, lm_mamba3_workloads, lm_workloads
from .workloads_mamba3 import mamba3_mimo_workloads, mamba3_workloads

REGISTRY = {
    "linear_scan": linear_scan_workloads,
    "discretize": discretize_workloads,
    "selective_scan": selective_scan_workloads,
    "ssd": ssd_workloads,
    "state_update": state_update_workloads,
    "conv1d": conv1d_workloads,
    "gated_rmsnorm": norm_workloads,
    "mamba3": mamba3_workloads,
    "mamba3_mimo": mamba3_mimo_workloads,
    "lm": lm_workloads,
    "lm_compiled": lm_compiled_workloads,
    "lm_mamba3": lm_mamba3_workloads,
    "hf_mamba2": hf_workloads,
}

# ops whose workload function takes ``sweep=True`` (length and batch sweeps, bf16 and fp32)
SWEEPS = ("linear_scan", "selective_scan", "ssd")
