"""SSD tiles on the GPU: ``python -m ssm_triton.bench.sweep_ssd``.

Prints, for the issue's headline problem (b=8, L=4096, H=64, P=64, N=128, G=1, chunk 256, bf16) and the
small prefill (b=1, L=2048): the time of each kernel of one forward + backward (torch.profiler), then
the forward and the backward alone under each candidate tile plan, so that the defaults in
``kernels/ssd/launch.py`` can be chosen from measurements.
"""
import itertools
import sys

import torch
import triton.testing

from ssm_triton.bench.timing import peak_mb
from ssm_triton.kernels.ssd import launch


def problem(b, L, H=64, P=64, G=1, N=128, device="cuda"):
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=device, generator=g)  # noqa: E731
    return dict(x=r(b, L, H, P).bfloat16(), dt=r(b, L, H) * 0.5 - 1.0, A=-torch.rand(H, device=device) * 4 - 0.5,
                B=r(b, L, G, N).bfloat16(), C=r(b, L, G, N).bfloat16(), D=r(H), dt_bias=r(H) * 0.1)


def ms(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=150, return_mode="median")


def kernel_breakdown(t, chunk, tiles=None):
    fwd = lambda: launch.ssd_forward(**t, chunk_size=chunk, dt_softplus=True, for_backward=True, tiles=tiles)  # noqa: E731
    out, final, _, saved = fwd()
    dout = torch.randn_like(out)
    bwd = lambda: launch.ssd_backward(dout, None, saved, **t, chunk_size=chunk, dt_softplus=True, tiles=tiles)  # noqa: E731
    for _ in range(3):
        fwd(), bwd()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fwd()
            bwd()
        torch.cuda.synchronize()
    rows = {}
    for e in prof.key_averages():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            rows[e.key] = e.self_device_time_total / 5 / 1e3
    for name, t_ms in sorted(rows.items(), key=lambda kv: -kv[1])[:14]:
        print(f"    {t_ms:8.4f} ms  {name[:90]}")
    # what the backward allocates beyond its inputs and the forward's saved tensors (the dB/dC partials per head
    # block grow with the head blocks a plan makes: 128 of 184 MiB at b1 L2048, 2026-12-04f)
    peak = peak_mb(bwd, torch.device("cuda"))
    print(f"    {sum(rows.values()):8.4f} ms of kernels in all; the backward's peak {peak:.1f} MiB above what it was given")


def sweep(t, chunk, label):
    out, final, _, saved = launch.ssd_forward(**t, chunk_size=chunk, dt_softplus=True, for_backward=True)
    dout = torch.randn_like(out)
    print(f"{label}: forward plans")
    fwd_space = itertools.product([64, 128], [32, 64], [4, 8], [1, 2, 3])
    for bm, bk, w, s in fwd_space:
        if bk > bm:
            continue
        tiles = dict(block_m=bm, block_k=bk, warps=w, stages=s)
        try:
            f = ms(lambda: launch.ssd_forward(**t, chunk_size=chunk, dt_softplus=True, tiles=tiles))
            print(f"  fwd {f:8.4f} ms  {tiles}")
        except Exception as e:  # out of shared memory, say
            print(f"  fwd failed {tiles}: {type(e).__name__}: {str(e)[:80]}")
    print(f"{label}: backward plans")
    for (bm, bk), w, s, target in itertools.product([(64, 64), (64, 32), (32, 32), (32, 64)], [4, 8], [1, 2],
                                                     [132, 528, 2112]):
        tiles = dict(bwd_block_m=bm, bwd_block_k=bk, bwd_warps=w, bwd_stages=s, min_programs=target)
        try:
            f = ms(lambda: launch.ssd_backward(dout, None, saved, **t, chunk_size=chunk, dt_softplus=True, tiles=tiles))
            print(f"  bwd {f:8.4f} ms  {tiles}")
        except Exception as e:
            print(f"  bwd failed {tiles}: {type(e).__name__}: {str(e)[:80]}")


# backward plans whose kernel breakdowns "bwd_kernels" prints: the dx kernel's own fields varied beside the
# shared ones (each kernel's time depends on its own tiles only), so the best of each can be read off
# (at b1 L2048's 64 row blocks, min_programs 1056 / 1024 / 512 make 2 / 4 / 8 heads a program: fewer dB/dC partials)
BWD_VARIANTS = [{}, dict(dx_stages=2), dict(dx_warps=8), dict(bwd_stages=1, dx_warps=8),
                dict(bwd_block_k=32), dict(min_programs=1056), dict(min_programs=1024), dict(min_programs=512),
                dict(min_programs=2112), dict(heavy_first=True), dict(heavy_first=False)]


def bwd_kernels(t, chunk, label):
    for tiles in BWD_VARIANTS:
        print(f"{label}: kernels of one forward + backward, backward tiles {tiles}")
        try:
            kernel_breakdown(t, chunk, tiles)
        except Exception as e:  # out of shared memory, say
            print(f"  failed: {type(e).__name__}: {str(e)[:80]}")
        sys.stdout.flush()


def main() -> int:
    only = sys.argv[1:]  # "breakdown", "sweep" and/or "bwd_kernels"; the first two by default
    for b, L in ((8, 4096), (1, 2048)):
        t = problem(b, L)
        label = f"b={b} L={L} H=64 P=64 N=128 chunk 256 bf16"
        if not only or "breakdown" in only:
            print(f"{label}: kernels of one forward + backward (default plan)")
            kernel_breakdown(t, 256)
        if not only or "sweep" in only:
            sweep(t, 256, label)
        if "bwd_kernels" in only:
            bwd_kernels(t, 256, label)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
