"""Where the host time of one call goes: ``python -m ssm_triton.bench.overhead [--ops ...] [--top N]``.

For each benchmark workload of the chosen ops (ssm_triton's implementation only) it prints

* ``host_us``: host time per call, calls issued back to back (as the benchmark records it);
* ``device_ms``: the do_bench median, so a row whose host time reaches it is host-bound;
* ``launches``: Triton launches per call and the host microseconds they take (``JITFunction.run`` and
  the lean path both counted);
* the functions with the most own time per call (cProfile), which is where the rest goes.

``--fused-train`` does it for the fwd+bwd of the SSD and Mamba-3 ops, the forward in one launch keeping what the
backward reads (``launch.FUSED_TRAIN``) against the stages. ``--replays`` times every workload with replays (``kernels/replay.py``) on and off, alternating, and gives its
device median. ``--plans`` times every forward workload with the op plans (``ssm_triton/ops/_plans.py``) on and off, the
same way. ``--ab`` instead times every workload with the lean launcher on and off, alternating in one process
(``rounds`` times each, medians), so the two are compared on the same host state. ``--fused`` does the
same for the SSD's inference forward, one-launch kernel against the staged launches, with each one's
device median.

The floors it is read against come first: an empty torch op, a bare two-argument Triton kernel through
``kernel[grid](...)``, the same compiled kernel launched directly, and the fwd+bwd of an autograd op that does
nothing (:func:`autograd_floors`: the engine's own cost per backward call, which a standalone fwd+bwd pays and a
model's one backward pays once for all its ops).
"""
import argparse
import cProfile
import pstats
import re
import statistics
import time

import torch

from .cli import label


def per_call_us(fn, n: int = 200) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - t0
    torch.cuda.synchronize()
    return elapsed / n * 1e6


def floors() -> dict[str, float]:
    import triton
    import triton.language as tl

    @triton.jit
    def _copy_one(X, Y):
        tl.store(Y, tl.load(X))

    x = torch.zeros(16, device="cuda")
    y = torch.zeros(16, device="cuda")
    compiled = _copy_one[(1,)](x, y)
    stream = torch.cuda.current_stream().cuda_stream

    def direct():
        compiled.run(1, 1, 1, stream, compiled.function, compiled.packed_metadata, None, None, None, x, y)

    from ssm_triton.kernels import tuning

    k = tuning.Kernel(_copy_one)
    rows = {
        "empty torch op (x + 0)": per_call_us(lambda: x + 0),
        "torch.empty(16)": per_call_us(lambda: torch.empty(16, device="cuda")),
        "bare triton kernel[grid](x, y)": per_call_us(lambda: _copy_one[(1,)](x, y)),
        "the same, CompiledKernel.run": per_call_us(direct),
    }
    rows.update(autograd_floors("cuda"))
    before = tuning.LEAN
    for lean in (True, False):
        tuning.LEAN = lean
        rows[f"the same, tuning.Kernel (lean {'on' if lean else 'off'})"] = per_call_us(lambda: k((1,), X=x, Y=y))
    tuning.LEAN = before
    return rows


