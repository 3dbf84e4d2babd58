"""Host time per call of the small forwards on a machine without a GPU: ``python -m ssm_triton.bench.host_sim``.

The compiled (lean) launch path is simulated in Triton's interpreter: every kernel's launch is stubbed (no
kernel runs), so what is timed is the Python between the public call and the launch: the checks, the op layer,
the launchers, the tuner's key, the bound launch's own work. Op plans (``ssm_triton/ops/_plans.py``) on and
off alternate in one process (7 rounds of 2000 calls, medians); ``--backward`` times fwd+bwd instead (``--prof``:
with a cProfile of each; ``--aten``: the PyTorch calls of one, those that launch a kernel on a GPU apart);
``--lm Mamba2`` (or ``Mamba1``) an LM's eager decode step, ``--lm-prefill Mamba2`` its eager prefill. A GPU host adds the launch itself (~5 us on
the H200's) and runs Python at its own speed: ``bench/overhead.py --plans`` is the measurement there.
"""
import inspect
import os
import statistics
import time

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
import triton.language as tl  # noqa: E402

import ssm_triton  # noqa: E402
from ssm_triton.kernels import replay, tuning  # noqa: E402
from ssm_triton.ops import _plans  # noqa: E402


class _Compiled:
    function = packed_metadata = None

    def run(self, *args):
        pass


def _stub_launches() -> None:
    """Every kernel's first launch returns a stand-in binary, and the lean launch calls nothing."""
    import gc
    tuning._lean_enabled = lambda: True
    torch.cuda.current_device = lambda: 0
    tuning._raw_stream = lambda device: 0
    tuning._hooks_active = lambda: False
    tuning.Kernel._lean = staticmethod(lambda compiled, grid, stream, values: None)
    for k in [o for o in gc.get_objects() if isinstance(o, tuning.Kernel)]:
        k.fn.run = (lambda self, grid=None, warmup=False, **kw: _Compiled()).__get__(k.fn)
        if k._params is None:   # the interpreter's kernels carry no parameter list: read the signature
            params = list(inspect.signature(getattr(k.fn, "fn", k.fn)).parameters.values())
            names = tuple(p.name for p in params)
            const = tuple(p.annotation is tl.constexpr or "constexpr" in str(p.annotation) for p in params)
            k._params = (names, const, frozenset(names))
            k._defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    replay.clear_all()   # recorded again with the stubbed binaries, as a GPU's first calls bind theirs


