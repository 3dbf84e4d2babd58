"""Replays (``kernels/replay.py``): a launcher's work recorded for one signature and issued again.

Each op test runs the same signature several times with new values (the first call records, the next replay),
every call against the float64 reference, and checks that replays were made and taken: a replay that launched
with a stale tensor, a missing step or a wrong slot fails the comparison of the call after the recording.
"""
import contextlib
import time

import torch
from torch.overrides import TorchFunctionMode
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.kernels import replay, tuning
from ssm_triton.reference import ssd_quadratic_torch
from ssm_triton.tolerance import assert_close, scaled_error
from builders import inner_reference, make_ssd_problem, split_reference
from strategies import examples, normal, seeds

GRADS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")


def _made() -> int:
    return sum(1 for r in replay._ALL for v in r._map._seen.values() if v)


@contextlib.contextmanager
def counted():
    """How many replays ran (each counted as it returns a result)."""
    ran = []
    real = replay.Replay.__call__

    def spy(self, inputs):
        out = real(self, inputs)
        if out is not None:
            ran.append(1)
        return out

    replay.Replay.__call__ = spy
    try:
        yield ran
    finally:
        replay.Replay.__call__ = real


@examples(6)
@given(bsz=st.integers(1, 2), L=st.integers(1, 40), groups=st.integers(1, 2), P=st.integers(1, 9),
       N=st.integers(1, 9), seed=seeds(), options=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_ssd_fwd_bwd_replayed_call_after_call(device, bsz, L, groups, P, N, seed, options, dtype):
    """Three fwd+bwd calls of one signature, new values each: outputs, final states and every gradient
    against the float64 quadratic form each time; the second and third replay forward and backward."""
    replay.clear_all()
    with counted() as ran:
        for k in range(3):
            _ssd_call(device, bsz, L, groups, P, N, seed + 100 * k, options, dtype, k)
    assert len(ran) >= 4   # forward and backward, calls 2 and 3


@examples(3)
@given(L=st.integers(1, 40), seed=seeds(), options=st.booleans())
def test_an_op_keeps_nothing_of_its_calls(device, L, seed, options):
    """What the SSD op returns (outputs of inference forwards, outputs and gradients of fwd+bwd) is freed once the
    caller drops it, after the recording call and after replays alike: the replays, op plans and caches hold no
    result (a replay kept its recording call's buffers until 2026-12-04f: 513 MiB a training signature on the H200)."""
    import weakref

    replay.clear_all()
    t = make_ssd_problem(1, L, 1, 2, 4, 8, seed, options, device)
    leaves = {n: t[n].float().requires_grad_() for n in GRADS if n in t}
    flags = {n: v for n, v in t.items() if n not in leaves}
    refs = []
    for _ in range(3):
        with torch.no_grad():
            out = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=16)
        refs.append(weakref.ref(out))
        del out
        out = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=16)
        grads = torch.autograd.grad(out.square().sum(), list(leaves.values()))
        refs += [weakref.ref(out)] + [weakref.ref(g) for g in grads]
        del out, grads
    # on a GPU the backward runs on the autograd engine's device thread, which may drop its graph task (and the
    # gradients it captured) a moment after grad() has returned here: the last call's gradients were once still
    # alive at this line on the H200 (2026-12-05) and freed when looked at again; a result some cache holds stays
    alive = []
    for _ in range(200):
        alive = [i for i, r in enumerate(refs) if r() is not None]
        if not alive:
            break
        time.sleep(0.01)
    assert not alive


