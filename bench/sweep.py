"""Time every autotune config of the scan kernels, forced one by one, and name the one the autotuner
picks. ``python -m ssm_triton.bench.sweep [headline]`` (GPU; ``headline``: the (8 x 1536, 4096) rows only). Used to shape the search spaces in kernels/tuning.py."""
import sys

import torch
import triton.testing

from ssm_triton.kernels import scan as ks
from ssm_triton.kernels.tuning import run_mode


def main():
    dev = torch.device("cuda")
    shapes = [(8 * 1536, 4096), (1536, 4096), (1536, 16384)]
    for R, L in shapes[:1] if sys.argv[1:] == ["headline"] else shapes:
        for dtype in (torch.float32, torch.bfloat16):
            a = torch.rand(R, L, device=dev).to(dtype)
            b = torch.randn(R, L, device=dev).to(dtype)
            g = torch.randn(R, L, device=dev).to(dtype)
            h = ks.scan_forward(a, b, None, False)
            nbytes = {"fwd": 3 * a.numel() * a.element_size(), "bwd": 5 * a.numel() * a.element_size()}
            runs = {"fwd": lambda c: ks.scan_forward(a, b, None, False, config=c),
                    "bwd": lambda c: ks.scan_backward(g, a, h, None, False, config=c)}
            for direction, run in runs.items():
                rows = []
                kernel = ks.scan_fwd if direction == "fwd" else ks.scan_bwd
                for c in kernel.space((R, L, dtype, None, False, False), run_mode()):
                    ms = triton.testing.do_bench(lambda: run(c), warmup=25, rep=100, return_mode="median")
                    rows.append((ms, c))
                rows.sort(key=lambda r: r[0])
                best = ", ".join(f"{c['BLOCK_R']}x{c['BLOCK_L']}/w{c['num_warps']}: "
                                 f"{ms * 1e3:.1f}us "
                                 f"({nbytes[direction] / ms / 1e6:.0f} GB/s)" for ms, c in rows[:4])
                worst = rows[-1]
                print(f"R={R} L={L} {str(dtype)[6:]} {direction}: best {best} | worst {worst[0] * 1e3:.1f}us")


if __name__ == "__main__":
    main()
