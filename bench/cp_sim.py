"""What one rank of context-parallel SSD costs, on one GPU: ``python -m ssm_triton.bench.cp_sim``.

With W ranks, each runs ``mamba_chunk_scan_combined`` twice on L / W steps (from zero, then from its
entering state) plus a fold over W small states; the exchange is one all-gather of W (H, P, N) states.
This times the per-rank compute (forward, and forward + backward) against the one-device call on the
whole sequence, so that the speed-up a multi-GPU run could reach, before communication, is measured
rather than guessed. It does not time the collectives (one GPU here).
"""
import torch
import triton.testing

from ssm_triton import mamba_chunk_scan_combined


def ms(fn):
    return triton.testing.do_bench(fn, warmup=10, rep=100, return_mode="median")


def problem(L, H=64, P=64, G=1, N=128):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    t = dict(x=r(1, L, H, P).bfloat16(), dt=r(1, L, H) * 0.5 - 1.0, A=-torch.rand(H, device="cuda") - 0.5,
             B=r(1, L, G, N).bfloat16(), C=r(1, L, G, N).bfloat16(), D=r(H), dt_bias=r(H) * 0.1)
    for v in t.values():
        v.requires_grad_()
    return t


def per_rank(t, h0, backward):
    def run():
        _, s = mamba_chunk_scan_combined(**t, chunk_size=256, dt_softplus=True, return_final_states=True)
        out = mamba_chunk_scan_combined(**t, chunk_size=256, dt_softplus=True, initial_states=h0)
        if backward:
            torch.autograd.grad((out.float().sum() + s.sum()), list(t.values()) + [h0])
    return run


def one_device(t, backward):
    def run():
        out = mamba_chunk_scan_combined(**t, chunk_size=256, dt_softplus=True)
        if backward:
            torch.autograd.grad(out.float().sum(), list(t.values()))
    return run


if __name__ == "__main__":
    print("H=64 P=64 N=128 G=1, chunk 256, bf16, b=1; per-rank compute (two local scans) vs one device")
    print("L        W  fwd one-dev  fwd per-rank  speed-up   fwd+bwd one-dev  per-rank  speed-up")
    for L in (1 << 18, 1 << 19, 1 << 20):
        full = problem(L)
        with torch.no_grad():
            f1 = ms(one_device(full, False))
        try:
            b1 = ms(one_device(full, True))
        except torch.cuda.OutOfMemoryError:
            b1 = float("nan")
            print(f"L={L}: one-device fwd+bwd ran out of memory")
        del full
        torch.cuda.empty_cache()
        for W in (2, 4, 8):
            t = problem(L // W)
            h0 = torch.randn(1, 64, 64, 128, device="cuda", requires_grad=True)
            with torch.no_grad():
                fw = ms(per_rank(t, h0, False))
            bw = ms(per_rank(t, h0, True))
            print(f"{L:<8d} {W}  {f1:9.2f} ms {fw:10.2f} ms {f1 / fw:7.2f}x   {b1:12.2f} ms {bw:9.2f} ms {b1 / bw:7.2f}x")
            del t
        torch.cuda.empty_cache()
