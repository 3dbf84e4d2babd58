"""Which precision kernels accumulate in: fp32 for fp32/bf16/fp16 inputs, fp64 when any input is fp64
(so that ``torch.autograd.gradcheck`` can check the kernels themselves)."""
import torch
import triton.language as tl


def acc_dtypes(*tensors: torch.Tensor | None) -> tuple[tl.dtype, torch.dtype]:
    """(Triton accumulation dtype, matching torch dtype) for these inputs."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return tl.float64, torch.float64
    return tl.float32, torch.float32