def _cases():
    bf = dict(dtype=torch.bfloat16)
    x, dt = torch.randn(1, 512, 8, 16, **bf), torch.rand(1, 512, 8, **bf)
    A, B, C = -torch.rand(8), torch.randn(1, 512, 1, 32, **bf), torch.randn(1, 512, 1, 32, **bf)
    u, delta, z = torch.randn(1, 64, 16, **bf), torch.rand(1, 64, 16, **bf), torch.randn(1, 64, 16, **bf)
    As, Bs, Cs = -torch.rand(64, 16), torch.randn(1, 16, 16, **bf), torch.randn(1, 16, 16, **bf)
    st, xs, dts = torch.randn(4, 8, 16, 32), torch.randn(4, 8, 16), torch.rand(4, 8, 16)
    Au, Bu, Cu = -torch.rand(8, 16, 32), torch.randn(4, 1, 32), torch.randn(4, 1, 32)
    la, lb = torch.rand(64, 128), torch.randn(64, 128)
    xn, wn, zn = torch.randn(4, 256, **bf), torch.randn(256, **bf), torch.randn(4, 256, **bf)
    xc, sc, wc, bc = torch.randn(2, 64, **bf), torch.randn(2, 64, 3, **bf), torch.randn(64, 4, **bf), torch.randn(64, **bf)
    D64, b64, D8, b8 = torch.ones(64), torch.zeros(64), torch.ones(8), torch.zeros(8)
    # the ops without op plans (several launches, or PyTorch around them): what their forward costs
    Q3, V3 = torch.randn(1, 64, 1, 16, **bf), torch.randn(1, 64, 4, 16, **bf)
    adt, dt3, trap = -torch.rand(1, 4, 64), torch.rand(1, 4, 64), torch.randn(1, 4, 64)
    qb, ang, D4 = torch.randn(4, 16), torch.randn(1, 64, 4, 4), torch.ones(4)
    Qm, qbm, mv = torch.randn(1, 64, 2, 1, 16, **bf), torch.randn(4, 2, 16), torch.randn(4, 2, 16)
    q1, v1, s1 = torch.randn(2, 1, 16, **bf), torch.randn(2, 4, 16, **bf), torch.rand(2, 4)
    q1m, a1 = torch.randn(2, 2, 1, 16, **bf), torch.randn(2, 4, 4)
    # the blocks' decoding: states updated in place (these take op plans)
    ns1 = -s1
    st1 = (torch.zeros(2, 4, 4), torch.zeros(2, 4, 16, 16), torch.zeros(2, 4, 16, **bf), torch.zeros(2, 4, 16, **bf))
    st1m = (torch.zeros(2, 4, 4), torch.zeros(2, 4, 16, 16), torch.zeros(2, 2, 4, 16, **bf), torch.zeros(2, 4, 16, **bf))
    xl, wl = torch.randn(1, 64, 128, **bf), torch.randn(64, 4, **bf)
    dl, Al, Bl = torch.rand(2, 64, 16), -torch.rand(64, 8), torch.randn(2, 8, 16)
    zx = torch.randn(1, 128, 2 * 64 + 2 * 16 + 4, **bf)
    cw, cb = torch.randn(64 + 2 * 16, 4, **bf), torch.randn(64 + 2 * 16, **bf)
    xz, xpw = torch.randn(1, 64, 128, **bf), torch.randn(2 + 2 * 16, 32, **bf)
    dpw, opw, c1w, c1b = torch.randn(32, 2, **bf), torch.randn(16, 32, **bf), torch.randn(32, 1, 4, **bf), torch.randn(32, **bf)
    A1 = -torch.rand(32, 16)
    cases = {
        "causal_conv1d_fn fwd": lambda: ssm_triton.causal_conv1d_fn(xl, wl, None, activation="silu"),
        "discretize fwd": lambda: ssm_triton.discretize(dl, Al, Bl),
        "mamba3_siso_combined fwd": lambda: ssm_triton.mamba3_siso_combined(
            Q3, Q3, V3, adt, dt3, trap, qb, qb, ang, D=D4),
        "mamba3_mimo fwd": lambda: ssm_triton.mamba3_mimo(Qm, Qm, V3, adt, dt3, trap, qbm, qbm, mv, mv, mv, ang, D=D4),
        "mamba3_siso_step": lambda: ssm_triton.mamba3_siso_step(q1, q1, v1, -s1, s1, s1, qb, qb, a1, D=D4),
        "mamba3_mimo_step": lambda: ssm_triton.mamba3_mimo_step(q1m, q1m, v1, -s1, s1, s1, qbm, qbm, mv, mv, mv, a1,
                                                                D=D4),
        "mamba3_siso_step inplace": lambda: ssm_triton.mamba3_siso_step(q1, q1, v1, ns1, s1, s1, qb, qb, a1, D=D4,
                                                                        Input_States=st1, inplace=True),
        "mamba3_mimo_step inplace": lambda: ssm_triton.mamba3_mimo_step(
            q1m, q1m, v1, ns1, s1, s1, qbm, qbm, mv, mv, mv, a1, D=D4, Input_States=st1m, inplace=True),
        "mamba_split_conv1d_scan_combined": lambda: ssm_triton.mamba_split_conv1d_scan_combined(
            zx, cw, cb, b8[:4], -torch.ones(4), D4, 64, headdim=16, ngroups=1),
        "mamba_inner_fn fwd": lambda: ssm_triton.mamba_inner_fn(xz, c1w, c1b, xpw, dpw, opw, None, A1,
                                                                delta_softplus=True),
    }
    return {
        "selective_scan_fn fwd": lambda: ssm_triton.selective_scan_fn(u, delta, As, Bs, Cs, D64, z, b64,
                                                                      delta_softplus=True),
        "mamba_chunk_scan_combined fwd": lambda: ssm_triton.mamba_chunk_scan_combined(
            x, dt, A, B, C, 64, D=D8, dt_bias=b8, dt_softplus=True),
        "selective_state_update": lambda: ssm_triton.selective_state_update(st, xs, dts, Au, Bu, Cu),
        "linear_scan fwd": lambda: ssm_triton.linear_scan(la, lb),
        "rmsnorm_fn fwd": lambda: ssm_triton.rmsnorm_fn(xn, wn, z=zn, norm_before_gate=False),
        "causal_conv1d_update": lambda: ssm_triton.causal_conv1d_update(xc, sc, wc, bc, "silu"),
        **cases,
    }


