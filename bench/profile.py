"""Kernel-by-kernel device time of benchmark workloads: ``python -m ssm_triton.bench.profile --ops OP [--match S]``.

For each workload of the ops (``--match`` keeps those whose shape/direction string contains S) and each
implementation, three calls under ``torch.profiler`` after a warm-up; prints the CUDA kernels by total
time per call, so a slow stage shows by name next to the peer's breakdown, then the launch keywords each of
our tuned kernels ran with (new entries only).

``--calls N`` only runs each workload N times, without torch.profiler: the program to put under Nsight
Compute, whose profiler and torch's cannot share the device (``ncu -k regex:NAME --launch-skip ...
python -m ssm_triton.bench.profile --ops OP --match S --impl ssm_triton --calls 4``).
"""
import argparse

import torch


def main(argv=None) -> None:
    from torch.profiler import ProfilerActivity, profile

    from .registry import REGISTRY

    parser = argparse.ArgumentParser(prog="python -m ssm_triton.bench.profile")
    parser.add_argument("--ops", nargs="+", required=True)
    parser.add_argument("--match", default="")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--impl", default="", help="profile only implementations whose name contains this")
    parser.add_argument("--calls", type=int, default=0, help="run each workload this often, no profiler (for ncu)")
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    from ..kernels import tuning
    shown = set()
    for op in args.ops:
        for w in REGISTRY[op](device, False, set()):
            label = f"{w.op} {w.shape} {str(w.dtype).replace('torch.', '')} {w.direction}"
            if args.match not in label:
                continue
            x = w.make_inputs()
            for name, impl in w.impls.items():
                if args.impl not in name:
                    continue
                fn = impl(x, w.direction)
                if args.calls:
                    for _ in range(args.calls):
                        fn()
                    torch.cuda.synchronize()
                    continue
                for _ in range(3):
                    fn()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(3):
                        fn()
                    torch.cuda.synchronize()
                rows = sorted(((e.key, e.device_time_total / 3, e.count / 3) for e in prof.key_averages()
                               if e.device_time_total > 0), key=lambda r: -r[1])
                total = sum(r[1] for r in rows)
                print(f"\n{label} {name}: {total / 1e3:.3f} ms of kernels per call")
                for key, us, n in rows[:args.rows]:
                    print(f"  {us / 1e3:8.3f} ms {n:5.1f}x  {key[:110]}")
                # which tuning candidate each kernel ran with (chosen during the warm-up, or read from the cache)
                for entry, kw in sorted(tuning.choices().items()):
                    if entry not in shown:
                        shown.add(entry)
                        print(f"  tuned: {entry[:100]} -> {kw}")
            del x
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
