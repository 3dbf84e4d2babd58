"""Launch shapes of the fused decode step's projections on the GPU: ``python -m ssm_triton.bench.sweep_step [M ...]``.

The 130M models' layer shapes (d_model 768): Mamba-2's in_proj (3352 x 768, with the norm and the conv
windows) and out_proj (768 x 1536, with the gated norm); Mamba-1's x_proj (80 x 1536) and dt_proj
(1536 x 48); Mamba-2's projections also without the conv and without the norms (what each part costs). For each
batch size M (default 1 and 4): cuBLAS's ``F.linear`` of the same weight, then every (BLOCK_O, BLOCK_K, warps, weight
read a tile ahead or not) of the fused kernels (one row a program up to 4 rows; past 4, tensor-core tiles of 16 rows
and the multi-row one-tile form), in microseconds a launch inside a CUDA graph of 24 launches over 24 weight copies (as the
24 layers of a replayed step: no host time, the weights from HBM; the earlier ``do_bench`` timing of a call with an
explicit config timed its host path, ~35 us, at M=16 on 2026-12-04d). The rule in ``kernels/fused_step.py`` comes from this.
"""
import itertools
import statistics
import sys

import torch
import torch.nn.functional as F

from ssm_triton.kernels import fused_step as k


COPIES = 24   # weight copies, one a launch, as the 24 layers of a step (L2 holds ~50 MB: the weights come from HBM)


def us(fn):
    """Microseconds a launch of ``fn(i)`` (``i``: which weight copy) takes inside a CUDA graph of ``COPIES``
    launches, as in a replayed decode step: no host time, no idle clock-down between launches."""
    for i in range(COPIES):   # compile, tune, warm up
        fn(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(COPIES):
            fn(i)
    for _ in range(3):
        graph.replay()
    times = []
    for _ in range(30):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times) * 1e3 / COPIES


def main():
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=dev, generator=g).to(dt)  # noqa: E731
    d_model, d_ssm, N, H = 768, 1536, 128, 24
    conv_dim = d_ssm + 2 * N
    w_ins = [r(2 * d_ssm + 2 * N + H, d_model) for _ in range(COPIES)]
    w_outs = [r(d_model, d_ssm) for _ in range(COPIES)]
    w_x, w_dt = r(48 + 32, d_ssm), r(d_ssm, 48)
    conv_w, conv_b, norm_w = r(conv_dim, 4), r(conv_dim), r(d_model)
    gate_w = r(d_ssm)
    gemv = [dict(BLOCK_M=1, BLOCK_O=o, BLOCK_K=k, AHEAD=a, num_warps=w, num_stages=3)
            for o, k, w, a in itertools.product((4, 8, 16), (256, 512, 1024), (4, 8), (False, True))
            if w == 4 or k == 1024]
    dot = [dict(BLOCK_M=16, BLOCK_O=o, BLOCK_K=k, num_warps=w, num_stages=3)
           for o, k, w in itertools.product((16, 32, 64), (128, 256), (4, 8))]
    rows4 = [dict(BLOCK_M=m, BLOCK_O=o, BLOCK_K=2048, num_warps=w, num_stages=3)   # the multi-row one-tile form
             for m, o, w in itertools.product((2, 4), (2, 4, 8), (4, 8)) if m * o <= 16]
    for M in [int(m) for m in (sys.argv[1:] or ["1", "4"])]:
        hid, res = r(M, d_model), torch.randn(M, d_model, device=dev)
        conv_state = r(M, conv_dim, 4)
        zx, _ = k.in_step(hid, res, norm_w, 1e-5, torch.float32, w_ins[0], None, conv_w, conv_b, conv_state, d_ssm)
        y = r(M, d_ssm)
        x_conv = r(M, d_ssm)
        cases = {
            "in_proj+norm+conv": (lambda cfg, i: k.in_step(hid, res, norm_w, 1e-5, torch.float32, w_ins[i], None,
                                                           conv_w, conv_b, conv_state, d_ssm, config=cfg),
                                  lambda i: F.linear(hid, w_ins[i])),
            "in_proj+norm, no conv": (lambda cfg, i: k.in_step(hid, res, norm_w, 1e-5, torch.float32, w_ins[i], None,
                                                               config=cfg),
                                      lambda i: F.linear(hid, w_ins[i])),
            "in_proj alone": (lambda cfg, i: k.in_step(hid, None, None, 0.0, None, w_ins[i], None, config=cfg),
                              lambda i: F.linear(hid, w_ins[i])),
            "out_proj+gated norm": (lambda cfg, i: k.out_step(y, zx, gate_w, 1e-5, d_ssm, True, w_outs[i], None,
                                                              config=cfg),
                                    lambda i: F.linear(y, w_outs[i])),
            "out_proj alone": (lambda cfg, i: k.out_step(y, zx, None, 1e-5, d_ssm, True, w_outs[i], None, config=cfg),
                               lambda i: F.linear(y, w_outs[i])),
            "x_proj": (lambda cfg, i: k.in_step(x_conv, None, None, 0.0, None, w_x, None, config=cfg),
                       lambda i: F.linear(x_conv, w_x)),
            "dt_proj": (lambda cfg, i: k.in_step(x_conv[:, :48], None, None, 0.0, None, w_dt, None, config=cfg),
                        lambda i: F.linear(x_conv[:, :48], w_dt)),
        }
        for name, (ours, cublas) in cases.items():
            if M > 4 and name in ("x_proj", "dt_proj"):   # Mamba-1's small projections: tensor-core tiles won (12-04c)
                continue
            space = gemv if M <= 4 else dot + [dict(c, BLOCK_K=1024 if "in_proj" in name else 2048) for c in rows4]
            base = us(cublas)
            rows = []
            for cfg in space:
                try:
                    rows.append((us(lambda i: ours(cfg, i)), cfg))
                except Exception as e:  # out of registers / shared memory: not a candidate
                    rows.append((float("inf"), f"{cfg} {type(e).__name__}"))
            rows.sort(key=lambda t: t[0])
            print(f"\nM={M} {name}: cuBLAS F.linear alone {base:.1f} us; rule {us(lambda i: ours(None, i)):.1f} us; best:",
                  flush=True)
            for t, cfg in rows[:6]:
                print(f"  {t:7.1f} us  {cfg}")
            print(f"  worst {rows[-1][0]:.1f} us")


if __name__ == "__main__":
    main()
