#!/usr/bin/env bash
# Call 6 (2026-12-06, thirty-seventh session; ~112 s of device time left): does the linear scan's small fwd+bwd
# synchronize the host with the device? (call 3: do_bench 0.341 ms at 1x1536x1024 fp32 with 0.016 ms of kernels and
# 183 us of host, where accelerated-scan read 0.105.) Runs from the source tree (no install: links), under
# torch.cuda.set_sync_debug_mode("error"), then do_bench of both. Carry .whl.
R=$(pwd); ln -sfn ../kernels ssm_triton/kernels; ln -sfn ../reference ssm_triton/reference; ln -sfn ../bench ssm_triton/bench
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/accelerated_scan*.whl 2>/dev/null
cd /tmp; PYTHONPATH=$R:/tmp/site timeout 50 python3 - <<'PY' 2>&1 | grep -v Warn | tee $OUT/sync.txt
import torch, triton.testing, ssm_triton
from accelerated_scan.scalar import scan
for dtype in (torch.float32, torch.bfloat16):
    a = torch.rand(1, 1536, 1024, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(1, 1536, 1024, device="cuda", dtype=dtype, requires_grad=True)
    g = torch.randn(1, 1536, 1024, device="cuda", dtype=dtype)
    for name, op in (("ssm_triton", ssm_triton.linear_scan), ("accelerated_scan", scan)):
        f = lambda: torch.autograd.grad(op(a, b), (a, b), g)
        for _ in range(3):
            f()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            f(); f()
            sync = "no host sync"
        except RuntimeError as e:
            sync = "SYNC: " + str(e).splitlines()[0][:200]
        torch.cuda.set_sync_debug_mode(0)
        ms = triton.testing.do_bench(f, warmup=25, rep=200, return_mode="median")
        print(f"{name} {dtype} 1x1536x1024 fwd+bwd: {sync}; do_bench {ms * 1e3:.1f} us", flush=True)
PY
