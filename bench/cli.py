"""``python -m ssm_triton bench [--ops ...] [--quick] [--sweep] [--json PATH] [--plot DIR] [--no-peers]``."""
import argparse
import datetime
import json
import re
import sys
import time

import torch

from . import plots, roofline
from .timing import host_us, median_ms, peak_mb
from .registry import REGISTRY, SWEEPS

OURS = "ssm_triton"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", nargs="+", choices=sorted(REGISTRY), default=sorted(REGISTRY),
                        help="which ops to benchmark (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes that run anywhere, the CPU interpreter too")
    parser.add_argument("--json", metavar="PATH", help="write the records as JSON here")
    parser.add_argument("--plot", metavar="DIR", help="write PNG plots here (needs matplotlib)")
    parser.add_argument("--no-peers", action="store_true", help="time ssm_triton alone")
    parser.add_argument("--match", default="", metavar="REGEX",
                        help="only the workloads whose 'op shape dtype direction' (e.g. "
                             "'ssd (1, 2048, ...) bfloat16 fwd', the labels bench/profile.py prints) it finds")
    parser.add_argument("--sweep", action="store_true",
                        help=f"add length and batch sweeps, bf16 and fp32, to the ops that have them ({', '.join(SWEEPS)})")


def label(w) -> str:
    """What ``--match`` searches: ``op shape dtype direction``, as ``bench/profile.py`` labels a workload."""
    return f"{w.op} {w.shape} {str(w.dtype).replace('torch.', '')} {w.direction}"


def _device() -> torch.device:
    import ssm_triton

    return ssm_triton._runtime.default_device()


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (triton interpreter)"


def _progress(done: int, total: int, elapsed: float, what: str, width: int = 24) -> None:
    """One self-overwriting line on stderr: a bar, the count, the time so far and what runs now."""
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    print(f"\r[{bar}] {done}/{total} {elapsed:5.0f}s {what}"[:150].ljust(150), end="", file=sys.stderr, flush=True)


def collect(args) -> tuple[list[dict], set]:
    device = _device()
    notes: set = set()
    ceilings = roofline.measure(device, args.quick)
    if ceilings is not None:
        print(f"ceilings: copy {ceilings.copy_gbps:.0f} GB/s, bf16 matmul {ceilings.bf16_tflops:.0f} TFLOP/s", file=sys.stderr)
    sweep = getattr(args, "sweep", False)
    workloads = [w for op in args.ops
                 for w in REGISTRY[op](device, args.quick, notes, **({"sweep": True} if sweep and op in SWEEPS else {}))
                 if re.search(getattr(args, "match", ""), label(w))]
    total = sum(1 if args.no_peers else len(w.impls) for w in workloads)
    records, done, t0 = [], 0, time.perf_counter()
    date = datetime.date.today().isoformat()
    for w in workloads:
        inputs = w.make_inputs()
        for name, impl in w.impls.items():
            if args.no_peers and name != OURS:
                continue
            done += 1
            _progress(done, total, time.perf_counter() - t0, f"{w.op} {w.shape} {w.dtype} {w.direction} {name}")
            try:
                fn = impl(inputs, w.direction)
                ms = median_ms(fn, device, args.quick)
                host = host_us(fn, device, ms)
                peak = peak_mb(fn, device)
            except Exception as e:  # a peer that rejects a shape or runs out of memory is noted, not fatal
                if name == OURS:
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                notes.add(f"{name} failed on {w.op} {w.shape} {w.dtype}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                continue
            records.append({
                "op": w.op, "impl": name, "shape": list(w.shape), "dtype": str(w.dtype).replace("torch.", ""),
                "direction": w.direction, "ms": ms, "bytes": w.bytes, "flops": w.flops,
                "gbps": w.bytes / (ms * 1e-3) / 1e9, "tflops": w.flops / (ms * 1e-3) / 1e12,
                "roofline_frac": roofline.fraction(w.bytes, w.flops, ms, ceilings),
                "device": _device_name(device), "date": date,
                "host_us": host,
                "peak_mb": peak,
                "copy_gbps": ceilings.copy_gbps if ceilings else None,
                "bf16_tflops": ceilings.bf16_tflops if ceilings else None,
            })
            if w.tokens:
                records[-1]["tokens_per_s"] = w.tokens / (ms * 1e-3)
            if getattr(args, "json", None):  # after every record: a run cut short (a peer's autotuning outran
                write_json(args.json, records, notes)   # the limit on 12-03e) keeps what it measured
        del inputs
        if getattr(args, "json", None):
            write_json(args.json, records, notes)
    print(file=sys.stderr)
    return records, notes


def write_json(path: str, records: list[dict], notes: set) -> None:
    with open(path, "w") as f:
        json.dump({"results": records, "notes": sorted(notes)}, f, indent=1)


def format_table(records: list[dict]) -> str:
    ours = {(r["op"], tuple(r["shape"]), r["dtype"], r["direction"]): r["ms"] for r in records if r["impl"] == OURS}
    header = ("op", "shape", "dtype", "dir", "impl", "ms", "host us", "peak MiB", "GB/s", "roofline", "time / ours")
    rows = []
    for r in records:
        mine = ours.get((r["op"], tuple(r["shape"]), r["dtype"], r["direction"]))
        ratio = f"{r['ms'] / mine:.2f}x" if mine else "-"
        rows.append((r["op"], "x".join(map(str, r["shape"])), r["dtype"], r["direction"], r["impl"],
                     f"{r['ms']:.4f}", f"{r['host_us']:.0f}" if r.get("host_us") is not None else "-",
                     f"{r['peak_mb']:.1f}" if r.get("peak_mb") is not None else "-", f"{r['gbps']:.0f}", f"{100 * r['roofline_frac']:.1f}%" if r["roofline_frac"] is not None else "-", ratio))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: " | ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), "-+-".join("-" * w for w in widths), *map(line, rows)])


def run(args) -> int:
    records, notes = collect(args)
    print(format_table(records))
    for note in sorted(notes):
        print(f"note: {note}")
    if args.json:
        write_json(args.json, records, notes)
        print(f"wrote {len(records)} records to {args.json}")
    if args.plot:
        for path in plots.plot(records, args.plot):
            print(f"wrote {path}")
    return 0
