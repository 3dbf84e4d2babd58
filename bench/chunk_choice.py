"""Whether the SSD's chunk length is worth choosing inside the library: ``python -m ssm_triton.bench.chunk_choice``.

The SSD's outputs, final states and gradients do not depend on the chunk length but for rounding, so a call's
``chunk_size`` could be a tuned choice (issue 18's "ways in"). This times ``mamba_chunk_scan_combined`` fwd and
fwd+bwd at issue 18's headline (b8 L4096 H64 P64 N128 G1 bf16, D, dt_bias, softplus) and the small prefill (b1
L2048) for chunk lengths 64, 128 and 256 in one process (``triton.testing.do_bench`` medians, ms, with the peak
memory of a fwd+bwd), and Mamba-3 SISO (B8 L4096 H32 N128 P64) at 32, 64 and 128. ``--kernels N``: also each
chunk length's N longest kernels of one fwd+bwd (torch.profiler, device time a call), to see which stages move.
``--adjoint``: each chunk length twice, the per-chunk sums stored by their own stages (the default) and made inside
the state passings (``SSM_TRITON_SSD_OWN_FUSED=1`` and ``SSM_TRITON_SSD_ADJ_FUSED=1``: ``launch.OWN_FUSED``,
``launch.ADJ_FUSED``), alternating in the process: their time and peak memory.
"""
import argparse

import torch
import triton.testing

import ssm_triton
from ssm_triton.bench.profile import print_kernels
from ssm_triton.bench.timing import peak_mb
from ssm_triton.kernels.ssd import launch


def _ms(fn) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))


def _ssd(b: int, L: int, device: str = "cuda", H: int = 64, P: int = 64, N: int = 128):
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=device, generator=g)  # noqa: E731
    leaves = dict(x=r(b, L, H, P).bfloat16(), dt=(r(b, L, H) * 0.5 - 1.0), A=-torch.rand(H, device=device) * 4 - 0.5,
                  B=r(b, L, 1, N).bfloat16(), C=r(b, L, 1, N).bfloat16(), D=r(H), dt_bias=r(H) * 0.1)
    for t in leaves.values():
        t.requires_grad_()
    dout = torch.randn_like(leaves["x"])

    def call(chunk):
        return ssm_triton.mamba_chunk_scan_combined(chunk_size=chunk, dt_softplus=True, **leaves)

    def both(chunk):
        return torch.autograd.grad(call(chunk), list(leaves.values()), dout)
    return call, both


def _siso(b: int, L: int, device: str = "cuda", H: int = 32, P: int = 64, N: int = 128):
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=device, generator=g)  # noqa: E731
    S = N // 4
    bf = torch.bfloat16
    leaves = [r(b, L, 1, N).to(bf), r(b, L, 1, N).to(bf), r(b, L, H, P).to(bf), -torch.rand(b, H, L, device=device),
              torch.rand(b, H, L, device=device) * 0.1, r(b, H, L), r(H, N) * 0.1, r(H, N) * 0.1, r(b, L, H, S),
              r(H), r(b, L, H, P).to(bf)]
    for t in leaves:
        t.requires_grad_()
    dout = torch.randn(b, L, H, P, device=device, dtype=bf)

    def call(chunk):
        return ssm_triton.mamba3_siso_combined(*leaves[:9], D=leaves[9], Z=leaves[10], chunk_size=chunk)

    def both(chunk):
        return torch.autograd.grad(call(chunk), leaves, dout)
    return call, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-siso", action="store_true")
    parser.add_argument("--chunks", type=int, nargs="*", help="only these chunk lengths")
    parser.add_argument("--only", default="", help="run only the cases whose label ('SSD b8 L4096') contains this")
    parser.add_argument("--kernels", type=int, default=0, help="print this many of each fwd+bwd's longest kernels")
    parser.add_argument("--adjoint", action="store_true", help="also with the chunks' sums inside the state passings")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | ms (do_bench medians), peak MiB of fwd+bwd")
    cases = [("SSD", (8, 4096), _ssd, (64, 128, 256)), ("SSD", (1, 2048), _ssd, (64, 128, 256))]
    if not args.skip_siso:
        cases.append(("Mamba-3 SISO", (8, 4096), _siso, (32, 64, 128)))
    for name, (b, L), make, chunks in [c for c in cases if args.only in f"{c[0]} b{c[1][0]} L{c[1][1]}"]:
        call, both = make(b, L)
        for chunk in [c for c in chunks if not args.chunks or c in args.chunks]:
            for adj in ("", "1") if args.adjoint else (launch.ADJ_FUSED,):
                launch.OWN_FUSED = launch.ADJ_FUSED = adj
                fwd = _ms(lambda: call(chunk))
                fb = _ms(lambda: both(chunk))
                peak = peak_mb(lambda: both(chunk), torch.device("cuda"))
                route = " sums in the state passings" if adj == "1" else ""
                print(f"{name:13s} b{b} L{L} chunk {chunk:4d}: fwd {fwd:7.3f}  fwd+bwd {fb:7.3f}  peak {peak:8.1f}"
                      f"{route}", flush=True)
                if args.kernels and b > 1:
                    print_kernels(lambda: both(chunk), args.kernels)


if __name__ == "__main__":
    main()
