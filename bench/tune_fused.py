"""What the tuner sees for the one-launch SSD forward: ``python -m ssm_triton.bench.tune_fused``.

For each shape (H=64 P=64 N=128 G=1 bf16, D and dt_bias with softplus, as the benchmark's SSD rows) it
tunes ``ssd_fused_fwd`` afresh, prints every candidate's time (best first) and the rule's, then the
do_bench median of the tuned fused forward against the staged forward at its rule plan (host time
included, as a user calling it eagerly sees it).
"""
import argparse

import torch


def main(argv=None) -> None:
    import triton.testing

    import ssm_triton
    from ssm_triton.kernels import tuning
    from ssm_triton.kernels.ssd import fused, launch

    parser = argparse.ArgumentParser(prog="python -m ssm_triton.bench.tune_fused")
    parser.add_argument("--shapes", nargs="+", default=["1x512", "1x2048", "1x8192", "8x4096", "2x16384"])
    args = parser.parse_args(argv)
    H, P, G, N, io = 64, 64, 1, 128, torch.bfloat16
    dev = torch.device("cuda")
    k = fused.ssd_fused_fwd_kernel
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

        problem = (b, L, H, P, G, N, io, False)
        launch.FUSED = "1"
        call()   # tunes
        timings = sorted(k.timings.get(problem, {}).items(), key=lambda kv: kv[1][0] if isinstance(kv[1], list) else kv[1])
        print(f"\nb={b} L={L}: chose {k.resolved[problem][0]}")
        for cfg, t in timings:
            print(f"    {t[0] if isinstance(t, list) else t:8.4f} ms  {cfg}")
        fused_ms = triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median")
        launch.FUSED = "0"
        tuning.pin("ssd_fwd")   # the staged forward at its rule plan: no tuning run here
        try:
            staged_ms = triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median")
        finally:
            tuning.unpin("ssd_fwd")
        print(f"  eager call: fused {fused_ms * 1e3:.1f} us, staged (rule plan) {staged_ms * 1e3:.1f} us")
    launch.FUSED = ""


if __name__ == "__main__":
    main()