def _backward_cases():
    """fwd+bwd of the ops the training sweep times, tiny shapes (stubbed launches write nothing: the values are
    never read on the host)."""
    bf = dict(dtype=torch.bfloat16)
    leaf = lambda *shape, **kw: torch.randn(*shape, **kw).requires_grad_()   # noqa: E731
    x, dt = leaf(1, 512, 8, 16, **bf), torch.rand(1, 512, 8, **bf).requires_grad_()
    A, B, C = (-torch.rand(8)).requires_grad_(), leaf(1, 512, 1, 32, **bf), leaf(1, 512, 1, 32, **bf)
    D8, b8 = leaf(8), leaf(8)
    u, delta, z = leaf(1, 64, 16, **bf), torch.rand(1, 64, 16, **bf).requires_grad_(), leaf(1, 64, 16, **bf)
    As, Bs, Cs = (-torch.rand(64, 16)).requires_grad_(), leaf(1, 16, 16, **bf), leaf(1, 16, 16, **bf)
    D64, b64 = leaf(64), leaf(64)
    la, lb = torch.rand(64, 128).requires_grad_(), leaf(64, 128)
    # Mamba-3 SISO and MIMO (rank 2), every input differentiable
    Q3, K3, V3 = leaf(1, 64, 1, 16, **bf), leaf(1, 64, 1, 16, **bf), leaf(1, 64, 4, 16, **bf)
    adt, dt3, trap = (-torch.rand(1, 4, 64)).requires_grad_(), torch.rand(1, 4, 64).requires_grad_(), leaf(1, 4, 64)
    qb, kb, ang, D4, Z3 = leaf(4, 16), leaf(4, 16), leaf(1, 64, 4, 4), leaf(4), leaf(1, 64, 4, 16, **bf)
    Qm, Km = leaf(1, 64, 2, 1, 16, **bf), leaf(1, 64, 2, 1, 16, **bf)
    qbm, kbm, mv, mz, mo = (leaf(4, 2, 16) for _ in range(5))
    siso = (Q3, K3, V3, adt, dt3, trap, qb, kb, ang, D4, Z3)
    # the two block functions as Mamba2 / Mamba train them (norm and out_proj inside the first; the second's
    # projections are matmuls on this CPU in bf16, ~90 us of its forward)
    zx, cw, cb = leaf(1, 64, 2 * 64 + 2 * 32 + 4, **bf), leaf(64 + 2 * 32, 4), leaf(64 + 2 * 32)
    dtb, A4, Dh, rw, ow = leaf(4), (-torch.rand(4)).requires_grad_(), leaf(4), leaf(64), leaf(32, 64, **bf)
    split = (zx, cw, cb, dtb, A4, Dh, rw, ow)
    xz, c1w, c1b = leaf(1, 64, 64, **bf), leaf(32, 1, 4), leaf(32)
    xpw, dpw, opw, A1 = leaf(4 + 32, 32, **bf), leaf(32, 4, **bf), leaf(32, 32, **bf), (-torch.rand(32, 16)).requires_grad_()
    inner = (xz, c1w, c1b, xpw, dpw, opw, A1)
    torch.manual_seed(0)
    # fp32: this CPU's bf16 matmuls take milliseconds (a GPU's cuBLAS, microseconds)
    m3 = ssm_triton.Mamba3(64, d_state=16, headdim=16, chunk_size=16, is_outproj_norm=True)
    u3 = leaf(1, 64, 64)
    m2, m1 = ssm_triton.Mamba2(64, d_state=16, headdim=16, chunk_size=16), ssm_triton.Mamba(64, d_state=16)
    m3m = ssm_triton.Mamba3(64, d_state=16, headdim=16, chunk_size=16, is_mimo=True, mimo_rank=2)
    mimo = (Qm, Km, V3, adt, dt3, trap, qbm, kbm, mv, mz, mo, ang, D4, Z3)

    cotangents = {}

    def fwd_bwd(f, *inputs):
        out = f()
        out = out[0] if isinstance(out, tuple) else out
        if out.shape not in cotangents:   # made once: a fresh one each call would be timed too
            cotangents[out.shape] = torch.ones_like(out)
        torch.autograd.grad(out, inputs, cotangents[out.shape])

    class _Nothing(torch.autograd.Function):
        """The floor: one output allocated forward, one gradient backward, no launch, no check."""
        @staticmethod
        def forward(ctx, a, b):
            return torch.empty_like(b)

        @staticmethod
        def backward(ctx, g):
            return g, g

    la3, lb3 = torch.rand(2, 32, 128).requires_grad_(), leaf(2, 32, 128)   # (batch, channels, L): as the bench
    peers = {}
    try:   # accelerated-scan's fwd+bwd, its two launches stubbed too: a peer's host cost on this machine
        import accelerated_scan.scalar as acc
    except ImportError:   # not installed (python -m pip install --no-deps .whl/accelerated_scan*.whl)
        acc = None
    if acc is not None:
        class _Stub:
            def __getitem__(self, grid):
                return lambda *args, **kw: None
        acc.forward_scan = acc.backward_scan = _Stub()
        peers["accelerated_scan fwd+bwd (peer, 3-D)"] = lambda: fwd_bwd(lambda: acc.scan(la3, lb3), la3, lb3)
    return {
        "torch autograd floor fwd+bwd": lambda: fwd_bwd(lambda: _Nothing.apply(la, lb), la, lb),
        "linear_scan fwd+bwd (3-D)": lambda: fwd_bwd(lambda: ssm_triton.linear_scan(la3, lb3), la3, lb3),
        **peers,
        "selective_scan_fn fwd+bwd": lambda: fwd_bwd(lambda: ssm_triton.selective_scan_fn(
            u, delta, As, Bs, Cs, D64, z, b64, delta_softplus=True), u, delta, As, Bs, Cs, D64, z, b64),
        "mamba_chunk_scan_combined fwd+bwd": lambda: fwd_bwd(lambda: ssm_triton.mamba_chunk_scan_combined(
            x, dt, A, B, C, 64, D=D8, dt_bias=b8, dt_softplus=True), x, dt, A, B, C, D8, b8),
        "linear_scan fwd+bwd": lambda: fwd_bwd(lambda: ssm_triton.linear_scan(la, lb), la, lb),
        "mamba3_siso_combined fwd+bwd": lambda: fwd_bwd(lambda: ssm_triton.mamba3_siso_combined(*siso[:9], D=D4, Z=Z3),
                                                        *siso),
        "mamba3_mimo fwd+bwd": lambda: fwd_bwd(lambda: ssm_triton.mamba3_mimo(*mimo[:12], D=D4, Z=Z3),
                                               *mimo),
        "mamba_split_conv1d_scan_combined fwd+bwd": lambda: fwd_bwd(lambda: ssm_triton.mamba_split_conv1d_scan_combined(
            zx, cw, cb, dtb, A4, Dh, 64, rmsnorm_weight=rw, outproj_weight=ow, headdim=16, norm_before_gate=False),
            *split),
        "mamba_inner_fn fwd+bwd": lambda: fwd_bwd(lambda: ssm_triton.mamba_inner_fn(
            xz, c1w, c1b, xpw, dpw, opw, None, A1, delta_softplus=True), *inner),
        "Mamba3 block (SISO, out norm) fwd+bwd": lambda: fwd_bwd(lambda: m3(u3), u3, *m3.parameters()),
        "Mamba3 block (MIMO rank 2) fwd+bwd": lambda: fwd_bwd(lambda: m3m(u3), u3, *m3m.parameters()),
        "Mamba2 block fwd+bwd": lambda: fwd_bwd(lambda: m2(u3), u3, *m2.parameters()),
        "Mamba block fwd+bwd": lambda: fwd_bwd(lambda: m1(u3), u3, *m1.parameters()),
    }