def _ssd_call(device, bsz, L, groups, P, N, seed, options, dtype, k):
    t = make_ssd_problem(bsz, L, groups, 2, P, N, seed, options, device)
    t = {n: (v.to(dtype) if n in ("x", "z", "B", "C") else v.float()) if isinstance(v, torch.Tensor) else v
         for n, v in t.items()}
    leaves = {n: t[n].requires_grad_() for n in GRADS if n in t}
    flags = {n: v for n, v in t.items() if n not in leaves}
    out, final = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=16, return_final_states=True)
    g_out = normal(out.shape, seed + 30 + k, device, dtype)
    loss = (out * g_out).sum() + final.square().sum()
    got = torch.autograd.grad(loss, list(leaves.values()))
    ref = {n: v.detach().cpu().double().requires_grad_() for n, v in leaves.items()}
    ref_out, ref_final = ssd_quadratic_torch(**ref, **{n: (v.cpu() if isinstance(v, torch.Tensor) else v)
                                                        for n, v in flags.items()})
    assert_close(out, ref_out.detach(), dtype, f"out, call {k}")
    assert_close(final, ref_final.detach(), dtype, f"final, call {k}")
    want = torch.autograd.grad((ref_out * g_out.cpu().double()).sum() + ref_final.square().sum(),
                               list(ref.values()))
    for name, g, w in zip(leaves, got, want):
        assert_close(g, w, dtype, f"d{name}, call {k}")


@examples(4)
@given(L=st.integers(1, 30), heads=st.sampled_from([(1, 1), (4, 2)]), N=st.sampled_from([4, 8]), seed=seeds(),
       options=st.booleans())
def test_mamba3_forward_replayed_without_a_graph(device, L, heads, N, seed, options):
    """Mamba-3 SISO and MIMO forwards that record no graph, called again with new values: each call against the
    float64 loops (SISO's through the launcher's replay, MIMO's through its op layer's: its PyTorch and launches)."""
    H, Hqk = heads
    S, P, R = N // 4, 3, 2
    replay.clear_all()
    with counted() as ran:
        for k in range(3):
            _mamba3_call(device, L, H, Hqk, N, S, P, R, seed + 50 * k, options, k)
    assert len(ran) >= 4


def _mamba3_call(device, L, H, Hqk, N, S, P, R, s, options, k):
    from ssm_triton.reference import mamba3_mimo_loop, mamba3_siso_loop
    f = lambda shape, seed, scale=1.0: normal(shape, seed, device, torch.float32, scale)  # noqa: E731
    dt = torch.rand(1, H, L, device=device, generator=torch.Generator(device).manual_seed(s)) * 0.5 + 0.05
    t = dict(V=f((1, L, H, P), s + 2), ADT=-dt * 0.7, DT=dt, Trap=f((1, H, L), s + 5), Angles=f((1, L, H, S), s + 8))
    if options:
        t.update(D=f((H,), s + 9), Z=f((1, L, H, P), s + 10))
    siso = dict(t, Q=f((1, L, Hqk, N), s), K=f((1, L, Hqk, N), s + 1), Q_bias=f((H, N), s + 6, 0.3),
                K_bias=f((H, N), s + 7, 0.3))
    mimo = dict(t, Q=f((1, L, R, Hqk, N), s), K=f((1, L, R, Hqk, N), s + 1), Q_bias=f((H, R, N), s + 6, 0.3),
                K_bias=f((H, R, N), s + 7, 0.3), MIMO_V=f((H, R, P), s + 11), MIMO_Z=f((H, R, P), s + 12),
                MIMO_Out=f((H, R, P), s + 13))
    wide = lambda d: {n: (v.double().cpu() if isinstance(v, torch.Tensor) else v) for n, v in d.items()}  # noqa: E731
    with torch.no_grad():
        got = ssm_triton.mamba3_siso_combined(**siso, chunk_size=16)
        got_m = ssm_triton.mamba3_mimo(**mimo, chunk_size=16)
    assert_close(got, mamba3_siso_loop(**wide(siso))[0], torch.float32, f"siso out, call {k}")
    assert_close(got_m, mamba3_mimo_loop(**wide(mimo))[0], torch.float32, f"mimo out, call {k}")


