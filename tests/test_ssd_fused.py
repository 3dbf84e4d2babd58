"""The one-launch SSD forward (kernels/ssd/fused.py), taken by calls that record no graph: against the
float64 reference for every option, equal to the staged forward, through every tuning candidate, and
only where it applies (packed rows and varlen states stay staged)."""
import contextlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.kernels import replay, tuning
from ssm_triton.kernels.ssd import fused, launch
from ssm_triton.kernels.tuning import H100
from ssm_triton.reference import ssd_np
from ssm_triton.tolerance import assert_close
from builders import make_ssd_problem
from strategies import examples, seeds


@contextlib.contextmanager
def route(value: str):
    """Force the inference forward's route: "1" the fused kernel wherever it applies, "0" the stages."""
    before = launch.FUSED
    launch.FUSED = value
    try:
        yield
    finally:
        launch.FUSED = before


@contextlib.contextmanager
def counting():
    """How many times the fused kernel launched inside the block: through the tuner's path, a plan's launch (its
    bound launch inlined, or the :class:`tuning.Bound`) or a replay's launch (its generated code hands the binary
    to ``Kernel._lean``, or falls back to the tuner's path, counted once, when the binary does not fit)."""
    calls, inside = [], []
    kernel = fused.ssd_fused_fwd_kernel
    real, real_bound, real_fallback = kernel.launch, tuning.Bound.__call__, replay._Launch.fallback
    real_one, real_lean = tuning.OneLaunch.__call__, tuning.Kernel._lean

    def one_spy(self, tensors):   # an op plan (ops/_plans.py)
        if self.launch.kernel is not kernel:
            return real_one(self, tensors)
        calls.append(1)
        inside.append(1)
        try:
            return real_one(self, tensors)
        finally:
            inside.pop()

    def spy(*a, **k):
        if not inside:
            calls.append(1)
        inside.append(1)
        try:
            return real(*a, **k)
        finally:
            inside.pop()

    def bound_spy(self, stream, *tensors):
        if self.kernel is not kernel or inside:
            return real_bound(self, stream, *tensors)
        calls.append(1)
        inside.append(1)
        try:
            return real_bound(self, stream, *tensors)
        finally:
            inside.pop()

    def fallback_spy(self, args):   # a replay's launch without a fitting binary (kernels/replay.py)
        if self.kernel is not kernel:
            return real_fallback(self, args)
        calls.append(1)
        inside.append(1)
        try:
            return real_fallback(self, args)
        finally:
            inside.pop()

    def lean_spy(compiled, grid, stream, values):   # a replay's launch of the binary
        if not inside and any(compiled is c for c in kernel._bound.values()):
            calls.append(1)
        return real_lean(compiled, grid, stream, values)

    kernel.launch, tuning.Bound.__call__, replay._Launch.fallback = spy, bound_spy, fallback_spy
    tuning.OneLaunch.__call__, tuning.Kernel._lean = one_spy, staticmethod(lean_spy)
    try:
        yield calls
    finally:
        kernel.launch, tuning.Bound.__call__, replay._Launch.fallback = real, real_bound, real_fallback
        tuning.OneLaunch.__call__, tuning.Kernel._lean = real_one, staticmethod(real_lean)


def problem(device, bsz, L, groups, per_group, P, N, seed, options, dtype):
    t = make_ssd_problem(bsz, L, groups, per_group, P, N, seed, options, device)
    return {k: (v.to(dtype) if k in ("x", "z", "B", "C", "dt") else v.float()) if isinstance(v, torch.Tensor) else v
            for k, v in t.items()}


