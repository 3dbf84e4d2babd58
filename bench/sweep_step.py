"""Launch shapes of the fused decode step's projections on the GPU: ``python -m ssm_triton.bench.sweep_step [M ...]``.

The 130M models' layer shapes (d_model 768): Mamba-2's in_proj (3352 x 768, with the norm and the conv
windows) and out_proj (768 x 1536, with the gated norm); Mamba-1's x_proj (80 x 1536) and dt_proj
(1536 x 48); Mamba-2's projections also without the conv and without the norms (what each part costs). For each
batch size M (default 1 and 4): cuBLAS's ``F.linear`` of the same weight, then every (BLOCK_O, BLOCK_K, warps, weight
read a tile ahead or not) of the fused kernels (one row a program up to 4 rows; past 4, tensor-core tiles of 16 rows
and the multi-row one-tile form), in microseconds (``do_bench`` medians, L2 flushed between
runs, as the 24 layers' weights are in a decode step). Every candidate is compiled before any is timed (the GPU clocks down while
one compiles). The rule in ``kernels/fused_step.py`` comes from this.
"""
import itertools
import sys

import torch
import torch.nn.functional as F
import triton.testing

from ssm_triton.kernels import fused_step as k


def us(fn):
    return triton.testing.do_bench(fn, warmup=20, rep=100, return_mode="median") * 1e3


def main():
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=dev, generator=g).to(dt)  # noqa: E731
    d_model, d_ssm, N, H = 768, 1536, 128, 24
    conv_dim = d_ssm + 2 * N
    w_in, w_out = r(2 * d_ssm + 2 * N + H, d_model), r(d_model, d_ssm)
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
        zx, _ = k.in_step(hid, res, norm_w, 1e-5, torch.float32, w_in, None, conv_w, conv_b, conv_state, d_ssm)
        y = r(M, d_ssm)
        x_conv = r(M, d_ssm)
        cases = {
            "in_proj+norm+conv": (lambda cfg: k.in_step(hid, res, norm_w, 1e-5, torch.float32, w_in, None, conv_w,
                                                        conv_b, conv_state, d_ssm, config=cfg),
                                  lambda: F.linear(hid, w_in)),
            "in_proj+norm, no conv": (lambda cfg: k.in_step(hid, res, norm_w, 1e-5, torch.float32, w_in, None,
                                                            config=cfg),
                                      lambda: F.linear(hid, w_in)),
            "in_proj alone": (lambda cfg: k.in_step(hid, None, None, 0.0, None, w_in, None, config=cfg),
                              lambda: F.linear(hid, w_in)),
            "out_proj+gated norm": (lambda cfg: k.out_step(y, zx, gate_w, 1e-5, d_ssm, True, w_out, None, config=cfg),
                                    lambda: F.linear(y, w_out)),
            "out_proj alone": (lambda cfg: k.out_step(y, zx, None, 1e-5, d_ssm, True, w_out, None, config=cfg),
                               lambda: F.linear(y, w_out)),
            "x_proj": (lambda cfg: k.in_step(x_conv, None, None, 0.0, None, w_x, None, config=cfg),
                       lambda: F.linear(x_conv, w_x)),
            "dt_proj": (lambda cfg: k.in_step(x_conv[:, :48], None, None, 0.0, None, w_dt, None, config=cfg),
                        lambda: F.linear(x_conv[:, :48], w_dt)),
        }
        for name, (ours, cublas) in cases.items():
            if M > 4 and name in ("x_proj", "dt_proj"):   # Mamba-1's small projections: tensor-core tiles won (12-04c)
                continue
            space = gemv if M <= 4 else dot + [dict(c, BLOCK_K=1024 if "in_proj" in name else 2048) for c in rows4]
            for cfg in space:   # compile every candidate first: the GPU idles (and clocks down) while one compiles
                try:
                    ours(cfg)
                except Exception:  # noqa: BLE001 - timed (and reported) below
                    pass
            torch.cuda.synchronize()
            base = us(cublas)
            rows = []
            for cfg in space:
                try:
                    rows.append((us(lambda: ours(cfg)), cfg))
                except Exception as e:  # out of registers / shared memory: not a candidate
                    rows.append((float("inf"), f"{cfg} {type(e).__name__}"))
            rows.sort(key=lambda t: t[0])
            print(f"\nM={M} {name}: cuBLAS F.linear alone {base:.1f} us; rule {us(lambda: ours(None)):.1f} us; best:")
            for t, cfg in rows[:6]:
                print(f"  {t:7.1f} us  {cfg}")
            print(f"  worst {rows[-1][0]:.1f} us")


if __name__ == "__main__":
    main()