def _print_stats(pr) -> None:
    """A cProfile's top functions, sorted by ``HOST_SIM_SORT`` (own time by default), ``HOST_SIM_TOP`` of them."""
    import pstats
    pstats.Stats(pr).sort_stats(os.environ.get("HOST_SIM_SORT", "tottime")).print_stats(
        int(os.environ.get("HOST_SIM_TOP", "25")))


def _profile(fn, n: int) -> None:
    """cProfile of ``n`` calls of ``fn``, its top functions printed (:func:`_print_stats`)."""
    import cProfile
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        fn()
    pr.disable()
    _print_stats(pr)


def _per_call_us(fn, n: int = 2000) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def _stubbed_backward_cases() -> dict:
    """The fwd+bwd cases (``--match``: those whose name holds a substring), each run once for real (the kernels
    compiled, the tuner's choices made), then every launch stubbed."""
    import sys
    cases = _backward_cases()
    if "--match" in sys.argv:
        part = sys.argv[sys.argv.index("--match") + 1]
        cases = {k: v for k, v in cases.items() if part in k}
    for fn in cases.values():
        fn()
    _stub_launches()
    return cases


def backward_main(profile: bool) -> None:
    """``--backward``: fwd+bwd per call (op plans do not apply: these record graphs), replays
    (``kernels/replay.py``) on and off alternating; ``--prof`` adds cProfile's top functions by their own time."""
    cases = _stubbed_backward_cases()
    for name, fn in cases.items():
        for _ in range(20):
            fn()
        on, off = [], []
        for _ in range(5):
            replay.ENABLED = True
            on.append(_per_call_us(fn, 300))
            replay.ENABLED = False
            off.append(_per_call_us(fn, 300))
        replay.ENABLED = True
        print(f"{name:36s} replays on {statistics.median(on):7.1f} us/call, off {statistics.median(off):7.1f}",
              flush=True)
        if profile:
            _profile(fn, 300)


