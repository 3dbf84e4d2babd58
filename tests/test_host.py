"""The launchers' host helpers: the same integers as Triton's, and spaces cached per mode."""
import numpy as np
import pytest
import torch
import triton
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.kernels import selective_scan as kss
from ssm_triton.kernels.host import cdiv, next_power_of_2, pow2_divisor, prev_power_of_2


@given(st.integers(min_value=0, max_value=1 << 40))
def test_next_power_of_2_is_tritons(n):
    assert next_power_of_2(n) == triton.next_power_of_2(n)


@given(st.integers(min_value=0, max_value=1 << 40))
def test_prev_power_of_2_is_the_largest_power_not_above(n):
    p = prev_power_of_2(n)
    assert p & (p - 1) == 0 and p <= max(n, 1) < 2 * p


@given(st.integers(min_value=0, max_value=1 << 40), st.integers(min_value=1, max_value=1 << 20))
def test_cdiv_is_tritons(a, b):
    assert cdiv(a, b) == triton.cdiv(a, b)


@given(st.integers(min_value=0, max_value=1 << 40))
def test_pow2_divisor_is_the_largest_power_up_to_16_dividing(n):
    """The stride hint (``kernels/hints.py``): a power of two, at most 16, dividing ``n``, and no larger one (up to
    16) does; 16 for 0 (a stride-0 broadcast)."""
    want = max(a for a in (1, 2, 4, 8, 16) if n % a == 0)
    assert pow2_divisor(n) == want


def test_spaces_follow_the_mode():
    """A rule takes the mode as an argument: the interpreted space is the rule alone, with small tiles;
    the GPU space has the runners-up; each is cached per (problem, mode), not the last one built."""
    from ssm_triton.kernels.tuning import H100, INTERPRETED
    problem = kss.ScanProblem(1, 64, 4096, 16, 1, 64, 128, False, False, True, None)
    interpreted = kss.selective_scan_fwd.space(problem, INTERPRETED)
    compiled = kss.selective_scan_fwd.space(problem, H100)
    assert kss.selective_scan_fwd.space(problem, INTERPRETED) is interpreted
    assert len(interpreted) == 1 and len(compiled) > 1
    assert compiled[0]["BLOCK_L"] != interpreted[0]["BLOCK_L"]


# ---- the lean launcher's key: what a compiled binary depends on ----

@given(st.integers(min_value=-(1 << 40), max_value=1 << 40), st.integers(min_value=-(1 << 40), max_value=1 << 40))
def test_lean_key_separates_int_specialisations(a, b):
    """Two ints share a binary iff Triton specialises them alike: equal to 1, divisible by 16, 32-bit."""
    from ssm_triton.kernels.tuning import _lean_key
    _arg_key = lambda v, const: _lean_key((v,), (const,))[0]  # noqa: E731

    def traits(n):
        return n == 1, n % 16 == 0, -(1 << 31) <= n < (1 << 31)

    assert (_arg_key(a, False) == _arg_key(b, False)) == (traits(a) == traits(b))
    assert _arg_key(a, True) == a  # a constexpr is its value