@given(rows=st.integers(1, 5), cols=st.integers(1, 7), seed=seeds())
def test_record_replays_pytorch_calls_in_place_updates_and_nesting(rows, cols, seed):
    """A launcher of plain PyTorch (allocations, views, in-place updates of an input and of a view, a tuple
    result, a NamedTuple out) replays on new inputs exactly as it ran."""
    from typing import NamedTuple

    class Out(NamedTuple):
        total: torch.Tensor
        parts: tuple

    def launcher(a, b, scale):
        buf = torch.empty((rows, cols))
        buf.copy_(a * scale)
        buf[:, :1] += b[:, :1]          # an in-place update through a view
        buf[-1] = a[0] - 1.0             # a write that returns nothing
        a.mul_(2.0)                      # the caller's tensor, updated
        lo, hi = buf.split([1, cols - 1], dim=1) if cols > 1 else (buf, buf[:, :0])
        return Out(buf.sum(1), (lo.contiguous(), hi.float(), None))

    g = torch.Generator().manual_seed(seed)
    a0, b0 = torch.randn(rows, cols, generator=g), torch.randn(rows, cols, generator=g)
    result, rep, retry = replay.record(launcher, (a0.clone(), b0, 1.5))
    assert rep is not None and not retry
    for k in range(3):
        a, b = torch.randn(rows, cols, generator=g), torch.randn(rows, cols, generator=g)
        a_want = a.clone()
        want = launcher(a_want, b, 1.5)
        got = rep((a, b, 1.5))
        assert isinstance(got, Out) and got.parts[2] is None
        torch.testing.assert_close(got.total, want.total, rtol=0, atol=0)
        torch.testing.assert_close(got.parts[0], want.parts[0], rtol=0, atol=0)
        torch.testing.assert_close(got.parts[1], want.parts[1], rtol=0, atol=0)
        torch.testing.assert_close(a, a_want, rtol=0, atol=0)


@given(n=st.integers(1, 9), seed=seeds())
def test_a_replay_lets_go_of_each_intermediate_after_its_last_use(n, seed):
    """A replay drops its hold on a buffer once no later step reads it, and the recording call holds none the
    launcher dropped (the peak memory of both is then the launcher's own): while the last step runs, the first
    intermediate, read only by the second step, is gone; the result's tensors and a view's base that the result
    still needs are not. Once the recording's result is dropped, nothing it made is held by the replay."""
    import weakref

    def launcher(a):
        total = (a * 2.0).sum()       # a temporary read only by the next step
        base = torch.ones(n + 1)      # the result's view keeps it
        return total + a[0], base[1:]

    class Watch(TorchFunctionMode):
        """Weak references to each call's tensor result, and whether each was still alive at the last call."""
        def __init__(self):
            super().__init__()
            self.made, self.alive_at_end = [], None

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if getattr(func, "__name__", "") in ("add", "__add__"):
                self.alive_at_end = [r() is not None for r in self.made]
            if isinstance(out, torch.Tensor):
                self.made.append(weakref.ref(out))
            return out

    g = torch.Generator().manual_seed(seed)
    first = torch.randn(n, generator=g)
    with Watch() as w:
        result, rep, _ = replay.record(launcher, (first,))
    assert rep is not None
    assert w.alive_at_end is not None and not w.alive_at_end[0]   # the recording call let tmp go
    del result
    assert not any(r() is not None for r in w.made)   # nor does the replay hold any tensor the recording made
    a = torch.randn(n, generator=g)
    with Watch() as w:
        total, view = rep((a,))
    assert w.alive_at_end is not None and not w.alive_at_end[0]   # tmp: freed before the last call
    torch.testing.assert_close(total, (a * 2.0).sum() + a[0], rtol=0, atol=0)
    torch.testing.assert_close(view, torch.ones(n), rtol=0, atol=0)


