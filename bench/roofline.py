"""The machine's two ceilings, measured in the run that uses them."""
from dataclasses import dataclass

import torch

from .timing import median_ms


@dataclass(frozen=True)
class Ceilings:
    copy_gbps: float      # device-to-device copy, bytes read + written per second / 1e9
    bf16_tflops: float    # dense bf16 matmul


def measure(device: torch.device, quick: bool = False) -> Ceilings | None:
    """None under the interpreter, where a roofline means nothing."""
    if device.type != "cuda":
        return None
    n = (1 << 26) if quick else (1 << 28)  # 256 MiB / 1 GiB of fp32: far beyond L2
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, quick)
    copy_gbps = 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9
    m = 4096 if quick else 8192
    x = torch.randn(m, m, device=device, dtype=torch.bfloat16)
    y = torch.randn(m, m, device=device, dtype=torch.bfloat16)
    ms = median_ms(lambda: x @ y, device, quick)
    return Ceilings(copy_gbps=copy_gbps, bf16_tflops=2 * m**3 / (ms * 1e-3) / 1e12)


def fraction(bytes_moved: float, flops: float, ms: float, ceilings: Ceilings | None) -> float | None:
    """Achieved / attainable: the time the slower ceiling allows for this work, over the time taken."""
    if ceilings is None:
        return None
    floor_s = max(bytes_moved / (ceilings.copy_gbps * 1e9), flops / (ceilings.bf16_tflops * 1e12))
    return floor_s / (ms * 1e-3)