@given(st.integers(min_value=0, max_value=40), st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
def test_lean_key_separates_alignment_and_dtype(offset, dtype):
    """A view starting ``offset`` elements into a fresh (aligned) buffer has the buffer's key exactly when
    its address is still a multiple of 16 bytes; another dtype never shares it."""
    from ssm_triton.kernels.tuning import _lean_key
    _arg_key = lambda v, const: _lean_key((v,), (const,))[0]  # noqa: E731

    base = torch.zeros(64, dtype=dtype)
    view = base[offset:]
    aligned = (offset * base.element_size()) % 16 == 0
    assert (_arg_key(view, False) == _arg_key(base, False)) == aligned
    assert _arg_key(base.to(torch.float64), False) != _arg_key(base, False)


_BUF = {dt: torch.zeros(64, dtype=dt) for dt in (torch.float32, torch.bfloat16, torch.float16)}


def _values(kinds, draw):
    """One argument list for a kernel whose positions have these kinds: a pointer (a view of an aligned
    buffer at some offset, or None), an int, a float, a bool, or a constexpr."""
    out = []
    for kind in kinds:
        if kind == "ptr":
            dt = draw(st.sampled_from(sorted(_BUF, key=str)))
            out.append(None if draw(st.booleans()) and draw(st.booleans()) else _BUF[dt][draw(st.integers(0, 9)):])
        elif kind == "int":
            out.append(draw(st.sampled_from([1, 16, 32, 7, 0, -1, 1 << 31, 48, 3])))
        elif kind == "float":
            out.append(draw(st.sampled_from([0.5, 1e-5, 2.0])))
        elif kind == "bool":
            out.append(draw(st.booleans()))
        else:
            out.append(draw(st.sampled_from([16, 32, True, None])))
    return out


@given(st.data())
def test_the_planned_lean_key_never_joins_what_the_full_key_separates(data):
    """The key a kernel's position plan builds (``tuning._KeyPlan``: constexprs and scalars by value, each
    pointer by dtype and alignment) may separate more launches than :func:`_lean_key`, never fewer: two
    argument lists with equal planned keys have equal full keys, so no binary serves arguments Triton
    would have specialised otherwise. An argument of another kind in a slot falls back to the full key."""
    from ssm_triton.kernels.tuning import _KeyPlan, _lean_key
    kinds = data.draw(st.lists(st.sampled_from(["ptr", "int", "float", "bool", "const"]), min_size=1, max_size=8))
    constexpr = [k == "const" for k in kinds]
    first = _values(kinds, data.draw)
    plan = _KeyPlan.make(first, constexpr)
    assert plan is not None
    a, b = _values(kinds, data.draw), _values(kinds, data.draw)
    ka, kb = plan.key(a, constexpr), plan.key(b, constexpr)
    if ka == kb:
        assert _lean_key(a, constexpr) == _lean_key(b, constexpr)
    assert plan.key(first, constexpr) == plan.key(list(first), constexpr)
    # a slot holding another kind than the plan learned: the full key, whatever it is
    for i, kind in enumerate(kinds):
        if kind in ("int", "float", "bool") and not constexpr[i]:
            odd = list(a)
            odd[i] = _BUF[torch.float32]
            assert plan.key(odd, constexpr) == _lean_key(odd, constexpr)
            break


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the lean path binds compiled kernels: GPU only")
@given(st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=7))
def test_lean_launch_after_an_aligned_call_handles_unaligned_views(length, rows):
    """The same problem launched on aligned buffers, then on views one row in (unaligned for most lengths),
    then aligned again: each equals the float64 reference, so a binary bound for one alignment is never
    reused for the other."""
    import ssm_triton
    from ssm_triton.kernels import tuning
    from ssm_triton.reference import linear_scan_np

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "_lean_enabled", lambda: True)   # whatever SSM_TRITON_LEAN says
        for start in (0, 1, 0):
            a = torch.rand(rows + 1, length, device="cuda")
            b = torch.randn(rows + 1, length, device="cuda")
            a, b = a[start:start + rows], b[start:start + rows]
            h = ssm_triton.linear_scan(a, b)
            want = linear_scan_np(a.double().cpu().numpy(), b.double().cpu().numpy())
            np.testing.assert_allclose(h.cpu().numpy(), want, rtol=1e-5, atol=1e-5)


class _Stubs:
    """A compiled binary that records its launches and a kernel that records the launches it takes back (and
    binds nothing): what ``tuning.Bound`` and ``tuning.OneLaunch`` call, on the CPU."""

    def __init__(self):
        self.issued, self.fallen = [], []
        stubs = self

        class Compiled:
            function, packed_metadata = "fn", "meta"

            def run(self, *args):
                stubs.issued.append(args)

        class Kern:
            def launch(self, problem, **args):
                stubs.fallen.append((problem, args))

            def bind(self, problem, vary, **args):
                return None

        self.compiled, self.kernel = Compiled(), Kern()