def test_record_refuses_what_could_depend_on_values():
    """A launcher that reads a value back into Python, or launches an op plan's bound launch, is not replayed;
    one during which the tuner timed candidates asks to be recorded again; forget() makes replays stale."""
    def reads(a):
        n = int(a.sum().item() > 0)
        return a * n

    assert replay.record(reads, (torch.ones(3),))[1] is None

    def branches(a):
        return a + 1 if bool((a > 0).all()) else a - 1

    assert replay.record(branches, (torch.ones(3),))[1] is None

    def bound_inside(a):
        b = a + 1
        if tuning.recorder() is not None:
            tuning.recorder().refuse()   # what tuning.Bound.__call__ does first
        return b

    assert replay.record(bound_inside, (torch.ones(3),))[1] is None

    def tuned(a):
        tuning.recorder().refuse(retry=True)   # what TunableKernel._tune does first
        return a + 1

    out, rep, retry = replay.record(tuned, (torch.ones(3),))
    assert rep is None and retry and torch.equal(out, torch.full((3,), 2.0))

    _, rep, _ = replay.record(lambda a: a * 3, (torch.ones(2),))
    assert torch.equal(rep((torch.full((2,), 2.0),)), torch.full((2,), 6.0))
    tuning.forget()
    assert rep((torch.ones(2),)) is None


class _Binary:
    """A compiled binary that notes each launch it is handed (what ``Kernel._lean`` calls), and a kernel that notes
    the launches that fall back to its own path."""
    function = packed_metadata = None

    def __init__(self, log: list):
        self.log = log

    def run(self, *args):
        self.log.append(("binary", args[:4], args[9:]))

    def _launch(self, grid, args, kw):
        n = grid[0]
        assert args["T"].shape == (2, n) and args["T"].dtype == torch.float16
        assert args["U"].shape == (n,) and args["U"].dtype == torch.float32
        self.log.append(("kernel", grid, tuple(sorted((k, v.data_ptr() if isinstance(v, torch.Tensor) else v)
                                                      for k, v in args.items())), tuple(sorted(kw.items()))))


def _run_one_way(way: str, run, steps, out, inputs: tuple, stream):
    """A replay's steps on ``inputs``: by its generated function (``run``), or by the step objects one by one."""
    if way == "generated":
        return run(inputs, stream)
    table = [*inputs, *([None] * 16)]
    for step in steps:
        step(table, stream)
    return replay._fill(out, table)


@given(n=st.integers(1, 6), off=st.integers(0, 3), streamed=st.booleans(), checked=st.booleans(),
       workspace=st.booleans())
