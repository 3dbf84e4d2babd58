"""Kernel-by-kernel device time of benchmark workloads: ``python -m ssm_triton.bench.profile --ops OP [--match S]``.

For each workload of the ops (``--match`` keeps those whose shape/direction string contains S) and each
implementation, three calls under ``torch.profiler`` after a warm-up; prints the CUDA kernels by total
time per call, so a slow stage shows by name next to the peer's breakdown, then the launch keywords each of
our tuned kernels ran with (new entries only).

``--calls N`` only runs each workload N times, without torch.profiler: the program to put under Nsight
Compute, whose profiler and torch's cannot share the device (``ncu -k regex:NAME --launch-skip ...
python -m ssm_triton.bench.profile --ops OP --match S --impl ssm_triton --calls 4``).

``--memory``: instead of kernel times, one call's allocations at their peak (PyTorch's allocator history), the
tensors alive at that moment grouped by the line that allocated them, largest first: where a call's peak
memory comes from, ours beside the peer's.
"""
import argparse

import torch


def main(argv=None) -> None:
    from .registry import REGISTRY

    parser = argparse.ArgumentParser(prog="python -m ssm_triton.bench.profile")
    parser.add_argument("--ops", nargs="+", required=True)
    parser.add_argument("--match", default="")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--impl", default="", help="profile only implementations whose name contains this ('NAME$': is this)")
    parser.add_argument("--calls", type=int, default=0, help="run each workload this often, no profiler (for ncu)")
    parser.add_argument("--memory", action="store_true", help="the allocations alive at one call's peak, by site")
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
                if not (name == args.impl[:-1] if args.impl.endswith("$") else args.impl in name):
                    continue
                fn = impl(x, w.direction)
                if args.memory:
                    print(f"\n{label} {name}:")
                    try:
                        print(memory_at_peak(fn, args.rows))
                    except Exception as e:   # a peer's failure must not cost the other rows of the call
                        print(f"  failed: {type(e).__name__}: {e}")
                    continue
                if args.calls:
                    for _ in range(args.calls):
                        fn()
                    torch.cuda.synchronize()
                    continue
                rows = kernel_rows(fn)
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


def kernel_rows(fn, calls: int = 3) -> list:
    """``fn``'s CUDA kernels over ``calls`` calls after as many to warm up: ``(name, us a call, launches a call)``,
    longest first."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    return sorted(((e.key, e.device_time_total / calls, e.count / calls) for e in prof.key_averages()
                   if e.device_time_total > 0), key=lambda r: -r[1])


def print_kernels(fn, rows: int, indent: str = "    ") -> None:
    """Print ``fn``'s kernel total a call and its ``rows`` longest kernels (:func:`kernel_rows`), ms a call."""
    found = kernel_rows(fn)
    print(f"{indent}kernels {sum(r[1] for r in found) / 1e3:.3f} ms a call:")
    for key, us, _ in found[:rows]:
        print(f"{indent}  {us / 1e3:7.3f}  {key[:100]}")


def _site(frames) -> str:
    """The innermost frame of this library's or a peer's code (not torch's, not the benchmark's)."""
    for f in frames:   # innermost first; replay.py and tuning.py only pass the allocation through
        name = f.get("filename", "")
        if ("ssm_triton" in name or "mamba_ssm" in name or "/kernels/" in name or "fla" in name) \
                and "/bench/" not in name and not name.endswith(("replay.py", "tuning.py")):
            return f"{'/'.join(name.split('/')[-2:])}:{f.get('line')} {f.get('name')}"
    return "other: " + (f"{frames[0].get('filename', '').split('/')[-1]}:{frames[0].get('line')}" if frames else "?")


def memory_at_peak(fn, rows: int) -> str:
    """Runs ``fn`` twice (a first call that may tune, then one under the allocator's history, which records the
    replay where the first tuned) and returns the live allocations made by the second at the moment its allocated
    total peaked, summed by allocating site, in MiB, and what both left allocated once their results were dropped."""
    before = torch.cuda.memory_allocated()
    out = fn()
    del out
    torch.cuda.synchronize()
    torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="python")
    try:
        out = fn()
        torch.cuda.synchronize()
        snap = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    del out
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated() - before   # what the library keeps across calls (caches, replays)
    dev = torch.cuda.current_device()
    live, total, peak, at_peak = {}, 0, 0, {}
    for e in snap["device_traces"][dev]:
        if e["action"] == "alloc":
            live[e["addr"]] = (e["size"], _site(e.get("frames", [])))
            total += e["size"]
            if total > peak:
                peak, at_peak = total, dict(live)
        elif e["action"] in ("free_requested",) and e["addr"] in live:
            total -= live.pop(e["addr"])[0]
    by_site: dict = {}
    for size, site in at_peak.values():
        n, s = by_site.get(site, (0, 0))
        by_site[site] = (n + 1, s + size)
    lines = [f"  peak {peak / 2**20:.1f} MiB above the call's start, {len(at_peak)} tensors alive; "
             f"{held / 2**20:.1f} MiB still held after both calls returned and their results were dropped"]
    for site, (n, s) in sorted(by_site.items(), key=lambda kv: -kv[1][1])[:rows]:
        lines.append(f"  {s / 2**20:9.1f} MiB {n:3d}x  {site[:120]}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
