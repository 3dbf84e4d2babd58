"""Timing: the median of many runs, after warm-up."""
import statistics
import time

import torch


def median_ms(fn, device: torch.device, quick: bool = False) -> float:
    if device.type == "cuda":
        import triton.testing

        # warm-up and rep are in milliseconds of device time
        return float(triton.testing.do_bench(fn, warmup=25 if quick else 100, rep=50 if quick else 300,
                                             return_mode="median"))
    fn()  # the interpreter has no compilation to hide, but the first call imports and builds
    times = []
    for _ in range(1 if quick else 3):  # interpreted runs vary little; --quick only checks the harness
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def host_us(fn, device: torch.device, ms: float) -> float | None:
    """Microseconds of host time per call: calls issued back to back without waiting for the GPU, so
    the clock sees only what the host spends launching (while the launch queue has room). When this
    reaches the median device time, that benchmark measured the host, not the kernels."""
    if device.type != "cuda":
        return None
    n = max(1, min(50, int(100 / max(ms, 1e-3))))  # about 0.1 s of device work at most
    fn()
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - t0
    torch.cuda.synchronize(device)
    return elapsed / n * 1e6


def peak_mb(fn, device: torch.device) -> float | None:
    """Memory one call allocates at its peak, beyond what was allocated before it (its inputs), in MiB:
    what a fwd+bwd keeps for its backward plus its temporaries and outputs. CUDA only (the caching
    allocator's statistics); None elsewhere."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del out
    return (peak - base) / 2**20
