"""Where the decode step's state update loses to a copy (issue 17 asks >= 90% of the copy bandwidth replayed).

Mamba-2's step as `selective_state_update` takes it (dt, A, D, dt_bias one value a head; z; softplus), timed
replayed from CUDA graphs of 24 launches over 24 state tensors (a model's layers: no state is in L2 when its
launch reads it), against:
  copy     torch's copy of the same bytes (the roofline's ceiling), and the in-place `state.mul_` (read + write
           where it lies)
  op       the library's op (`ssm_triton.selective_state_update`), and its kernel through its launcher at other
           launch configs (8 warps, half the tile)
  probe    a copy of the kernel's Mamba-2 path with switches: BAR (the barrier between the reads and the
           in-place store), CG (the state's loads through L2 only, `.cg`), PERSIST (programs = SMs x k walking
           tiles, each loading the next tile's state before it stores the current one), ROWS_FIRST (programs in
           turn a row apart, as the op's grid was before 2026-12-08), the tile (BLOCK_P) and warps.
Usage: python probe_state_bw.py [b H P N state_dtype]...  (default: 64 64 64 128 fp32 and 16 24 64 128 fp32/bf16)
Prints one line a form: us a launch and the fraction of the copy's bandwidth.
"""
import sys

import torch
import triton
import triton.language as tl


