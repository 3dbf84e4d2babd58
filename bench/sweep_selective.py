"""Time the selective-scan launchers over channel block, chunk length and warps at the headline shape
(b=8, d=4096, L=2048, N=16, bf16): the forward's chunk (inference, and training with a checkpoint every
128 steps) and the backward's chunk (the checkpoint interval), with atomics and deterministic. ``python -m ssm_triton.bench.sweep_selective`` (GPU). Used to pick
the defaults in kernels/selective_scan.py. ``... sweep_selective segments``: the time-split forward on
problems with few channels (``plan_segment_l``); ``... bwd_segments``: the time-split backward
(``plan_backward_segment_l``)."""
import sys

import torch
import triton.testing

from ssm_triton.kernels import selective_scan as ks


def _inputs(b, d, L, N, dtype, dev):
    g = lambda *s: torch.randn(*s, device=dev).to(dtype)
    return dict(u=g(b, d, L), delta=g(b, d, L) * 0.5 - 2.0, A=-torch.rand(d, N, device=dev) * 8 - 0.1,
                B=g(b, N, L), C=g(b, N, L), D=torch.randn(d, device=dev), z=g(b, d, L),
                delta_bias=torch.randn(d, device=dev) * 0.1)


def segments():
    """The time-split forward (``seg_l``) on problems with few channels: per shape, segment lengths with
    each forward chunk, inference and with checkpoints, replayed from a CUDA graph (the kernels' time:
    eager calls this small measure the host); 0 is the unsplit walk. The plan's choice also eager."""
    dev = torch.device("cuda")
    graphed = lambda f: triton.testing.do_bench_cudagraph(f, rep=50, return_mode="median")
    eager = lambda f: triton.testing.do_bench(f, warmup=10, rep=50, return_mode="median")
    for b, d, L in ((1, 1536, 2048), (1, 1536, 8192), (1, 768, 2048), (1, 4096, 2048), (2, 1536, 2048),
                    (4, 1536, 2048), (1, 2048, 512)):
        x = _inputs(b, d, L, 16, torch.bfloat16, dev)
        args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
        plan = ks.plan_segment_l(b, d, L, 128, ks.run_mode(dev))
        rows = []
        for seg in (0, 256, 512, 1024):
            if seg >= L:
                continue
            for tile in (256, 512):
                if seg and seg % tile:
                    continue
                cfg = dict(BLOCK_D=1, num_warps=1, BLOCK_L=tile)
                fwd = lambda s: ks.selective_scan_forward(*args, True, None, block_l=128, store_ckpt=s,
                                                          config=cfg, seg_l=seg)
                try:
                    t_inf, t_fwd = graphed(lambda: fwd(False)), graphed(lambda: fwd(True))
                    t_eager = eager(lambda: fwd(False)) if seg in (0, plan) else float("nan")
                except Exception as e:  # noqa: BLE001
                    print(f"b{b} d{d} L{L} seg {seg} L{tile}: failed {type(e).__name__}: {str(e)[:100]}")
                    continue
                rows.append((t_inf, t_fwd, seg, tile))
                print(f"b{b} d{d} L{L} seg {seg} L{tile}: replayed inference {t_inf * 1e3:.1f} us, with checkpoints "
                      f"{t_fwd * 1e3:.1f} us; eager inference {t_eager * 1e3:.1f} us", flush=True)
        best = sorted(rows)[:3]
        print(f"best b{b} d{d} L{L} (plan: seg {plan}): " + "; ".join(
            f"seg {r[2]} L{r[3]} {r[0] * 1e3:.1f}/{r[1] * 1e3:.1f} us" for r in best), flush=True)


