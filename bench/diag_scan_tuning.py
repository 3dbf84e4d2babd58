"""Diagnosis: the linear scan tuner's timings per candidate at 1536 rows (L 1K-16K, bf16 and fp32), fwd and bwd."""
import torch, ssm_triton
from ssm_triton.kernels import scan
for L in (1024, 4096, 16384):
    for dt in (torch.bfloat16, torch.float32):
        a = torch.rand(1536, L, device="cuda", dtype=dt); b = torch.randn_like(a)
        a.requires_grad_(); b.requires_grad_()
        h = ssm_triton.linear_scan(a, b); torch.autograd.grad(h, (a, b), torch.randn_like(h)); torch.cuda.synchronize()
for k in (scan.scan_fwd, scan.scan_bwd):
    for p, t in k.timings.items():
        print(k.name, p[:3], sorted(t.items(), key=lambda kv: kv[1])[:3], "worst", max(t.items(), key=lambda kv: kv[1]))