@triton.jit
def _probe(S, X, DT, A, D, Z, BIAS, B, C, OUT, H, P, N, n_tiles, p_tiles, n_rows,
           BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BAR: tl.constexpr, CG: tl.constexpr,
           PERSIST: tl.constexpr, ROWS_FIRST: tl.constexpr = False):
    ns = tl.arange(0, BLOCK_N)
    pid = tl.program_id(0)
    if PERSIST:
        step = tl.num_programs(0)
    else:
        step = n_tiles
    t = pid
    # tile t: p tile fastest, then head, then row (a row's heads share B, C)
    pt = t % p_tiles
    if ROWS_FIRST:   # the op's grid before 2026-12-08: rows on the second axis, so programs in turn are rows apart
        bh = ((t // p_tiles) % n_rows * H + (t // p_tiles) // n_rows).to(tl.int64)
    else:
        bh = (t // p_tiles).to(tl.int64)
    ps = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    at = S + bh * P * N + ps[:, None] * N + ns[None, :]
    if CG:
        state = tl.load(at, cache_modifier=".cg").to(tl.float32)
    else:
        state = tl.load(at).to(tl.float32)
    while t < n_tiles:
        nxt = t + step
        if PERSIST:
            npt = nxt % p_tiles
            if ROWS_FIRST:
                nbh = ((nxt // p_tiles) % n_rows * H + (nxt // p_tiles) // n_rows).to(tl.int64)
            else:
                nbh = (nxt // p_tiles).to(tl.int64)
            nat = S + nbh * P * N + (npt * BLOCK_P + tl.arange(0, BLOCK_P))[:, None] * N + ns[None, :]
            ok = (tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.int32) + nxt) < n_tiles
            if CG:
                nstate = tl.load(nat, mask=ok, other=0.0, cache_modifier=".cg").to(tl.float32)
            else:
                nstate = tl.load(nat, mask=ok, other=0.0).to(tl.float32)
        h = bh % H
        bi = bh // H
        x = tl.load(X + bh * P + ps).to(tl.float32)
        dt = tl.load(DT + bh).to(tl.float32) + tl.load(BIAS + h)
        dt = tl.where(dt > 20.0, dt, tl.log(1.0 + tl.exp(dt)))
        decay = tl.exp(-tl.exp(tl.load(A + h)) * dt)
        b = tl.load(B + bi * N + ns).to(tl.float32)
        c = tl.load(C + bi * N + ns).to(tl.float32)
        state = decay * state + (dt * x)[:, None] * b[None, :]
        if BAR:
            tl.debug_barrier()
        tl.store(at, state.to(S.dtype.element_ty))
        out = tl.sum(state * c[None, :], axis=1) + tl.load(D + h) * x
        z = tl.load(Z + bh * P + ps).to(tl.float32)
        tl.store(OUT + bh * P + ps, (out * z * tl.sigmoid(z)).to(OUT.dtype.element_ty))
        t = nxt
        if PERSIST:
            pt = npt
            bh = nbh
            ps = npt * BLOCK_P + tl.arange(0, BLOCK_P)
            at = nat
            state = nstate


def graph_us(fns, reps=30):
    """us a launch of fns (a list of callables, one a layer) replayed from one CUDA graph (the models' capture)."""
    from ssm_triton.models.graph_cache import capture
    g = capture(lambda: [f() for f in fns], torch.device("cuda"))[0]
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        a.record()
        for _ in range(reps):
            g.replay()
        e.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(e) * 1e3 / reps / len(fns))
    return sorted(times)[2]


def main():
    from ssm_triton import selective_state_update

    shapes = []
    args = sys.argv[1:]
    while args:
        b, H, P, N, dt = args[:5]
        shapes.append((int(b), int(H), int(P), int(N), dict(fp32=torch.float32, bf16=torch.bfloat16)[dt]))
        args = args[5:]
    shapes = shapes or [(64, 64, 64, 128, torch.float32), (16, 24, 64, 128, torch.float32),
                        (16, 24, 64, 128, torch.bfloat16)]
    dev = "cuda"
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(torch.cuda.get_device_name(0), "triton", triton.__version__, "SMs", sms)
    for b, H, P, N, sdt in shapes:
        layers = 24 if b * H * P * N * 4 < (64 << 20) else 4
        io = torch.bfloat16
        states = [torch.randn(b, H, P, N, device=dev).to(sdt) for _ in range(layers)]
        dst = [torch.empty_like(s) for s in states]
        x, z = torch.randn(b, H, P, device=dev, dtype=io), torch.randn(b, H, P, device=dev, dtype=io)
        dt = torch.randn(b, H, device=dev, dtype=io)
        Bm, Cm = torch.randn(b, 1, N, device=dev, dtype=io), torch.randn(b, 1, N, device=dev, dtype=io)
        a_log = torch.rand(H, device=dev)
        D, bias = torch.randn(H, device=dev), torch.randn(H, device=dev)
        A = -torch.exp(a_log)
        nbytes = 2 * states[0].numel() * states[0].element_size()
        copy = graph_us([lambda s=s, d=d: d.copy_(s) for s, d in zip(states, dst)])
        head = f"b{b} H{H} P{P} N{N} state {str(sdt)[6:]}: {nbytes / 1e6:.1f} MB a launch;"

        def row(name, us):
            print(f"{head} {name:44s} {us:8.2f} us  {copy / us * 100:5.1f}% of copy")

        row("copy (torch)", copy)
        row("in-place mul_ (torch)", graph_us([lambda s=s: s.mul_(0.999) for s in states]))
        out = torch.empty_like(x)
        row("op (selective_state_update)", graph_us([
            lambda s=s: selective_state_update(s, x, dt[..., None].expand(b, H, P), A[:, None, None].expand(H, P, N),
                                               Bm, Cm, D[:, None].expand(H, P), z=z,
                                               dt_bias=bias[:, None].expand(H, P), dt_softplus=True)
            for s in states]))
        # the op's kernel at other launch configs (the rule's tile at 8 warps, half the tile), through its launcher
        from ssm_triton.kernels.state_update import state_update as launcher
        for cfg in (dict(BLOCK_P=32, num_warps=4), dict(BLOCK_P=32, num_warps=8), dict(BLOCK_P=16, num_warps=4)):
            if P % cfg["BLOCK_P"]:
                continue
            row(f"op kernel {cfg}", graph_us([
                lambda s=s, cfg=cfg: launcher(s, x, dt[..., None].expand(b, H, P), A[:, None, None].expand(H, P, N),
                                              Bm, Cm, D[:, None].expand(H, P), z, bias[:, None].expand(H, P), True,
                                              None, config=cfg)
                for s in states]))
        bn = triton.next_power_of_2(N)
        # (tile, warps, barrier, .cg, programs walking tiles (SMs x k, 0: one tile a program), rows first): the
        # in-order and rows-first pairs first (the op's grid order before 2026-12-08 and after, same kernel)
        forms = [(32, 4, False, False, 0, True), (32, 4, False, False, 0, False), (32, 8, False, False, 0, True),
                 (32, 8, False, False, 0, False), (32, 4, True, False, 0, False), (32, 4, False, True, 0, False),
                 (16, 4, False, False, 0, False), (64, 8, False, False, 0, False), (32, 4, False, False, 8, False),
                 (64, 8, False, False, 4, False)]
        for bp, warps, bar, cg, persist, rows_first in forms:
            if P % bp:
                continue
            p_tiles = P // bp
            n_tiles = b * H * p_tiles
            grid = (min(n_tiles, sms * persist) if persist else n_tiles,)

            def run(s, bp=bp, warps=warps, bar=bar, cg=cg, persist=persist, p_tiles=p_tiles, n_tiles=n_tiles,
                    grid=grid, rows_first=rows_first):
                _probe[grid](s, x, dt, a_log, D, z, bias, Bm, Cm, out, H, P, N, n_tiles, p_tiles, b, BLOCK_P=bp,
                             BLOCK_N=bn, BAR=bar, CG=cg, PERSIST=bool(persist), ROWS_FIRST=rows_first,
                             num_warps=warps)
            name = f"probe P{bp} w{warps} bar{int(bar)} cg{int(cg)} persist{persist} rows first {int(rows_first)}"
            try:
                row(name, graph_us([lambda s=s: run(s) for s in states]))
            except Exception as e:   # a form that does not compile here is a row, not the end of the probe
                print(f"{head} {name}: {type(e).__name__}: {str(e)[:120]}")
        # the probe's values against the op's on one state (every form computes the same update)
        s0 = torch.randn(b, H, P, N, device=dev).to(sdt)
        s1 = s0.clone()
        ref = selective_state_update(s0, x, dt[..., None].expand(b, H, P), A[:, None, None].expand(H, P, N), Bm, Cm,
                                     D[:, None].expand(H, P), z=z, dt_bias=bias[:, None].expand(H, P),
                                     dt_softplus=True)
        _probe[(sms * 4,)](s1, x, dt, a_log, D, z, bias, Bm, Cm, out, H, P, N, b * H * (P // 32), P // 32, b,
                           BLOCK_P=32, BLOCK_N=bn, BAR=False, CG=False, PERSIST=True, num_warps=4)
        print(f"{head} probe vs op: state {(s0.float() - s1.float()).abs().max().item():.2e}, "
              f"out {(ref.float() - out.float()).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