def bwd_segments():
    """The time-split backward (``seg_l`` of ``selective_scan_backward``) on problems with few channels: per shape,
    the backward alone at each segment length (0: the unsplit walk), replayed from a CUDA graph (the kernels'
    time), tuned per segment length as the launcher tunes it; then ``plan_backward_segment_l``'s choice at
    ``BWD_SPLIT_BELOW`` 16384. Prints a ``best`` line per shape; shapes as ``BxDxL`` arguments after the mode."""
    dev = torch.device("cuda")
    graphed = lambda f: triton.testing.do_bench_cudagraph(f, rep=50, return_mode="median")
    shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[2:]] or [
        (1, 1536, 2048), (1, 1536, 8192), (1, 4096, 2048), (2, 1536, 2048), (1, 768, 2048)]
    for b, d, L in shapes:
        x = _inputs(b, d, L, 16, torch.bfloat16, dev)
        args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
        ckpt = ks.selective_scan_forward(*args, True, None, block_l=128)[2]
        dout = torch.randn_like(x["u"])
        ks.BWD_SPLIT_BELOW = 16384
        plan = ks.plan_backward_segment_l(b, d, L, 128, ks.run_mode(dev))
        ks.BWD_SPLIT_BELOW = 0
        rows = []
        for seg in (0, 256, 512, 1024, 2048):
            if seg >= L or (b * d >= 16384 and seg):
                continue
            bwd = lambda: ks.selective_scan_backward(dout, None, *args, True, ckpt, 128, seg_l=seg)
            try:
                bwd()   # tunes outside the graph
                t = graphed(bwd)
            except Exception as e:  # noqa: BLE001
                print(f"b{b} d{d} L{L} bwd seg {seg}: failed {type(e).__name__}: {str(e)[:100]}", flush=True)
                continue
            rows.append((t, seg))
            print(f"b{b} d{d} L{L} bwd seg {seg}: replayed {t * 1e3:.1f} us", flush=True)
        print(f"best b{b} d{d} L{L} (plan at 16384: seg {plan}): " + "; ".join(
            f"seg {r[1]} {r[0] * 1e3:.1f} us" for r in sorted(rows)[:3]), flush=True)


def main():
    if sys.argv[1:] == ["segments"]:
        return segments()
    if sys.argv[1:2] == ["bwd_segments"]:   # shapes may follow, as BxDxL
        return bwd_segments()
    dev = torch.device("cuda")
    b, d, L, N = 8, 4096, 2048, 16
    x = _inputs(b, d, L, N, torch.bfloat16, dev)
    args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    dout = torch.randn_like(x["u"])
    io = 2 * b * d * L
    bench = lambda f: triton.testing.do_bench(f, warmup=10, rep=50, return_mode="median")
    rows = []
    for bd in (1, 2, 4):
        for w in (1, 2):
            for tile in (128, 256, 512, 1024):
                if not 2 <= bd * tile // (32 * w) <= 32:  # elements per thread
                    continue
                fwd = lambda s, bl=128: ks.selective_scan_forward(*args, True, None, block_l=bl, store_ckpt=s,
                                                                  config=dict(BLOCK_D=bd, num_warps=w, BLOCK_L=tile))
                try:
                    t_inf, t_fwd = bench(lambda: fwd(False, tile)), bench(lambda: fwd(True))
                except Exception as e:  # noqa: BLE001 - a config that fails to compile is reported, not fatal
                    print(f"forward D{bd} L{tile} w{w}: failed {type(e).__name__}: {str(e)[:100]}")
                    continue
                rows.append(("inference", t_inf, bd, tile, w))
                rows.append(("fwd+ckpt128", t_fwd, bd, tile, w))
                print(f"forward D{bd} L{tile} w{w}: inference {t_inf:.3f} ms ({4 * io / t_inf / 1e9:.2f} TB/s), "
                      f"with checkpoints every 128 {t_fwd:.3f} ms", flush=True)
            for bl in (64, 128, 256):
                if not 2 <= bd * bl // (32 * w) <= 32:
                    continue
                ckpt = ks.selective_scan_forward(*args, True, None, block_l=bl, config=dict(BLOCK_D=1))[2]
                bwd = lambda det: ks.selective_scan_backward(dout, None, *args, True, ckpt, bl, deterministic=det,
                                                             config=dict(BLOCK_D=bd, num_warps=w))
                try:
                    t_bwd = bench(lambda: bwd(False))
                    t_det = bench(lambda: bwd(True)) if bd >= 2 else float("nan")
                except Exception as e:  # noqa: BLE001
                    print(f"backward D{bd} L{bl} w{w}: failed {type(e).__name__}: {str(e)[:100]}")
                    continue
                rows.append(("bwd", t_bwd, bd, bl, w))
                rows.append(("bwd deterministic", t_det, bd, bl, w))
                print(f"backward D{bd} L{bl} w{w}: {t_bwd:.3f} ms, deterministic {t_det:.3f} ms", flush=True)
    for name in ("inference", "fwd+ckpt128", "bwd", "bwd deterministic"):
        best = sorted((r for r in rows if r[0] == name and r[1] == r[1]), key=lambda r: r[1])[:5]
        print(f"best {name}: " + "; ".join(f"D{r[2]} L{r[3]} w{r[4]} {r[1]:.3f}" for r in best))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
