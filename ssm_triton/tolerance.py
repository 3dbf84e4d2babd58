"""Tolerances, stated once, used by ``python -m ssm_triton check`` and by the tests.

An output ``x`` stored in dtype ``T`` matches a float64 reference ``r`` when, element by element,
``|x - r| <= tol(T) * (|r| + rms(r)) + tiny(T)``: relative to the element, with a floor at the
tensor's own scale so that entries near zero are not held to an impossible relative bound, and an
absolute floor at ``T``'s smallest normal number, below which ``T`` cannot hold a value at all
(``exp(-150)`` is 0 in fp32).
"""
import numpy as np
import torch

# Kernels accumulate in fp32 (fp64 for fp64 input), so the budget is set by the storage dtype
# of the result and by fp32 rounding over long recurrences.
TOLERANCE = {
    torch.float64: 1e-9,
    torch.float32: 1e-4,
    torch.float16: 5e-3,
    torch.bfloat16: 3e-2,
}


# Mamba-3's SSD stages multiply q~ and k~ on tensor cores in the I/O dtype, and those operands are computed in the
# kernels (Q + Q_bias, rotated), not given: rounding them to bf16 (fp16) is an error on top of the inputs' own,
# which the float64 reference does not make (the SSD's B and C arrive rounded, so its reference sees the same
# operands). mamba_ssm's Triton Mamba-3 kernels round them the same way. Measured with the interpreter
# emulating the tensor cores (2026-12-03, 25 random problems each, SISO / MIMO): bf16 worst 3.4e-2 / 8.9e-2,
# median 2.1e-2 / 1.7e-2; fp16 worst 4.3e-3 / 9.2e-3; with 10-bit operands (fp16 or TF32 for bf16 inputs) the bf16
# check rows fell back to 1.0e-2. The budget for such outputs is this many times the dtype's.
COMPUTED_OPERANDS = 4.0


def tolerance(dtype: torch.dtype, computed_operands: bool = False) -> float:
    """The budget of an output stored in ``dtype``; ``computed_operands``: one computed from tensor-core
    products of operands rounded to a 16-bit dtype inside the kernels (Mamba-3's bf16 and fp16 scans)."""
    tol = TOLERANCE[dtype]
    return tol * COMPUTED_OPERANDS if computed_operands and dtype in (torch.bfloat16, torch.float16) else tol


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def scaled_error(actual, expected) -> float:
    """max over elements of ``(|x - r| - tiny) / (|r| + rms(r))`` in units of the relative bound;
    inf where ``x`` is not finite and ``r`` is."""
    dtype = actual.dtype if isinstance(actual, torch.Tensor) and actual.is_floating_point() else torch.float64
    x, r = _np(actual), _np(expected)
    if x.shape != r.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs reference {r.shape}")
    if x.size == 0:
        return 0.0
    if not np.isfinite(x).all() and np.isfinite(r).all():
        return float("inf")
    rms = float(np.sqrt(np.mean(r * r)))
    excess = np.maximum(np.abs(x - r) - torch.finfo(dtype).tiny, 0.0)
    denom = np.abs(r) + max(rms, np.finfo(np.float64).tiny)
    return float(np.max(excess / denom))


def assert_close(actual, expected, dtype: torch.dtype, name: str = "output", computed_operands: bool = False) -> None:
    err = scaled_error(actual, expected)
    tol = tolerance(dtype, computed_operands)
    assert err <= tol, f"{name}: scaled error {err:.3e} exceeds the {dtype} tolerance {tol:.1e}"