class _Nothing(torch.autograd.Function):
    """An op that launches nothing: the forward allocates one output like its first input, the backward one
    gradient like each input. Its fwd+bwd is the floor of any autograd op's: the engine's work for a graph of one
    node (on a GPU, its hand-over to the device's worker thread and back), the Function's own Python, the
    allocations."""
    @staticmethod
    def forward(ctx, *inputs):
        ctx.save_for_backward(*inputs)
        return torch.empty_like(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        return tuple(torch.empty_like(t) for t in ctx.saved_tensors)


def autograd_floors(device) -> dict[str, float]:
    """fwd+bwd of :class:`_Nothing` (``torch.autograd.grad``, one call at a time) with 2 and with 7 inputs (the
    linear scan's and the SSD's differentiable inputs), and a PyTorch op's (``a * b``) for comparison: what
    the benchmark's fwd+bwd ``host_us`` of an op holds before any of its own work."""
    rows = {}
    for n in (2, 7):
        inputs = tuple(torch.zeros(16, device=device, requires_grad=True) for _ in range(n))
        g = torch.ones(16, device=device)
        rows[f"autograd floor fwd+bwd, {n} inputs"] = per_call_us(
            lambda: torch.autograd.grad(_Nothing.apply(*inputs), inputs, g))
    a, b = (torch.zeros(16, device=device, requires_grad=True) for _ in range(2))
    g = torch.ones(16, device=device)
    rows["torch a * b fwd+bwd"] = per_call_us(lambda: torch.autograd.grad(a * b, (a, b), g))
    return rows


def ab(fn, rounds: int, calls: int, switch=None) -> tuple[float, float]:
    """Median host microseconds per call with ``switch(True)`` and ``switch(False)``, alternating (default:
    the lean launcher on and off)."""

    from ssm_triton.kernels import tuning

    if switch is None:
        def switch(on: bool) -> None:
            tuning.LEAN = on
    before = tuning.LEAN
    times: dict = {True: [], False: []}
    try:
        for on in (True, False):   # warm both paths (the lean one binds on its first call)
            switch(on)
            fn()
        for _ in range(rounds):
            for on in (True, False):
                switch(on)
                times[on].append(per_call_us(fn, calls))
    finally:
        tuning.LEAN = before
    return statistics.median(times[True]), statistics.median(times[False])


def plans_switch(on: bool) -> None:
    """Op plans (``ssm_triton/ops/_plans.py``) on, or off: every call then takes the path it took before them
    (no plan looked up or made)."""
    from ssm_triton.ops import _plans

    _plans.ENABLED = on


def replays_switch(on: bool) -> None:
    """Replays (``kernels/replay.py``) on, or off: every call then runs its launcher's Python (nothing is
    recorded; what was recorded is kept for the next round on)."""
    from ssm_triton.kernels import replay

    replay.ENABLED = on


def fused_ab(fn, rounds: int, calls: int, training: bool = False) -> dict:
    """The SSD inference forward through the one-launch kernel and through the stages (``training``: a fwd+bwd whose
    forward takes the one-launch kernel where its rule would, ``launch.FUSED_TRAIN``, or the stages): host us per
    call (alternating) and the device median of each."""
    import triton.testing

    from ssm_triton.kernels.ssd import launch

    name = "FUSED_TRAIN" if training else "FUSED"
    before = getattr(launch, name)

    def switch(on: bool) -> None:
        setattr(launch, name, "1" if on else ("" if training else "0"))
    try:
        on, off = ab(fn, rounds, calls, switch)
        ms = {}
        for flag in (True, False):
            switch(flag)
            ms[flag] = float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))
    finally:
        setattr(launch, name, before)
    return dict(host_fused=on, host_staged=off, ms_fused=ms[True], ms_staged=ms[False])


def _own_time(stats: pstats.Stats, calls: int, top: int) -> list[str]:
    rows = []
    for (file, line, name), (cc, nc, tt, ct, _) in stats.stats.items():
        rows.append((tt, ct, nc, f"{file.split('site-packages/')[-1]}:{line}({name})"))
    rows.sort(reverse=True)
    return [f"    {tt / calls * 1e6:8.1f} us own {ct / calls * 1e6:8.1f} us cum {nc / calls:6.1f}x  {where}"
            for tt, ct, nc, where in rows[:top]]


def _launch_time(stats: pstats.Stats, calls: int) -> tuple[float, float]:
    n = us = 0.0
    for (file, _, name), (cc, nc, tt, ct, _) in stats.stats.items():
        if (name == "run" and file.endswith("runtime/jit.py")) or (name == "_lean" and file.endswith("tuning.py")):
            n += nc
            us += ct
    return n / calls, us / calls * 1e6