def test_a_bound_launch_fills_its_slots_and_falls_back(monkeypatch):
    """``tuning.Bound``: the varying tensors' addresses go to their places among the fixed arguments, in a copy
    of them (the binding keeps nothing of the call); a tensor of another dtype, or an address off 16 bytes, or a
    tuning change since the binding goes through the kernel's own launch instead."""
    from ssm_triton.kernels import tuning
    stubs = _Stubs()
    issued, fallen = stubs.issued, stubs.fallen
    monkeypatch.setattr(tuning, "_hooks_active", lambda: False)
    b = tuning.Bound()
    b.kernel, b.problem, b.vary, b.compiled, b.grid = stubs.kernel, ("p",), ("X", "Y"), stubs.compiled, (3, 2)
    b.args, b.values, b.slots = {"A": 1, "B": 2}, [1, None, 2, None], (1, 3)
    b.dtypes, b.generation = (torch.float32, torch.float16), tuning._generation
    x, y = torch.zeros(8), torch.zeros(8, dtype=torch.float16)
    b("stream", x, y)
    assert len(issued) == 1 and issued[0][:9] == (3, 2, 1, "stream", "fn", "meta", None, None, None)
    launched = issued[0][9:]
    assert len(launched) == 4 and launched[0] == 1 and launched[2] == 2
    assert launched[1] == x.data_ptr() and launched[3] == y.data_ptr()
    assert b.values == [1, None, 2, None]
    b("stream", x, y.float())                  # another dtype
    b("stream", x[1:], y)                      # 4 bytes off
    tuning.forget()
    b("stream", x, y)                          # tuned choices forgotten since the binding
    assert len(issued) == 1 and len(fallen) == 3 and b.values == [1, None, 2, None]
    problem, args = fallen[2]
    assert problem == ("p",) and args.keys() == {"A", "B", "X", "Y"} and args["X"] is x and args["Y"] is y


def test_a_planned_launch_passes_addresses_and_falls_back(monkeypatch):
    """An op plan's launch (``tuning.OneLaunch``) with its binding inlined: the inputs it takes and the outputs it
    allocates go to their slots as addresses, in a copy of the bound values; an input off 16 bytes, or a tuning
    change since the binding, goes through the kernel's own launch instead, with the tensors themselves."""
    from ssm_triton.kernels import tuning
    stubs = _Stubs()
    issued, fallen = stubs.issued, stubs.fallen
    monkeypatch.setattr(tuning, "_hooks_active", lambda: False)
    monkeypatch.setattr(tuning, "_raw_stream", lambda device: "stream")
    kern = stubs.kernel
    b = tuning.Bound()
    b.kernel, b.problem, b.vary, b.compiled, b.grid = kern, ("p",), ("X", "Y", "OUT"), stubs.compiled, (3, 2, 1)
    b.args, b.values, b.slots = {"A": 1, "B": 2}, [1, None, None, 2, None], (1, 2, 4)
    b.dtypes, b.generation = (torch.float32, torch.float16, torch.float32), tuning._generation
    launch = tuning.Launch(kern, ("p",), {"A": 1, "B": 2}, ("X", "Y", "OUT"))
    launch.bound = b
    plan = tuning.OneLaunch(launch, (2, 0), (((5,), torch.float32),), torch.device("cpu"))
    plan.dev = 0   # as a GPU's: its stream is asked for
    x, y = torch.zeros(8), torch.zeros(8, dtype=torch.float16)
    out = plan((y, None, x))
    assert len(issued) == 1 and len(out) == 1 and out[0].shape == (5,) and out[0].dtype == torch.float32
    assert issued[0] == (3, 2, 1, "stream", "fn", "meta", None, None, None,
                         1, x.data_ptr(), y.data_ptr(), 2, out[0].data_ptr())
    assert b.values == [1, None, None, 2, None]
    plan((y, None, x[1:]))                     # 4 bytes off: the bound launch refuses it too
    tuning.forget()
    plan((y, None, x))                         # tuned choices forgotten since the binding
    assert len(issued) == 1 and len(fallen) == 2
    problem, args = fallen[1]
    assert problem == ("p",) and args["X"] is x and args["Y"] is y and args["A"] == 1 and args["OUT"].shape == (5,)


