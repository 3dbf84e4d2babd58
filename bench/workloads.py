"""What is benchmarked: per op, the shapes, the inputs and every implementation. The bytes and FLOPs
each workload is measured against live in ``counts.py``."""
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import counts
from .peers import load, load_past_package_init

# an implementation turns (inputs, direction) into a zero-argument callable to time
Impl = Callable[[dict, str], Callable[[], object]]


@dataclass
class Workload:
    op: str
    shape: tuple
    dtype: torch.dtype
    direction: str  # "fwd" | "fwd+bwd"
    bytes: float
    flops: float
    make_inputs: Callable[[], dict]
    impls: dict[str, Impl] = field(default_factory=dict)
    tokens: int | None = None  # whole-model workloads: tokens per call, reported as tokens/s


def _fwd_bwd(forward, leaves, grad):
    def run():
        out = forward()
        return torch.autograd.grad(out, leaves, grad)
    return run


def _timed(forward, leaves: dict, grad, direction):
    """``fwd``: an inference forward, no graph recorded (for every implementation alike); else forward
    plus the gradients of every input."""
    if direction == "fwd":
        def run():
            with torch.no_grad():
                return forward()
        return run
    return _fwd_bwd(forward, tuple(leaves.values()), grad)


def keyword_impl(fn, **kwargs) -> Impl:
    """An implementation called as ``fn(**inputs, **kwargs)``, inputs being every entry but the
    cotangent ``g``; fwd+bwd takes the gradients of all of them."""
    def build(x, direction):
        args = {k: v for k, v in x.items() if k != "g"}
        return _timed(lambda: fn(**args, **kwargs), args, x["g"], direction)
    return build


def switched_impl(build: Impl, module, name: str, value) -> Impl:
    """``build``'s calls (forward and backward) with ``module.name`` set to ``value`` (a route switch read at call
    time, e.g. ``kernels.ssd.launch.WALK_BWD``), restored after each."""
    def wrapped(x, direction):
        run = build(x, direction)

        def switched():
            saved = getattr(module, name)
            setattr(module, name, value)
            try:
                return run()
            finally:
                setattr(module, name, saved)
        return switched
    return wrapped


def tf32_impl(build: Impl) -> Impl:
    """``build``'s calls (forward and backward) with PyTorch's fp32 matmul precision at "high", under which
    ssm_triton's SSD multiplies fp32 in TF32 (``kernels/ssd/launch.py``'s ``fp32_matmul``), as mamba_ssm's
    always does."""
    def wrapped(x, direction):
        run = build(x, direction)

        def in_tf32():
            saved = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("high")
            try:
                return run()
            finally:
                torch.set_float32_matmul_precision(saved)
        return in_tf32
    return wrapped


# ---- linear_scan: h_t = a_t h_{t-1} + b_t over (batch, dim, L) ----

def _scan_inputs(shape, dtype, device):
    def make():
        a = torch.rand(shape, device=device, dtype=torch.float32).mul_(0.5).add_(0.5).to(dtype)
        b = torch.randn(shape, device=device, dtype=dtype)
        g = torch.randn(shape, device=device, dtype=dtype)
        return {"a": a.requires_grad_(), "b": b.requires_grad_(), "g": g}
    return make


def _scan_impl(fn):
    def impl(x, direction):   # fwd without a graph, as every other op's (until 2026-12-03 it recorded one)
        return _timed(lambda: fn(x["a"], x["b"]), {"a": x["a"], "b": x["b"]}, x["g"], direction)
    return impl


def _scan_peers(shape, notes):
    impls = {}
    mod, why = load("accelerated_scan.scalar")
    if mod is None:
        notes.add(f"accelerated_scan skipped: {why}")
    elif shape[-1] & (shape[-1] - 1) == 0 and len(shape) == 3:  # it takes (B, C, T), T a power of two
        impls["accelerated_scan"] = _scan_impl(mod.scan)
    return impls


def linear_scan_workloads(device, quick: bool, notes: set, sweep: bool = False) -> list[Workload]:
    """The headline shape, lengths 1K to 64K and two very long rows; ``sweep`` adds batch 1 to 16 at L 4096."""
    from ssm_triton import linear_scan
    from ssm_triton.reference import linear_scan_torch

    if quick:
        shapes = [(2, 8, 64)] + ([(1, 8, 32), (4, 8, 32)] if sweep else [])
    else:
        shapes = [(8, 1536, 4096)] + [(1, 1536, L) for L in (1024, 4096, 16384, 65536)] + [(2, 2, 1 << 20)]
        if sweep:
            shapes += [(b, 1536, 4096) for b in (2, 4, 16)]
    dtypes = [torch.float32] if quick else [torch.float32, torch.bfloat16]
    out = []
    for shape in shapes:
        for dtype in dtypes:
            es = torch.tensor([], dtype=dtype).element_size()
            for direction in ("fwd", "fwd+bwd"):
                nbytes, flops = counts.linear_scan(*shape, es, direction)
                impls = {"ssm_triton": _scan_impl(linear_scan)}
                impls.update(_scan_peers(shape, notes))
                if shape[-1] <= 4096 and direction == "fwd":  # the loop launches a kernel per step
                    impls["torch_loop"] = _scan_impl(linear_scan_torch)
                out.append(Workload("linear_scan", shape, dtype, direction, nbytes, flops,
                                    _scan_inputs(shape, dtype, device), impls))
    return out


