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