def as_np(t):
    return {k: (v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


@examples(8)
@given(bsz=st.integers(1, 2), L=st.integers(1, 70), groups=st.integers(1, 2), per_group=st.integers(1, 2),
       P=st.one_of(st.integers(1, 9), st.just(16)), N=st.one_of(st.integers(1, 9), st.just(16)), seed=seeds(),
       options=st.booleans(), chunk=st.sampled_from([16, 64]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
def test_fused_forward_matches_the_reference_and_the_stages(device, bsz, L, groups, per_group, P, N, seed, options,
                                                            chunk, dtype):
    """Outputs and final states against the float64 loop (every option: D per head or per channel, z,
    dt_bias with softplus and a clamp, initial states; grouped B and C; odd P, N and L), and against the
    staged forward of the same call."""
    t = problem(device, bsz, L, groups, per_group, P, N, seed, options, dtype)
    with torch.no_grad(), route("1"), counting() as calls:
        out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=chunk, return_final_states=True)
    assert calls == [1]
    assert out.dtype == dtype and out.shape == t["x"].shape and final.dtype == torch.float32
    want_out, want_final = ssd_np(**as_np(t))
    assert_close(out, want_out, dtype, "out")
    assert_close(final, want_final, dtype, "final_states")
    with torch.no_grad(), route("0"), counting() as calls:
        staged, staged_final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=chunk, return_final_states=True)
    assert calls == []
    assert_close(out, staged.double(), dtype, "out vs the staged forward")
    assert_close(final, staged_final.double(), dtype, "final_states vs the staged forward")


@contextlib.contextmanager
def split(k: int, carry: str = ""):
    """Force the one-launch forward's segments (``fused.SEGMENTS``; 1 walks whole rows), of 16-step multiples (on
    a GPU too, where the rule takes 64: short rows split, and a chunk of 32 or 64 steps crosses a segment's end),
    and the carry pass between its launches (``fused.CARRY``: "1" always, "0" never)."""
    before = fused.SEGMENTS, fused.ALIGN, fused.CARRY
    fused.SEGMENTS, fused.ALIGN, fused.CARRY = str(k), 16, carry
    try:
        yield
    finally:
        fused.SEGMENTS, fused.ALIGN, fused.CARRY = before


@examples(8)
@given(bsz=st.integers(1, 2), L=st.integers(17, 70), groups=st.integers(1, 2),
       P=st.one_of(st.integers(1, 9), st.integers(17, 40)), N=st.integers(1, 9), segments=st.integers(2, 5),
       seed=seeds(), options=st.booleans(), carry=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_segmented_forward_matches_the_reference(device, bsz, L, groups, P, N, segments, seed, options, carry, dtype):
    """The row split into segments (a summary launch, then the outputs from the summaries of the segments before
    each, or from the entering states the carry pass between the two wrote): outputs and final states against the
    float64 loop (initial states, D, z, dt_bias among the options; P past one channel tile, so that programs of one
    segment split the channels), through the op plan as well (its second call), two launches of the forward
    kernel each call and one of the carry pass where it is on."""
    t = problem(device, bsz, L, groups, 2, P, N, seed, options, dtype)
    want_out, want_final = ssd_np(**as_np(t))
    with torch.no_grad(), route("1"), split(1):   # whole rows first: what this signature recorded is not reused
        whole = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)
    assert_close(whole, want_out, dtype, "out, whole rows")
    carries = []
    real_carry = fused.ssd_segment_carry_kernel.launch

    def carry_spy(*a, **k):
        carries.append(1)
        return real_carry(*a, **k)

    with torch.no_grad(), route("1"), split(segments, "1" if carry else "0"):
        nseg, seg_len = fused.segments(bsz, L, 2 * groups, P, 1, ssm_triton.INTERPRET)
        assert nseg > 1 and (nseg - 1) * seg_len < L and fused.carried(nseg) == carry
        for k in range(2):
            fused.ssd_segment_carry_kernel.launch = carry_spy
            try:
                with counting() as calls:
                    out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16, return_final_states=True)
            finally:
                fused.ssd_segment_carry_kernel.launch = real_carry
            assert calls == [1, 1] and len(carries) == (k + 1 if carry else 0)
            assert_close(out, want_out, dtype, f"out, call {k}")
            assert_close(final, want_final, dtype, f"final_states, call {k}")


@examples(4)
@given(L=st.integers(20, 64), rate=st.floats(2.0, 12.0), seed=seeds())
def test_fused_forward_accurate_when_a_chunk_decays_by_hundreds_of_nats(device, L, rate, seed):
    """dt A of -2 to -12 nats a step: the decay sums of a chunk reach hundreds of nats, and the pair decays
    are their differences; fp32 inputs must still give fp32 accuracy."""
    t = problem(device, 1, L, 1, 2, 4, 8, seed, False, torch.float32)
    t["A"] = torch.full_like(t["A"], -rate)
    t["dt"] = torch.ones_like(t["dt"])
    with torch.no_grad(), route("1"), counting() as calls:
        out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=64, return_final_states=True)
    assert calls == [1]
    want_out, want_final = ssd_np(**as_np(t))
    assert_close(out, want_out, torch.float32, "out")
    assert_close(final, want_final, torch.float32, "final_states")