# ---- discretize: (delta, A, B) -> (Abar, Bbar), each (b, d, L, N) ----

def discretize_workloads(device, quick: bool, notes: set) -> list[Workload]:
    from ssm_triton import discretize
    from ssm_triton.reference import discretize_torch

    b, d, L, N = (1, 4, 32, 8) if quick else (4, 768, 1024, 16)
    shape = (b, d, L, N)

    def make():
        delta = torch.rand(b, d, L, device=device).mul_(0.1).requires_grad_()
        A = (-torch.rand(d, N, device=device) * 8).requires_grad_()
        B = torch.randn(b, N, L, device=device).requires_grad_()
        return {"delta": delta, "A": A, "B": B, "g": torch.randn(b, d, L, N, device=device)}

    def impl(fn):
        def build(x, direction):
            forward = lambda: fn(x["delta"], x["A"], x["B"], "zoh")
            if direction == "fwd":   # without a graph, as every op's
                return _timed(forward, {}, None, "fwd")
            return lambda: torch.autograd.grad(forward(), (x["delta"], x["A"], x["B"]), (x["g"], x["g"]))
        return build

    out = []
    for direction in ("fwd", "fwd+bwd"):
        nbytes, flops = counts.discretize(b, d, L, N, 4, direction)
        out.append(Workload("discretize_zoh", shape, torch.float32, direction, nbytes, flops, make,
                            {"ssm_triton": impl(discretize), "torch_eager": impl(discretize_torch)}))
    return out


# ---- selective_scan (Mamba-1): u, delta, z (b, d, L), B, C (b, N, L), A (d, N), D, delta_bias (d,) ----