def test_generated_replay_runs_the_steps_as_the_step_objects_do(n, off, streamed, checked, workspace):
    """The generated function of a replay (``replay._generate``) against the step objects it is made from, run
    on the same inputs: the same PyTorch calls (allocations, a fill, a sum into a new slot, a tuple result, an
    in-place write), the same launch (each tensor's address in its place among the fixed values, on the stream,
    where every checked input is 16-byte aligned; else, or without a stream, the kernel's own path with the
    tensors), the same frees and the same result. Two buffers only handed to the launch come from one workspace
    (``WORKSPACE_BYTES`` allowing): their addresses 256 bytes apart in it, or as tensors of their shapes and dtypes
    carved from it; their contents are the kernel's business, so only where they lie is compared."""
    log: list = []
    binary = _Binary(log)

    def call(func, args, kwargs, outs, many=False, alloc=None):
        c = replay._Call()
        c.func, c.args, c.kwargs, c.outs, c.many, c.alloc, c.view = func, args, kwargs, outs, many, alloc, None
        return c

    slot = replay._Slot
    cpu = torch.device("cpu")
    launch = replay._Launch()
    launch.kernel, launch.grid, launch.kw = binary, (n, 2, 1), {"num_warps": 4}
    launch.args = replay._Filled({}, [slot(0), slot(2), slot(6), slot(7), 5], ("X", "S", "T", "U", "K"))
    launch.compiled, launch.values = binary, [None, None, None, None, 5, 1.5]
    launch.tensors = ((0, 0), (1, 2), (2, 6), (3, 7))
    launch.check = (0, 2, 6) if checked else (0,)
    steps = [call(torch.empty, ((n + 1,),), {"dtype": torch.float32}, 2, alloc=((n + 1,), torch.float32, cpu, 4)),
             call(torch.Tensor.fill_, replay._Filled((), [slot(2), 1.0], None), {}, 3),
             call(torch.empty, ((2, n),), {"dtype": torch.float16}, 6, alloc=((2, n), torch.float16, cpu, 4 * n)),
             call(torch.empty_like, replay._Filled((), [slot(1)], None), {}, 7, alloc=((n,), torch.float32, cpu, 4 * n)),
             launch,
             call(torch.add, replay._Filled((), [slot(0), slot(1)], None), {"alpha": 2.0}, 4),
             call(torch.Tensor.__setitem__, replay._Filled((), [slot(4), 0, 3.0], None), {}, None, many=None),
             call(torch.split, replay._Filled((), [slot(4), 1], None), {}, (5, None) if n > 1 else (5,), many=True),
             replay._Free((3, 6, 7))]
    out = replay._Filled((), [slot(5), replay._Filled({}, [slot(2), None], ("scratch", "none"))], None)
    before = replay.WORKSPACE_BYTES
    replay.WORKSPACE_BYTES = (1 << 20) if workspace else 0   # read when the function is generated
    try:
        run = replay._generate(steps, out, 2)
    finally:
        replay.WORKSPACE_BYTES = before
    assert ("ws = " in run.text) == workspace

    for way in ("generated", "steps"):
        stream = "stream" if streamed else None
        log.clear()
        base = torch.arange(n + 8, dtype=torch.float32)
        x = (base[off:off + n], torch.ones(n))
        got = _run_one_way(way, run, steps, out, x, stream)
        filled = got[1]["scratch"]
        assert got[1]["none"] is None and torch.equal(filled, torch.ones(n + 1))
        want = x[0] + 2.0 * x[1]
        want[0] = 3.0
        assert type(got[0]) is torch.Tensor and torch.equal(got[0], want[:1])
        fast = streamed and x[0].data_ptr() % 16 == 0 and (not checked or filled.data_ptr() % 16 == 0)
        assert [entry[0] for entry in log] == ["binary" if fast else "kernel"]
        if fast:
            assert log[0][1] == (n, 2, 1, "stream")
            at_x, at_s, at_t, at_u, *rest = log[0][2]
            assert (at_x, at_s, rest) == (x[0].data_ptr(), filled.data_ptr(), [5, 1.5])
            assert at_t % 16 == 0 and at_u % 16 == 0 and at_t != at_u
            if way == "generated" and workspace:
                assert at_u - at_t == 256
        else:
            args = dict(log[0][2])
            assert log[0][1] == (n, 2, 1) and (args["X"], args["S"], args["K"]) == (x[0].data_ptr(), filled.data_ptr(), 5)
            assert args["T"] != args["U"]


