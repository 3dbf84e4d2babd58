"""Host and device time of the blocks' training calls (fwd+bwd), one autograd node each against the composed ops:
``python -m ssm_triton.bench.block_host [--L 512] [--rounds 7] [--graphed] [--profile]`` on a GPU machine.

``Mamba``, ``Mamba2`` and ``Mamba3`` (SISO) at the 130M models' width (d_model 768) and batch 1, bf16: each round
times 20 fwd+bwd calls with ``ops/_layout.ONE_NODE`` on, then 20 with it off (``SSM_TRITON_ONE_NODE=0``'s
composition), alternating in one process. ``host`` is the time to issue a call (the host's work: the GPU runs
behind it while the queue has room), ``wall`` the time a call takes with the device waited for; medians of the
rounds, microseconds a call. ``--graphed`` adds the same block replayed from CUDA graphs
(``torch.cuda.make_graphed_callables``: its forward and backward captured once, then one launch each). ``--profile`` then shows where a one-node call's host time goes: Python's profiler
(functions by own time) and torch's (operators by own CPU time, with the launch count).
"""
import argparse
import copy
import cProfile
import io
import pstats
import statistics
import time

import torch

import ssm_triton
from ssm_triton.ops import _layout


def _blocks(d: int, device: str):
    torch.manual_seed(0)
    kw = dict(device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    N, P = (128, 64) if d >= 256 else (16, 16)
    return {
        "Mamba": ssm_triton.Mamba(d, d_state=16, layer_idx=0, **kw),
        "Mamba2": ssm_triton.Mamba2(d, d_state=N, headdim=P, chunk_size=256, layer_idx=0, **kw),
        "Mamba3 SISO": ssm_triton.Mamba3(d, d_state=N, headdim=P, chunk_size=64, layer_idx=0, **kw),
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(block, u, g, calls: int):
    # the gradients dropped before each call, as a training step's zero_grad() does (set_to_none): the backward then
    # hands its gradients over instead of adding them into the last call's (an add launch a parameter; the first
    # GPU numbers, 2026-12-05 on the H100 machine, included those)
    leaves = [u, *block.parameters()]
    _sync(u.device.type)
    start = time.perf_counter()
    for _ in range(calls):
        for t in leaves:
            t.grad = None
        block(u).backward(g)
    issued = time.perf_counter()
    _sync(u.device.type)
    end = time.perf_counter()
    return (issued - start) / calls * 1e6, (end - start) / calls * 1e6


def _profile(name: str, block, u, g, calls: int, rows: int) -> None:
    """Where a call's host time goes: Python functions by own time, then torch's operators by own CPU time."""
    _time(block, u, g, 3)
    prof = cProfile.Profile()
    with torch.autograd.set_multithreading_enabled(False):   # the backward on this thread, where the profiler looks
        prof.enable()
        _time(block, u, g, calls)
        prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(rows)
    print(f"--- {name}: Python's profiler over {calls} calls, backward on the calling thread (tottime = own time)")
    print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:12000])
    kinds = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if u.is_cuda else [])
    with torch.profiler.profile(activities=kinds) as tp:   # with CUDA: the runtime's launch calls, counted
        _time(block, u, g, calls)
    print(f"--- {name}: torch's profiler over {calls} calls")
    print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--graphed", action="store_true", help="also time make_graphed_callables' replays")
    parser.add_argument("--profile", action="store_true", help="after the timings, profile each block's one-node call")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--only", default="", help="time only the blocks whose name contains this")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run through the interpreter (tiny sizes)")
    args = parser.parse_args()
    blocks = {k: v for k, v in _blocks(args.d_model, args.device).items() if args.only in k}
    u = torch.randn(1, args.L, args.d_model, device=args.device, requires_grad=True,
                    dtype=next(iter(blocks.values())).in_proj.weight.dtype)
    g = torch.randn_like(u)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (interpreter)"
    print(f"{name} | torch {torch.__version__} | b1 L{args.L} d_model {args.d_model} {u.dtype}, fwd+bwd, "
          f"us a call (medians of {args.rounds} rounds of {args.calls})")
    for name, block in blocks.items():
        runs = {True: [], False: []}
        for one in (True, False):   # warm both paths (tuning, replays) before timing
            _layout.ONE_NODE = one
            _time(block, u, g, 3)
        for _ in range(args.rounds):
            for one in (True, False):
                _layout.ONE_NODE = one
                runs[one].append(_time(block, u, g, args.calls))
        _layout.ONE_NODE = True
        med = {k: [statistics.median(r[i] for r in v) for i in (0, 1)] for k, v in runs.items()}
        print(f"{name:12s} one node: host {med[True][0]:8.1f} wall {med[True][1]:8.1f} | composed: host "
              f"{med[False][0]:8.1f} wall {med[False][1]:8.1f}", flush=True)
        if args.graphed:
            graphed = torch.cuda.make_graphed_callables(copy.deepcopy(block), (u.detach().requires_grad_(),))
            _time(graphed, u, g, 3)
            runs = [_time(graphed, u, g, args.calls) for _ in range(args.rounds)]
            print(f"{'':12s} graphed:  host {statistics.median(r[0] for r in runs):8.1f} wall "
                  f"{statistics.median(r[1] for r in runs):8.1f}", flush=True)
    if args.profile:
        for name, block in blocks.items():
            _profile(name, block, u, g, args.calls, args.rows)


if __name__ == "__main__":
    main()
