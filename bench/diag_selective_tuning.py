"""Diagnosis: the selective scan's fwd+bwd at one small and one large shape (do_bench medians, this process)
and the backward tuner's timings per candidate; run with and without ``SSM_TRITON_GATHER_FREE=1``."""
import torch
import triton.testing

import ssm_triton
from ssm_triton.kernels import selective_scan as ks

for b, d, L in ((1, 1536, 2048), (8, 4096, 2048)):
    N, dt = 16, torch.bfloat16
    g = lambda *s: torch.randn(*s, device="cuda").to(dt).requires_grad_()  # noqa: E731
    u, delta, z = g(b, d, L), (torch.rand(b, d, L, device="cuda") * 0.1).to(dt).requires_grad_(), g(b, d, L)
    A = (-torch.rand(d, N, device="cuda")).requires_grad_()
    B, C = g(b, N, L), g(b, N, L)
    D, db = torch.randn(d, device="cuda", requires_grad=True), torch.randn(d, device="cuda", requires_grad=True)
    ins, gy = (u, delta, A, B, C, D, z, db), torch.randn(b, d, L, device="cuda").to(dt)

    def fb():
        y = ssm_triton.selective_scan_fn(u, delta, A, B, C, D, z, db, delta_softplus=True)
        return torch.autograd.grad(y, ins, gy)
    fb()
    print(f"b{b} d{d} L{L} fwd+bwd {triton.testing.do_bench(fb, warmup=50, rep=300):.4f} ms "
          f"gather_free_tuned={ks.GATHER_FREE_TUNED}")
for problem, t in ks.selective_scan_bwd.timings.items():
    best = sorted(t.items(), key=lambda kv: kv[1])
    print("bwd", str(problem)[:160], "best", best[0], "worst", best[-1])