def main(argv=None) -> None:
    import triton.testing

    from .registry import REGISTRY

    parser = argparse.ArgumentParser(prog="python -m ssm_triton.bench.overhead")
    parser.add_argument("--ops", nargs="+", default=["linear_scan", "selective_scan", "ssd", "state_update",
                                                    "conv1d", "gated_rmsnorm", "discretize", "lm"])
    parser.add_argument("--top", type=int, default=12)
    # few calls: more would fill the GPU's launch queue, and a full queue blocks the host, which then
    # measures the GPU, not itself
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--ab", action="store_true", help="lean launcher on vs off, alternating, per workload")
    parser.add_argument("--plans", action="store_true",
                        help="op plans on vs off (calls that record no graph), alternating, per forward workload")
    parser.add_argument("--replays", action="store_true",
                        help="replays on vs off (every direction), alternating, with the device median")
    parser.add_argument("--fused", action="store_true",
                        help="SSD forwards only: the one-launch kernel vs the staged launches, alternating")
    parser.add_argument("--fused-train", action="store_true",
                        help="fwd+bwd of the SSD and Mamba-3 ops: the forward in one launch (SSM_TRITON_SSD_FUSED_TRAIN) "
                             "vs the staged launches, alternating")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--samples", type=int, default=15, help="host time: the median of this many samples")
    parser.add_argument("--match", default="", help="only workloads whose 'op shape dtype direction' this regex finds")
    parser.add_argument("--impl", default="ssm_triton", help="the implementation to profile (e.g. ssm_triton_eager)")
    args = parser.parse_args(argv)
    for name, us in floors().items():
        print(f"{name:34s} {us:8.1f} us/call")
    device = torch.device("cuda")
    notes: set = set()
    for op in args.ops:
        for w in REGISTRY[op](device, False, notes):
            impl = w.impls.get(args.impl)
            if impl is None:
                continue
            if args.fused and (w.op != "ssd" or w.direction != "fwd"):
                continue
            if args.fused_train and (not (w.op == "ssd" or w.op.startswith("mamba3")) or w.direction != "fwd+bwd"):
                continue
            if not re.search(args.match, label(w)):
                continue
            fn = impl(w.make_inputs(), w.direction)
            if args.fused or args.fused_train:
                r = fused_ab(fn, args.rounds, args.calls, args.fused_train)
                print(f"{w.op} {w.shape} {str(w.dtype).replace('torch.', '')} {w.direction}: fused host "
                      f"{r['host_fused']:.1f} us, device {r['ms_fused'] * 1e3:.1f} us; staged host "
                      f"{r['host_staged']:.1f} us, device {r['ms_staged'] * 1e3:.1f} us", flush=True)
                del fn
                continue
            if args.plans:
                if w.direction != "fwd":
                    del fn
                    continue
                try:
                    on, off = ab(fn, args.rounds, args.calls, plans_switch)
                finally:
                    plans_switch(True)
                print(f"{w.op} {w.shape} {str(w.dtype).replace('torch.', '')} fwd: host us/call op plans on "
                      f"{on:.1f}, off {off:.1f} ({off - on:+.1f} saved)")
                del fn
                continue
            if args.replays:
                try:
                    on, off = ab(fn, args.rounds, args.calls, replays_switch)
                finally:
                    replays_switch(True)
                ms = float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))
                print(f"{w.op} {w.shape} {str(w.dtype).replace('torch.', '')} {w.direction}: host us/call replays on "
                      f"{on:.1f}, off {off:.1f} ({off - on:+.1f} saved); device {ms * 1e3:.1f} us", flush=True)
                del fn
                continue
            if args.ab:
                on, off = ab(fn, args.rounds, args.calls)
                print(f"{w.op} {w.shape} {str(w.dtype).replace('torch.', '')} {w.direction}: host us/call lean on "
                      f"{on:.1f}, off {off:.1f} ({off - on:+.1f} saved)")
                del fn
                continue
            ms = float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))
            # the median of several samples: one sample of 8 calls on the H200's host read 37 to 59 us for the
            # same planned forward in one call (2026-12-04h)
            host = statistics.median(per_call_us(fn, args.calls) for _ in range(args.samples))
            prof = cProfile.Profile()
            torch.cuda.synchronize()
            prof.enable()
            for _ in range(args.calls):
                fn()
            prof.disable()
            torch.cuda.synchronize()
            stats = pstats.Stats(prof)
            n, launch_us = _launch_time(stats, args.calls)
            print(f"\n{w.op} {w.shape} {str(w.dtype).replace('torch.', '')} {w.direction}: host {host:.1f} us/call, "
                  f"device {ms * 1e3:.1f} us; {n:.0f} launches taking {launch_us:.1f} us (under cProfile)")
            print("\n".join(_own_time(stats, args.calls, args.top)))
            del fn
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
