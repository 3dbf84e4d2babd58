"""Mamba-3 MIMO's kernels around the SSD stages on the GPU: ``python -m ssm_triton.bench.sweep_mimo``.

At the issue's shape (B=8 L=4096 R=4 H=32 P=64 N=128 S=32 bf16, D, Z, MIMO_Out), each of the four kernels of
``kernels/mamba3/mimo.py`` (prep forward and backward) and ``mimo_out.py`` (output forward and backward) timed alone
under every step block and warp count (``do_bench`` medians), so that their blocks can be chosen from measurements: the
backward kernels' step block is fixed by their partial sums' shape and not tuned.
"""
import itertools

import torch
import triton.language as tl
import triton.testing

from ssm_triton.kernels import tuning
from ssm_triton.kernels.mamba3 import mimo, mimo_out


def ms(fn):
    return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median")


def inputs(b=8, L=4096, R=4, H=32, P=64, N=128, S=32, device="cuda"):
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=device, generator=g)  # noqa: E731
    bf = torch.bfloat16
    t = dict(Q=r(b, L, R, 1, N).to(bf), K=r(b, L, R, 1, N).to(bf), Q_bias=r(H, R, N) * 0.3, K_bias=r(H, R, N) * 0.3,
             theta=torch.rand(b, L, H, S, device=device) * 6.0, V=r(b, L, H, P).to(bf), Z=r(b, L, H, P).to(bf),
             MIMO_V=r(H, R, P), MIMO_Z=r(H, R, P), MIMO_Out=r(H, R, P), D=r(H), gamma=torch.rand(b, H, L, device=device),
             e_next=torch.rand(b, H, L, device=device), y=r(b, L, R, H, P), dout=r(b, L, H, P).to(bf))
    return t


def run(steps_options=(4, 8, 16, 32), warps_options=(4, 8)):
    t = inputs()
    H = t["V"].shape[2]
    qr, kr, sc, scc = mimo.prep_forward(t["Q"], t["K"], t["Q_bias"], t["K_bias"], t["theta"], H, tl.bfloat16)
    out_args = (t["y"], sc, scc, t["gamma"], t["e_next"], t["V"], t["MIMO_V"], t["D"], t["Z"], t["MIMO_Z"],
                t["MIMO_Out"])
    dqr, dkr = torch.randn_like(qr), torch.randn_like(kr)
    dsc, dscc = torch.randn_like(sc), torch.randn_like(sc)
    kernels = {
        "prep fwd": ("mamba3_mimo_prep",
                     lambda: mimo.prep_forward(t["Q"], t["K"], t["Q_bias"], t["K_bias"], t["theta"], H, tl.bfloat16)),
        "out fwd": ("mamba3_mimo_out", lambda: mimo_out.out_forward(*out_args)),
        "out bwd": ("mamba3_mimo_out_bwd", lambda: mimo_out.out_backward(t["dout"], *out_args)),
        "prep bwd": ("mamba3_mimo_prep_bwd_pairs",
                     lambda: mimo.prep_backward(dqr, dkr, dsc, dscc, t["Q"], t["K"], t["Q_bias"], t["K_bias"],
                                                t["theta"])),
    }
    blocks = mimo._blocks
    try:
        for label, (name, fn) in kernels.items():
            extra = [dict(BLOCK_H=h) for h in (16, 32, 64)] if name.endswith("pairs") else [{}]
            for steps, warps, more in itertools.product(steps_options, warps_options, extra):
                mimo._blocks = lambda device, fwd, s=steps: s
                tuning.pin(name, num_warps=warps, **more)
                try:
                    print(f"{label:9s} steps {steps:3d} warps {warps} {more}: {ms(fn):8.3f} ms", flush=True)
                except Exception as e:   # out of registers or shared memory: the next shape
                    print(f"{label:9s} steps {steps:3d} warps {warps} {more}: failed {type(e).__name__}: {e}"[:200])
            tuning.unpin(name)
    finally:
        mimo._blocks = blocks


if __name__ == "__main__":
    run()