def test_every_tuning_candidate_matches_the_reference(device, monkeypatch):
    """Whatever the tuner picks (chunk tile, channel tile, warps, stages, register cap, step rows read ahead): each
    GPU candidate, pinned in turn (under the interpreter those differing only in warps, stages and cap run once)."""
    bsz, L, H, P, G, N = 1, 150, 2, 20, 1, 16
    t = problem(device, bsz, L, G, H // G, P, N, 3, True, torch.float32)
    monkeypatch.setattr(fused, "AHEAD_TUNED", True)
    monkeypatch.setattr(fused.ssd_fused_fwd_kernel, "_spaces", {})
    space = fused.ssd_fused_fwd_kernel.space((bsz, L, H, P, G, N, torch.float32, True, 0, 1, False, False, 1, 0),
                                             H100)
    assert len(space) > 1 and any("maxnreg" in option for option in space)
    assert any(option.get("AHEAD") for option in space) and not all(option.get("AHEAD") for option in space)
    pins = []
    for option in space:
        pin = {k: v for k, v in option.items()
               if not (ssm_triton.INTERPRET and k in ("num_warps", "num_stages", "maxnreg"))}
        if pin not in pins:
            pins.append(pin)
    want_out, want_final = ssd_np(**as_np(t))
    for pin in pins:
        tuning.pin("ssd_fused_fwd", **pin)
        try:
            with torch.no_grad(), route("1"):
                out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=64, return_final_states=True)
        finally:
            tuning.unpin("ssd_fused_fwd")
        assert_close(out, want_out, torch.float32, f"out {pin}")
        assert_close(final, want_final, torch.float32, f"final_states {pin}")


@contextlib.contextmanager
def training_route(value: str):
    """Force the training forward's route (``launch.FUSED_TRAIN``): "1" the one-launch kernel wherever the
    inference route would take it (forced there too), "" the stages."""
    before = launch.FUSED_TRAIN
    launch.FUSED_TRAIN = value
    try:
        with route("1"):
            yield
    finally:
        launch.FUSED_TRAIN = before