class _Param:
    """What Triton's ``KernelParam`` says of a parameter: its name, whether it is a constexpr, its default."""

    def __init__(self, name, constexpr, default=None, has_default=False):
        self.name, self.is_constexpr, self.default, self.has_default = name, constexpr, default, has_default


@given(default=st.integers(0, 3), other=st.integers(0, 3), n=st.integers(1, 64))
def test_a_launch_leaving_out_a_defaulted_parameter_runs_lean_with_the_default(default, other, n):
    """``Kernel``: a constexpr left out of a launch that has a default (``NO_GATHER: tl.constexpr = False`` of the
    selective scan's backward, which the tuner's rule leaves out) is filled with it, so the second such launch
    takes the bound binary with the default among its values instead of Triton's binder every time; given
    explicitly with another value it selects another binary; a parameter left out without a default keeps the
    binder's path."""
    from ssm_triton.kernels import tuning
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "_lean_enabled", lambda: True)
        mp.setattr(tuning, "_hooks_active", lambda: False)
        mp.setattr(tuning, "_raw_stream", lambda device: "stream")
        mp.setattr(torch.cuda, "current_device", lambda: 0)
        _defaulted_launches(tuning, default, other, n)


def _defaulted_launches(tuning, default, other, n):
    binder, issued = [], []

    class Compiled:
        function, packed_metadata = "fn", "meta"

        def __init__(self, flag):
            self.flag = flag

        def run(self, *args):
            x, *rest = args[9:]
            assert x is X   # the tensor itself (the kernel's own lean path; plans and replays hand addresses)
            issued.append((self.flag, tuple(rest)))

    class Fn:
        params = [_Param("X", False), _Param("n", False), _Param("FLAG", True, default, True),
                  _Param("BLOCK", True)]

        def run(self, grid, warmup, **args):
            binder.append(dict(args))
            return Compiled(args.get("FLAG", default))   # the binder fills a default in

    kern = tuning.Kernel(Fn())
    x = X = torch.zeros(8)
    for _ in range(2):
        kern((1,), X=x, n=n, BLOCK=16)
    assert len(binder) == 1 and "FLAG" not in binder[0]
    assert issued == [(default, (n, default, 16))]
    kern((1,), X=x, n=n, BLOCK=16, FLAG=other)
    if other == default:   # the same binary
        assert len(binder) == 1 and issued[-1] == (default, (n, default, 16))
    else:
        assert len(binder) == 2 and binder[1]["FLAG"] == other and len(issued) == 1
    before = len(binder)
    for _ in range(2):
        kern((1,), X=x, n=n)   # BLOCK left out, no default: never lean
    assert len(binder) == before + 2


@given(rows=st.integers(1, 4), length=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_eager_autograd_route_takes_a_dead_functorch_wrapper(device, rows, length, seed):
    """The eager autograd route calls the C ``apply`` directly (``ops/_spec._fast_apply``) unless a functorch
    transform is active or an argument is a functorch wrapper: a tensor leaked out of ``torch.func.grad`` (a dead
    wrapper) still goes through ``Function.apply``, which unwraps it, and gives the plain tensor's result and
    gradient."""
    import ssm_triton
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(rows, length, generator=g).to(device)
    b = torch.randn(rows, length, generator=g).to(device).requires_grad_()
    leaked = []

    def f(x):
        leaked.append(x)
        return x.sum()

    torch.func.grad(f)(b)
    wrapper = leaked[0]
    assert torch._C._functorch.is_functorch_wrapped_tensor(wrapper)
    h = ssm_triton.linear_scan(a, wrapper)
    want = ssm_triton.linear_scan(a, b)
    assert torch.equal(h, want)
    (got_grad,) = torch.autograd.grad(h.sum(), b)
    (want_grad,) = torch.autograd.grad(want.sum(), b)
    assert torch.equal(got_grad, want_grad)
