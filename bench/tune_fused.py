"""What the tuner sees for the one-launch SSD forward: ``python -m ssm_triton.bench.tune_fused``.

For each shape (H=64 P=64 N=128 G=1 bf16, D and dt_bias with softplus, as the benchmark's SSD rows) and each
segment count (``--segments``; 1 walks whole rows, more split each row into a summary launch and an output
launch, ``fused.segments``) it tunes ``ssd_fused_fwd`` afresh and prints the chosen tiles, then the call's
do_bench median eagerly (host time included, as a user calling it sees it) and replayed from a CUDA graph of
ten calls (the device's time alone), against the staged forward at its rule plan, timed the same two ways.
``--carry 1`` puts the carry pass (``fused._ssd_segment_carry_kernel``) between the two launches of every
segmented row (the rule takes it past 8 segments only), ``--carry 0`` never.
"""
import argparse

import torch


def _graphed_ms(call, reps: int = 10) -> float:
    """Device milliseconds a call, from a CUDA graph of ``reps`` calls replayed under do_bench."""
    import triton.testing
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            call()
    return triton.testing.do_bench(graph.replay, warmup=10, rep=100, return_mode="median") / reps


def _problem(x, dt, A, B, C, D, bias):
    """The one-launch forward's tuning key for these inputs, as the op builds it (so this tool follows its fields)."""
    import math

    from ssm_triton.kernels.ssd import fused, launch
    lo, hi, clamp = launch._limits((0.0, math.inf))
    dot = launch.fused_dot(x, None, False)
    return fused._fused_args(x, dt, A, B, C, D, None, bias, None, True, lo, hi, clamp, dot)[0]


def _summary_call(x, dt, A, B, C, D, bias):
    """The segmented forward's first launch alone (each segment's end state from zero), as the op would issue it:
    its device time beside the whole call's says what the output launch takes."""
    import math

    from ssm_triton.kernels.ssd import fused, launch
    lo, hi, clamp = launch._limits((0.0, math.inf))
    dot = launch.fused_dot(x, None, False)
    problem, kw = fused._fused_args(x, dt, A, B, C, D, None, bias, None, True, lo, hi, clamp, dot)
    bsz, L, H, P = x.shape
    nseg = problem[9]
    kw.update(SEG_STATE=torch.empty((bsz, H, nseg, P, B.shape[3]), device=x.device, dtype=torch.float32),
              SEG_DECAY=torch.empty((bsz, H, nseg), device=x.device, dtype=torch.float32))
    return lambda: fused.ssd_fused_fwd_kernel.launch(fused._summary(problem), None, **fused._summary_args(kw))


def main(argv=None) -> None:
    import triton.testing

    import ssm_triton
    from ssm_triton.kernels import tuning
    from ssm_triton.kernels.ssd import fused, launch

    parser = argparse.ArgumentParser(prog="python -m ssm_triton.bench.tune_fused")
    parser.add_argument("--shapes", nargs="+", default=["1x512", "1x2048", "1x8192", "8x4096", "2x16384"])
    parser.add_argument("--segments", nargs="+", type=int, default=[1])
    parser.add_argument("--carry", choices=["", "0", "1"], default="",
                        help="the carry pass between the launches: the rule's (past 8 segments), never, always")
    args = parser.parse_args(argv)
    H, P, G, N, io = 64, 64, 1, 128, torch.bfloat16
    dev = torch.device("cuda")
    k = fused.ssd_fused_fwd_kernel
    fused.CARRY = args.carry
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    for shape in args.shapes:
        b, L = (int(v) for v in shape.split("x"))
        g = lambda *s: torch.randn(*s, device=dev).to(io)  # noqa: E731
        x, B, C = g(b, L, H, P), g(b, L, G, N), g(b, L, G, N)
        dt = torch.randn(b, L, H, device=dev) * 0.5 - 1.0
        A = -torch.rand(H, device=dev) * 4 - 0.5
        D, bias = torch.randn(H, device=dev), torch.randn(H, device=dev) * 0.1

        def call():
            with torch.no_grad():
                return ssm_triton.mamba_chunk_scan_combined(x, dt, A, B, C, 256, D=D, dt_bias=bias, dt_softplus=True)

        fused.SEGMENTS = ""
        print(f"\nb={b} L={L}: the rule's segments {fused.segments(b, L, H, P, sms)[0]}")
        launch.FUSED = "1"
        reference = None
        for nseg in args.segments:
            fused.SEGMENTS = str(nseg)
            got, seg_len = fused.segments(b, L, H, P, sms)
            out = call()   # tunes
            reference = out if reference is None else reference
            err = (out.float() - reference.float()).abs().max().item()
            problem = _problem(x, dt, A, B, C, D, bias)
            chose = k.resolve(problem)[0]
            summary = k.resolve(fused._summary(problem)) if got > 1 else None
            eager = triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median")
            graphed = _graphed_ms(call)
            alone = f", its summary launch alone {_graphed_ms(_summary_call(x, dt, A, B, C, D, bias)) * 1e3:.1f} us" \
                if got > 1 else ""
            print(f"  segments {got} ({seg_len} steps): eager {eager * 1e3:7.1f} us, graphed {graphed * 1e3:7.1f} us"
                  f"{alone}; max |out - 1 segment's| {err:.3g}; tiles {chose}" + (f", summary {summary[0]}" if summary else ""))
        fused.SEGMENTS = ""
        launch.FUSED = "0"
        tuning.pin("ssd_fwd")   # the staged forward at its rule plan: no tuning run here
        try:
            staged = triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median")
            staged_graphed = _graphed_ms(call)
        finally:
            tuning.unpin("ssd_fwd")
        print(f"  staged (rule plan): eager {staged * 1e3:7.1f} us, graphed {staged_graphed * 1e3:7.1f} us")
    launch.FUSED = ""


if __name__ == "__main__":
    main()