@examples(8)
@given(bsz=st.integers(1, 2), L=st.integers(1, 70), groups=st.integers(1, 2), P=st.one_of(st.integers(1, 9),
       st.integers(17, 24)), N=st.integers(1, 9), chunk=st.sampled_from([16, 32, 64]), segments=st.integers(1, 3),
       seed=seeds(), options=st.booleans(), use_final=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_training_forward_in_one_launch_matches_float64_autograd(device, bsz, L, groups, P, N, chunk, segments,
                                                                 seed, options, use_final, dtype):
    """A call that records a graph, on the one-launch forward (``launch.FUSED_TRAIN``): the kernel writes what the
    staged forward keeps for the backward (step sizes, their decay sums by chunk, the padding past ``L`` included,
    each chunk's entering state, the output before the gate), whole rows or in segments that start on a chunk.
    Outputs and every gradient against float64 autograd of the quadratic form (final states' too); the forward one
    launch of the kernel (two in segments: the summaries, then the rest)."""
    from ssm_triton.reference import ssd_quadratic_torch
    from strategies import normal
    t = problem(device, bsz, L, groups, 2, P, N, seed, options, dtype)
    if t.get("initial_states") is not None:   # kept in the tensor cores' dtype, as the stages keep them
        t["initial_states"] = t["initial_states"].to(dtype).float()
    names = [k for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states") if t.get(k) is not None]
    leaves = {k: t[k].requires_grad_() for k in names}
    with training_route("1"), split(segments), counting() as calls:
        nseg = fused.segments(bsz, L, 2 * groups, P, 1, ssm_triton.INTERPRET, chunk)[0]
        out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=chunk, return_final_states=True)
    assert calls == [1] * min(nseg, 2)
    g_out = normal(out.shape, seed + 30, device, dtype)
    g_final = normal(final.shape, seed + 31, device)
    loss = (out * g_out).sum() + ((final * g_final).sum() if use_final else 0)
    got = torch.autograd.grad(loss, list(leaves.values()))
    ref = {k: v.detach().cpu().double().requires_grad_() for k, v in leaves.items()}
    ref_out, ref_final = ssd_quadratic_torch(**{**t, **ref})
    assert_close(out, ref_out.detach(), dtype, "out")
    assert_close(final, ref_final.detach(), dtype, "final_states")
    ref_loss = (ref_out * g_out.cpu().double()).sum() + ((ref_final * g_final.cpu().double()).sum() if use_final else 0)
    want = torch.autograd.grad(ref_loss, list(ref.values()))
    for name, g, w in zip(leaves, got, want):
        assert g.dtype == leaves[name].dtype and g.shape == leaves[name].shape, name
        assert_close(g, w, dtype, f"d{name}")


@contextlib.contextmanager
def poisoned_allocations():
    """``torch.empty`` and ``torch.empty_like`` fill floating tensors with NaN: whatever a kernel leaves unwritten
    shows (the allocator would otherwise hand back a freed buffer that may hold the right values by chance)."""
    real_empty, real_like = torch.empty, torch.empty_like

    def poison(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t

    torch.empty = lambda *a, **k: poison(real_empty(*a, **k))
    torch.empty_like = lambda *a, **k: poison(real_like(*a, **k))
    try:
        yield
    finally:
        torch.empty, torch.empty_like = real_empty, real_like


@examples(8)
@given(bsz=st.integers(1, 2), L=st.integers(1, 90), P=st.integers(1, 20), N=st.integers(1, 9),
       chunk=st.sampled_from([16, 32, 64]), segments=st.integers(1, 3), seed=seeds(), options=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_training_forward_keeps_what_the_stages_keep(device, bsz, L, P, N, chunk, segments, seed, options, dtype):
    """What the one-launch training forward writes for the backward, against the staged forward's: the step sizes
    and their decay sums by chunk over the whole padded row (the sums flat past ``L``: the backward reads each
    chunk's last entry as its total), each chunk's entering state, the output before the gate; every buffer
    allocated full of NaN, so that an entry the kernel leaves unwritten fails."""
    import math
    t = problem(device, bsz, L, 1, 2, P, N, seed, options, dtype)
    args = [t["x"], t["dt"], t["A"], t["B"], t["C"], chunk, t.get("D"), t.get("z"), t.get("dt_bias"),
            t.get("initial_states")]
    kw = dict(dt_softplus=options, dt_limit=(0.0, math.inf), for_backward=True)
    with torch.no_grad():
        with training_route(""):
            _, _, _, want = launch.ssd_forward(*args, **kw)
        with training_route("1"), split(segments), counting() as calls, poisoned_allocations():
            nseg = fused.segments(bsz, L, 2, P, 1, ssm_triton.INTERPRET, chunk)[0]
            _, _, _, got = launch.ssd_forward(*args, **kw)
    assert calls == [1] * min(nseg, 2)
    assert torch.equal(got.dtp, want.dtp), "step sizes"
    cum = lambda c: c[0].double() + c[1].double()   # noqa: E731 - the fp64 sums the two fp32 planes hold
    assert torch.allclose(cum(got.cum), cum(want.cum), rtol=1e-12, atol=1e-12), "decay sums"
    assert got.hs.dtype == want.hs.dtype
    assert_close(got.hs.float(), want.hs.double(), dtype, "entering states")
    assert (got.y is None) == (want.y is None)
    if got.y is not None:
        assert_close(got.y.float(), want.y.double(), dtype, "output before the gate")


@pytest.mark.parametrize("case", ["grad", "seq_idx", "varlen_states"])
def test_fused_forward_only_where_it_applies(device, case):
    """A call that records a graph takes the stages with the training route off (``launch.FUSED_TRAIN``; on, the
    training tests above hold it to the one launch); packed rows and varlen states take the stages, which handle
    sequence boundaries."""
    t = problem(device, 1, 40, 1, 2, 4, 8, 1, False, torch.float32)
    extra = {}
    if case == "grad":
        t["x"].requires_grad_()
    else:
        cu = torch.tensor([0, 13, 40], device=device, dtype=torch.int32)
        extra = dict(cu_seqlens=cu, return_varlen_states=True) if case == "varlen_states" else dict(
            seq_idx=(torch.arange(40, device=device) >= 13).to(torch.int32)[None])
    with route("1"), training_route("0"), counting() as calls:
        ssm_triton.mamba_chunk_scan_combined(**t, **extra, chunk_size=16)
    assert calls == []


@given(L=st.integers(1, 20000), H=st.integers(1, 64), k=st.integers(1, 16), whole=st.sampled_from([1, 16, 48, 64, 256]),
       interpreted=st.booleans())
def test_segments_cover_the_row_in_whole_chunks(L, H, k, whole, interpreted):
    """The segments of a row (forced counts and the rule's): every step in exactly one, each a whole number of the
    alignment's steps and of a training forward's chunk (``whole``; 48: a MIMO chunk of rank-steps), so that no
    kept chunk is split between two programs."""
    before = fused.SEGMENTS
    for forced in ("", str(k)):
        fused.SEGMENTS = forced
        try:
            nseg, seg_len = fused.segments(1, L, H, 64, 132, interpreted, whole)
        finally:
            fused.SEGMENTS = before
        assert seg_len % whole == 0 and seg_len % (16 if interpreted else 64) == 0
        assert nseg >= 1 and (nseg - 1) * seg_len < L <= nseg * seg_len

def test_rule_takes_the_fused_kernel_where_it_was_measured_faster():
    assert fused.use_fused(1, 2048, 64, 132)            # a small prefill: launch-bound when staged
    assert fused.use_fused(8, 4096, 64, 132)            # 512 (row, head) programs fill the GPU
    assert fused.use_fused(8, 4096, 32, 132)            # Mamba-3's B8 H32: two waves of 256 programs, 97% full
    assert fused.use_fused(6, 4096, 32, 132)            # 192 programs: two waves 73% full, still the faster
    assert not fused.use_fused(6, 8192, 32, 132)        # the same past 4096 steps: staged
    assert not fused.use_fused(4, 4096, 32, 132)        # 128 programs, too many to segment, under a wave: staged
    assert fused.use_fused(8, 16384, 32, 132)           # Mamba-3 MIMO's B8 H32 rows of 4096 steps at rank 4
    assert not fused.use_fused(8, 32768, 32, 132)       # not measured: staged
    assert fused.use_fused(1, 8192, 64, 132)            # in 8 segments: 512 programs walking 32 chunks each
    assert not fused.use_fused(1, 16384, 64, 132)       # not measured: staged
    assert not fused.use_fused(2, 16384, 64, 132)


@examples(6)
@given(bsz=st.integers(1, 2), L=st.integers(2, 40), groups=st.integers(1, 2), P=st.integers(2, 9), N=st.integers(1, 9),
       seed=seeds(), options=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       strided_x=st.booleans())
def test_planned_one_launch_forward_reused_across_calls(device, bsz, L, groups, P, N, seed, options, dtype, strided_x):
    """Calls that record no graph take an op plan per input signature (``ops/_plans.py``): made by the first
    call, reused by the next with other values; an ``x`` of the same shape with other strides finds its own
    plan (or none), not that one; the route switch is part of the key."""
    from ssm_triton.ops import ssd as ops
    t = problem(device, bsz, L, groups, 2, P, N, seed, options, dtype)   # two heads a group: the swap moves data
    with torch.no_grad(), route("1"):
        for k in range(3):
            if k:
                t = {n: (v * (1.0 + 0.25 * k) if n in ("x", "C") else v) for n, v in t.items()}
            if k == 2 and strided_x:   # same shape and values, heads and steps swapped in memory
                t["x"] = t["x"].transpose(1, 2).contiguous().transpose(1, 2)
            with counting() as calls:
                out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16, return_final_states=True)
                alone = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)   # its own plan: no final state
            assert calls == [1, 1]
            want_out, want_final = ssd_np(**as_np(t))
            assert_close(out, want_out, dtype, f"out, call {k}")
            assert_close(final, want_final, dtype, f"final_states, call {k}")
            assert isinstance(alone, torch.Tensor)
            assert_close(alone, want_out, dtype, f"out without the final state, call {k}")
        assert any(isinstance(p, tuning.OneLaunch) for p in ops._PLANS._seen.values())
    with torch.no_grad(), route("0"), counting() as calls:   # the stages now, plan or not
        staged = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)
    assert calls == []
    assert_close(out, staged.double(), dtype, "out vs the staged forward")