# aten calls that make no kernel launch on a GPU: allocations (the caching allocator's), views, metadata
_NO_LAUNCH = ("empty", "empty_like", "new_empty", "empty_strided", "view", "_unsafe_view", "slice", "select",
              "unsqueeze", "squeeze", "expand", "as_strided", "t", "transpose", "permute", "unbind", "split",
              "split_with_sizes", "alias", "detach", "reshape", "unflatten", "narrow", "_reshape_alias", "chunk",
              "lift_fresh")


def aten_main() -> None:
    """``--backward --aten``: the PyTorch (aten) calls of one fwd+bwd per case after warm-up, replays on, launches
    stubbed: those that launch a kernel on a GPU (fills, sums, casts, copies: each several microseconds of a GPU's
    host, and a launch) apart from allocations and views, which launch nothing. The autograd engine's own calls
    (the incoming gradient, accumulation into ``.grad``) are among them."""
    from collections import Counter
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    cases = _stubbed_backward_cases()
    for name, fn in cases.items():
        for _ in range(3):
            fn()
        with Count() as c:
            fn()
        launch = {k: v for k, v in c.seen.items() if k not in _NO_LAUNCH}
        quiet = sum(v for k, v in c.seen.items() if k in _NO_LAUNCH)
        print(f"{name:40s} {sum(launch.values()):3d} launching calls {dict(sorted(launch.items()))}; "
              f"{quiet} allocations and views", flush=True)


def _small_lm(layer: str, chunk_size: int, max_seqlen: int):
    """A 24-layer LM of ``layer`` blocks at d_model 64 (the host's work a layer does not depend on the width), bf16,
    and ``InferenceParams`` with its states for one row."""
    from ssm_triton import InferenceParams
    from ssm_triton.models import MambaConfig, MambaLMHeadModel

    ssm = {"layer": layer, "d_state": 128 if layer == "Mamba2" else 16}
    if layer == "Mamba2":
        ssm.update(headdim=16, chunk_size=chunk_size)
    torch.manual_seed(0)
    model = MambaLMHeadModel(MambaConfig(d_model=64, n_layer=24, vocab_size=256, ssm_cfg=ssm),
                             dtype=torch.bfloat16).eval()
    params = InferenceParams(max_seqlen=max_seqlen, max_batch_size=1)
    params.key_value_memory_dict = model.allocate_inference_cache(1, max_seqlen)
    return model, params


