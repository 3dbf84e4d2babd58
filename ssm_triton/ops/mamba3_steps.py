"""The ``Mamba3`` block's step sizes for an inference call in one launch (``kernels/mamba3/block_steps.py``)."""
import os

import torch

from ..kernels.mamba3.block_steps import block_steps as _block_steps
from ._layout import records_graph

# a Mamba3 block's call with no backward to come computes DT, ADT and Trap in one launch ("0": PyTorch's eleven or so
# launches). On by default since the H100 run of 2026-12-07 (call 40, tuner off, one process each): the 130M-size
# Mamba3 LM's prefill b1 L2048 replayed 4.742 ms against 5.159, eager 11.17 against 26.02
ENABLED = os.environ.get("SSM_TRITON_M3_STEPS_KERNEL", "1") != "0"


def serves(proj: torch.Tensor, dt_bias: torch.Tensor) -> bool:
    """Whether :func:`block_steps` takes this call: on, no gradient to flow to the projection or ``dt_bias``, not
    under ``torch.compile``, the projection's columns contiguous."""
    return ENABLED and proj.stride(-1) == 1 and not records_graph(proj, dt_bias)


def block_steps(proj, col_dt: int, col_a: int, col_trap: int, H: int, dt_bias, A_floor: float, seq_mask=None):
    """``(DT, ADT, Trap)`` ``(b, H, L)`` fp32 from in_proj's output ``proj (b, L, C)``: ``DT = softplus(dd_dt +
    dt_bias)``, ``ADT = min(-softplus(dd_A), -A_floor) DT``, zero where ``seq_mask (b, L)`` is 0. No backward."""
    mask = seq_mask.to(torch.int32).contiguous() if seq_mask is not None else None
    return _block_steps(proj, col_dt, col_a, col_trap, H, dt_bias, A_floor, mask)