@given(n=st.integers(1, 6), off=st.integers(0, 3), streamed=st.booleans())
def test_views_only_handed_to_launches_become_addresses(n, off, streamed):
    """Views of an input (a split, a transpose of one of its parts) that only a launch reads are not made at a
    replay: the generated function hands the launch their addresses, a fixed distance from the input's, and makes
    them only for the kernel's own path; a view another call reads, and a view of an intermediate (whose base no
    tensor would hold), stay tensors. The launch sees the same addresses, or the same tensors, as from the step
    objects, and the result is the same."""
    log: list = []
    binary = _Binary(log)
    binary._launch = lambda grid, args, kw: log.append(("kernel", tuple(
        (k, v.data_ptr(), tuple(v.shape), v.stride()) for k, v in sorted(args.items()))))

    def call(func, args, outs, many=False, view=None, alloc=None):
        c = replay._Call()
        c.func, c.args, c.kwargs, c.outs, c.many, c.alloc, c.view = func, args, {}, outs, many, alloc, view
        return c

    slot = replay._Slot
    f = replay._Filled
    item = torch.empty((), dtype=torch.float32).element_size()
    launch = replay._Launch()
    launch.kernel, launch.grid, launch.kw = binary, (1,), {}
    launch.args = f({}, [slot(2), slot(4), slot(8), slot(0)], ("X", "Y", "Z", "W"))
    launch.compiled, launch.values = binary, [None, None, None, None, n]
    launch.tensors, launch.check = ((0, 2), (1, 4), (2, 8), (3, 0)), (0,)
    steps = [call(torch.split, f((), [slot(0), [1, 3]], None), (2, 3), many=True, view=(0, (0, item))),
             call(torch.transpose, f((), [slot(3), 0, 1], None), 4, view=(3, (0,))),
             call(torch.reshape, f((), [slot(1), (n, 1)], None), 5, view=(1, (0,))),
             call(torch.mul, f((), [slot(5), 2.0], None), 6),
             call(torch.zeros, ((n,),), 7, alloc=((n,), torch.float32, torch.device("cpu"), item * n)),
             call(torch.reshape, f((), [slot(7), (n, 1)], None), 8, view=(7, (0,))),
             launch, replay._Free((2, 3, 4, 5, 8))]
    steps[0].kwargs = {"dim": 1}
    out = f((), [slot(6), slot(7)], None)
    run = replay._generate(steps, out, 2)
    assert "p2 = p0 + 0" in run.text and "p4 = p3 + 0" in run.text and f"p3 = p0 + {item}" in run.text
    assert "s2 =" not in run.text and "s4 =" not in run.text and "s5 = " in run.text and "s8 = " in run.text

    base = torch.arange(4 * n + 8, dtype=torch.float32)
    x = (base[off:off + 4 * n].view(n, 4), torch.arange(n, dtype=torch.float32) + 1)
    seen = {}
    for way in ("generated", "steps"):
        log.clear()
        stream = "stream" if streamed else None
        got = _run_one_way(way, run, steps, out, x, stream)
        assert torch.equal(got[0], (x[1] * 2.0).view(n, 1)) and torch.equal(got[1], torch.zeros(n))
        seen[way] = [(e[0], e[2] if e[0] == "binary" else e[1]) for e in log]
    fast = streamed and x[0].data_ptr() % 16 == 0
    assert [e[0] for e in seen["steps"]] == ["binary" if fast else "kernel"]
    if fast:   # the addresses of the split part, the transposed part and the input, the same both ways
        at = [v for v in seen["generated"][0][1]]
        assert at[0] == x[0].data_ptr() and at[1] == x[0].data_ptr() + item and at[3] == x[0].data_ptr()
        assert seen["steps"][0][1][:2] == tuple(at[:2]) and seen["steps"][0][1][3] == at[3]
    else:   # the kernel's own path: the same views, rebuilt
        gen = {k: (shape, stride) for k, _, shape, stride in seen["generated"][0][1]}
        ref = {k: (shape, stride) for k, _, shape, stride in seen["steps"][0][1]}
        assert gen == ref and [a for k, a, *_ in seen["generated"][0][1] if k != "Z"] == \
            [a for k, a, *_ in seen["steps"][0][1] if k != "Z"]