@examples(6)
@given(bsz=st.integers(1, 2), L=st.integers(1, 90), P=st.integers(1, 9), N=st.integers(1, 9), seed=seeds(),
       options=st.booleans(), chunk=st.sampled_from([16, 64]), inner=st.sampled_from(["16", "32", "128"]),
       seq=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_staged_inference_at_its_own_chunk_length(device, bsz, L, P, N, seed, options, chunk, inner, seq, dtype):
    """A call that keeps nothing for a backward, on the stages, at a chunk length of its own
    (``launch.INF_CHUNK``) rather than the caller's: outputs and final states against the float64 loop (packed
    rows too, whose sequence starts fall anywhere in a chunk)."""
    t = problem(device, bsz, L, 1, 2, P, N, seed, options, dtype)
    if seq:
        t["seq_idx"] = (torch.arange(L, device=device) >= L // 3).to(torch.int32)[None].expand(bsz, L).contiguous()
        t.pop("initial_states", None)
    want_out, want_final = ssd_np(**as_np(t))
    before, real_plan, chunks = launch.INF_CHUNK, launch.plan, []

    def plan_spy(x, N, chunk_size, *a, **k):
        chunks.append(chunk_size)
        return real_plan(x, N, chunk_size, *a, **k)

    launch.INF_CHUNK, launch.plan = inner, plan_spy
    try:
        with torch.no_grad(), route("0"):
            out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=chunk, return_final_states=True)
    finally:
        launch.INF_CHUNK, launch.plan = before, real_plan
    assert chunks and set(chunks) == {int(inner)}
    assert_close(out, want_out, dtype, "out")
    assert_close(final, want_final, dtype, "final_states")