def _pscan_selective_scan(pscan):
    """The selective scan built on mambapy's pure-PyTorch parallel scan, which materialises the
    (b, L, d, N) decays and inputs: the way its Mamba model calls it."""
    def run(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        dt = delta.float() + delta_bias[:, None]
        dt = torch.nn.functional.softplus(dt) if delta_softplus else dt
        decay = torch.exp(dt.transpose(1, 2)[..., None] * A)                               # (b, L, d, N)
        drive = (dt * u.float()).transpose(1, 2)[..., None] * B.float().transpose(1, 2)[:, :, None, :]
        hs = pscan(decay, drive)
        y = (hs * C.float().transpose(1, 2)[:, :, None, :]).sum(-1).transpose(1, 2) + D[:, None] * u.float()
        return (y * torch.nn.functional.silu(z.float())).to(u.dtype)
    return run


def selective_scan_workloads(device, quick: bool, notes: set, sweep: bool = False) -> list[Workload]:
    """The headline shape (ANCHORS.md) in bf16; ``sweep`` adds lengths 1K to 64K at batch 1 and batches 1
    to 16 at L 2048, in bf16 and fp32, against the peers that fit (no PyTorch loop)."""
    from ssm_triton import selective_scan_fn
    from ssm_triton.reference import selective_scan_ref

    if quick:
        cases = [(1, 8, 64, 4, torch.float32)]
        if sweep:
            cases += [(1, 8, 32, 4, torch.float32), (2, 8, 32, 4, torch.float32)]
    else:
        # the headline training shape, and the small prefill of issue 17 (130M-sized Mamba-1 layer, b1)
        cases = [(8, 4096, 2048, 16, torch.bfloat16), (1, 1536, 2048, 16, torch.bfloat16)]
        if sweep:
            shapes = [(1, 4096, L, 16) for L in (1024, 4096, 16384, 65536)] + [(b, 4096, 2048, 16) for b in (1, 2, 4, 16)]
            cases += [(*shape, io) for shape in shapes for io in (torch.bfloat16, torch.float32)]
            cases.append((8, 4096, 2048, 16, torch.float32))

    def make(b, d, L, N, io):
        def build():
            g = lambda *shape: torch.randn(*shape, device=device).to(io)
            x = {"u": g(b, d, L), "delta": g(b, d, L) * 0.5 - 2.0, "z": g(b, d, L), "B": g(b, N, L), "C": g(b, N, L),
                 "A": -torch.rand(d, N, device=device) * 8 - 0.1, "D": torch.randn(d, device=device),
                 "delta_bias": torch.randn(d, device=device) * 0.1}
            for v in x.values():
                v.requires_grad_()
            x["g"] = g(b, d, L)
            return x
        return build

    def impl(fn):
        return keyword_impl(fn, delta_softplus=True)

    peers = {}
    mod, why = load("mambapy.pscan")
    if mod is None:
        notes.add(f"mambapy skipped: {why}")
    else:
        peers["mambapy_pscan"] = impl(_pscan_selective_scan(mod.pscan))
    # its CUDA extension (selective_scan_cuda) must have been built; the package's __init__ is skipped,
    # as for its Triton kernels (it imports names transformers 5 no longer has)
    mod, why = load_past_package_init("mamba_ssm.ops.selective_scan_interface")
    if mod is None:
        notes.add(f"mamba_ssm CUDA selective scan skipped: {why}")
    else:
        peers["mamba_ssm_cuda"] = impl(mod.selective_scan_fn)
    out = []
    for b, d, L, N, io in cases:
        es = torch.tensor([], dtype=io).element_size()
        big = b * d * L
        for direction in ("fwd", "fwd+bwd"):
            nbytes, flops = counts.selective_scan(b, d, L, N, es, direction)
            impls = {"ssm_triton": impl(selective_scan_fn)}
            # pscan materialises (b, d, L, N) several times over: past 2^28 elements it would not fit
            impls.update({k: v for k, v in peers.items() if k != "mambapy_pscan" or big * N <= 1 << 28})
            if direction == "fwd" and L * d <= 4096 * 2048 and (b, d, L, N) == cases[0][:4] and io == cases[0][4]:
                impls["torch_loop"] = impl(selective_scan_ref)
            out.append(Workload("selective_scan", (b, d, L, N), io, direction, nbytes, flops, make(b, d, L, N, io), impls))
    return out


# ---- ssd (Mamba-2): x (b, L, H, P), dt (b, L, H), A (H,), B, C (b, L, G, N), D, dt_bias (H,) ----

def _gla_as_ssd(chunk_simple_gla):
    """SSD as flash-linear-attention's gated linear attention: q = C, k = B broadcast to the heads,
    v = x dt, log-gate g = dt A; D x added after. The step-size prep runs in PyTorch."""
    def run(x, dt, A, B, C, chunk_size, D, dt_bias, dt_softplus):
        H = x.shape[2]
        step = torch.nn.functional.softplus(dt + dt_bias)
        rep = H // B.shape[2]
        q, k = C.repeat_interleave(rep, dim=2), B.repeat_interleave(rep, dim=2)
        out, _ = chunk_simple_gla(q, k, (x * step[..., None]).to(x.dtype), step * A, scale=1.0)
        return out + (D[:, None] * x).to(out.dtype)
    return run


def ssd_workloads(device, quick: bool, notes: set, sweep: bool = False) -> list[Workload]:
    """Four (batch, length) rows in bf16 and a million-step forward; ``sweep`` adds lengths 1K to 64K at
    batch 1 and batches 1 to 16 at L 4096, in bf16 and fp32."""
    from ssm_triton import mamba_chunk_scan_combined
    from ssm_triton.reference import ssd_quadratic_torch

    H, P, G, N, chunk = (2, 16, 1, 16, 16) if quick else (64, 64, 1, 128, 256)
    io = torch.float32 if quick else torch.bfloat16
    rows = [(1, 64, io)] if quick else [(8, 4096, io), (2, 16384, io), (1, 512, io), (1, 2048, io), (1, 8192, io)]
    if sweep:
        shapes = [(1, 32), (2, 32)] if quick else ([(1, L) for L in (1024, 4096, 16384, 65536)] +
                                                   [(b, 4096) for b in (1, 2, 4, 16)])
        rows += [(b, L, t) for b, L in shapes for t in ((torch.float32,) if quick else (torch.bfloat16, torch.float32))]
    peers = {}
    mod, why = load_past_package_init("mamba_ssm.ops.triton.ssd_combined")
    if mod is None:
        notes.add(f"mamba_ssm skipped: {why}")
    else:
        peers["mamba_ssm"] = mod.mamba_chunk_scan_combined
    mod, why = load("fla.ops.simple_gla")
    if mod is None:
        notes.add(f"fla skipped: {why}")
    else:
        peers["fla_chunk_simple_gla"] = _gla_as_ssd(mod.chunk_simple_gla)

    def make(b, L, io):
        def build():
            g = lambda *s: torch.randn(*s, device=device).to(io)
            x = {"x": g(b, L, H, P), "dt": torch.randn(b, L, H, device=device) * 0.5 - 1.0,
                 "A": -torch.rand(H, device=device) * 4 - 0.5, "B": g(b, L, G, N), "C": g(b, L, G, N),
                 "D": torch.randn(H, device=device), "dt_bias": torch.randn(H, device=device) * 0.1}
            for v in x.values():
                v.requires_grad_()
            x["g"] = g(b, L, H, P)
            return x
        return build

    def impl(fn):
        return keyword_impl(fn, chunk_size=chunk, dt_softplus=True)

    def quadratic(x, dt, A, B, C, chunk_size, D, dt_bias, dt_softplus):
        # the reference computes in its inputs' dtype, and einsum wants them alike: fp32 throughout
        f = lambda t: t.float()  # noqa: E731
        return ssd_quadratic_torch(f(x), dt, A, f(B), f(C), D=D, dt_bias=dt_bias, dt_softplus=dt_softplus)[0].to(x.dtype)

    out = []
    for b, L, io in rows:
        for direction in ("fwd", "fwd+bwd"):
            nbytes, flops = counts.ssd(b, L, H, P, G, N, chunk, torch.tensor([], dtype=io).element_size(), direction)
            impls = {"ssm_triton": impl(mamba_chunk_scan_combined)}
            if io == torch.float32:   # the TF32 mode, against mamba_ssm's TF32 products
                impls["ssm_triton_tf32"] = tf32_impl(impl(mamba_chunk_scan_combined))
            for name, fn in peers.items():
                if name.startswith("fla") and direction != "fwd":
                    continue  # its backward refuses Triton < 3.7.1 on Hopper
                impls[name] = impl(fn)
            if b * L <= 2048 and direction == "fwd":
                impls["torch_quadratic"] = impl(quadratic)
            out.append(Workload("ssd", (b, L, H, P, G, N, chunk), io, direction, nbytes, flops, make(b, L, io), impls))
    if not quick:  # a million steps, forward
        b, L, io = 1, 1 << 20, torch.bfloat16
        nbytes, flops = counts.ssd(b, L, H, P, G, N, chunk, 2, "fwd")
        impls = {"ssm_triton": impl(mamba_chunk_scan_combined)}
        if "mamba_ssm" in peers:
            impls["mamba_ssm"] = impl(peers["mamba_ssm"])
        out.append(Workload("ssd", (b, L, H, P, G, N, chunk), io, "fwd", nbytes, flops, make(b, L, io), impls))
    return out


# ---- state_update: one decode step, state (b, H, P, N) updated in place ----

def state_update_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """Mamba-2's decode step as its module calls it: dt, A, D, dt_bias stride-0 views of one value per head."""
    from ssm_triton import selective_state_update

    b, H, P, N, G = (2, 4, 8, 16, 1) if quick else (64, 64, 64, 128, 1)
    io = torch.float32 if quick else torch.bfloat16

    def make():
        g = lambda *s: torch.randn(*s, device=device).to(io)  # noqa: E731
        return {"state": torch.randn(b, H, P, N, device=device), "x": g(b, H, P),
                "dt": g(b, H)[..., None].expand(b, H, P), "A": (-torch.rand(H, device=device) - 0.1)[:, None, None].expand(H, P, N),
                "B": g(b, G, N), "C": g(b, G, N), "D": torch.randn(H, device=device)[:, None].expand(H, P),
                "z": g(b, H, P), "dt_bias": torch.randn(H, device=device)[:, None].expand(H, P)}

    def impl(fn):
        def build(x, direction):
            def run():
                with torch.no_grad():
                    return fn(**x, dt_softplus=True)
            return run
        return build

    def replayed(fn):
        """The call captured into a CUDA graph once and replayed (a decode step as generate runs it: no host work
        in the timing; the models' own capture, warm-up included); eager where there are no graphs (the
        interpreter)."""
        def build(x, direction):
            from ssm_triton.models.graph_cache import capture
            run = impl(fn)(x, direction)
            return capture(run, device)[0].replay if device.type == "cuda" else run
        return build

    impls = {"ssm_triton": impl(selective_state_update)}
    graphed = {"ssm_triton": replayed(selective_state_update)}
    mod, why = load_past_package_init("mamba_ssm.ops.triton.selective_state_update")
    if mod is None:
        notes.add(f"mamba_ssm skipped: {why}")
    else:
        impls["mamba_ssm"] = impl(mod.selective_state_update)
        graphed["mamba_ssm"] = replayed(mod.selective_state_update)
    nbytes, flops = counts.state_update(b, H, P, N, G, torch.tensor([], dtype=io).element_size())
    # replayed: issue 17 asks >= 90% of the copy bandwidth there (the roofline column)
    return [Workload("state_update", (b, H, P, N, G), io, "fwd", nbytes, flops, make, impls),
            Workload("state_update_replayed", (b, H, P, N, G), io, "fwd", nbytes, flops, make, graphed)]