@given(sizes=st.lists(st.integers(0, 2000), min_size=2, max_size=8), data=st.data())
def test_workspace_buffers_overlap_only_when_their_lives_do_not(sizes, data):
    """``replay._scratch``: buffers allocated and freed in any order get offsets 256-byte aligned, such that two
    alive at the same time never share a byte; the workspace is no smaller than the most bytes alive at once, and
    no larger than all of them side by side. A buffer read through a view that is only an address lives until that
    view's free, not its own (its bytes are still read through the view)."""
    steps, alive, life, view_of = [], [], {}, {}
    for k, n in enumerate(sizes):
        c = replay._Call()
        c.func, c.args, c.kwargs, c.outs, c.many = torch.empty, ((n,),), {}, k + 1, False
        c.alloc, c.view = ((n,), torch.uint8, torch.device("cpu"), n), None
        steps.append(c)
        alive.append(k + 1)
        life[k + 1] = [len(steps) - 1, None]
        if data.draw(st.booleans(), label=f"viewed {k}"):   # an address-only view of it (nothing else reads it)
            v = replay._Call()
            v.func, v.kwargs, v.outs, v.many = torch.Tensor.view, {}, 100 + k, False
            v.args = replay._Filled((), [replay._Slot(k + 1), -1], None)
            v.alloc, v.view = None, (k + 1, (0,))
            steps.append(v)
            alive.append(100 + k)
            view_of[100 + k] = k + 1
        gone = data.draw(st.lists(st.sampled_from(alive), unique=True, max_size=len(alive)), label=f"freed after {k}")
        if gone:
            steps.append(replay._Free(tuple(gone)))
            for s in gone:
                alive.remove(s)
                if s in view_of:   # the base's bytes are in use until its view goes too
                    life[view_of[s]].append(len(steps) - 1)
                else:
                    life[s][1] = len(steps) - 1
    for s, (start, own, *by_view) in list(life.items()):   # the last of its own and its view's frees (None: never)
        unfreed = own is None or (s + 99 in view_of and not by_view)
        life[s] = [start, None if unfreed else max([own, *by_view])]
    at, total = replay._scratch(steps, None, 1)
    assert set(at) == set(life)
    rounded = {s: max(256, -(-sizes[s - 1] // 256) * 256) for s in life}
    end = len(steps)
    for s, (offset, shape, _) in at.items():
        assert offset % 256 == 0 and shape == (sizes[s - 1],) and offset + rounded[s] <= total
    for s in at:
        for t in at:
            a0, a1 = life[s][0], life[s][1] if life[s][1] is not None else end
            b0, b1 = life[t][0], life[t][1] if life[t][1] is not None else end
            if s < t and a0 < b1 and b0 < a1:   # both alive at once
                (os_, _, _), (ot, _, _) = at[s], at[t]
                assert os_ + rounded[s] <= ot or ot + rounded[t] <= os_, (s, t)
    most = max(sum(rounded[s] for s in life if life[s][0] <= i < (life[s][1] or end)) for i in range(end))
    assert most <= total <= sum(rounded.values())


def test_replays_switch_off(monkeypatch, device):
    """SSM_TRITON_REPLAY=0 (``replay.ENABLED``): nothing recorded, the results unchanged."""
    t = {n: (v.float() if isinstance(v, torch.Tensor) else v)
         for n, v in make_ssd_problem(1, 20, 1, 2, 4, 4, 3, True, device).items()}
    with torch.no_grad():
        on = [ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16) for _ in range(2)]
        monkeypatch.setattr(replay, "ENABLED", False)
        replay.clear_all()
        off = [ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16) for _ in range(2)]
    assert _made() == 0
    for a, b in zip(on, off):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_recording_belongs_to_its_thread():
    """Launches and PyTorch calls of another thread during a recording are not part of it (the autograd engine
    runs CUDA backwards on threads of its own; a server may run calls side by side)."""
    import threading

    seen = []

    def launcher(a):
        t = threading.Thread(target=lambda: seen.append(tuning.recorder()))
        t.start()
        t.join()
        seen.append(tuning.recorder())
        return a + 1

    _, rep, _ = replay.record(launcher, (torch.ones(2),))
    assert seen[0] is None and seen[1] is not None and tuning.recorder() is None
    assert torch.equal(rep((torch.zeros(2),)), torch.ones(2))


@examples(3)
@given(L=st.integers(1, 30), norm=st.booleans(), rms=st.booleans(), seed=seeds())
def test_block_functions_replayed_without_a_graph(device, L, norm, rms, seed):
    """mamba_split_conv1d_scan_combined and mamba_inner_fn without a graph replay their whole body (the split,
    the projections, the pieces): three calls of one signature with new values, each against the float64
    references of tests/test_combined.py."""
    H, P, G, N, W, d, R, dm = 4, 8, 1, 8, 4, 16, 2, 8
    width = 2 * H * P + 2 * G * N + H
    replay.clear_all()
    with counted() as ran:
        for k in range(3):
            r = lambda shape, i, scale=1.0: normal(shape, seed + 20 * k + i, device, scale=scale)  # noqa: E731
            t = dict(zxbcdt=r((2, L, width), 0), conv1d_weight=r((H * P + 2 * G * N, W), 1, 0.5),
                     conv1d_bias=r((H * P + 2 * G * N,), 2, 0.1), dt_bias=r((H,), 3, 0.3), A=-r((H,), 4).abs() - 0.1,
                     D=r((H,), 5))
            norm_w = r((H * P,), 6) if norm else None
            with torch.no_grad():
                got, got_final = ssm_triton.mamba_split_conv1d_scan_combined(
                    **{n: v.float() for n, v in t.items()}, chunk_size=16, headdim=P, ngroups=G, rmsnorm_eps=1e-5,
                    return_final_states=True, rmsnorm_weight=norm_w.float() if norm else None)
            want, want_final = split_reference(*(t[n] for n in ("zxbcdt", "conv1d_weight", "conv1d_bias", "dt_bias", "A",
                                                                 "D")), H, P, G, N, 0, norm_w, False, None)
            assert scaled_error(got, want) < 1e-4 and scaled_error(got_final, want_final) < 1e-4, f"split, call {k}"
            u = dict(xz=r((2, 2 * d, L), 10), conv1d_weight=r((d, 1, 4), 11, 0.5), conv1d_bias=r((d,), 12, 0.1),
                     x_proj_weight=r((R + 2 * N, d), 13, 0.3), delta_proj_weight=r((d, R), 14, 0.5),
                     out_proj_weight=r((dm, d), 15))
            A = -torch.arange(1, N + 1, device=device, dtype=torch.float64).repeat(d, 1)
            D, bias = r((d,), 16), r((d,), 17, 0.3)
            norms = {n: 1 + r((m,), 18 + i, 0.1) for i, (n, m) in enumerate(zip("bcd", (N, N, d)))} if rms else None
            kw = dict(b_rms_weight=norms["b"].float(), c_rms_weight=norms["c"].float(),
                      dt_rms_weight=norms["d"].float()) if rms else {}
            with torch.no_grad():
                got = ssm_triton.mamba_inner_fn(**{n: v.float() for n, v in u.items()}, out_proj_bias=None,
                                                A=A.float(), D=D.float(), delta_bias=bias.float(), **kw)
            want = inner_reference(u["xz"], u["conv1d_weight"], u["conv1d_bias"], u["x_proj_weight"],
                                   u["delta_proj_weight"], u["out_proj_weight"], A, D, bias, norms)
            assert scaled_error(got, want) < 1e-4, f"inner, call {k}"
    assert len(ran) >= 4   # each function's whole body on calls 2 and 3


@given(n=st.integers(1, 8), scale=st.floats(-4.0, 4.0, allow_nan=False), ask=st.booleans())
def test_a_replay_leaves_out_what_nothing_reads_and_keeps_every_write(n, scale, ask):
    """Calls that only make a tensor (a copy, an allocation, a view) whose result nothing later reads are left out of
    a replay (a launcher's final-state copies the caller did not ask for); in-place writes are kept whether or not
    their returned tensor is read, and what is returned is what the call returned. Checked on new inputs against
    the function run directly."""
    def fn(a, b):
        unused = a.clone()                                      # a copy nothing reads
        torch.empty(3 * n)                                      # an allocation nothing reads
        b[: n // 2 + 1].add_(scale)                             # a write into an input through a view
        t = a * 2
        t.mul_(scale)                                           # an in-place write whose result is not read
        kept = a.to(torch.float64, copy=True)                   # a copy the result reads when asked
        del unused
        return (t, kept) if ask else (t,)

    a0, b0 = torch.arange(n, dtype=torch.float32), torch.zeros(n)
    _, rep, _ = replay.record(fn, (a0, b0))
    assert rep is not None
    names = [getattr(s.func, "__name__", "") for s in rep.steps if type(s) is replay._Call]
    assert "clone" not in names and "empty" not in names
    assert names.count("mul_") == 1 and names.count("add_") == 1 and ("to" in names) == ask
    a, b = torch.linspace(-1, 1, n), torch.ones(n)
    want_b = b.clone()
    want = fn(a, want_b)
    got = rep((a, b))
    assert len(got) == len(want) and all(torch.equal(g, w) for g, w in zip(got, want))
    assert torch.equal(b, want_b)