def lm_main(layer: str, profile: bool) -> None:
    """``--lm Mamba2|Mamba1``: one eager decode step of a 24-layer LM (``model(token, inference_params)``, b1,
    d_model 64: the host work a layer does not depend on the width), launches stubbed; ``--prof`` adds
    cProfile's top functions. The H200 host ran the 130M Mamba2 LM's eager step at 1.29 ms of host (2026-12-04c)."""
    model, params = _small_lm(layer, 256, 64)
    params.seqlen_offset = 8
    tok = torch.zeros(1, 1, dtype=torch.long)
    with torch.inference_mode():
        model(tok, inference_params=params)   # every kernel interpreted once before the stubs
        _stub_launches()
        for _ in range(20):
            model(tok, inference_params=params)
        runs = [_per_call_us(lambda: model(tok, inference_params=params), 50) for _ in range(5)]
        print(f"{layer} LM eager decode step, 24 layers: {statistics.median(runs):.1f} us/step", flush=True)
        if profile:
            _profile(lambda: model(tok, inference_params=params), 50)


def lm_prefill_main(layer: str, profile: bool, A_B: bool) -> None:
    """``--lm-prefill Mamba2|Mamba1``: one eager prefill of a 24-layer LM (``model(ids, inference_params)`` at
    offset 0, b1 L64, d_model 64, the states filled), launches stubbed (the matmuls run on this CPU at this width, a
    few us each); ``--prof``: cProfile's top functions; ``--ab``: with A computed in PyTorch as well
    (``combined.A_IN_KERNELS`` off and on, alternating). The H100 host ran the 130M Mamba2 LM's eager prefill at
    ~6 ms of host (2026-12-07)."""
    from ssm_triton.ops import combined

    model, params = _small_lm(layer, 64, 128)
    ids = torch.zeros(1, 64, dtype=torch.long)

    def prefill():
        params.seqlen_offset = 0
        return model(ids, inference_params=params)

    with torch.inference_mode():
        for flag in (False, True):
            combined.A_IN_KERNELS = flag
            prefill()   # every kernel interpreted once before the stubs
        _stub_launches()
        for flag in (False, True):
            combined.A_IN_KERNELS = flag
            for _ in range(10):
                prefill()
        runs = {True: [], False: []}
        for _ in range(5):
            for flag in ((True, False) if A_B else (True,)):
                combined.A_IN_KERNELS = flag
                runs[flag].append(_per_call_us(prefill, 30))
        combined.A_IN_KERNELS = True
        line = f"{layer} LM eager prefill b1 L64, 24 layers: {statistics.median(runs[True]):.0f} us"
        if A_B:
            line += f" (A in PyTorch: {statistics.median(runs[False]):.0f} us)"
        print(line, flush=True)
        if profile:
            _profile(prefill, 20)


def main() -> None:
    import sys
    if "--backward" in sys.argv and "--aten" in sys.argv:
        return aten_main()
    if "--backward" in sys.argv:
        return backward_main("--prof" in sys.argv)
    if "--lm-prefill" in sys.argv:
        return lm_prefill_main(sys.argv[sys.argv.index("--lm-prefill") + 1], "--prof" in sys.argv, "--ab" in sys.argv)
    if "--lm" in sys.argv:
        return lm_main(sys.argv[sys.argv.index("--lm") + 1], "--prof" in sys.argv)
    cases = _cases()
    if "--match" in sys.argv:   # a substring of the case names
        part = sys.argv[sys.argv.index("--match") + 1]
        cases = {k: v for k, v in cases.items() if part in k}
    with torch.no_grad():
        for fn in cases.values():   # every kernel compiled (interpreted) once before the stubs
            fn()
        _stub_launches()
        for name, fn in cases.items():
            for _ in range(30):
                fn()
            on, off = [], []
            for _ in range(7):
                _plans.ENABLED = True
                on.append(_per_call_us(fn))
                _plans.ENABLED = False   # no plan looked up or made
                off.append(_per_call_us(fn))
            _plans.ENABLED = True
            print(f"{name:32s} op plans on {statistics.median(on):6.1f} us/call, off {statistics.median(off):6.1f}")


if __name__ == "__main__":
    main()
