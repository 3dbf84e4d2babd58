"""Host-side cost per call of each layer of an op, on a problem too small for the GPU to matter.

``python -m ssm_triton.bench.overhead``: when the host cost exceeds the kernel time, the GPU idles
and every benchmark of that op measures the host. Prints microseconds per call per layer and the
top functions of a cProfile of one fwd+bwd.
"""
import cProfile
import pstats
import time

import torch


def _per_call_us(fn, n=300):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def main():
    import triton
    import triton.language as tl

    @triton.jit
    def _copy_one(X, Y):
        tl.store(Y, tl.load(X))

    import ssm_triton
    from ssm_triton.kernels import scan as ks
    from ssm_triton.kernels.tuning import run_mode

    dev = torch.device("cuda")
    a = torch.rand(4, 256, device=dev).requires_grad_()
    b = torch.randn(4, 256, device=dev).requires_grad_()
    g = torch.randn(4, 256, device=dev)
    cfg = ks.scan_fwd.space((4, 256, torch.float32, None, False, False), run_mode())[0]
    layers = {
        "empty torch op (a + 0)": lambda: a.detach() + 0,
        "bare 2-arg triton kernel": lambda: _copy_one[(1,)](a, g),
        "raw kernel, fixed config": lambda: ks.scan_forward(a.detach(), b.detach(), None, False, config=cfg),
        "launcher (autotuned)": lambda: ks.scan_forward(a.detach(), b.detach(), None, False),
        "custom op, no grad": lambda: torch.ops.ssm_triton.linear_scan(a.detach(), b.detach(), None, False),
        "public fn, no grad": lambda: ssm_triton.linear_scan(a.detach(), b.detach()),
        "public fn, fwd with graph": lambda: ssm_triton.linear_scan(a, b),
        "public fn, fwd+bwd": lambda: torch.autograd.grad(ssm_triton.linear_scan(a, b), (a, b), g),
    }
    h_ = ks.scan_forward(a.detach(), b.detach(), None, False)
    from ssm_triton.ops import scan as ops_scan

    class Minimal(torch.autograd.Function):  # the launchers under the thinnest possible autograd wrapper
        @staticmethod
        def forward(ctx, x, y):
            out = ks.scan_forward(x, y, None, False)
            ctx.save_for_backward(x, out)
            return out

        @staticmethod
        def backward(ctx, grad):
            x, out = ctx.saved_tensors
            da, db, _ = ks.scan_backward(grad, x, out, None, False)
            return da, db

    class Double(torch.autograd.Function):  # the autograd engine with a trivial op
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    layers.update({
        "bwd launcher alone": lambda: ks.scan_backward(g, a.detach(), h_, None, False),
        "bwd body (_backward_impl)": lambda: ops_scan._backward_impl(g, a.detach(), h_, None, False),
        "minimal autograd.Function fwd+bwd": lambda: torch.autograd.grad(Minimal.apply(a, b), (a, b), g),
        "trivial autograd.Function fwd+bwd": lambda: torch.autograd.grad(Double.apply(a, b), (a, b), g),
    })
    try:
        from accelerated_scan.scalar import scan as peer_scan

        a3, b3, g3 = (t.detach().view(1, 4, 256).requires_grad_(t.requires_grad) for t in (a, b, g))
        layers["accelerated_scan fwd, no grad"] = lambda: peer_scan(a3.detach(), b3.detach())
        layers["accelerated_scan fwd+bwd"] = lambda: torch.autograd.grad(peer_scan(a3, b3), (a3, b3), g3)
    except ImportError:
        pass
    for name, fn in layers.items():
        print(f"{name:32s} {_per_call_us(fn):8.1f} us/call")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(100):
        torch.autograd.grad(ssm_triton.linear_scan(a, b), (a, b), g)
    torch.cuda.synchronize()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(18)




def profile_shape(shape=(1, 1536, 4096), dtype=torch.float32):
    """fwd+bwd at a benchmark shape: do_bench median, host time per call, and a profiler table."""
    import triton.testing

    import ssm_triton

    dev = torch.device("cuda")
    a = torch.rand(shape, device=dev).to(dtype).requires_grad_()
    b = torch.randn(shape, device=dev).to(dtype).requires_grad_()
    g = torch.randn(shape, device=dev).to(dtype)
    impls = {"ssm_triton": ssm_triton.linear_scan}
    try:
        from accelerated_scan.scalar import scan

        impls["accelerated_scan"] = scan
    except ImportError:
        pass
    import threading

    from ssm_triton.kernels import scan as ks
    from ssm_triton.ops import scan as ops_scan

    a2, b2, g2 = (t.detach().reshape(-1, shape[-1]) for t in (a, b, g))
    h2 = ks.scan_forward(a2, b2, None, False)
    pieces = {
        "fwd launcher, main thread": lambda: ks.scan_forward(a2, b2, None, False),
        "bwd launcher, main thread": lambda: ks.scan_backward(g2, a2, h2, None, False),
        "bwd body 3-D, main thread": lambda: ops_scan._backward_impl(g.detach(), a.detach(), h2.view(shape), None, False),
    }
    for name, fn in pieces.items():
        print(f"{name:34s} {_per_call_us(fn, 100):8.1f} us/call")
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("us", _per_call_us(pieces["bwd launcher, main thread"], 100)))
    worker.start()
    worker.join()
    print(f"{'bwd launcher, worker thread':34s} {box['us']:8.1f} us/call")
    for name, fn in impls.items():
        step = lambda: torch.autograd.grad(fn(a, b), (a, b), g)
        ms = triton.testing.do_bench(step, return_mode="median")
        print(f"{name} {shape} {dtype}: do_bench {ms * 1e3:.1f} us, host {_per_call_us(step, 100):.1f} us/call")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


if __name__ == "__main__":
    import sys

    profile_shape() if "--shape" in sys.argv else main()
