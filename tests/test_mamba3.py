"""``mamba3_siso_combined`` against the float64 step-by-step loop (reference/mamba3.py): outputs, every final
state and every gradient (the input states' and the final states' included), for any N and P (powers of two
or not), any number of rotated pairs, grouped Q/K heads, every chunk size, fp32 and bf16; bad input."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import mamba3_siso_loop
from ssm_triton.tolerance import assert_close
from builders import sums_in_state_passing, walking_backward, assert_angle_close, assert_mamba3_matches, cancelling_grad, mamba3_leaves, mamba3_tensors
from strategies import BIG, examples, normal, on, seeds, uniform

SMALL = examples(6)
STATE_NAMES = ("angle", "ssm", "k", "v")


def make(device, b, L, H, Hqk, P, N, S, seed, options, dtype):
    """Inputs as a Mamba3 block feeds them: DT positive, ADT = A DT with A < 0, small biases."""
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, dtype, scale)  # noqa: E731
    dt = uniform((b, H, L), 0.01, 0.8, seed + 4, device, torch.float32)
    t = dict(Q=r((b, L, Hqk, N), 0), K=r((b, L, Hqk, N), 1), V=r((b, L, H, P), 2),
             ADT=-uniform((b, H, L), 0.05, 1.5, seed + 3, device, torch.float32) * dt, DT=dt,
             Trap=normal((b, H, L), seed + 5, device, torch.float32, 2.0),
             Q_bias=normal((H, N), seed + 6, device, torch.float32, 0.3),
             K_bias=normal((H, N), seed + 7, device, torch.float32, 0.3), Angles=r((b, L, H, S), 8))
    if options:
        t.update(D=normal((H,), seed + 9, device, torch.float32), Z=r((b, L, H, P), 10),
                 Input_States=(uniform((b, H, S), 0.0, 2 * math.pi, seed + 11, device, torch.float32),
                               normal((b, H, P, N), seed + 12, device, torch.float32, 0.5),
                               normal((b, H, N), seed + 13, device, torch.float32),
                               normal((b, H, P), seed + 14, device, torch.float32)))
    return t


def leaves(t: dict) -> dict:
    return mamba3_leaves(t)


def flat(t: dict) -> dict:
    """Every tensor input by name, the input states as four entries."""
    return mamba3_tensors(t, STATE_NAMES)


def reference(t: dict):
    args = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in t.items() if k != "Input_States"}
    states = tuple(s.double() for s in t["Input_States"]) if "Input_States" in t else None
    return mamba3_siso_loop(**args, Input_States=states)


def sizes():
    return dict(b=st.integers(1, 2), L=st.one_of(st.integers(1, 40), st.just(17)),
                heads=st.sampled_from([(1, 1), (2, 1), (3, 3), (4, 2)]), P=st.sampled_from([1, 3, 8, 12]),
                N=st.sampled_from([2, 5, 8, 16]), seed=seeds(), options=st.booleans(),
                chunk=st.sampled_from([16, 32]), dtype=st.sampled_from([torch.float32, torch.bfloat16]))


@examples(4)
@given(**sizes(), data=st.data())
def test_chunk_sums_inside_the_state_passings(device, b, L, heads, P, N, seed, options, chunk, dtype, data):
    """``SSM_TRITON_SSD_OWN_FUSED=1`` and ``SSM_TRITON_SSD_ADJ_FUSED=1`` (the state passings make each chunk's own
    end state and adjoint sum themselves, over the rotated ``k`` and ``q``), the staged forward running: outputs,
    final states and every gradient against the float64 loop, the input and final states' included."""
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2), label="S")
    with sums_in_state_passing() as launched:
        check_against_loop(device, make(device, b, L, H, Hqk, P, N, S, seed, options, dtype), chunk, dtype, seed)
    assert launched == {"own": [chunk], "adjoint": [chunk]}


@examples(4)
@given(**{**sizes(), "N": st.sampled_from([5, 16, 24])}, data=st.data())
def test_backward_in_one_launch(device, b, L, heads, P, N, seed, options, chunk, dtype, data):
    """``SSM_TRITON_WALK_BWD=1``: one program a (row, head) walks the chunks in reverse for every gradient of the
    scan (``walk_bwd.py``): outputs, final states and every gradient, the input and final states' included, against
    the float64 loop, with or without D, the gate and input states, chunks walked whole or in halves, rows in one
    to three segments side by side, each block's loads issued by itself or by the block walked before it
    (``SSM_TRITON_WALK_AHEAD``), the carried state's decay term summed or carried (``SSM_TRITON_WALK_FREC``), three
    row sums in one reduction or three (``SSM_TRITON_WALK_MERGE``); the route's one launch seen, with dk, dq a head in bf16 for 16-bit cores."""
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2), label="S")
    segments = data.draw(st.integers(1, 3), label="segments")
    ahead = data.draw(st.booleans(), label="ahead")
    frec = data.draw(st.booleans(), label="frec")
    merge = data.draw(st.booleans(), label="merge")
    # chunks of 32 in halves, 16 whole
    with walking_backward(sub=16, segments=segments, ahead=ahead, frec=frec, merge=merge) as launched:
        check_against_loop(device, make(device, b, L, H, Hqk, P, N, S, seed, options, dtype), chunk, dtype, seed)
    nc = -(-L // chunk)
    kq = torch.float32 if dtype == torch.float32 else torch.bfloat16   # the per-head dk, dq: bf16 for 16-bit cores
    assert launched == [(chunk, 16, -(-nc // -(-nc // segments)), kq, kq, ahead)]


@examples(3)
@given(b=st.integers(1, 2), L=st.integers(33, 80), P=st.sampled_from([3, 8]), N=st.sampled_from([5, 16]), seed=seeds(),
       options=st.booleans(), whole=st.booleans(), segments=st.integers(1, 2), data=st.data())
def test_walk_with_loads_ahead_crosses_chunks(device, b, L, P, N, seed, options, whole, segments, data):
    """The walk's loads issued a block ahead (``SSM_TRITON_WALK_AHEAD``, the default) over rows of several chunks a
    segment (chunks of 16 walked whole, or of 32 in halves): each block computes from the tiles and entering state
    the block walked before it loaded, so the chunk handed over at each boundary is what a mistake there breaks;
    every gradient against the float64 loop."""
    S = data.draw(st.integers(0, N // 2), label="S")
    chunk = 16 if whole else 32
    with walking_backward(sub=16, segments=segments, ahead=True, frec=data.draw(st.booleans(), label="frec"),
                          merge=data.draw(st.booleans(), label="merge")) as launched:
        check_against_loop(device, make(device, b, L, 2, 1, P, N, S, seed, options, torch.float32), chunk,
                           torch.float32, seed)
    assert [w[-1] for w in launched] == [True]


@examples(3)   # ~9 s an example under the interpreter
@given(decay=st.sampled_from([(0.02, 0.2), (0.5, 3.0), (2.0, 12.0)]), growth=st.floats(4.5, 6.0), seed=seeds())
def test_walk_decay_gradient_keeps_each_chunks_digits(device, decay, growth, seed):
    """The walk's ``dADT`` where the cotangent grows 10^4.5-10^6-fold along the row, under weak to strong decays
    (``-ADT`` of ``decay`` nats a step), fp32: each 32-step chunk's values within 2e-5 of that chunk's own largest,
    the carried state's decay term summed each block and carried as a running scalar (``SSM_TRITON_WALK_FREC``)
    alike. An error carried from the row's end does not decay with the values it lands on: the running scalar
    kept without its error bound lost 5e-5 to 7e-4 here (CPU, 2026-12-06), against 2.5e-6 summed and 5e-6 with it."""
    L, chunk = 128, 32
    t = make(device, 1, L, 2, 1, 8, 16, 4, seed, False, torch.float32)
    t["ADT"] = -uniform(t["ADT"].shape, *decay, seed + 30, device, torch.float32)
    g = normal(t["V"].shape, seed + 31, device, torch.float32) * torch.logspace(0, growth, L, device=device)[None, :, None, None]
    x64 = leaves({k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in t.items()})
    want, _ = reference(x64)
    want.backward(g.double())
    w = x64["ADT"].grad.reshape(2, L // chunk, chunk)
    for frec in (False, True):
        with walking_backward(sub=16, frec=frec):
            x = leaves(t)
            ssm_triton.mamba3_siso_combined(**x, chunk_size=chunk).backward(g)
        err = (x["ADT"].grad.double().reshape(w.shape) - w).abs().amax(-1) / w.abs().amax(-1)
        assert err.max() <= 2e-5, f"frec={frec}: dADT's error beside each chunk's largest, {err.max().item():.2e}"


@given(sms=st.integers(1, 200), waves=st.integers(1, 5), word=st.sampled_from(["", "0", "1"]),
       Q=st.sampled_from([8, 16, 32, 64, 128]), P=st.sampled_from([5, 64, 128]), packed=st.booleans())
def test_walk_route_takes_filled_waves(sms, waves, word, Q, P, packed):
    """The backward walks (``launch.walks``) when told (``SSM_TRITON_WALK_BWD=1``), or unset on a GPU, when its one
    program a (row, head) fills its last wave: full waves walk, one wave and a program does not, the
    interpreter does not, a row long enough walks in segments; never when told "0", with packed sequences, a chunk
    outside 16..64 or too large a state."""
    from ssm_triton.kernels.ssd import launch
    from ssm_triton.kernels.tuning import Mode
    p = launch.make_plan(torch.zeros(1, Q, 1, P), 128, Q, mode=Mode(False, sms))
    fits = not packed and 16 <= Q <= 64 and P <= 64
    seq = torch.zeros(1) if packed else None
    cpu = torch.device("cpu")
    before = launch.WALK_BWD, launch.run_mode
    try:
        for interpreted in (False, True):
            launch.WALK_BWD, launch.run_mode = word, lambda device, i=interpreted: Mode(i, sms)
            full = launch.walks(waves, sms, P, 128, Q, seq, p, cpu)         # waves * sms programs, one chunk
            past = launch.walks(sms + 1, 1, P, 128, Q, seq, p, cpu)         # one wave and one program
            auto = not interpreted and fits
            assert full == (fits and (word == "1" or (word == "" and auto)))
            assert past == (fits and (word == "1" or (word == "" and auto and sms == 1)))
            if sms in (4, 8, 16):   # one (row, head) of 64 chunks fills the GPU in segments
                assert launch.walks(1, 1, P, 128, 64 * Q, seq, p, cpu) == (fits and (word == "1" or (word == "" and auto)))
    finally:
        launch.WALK_BWD, launch.run_mode = before


@SMALL
@given(**sizes(), data=st.data())
def test_matches_the_loop_with_every_gradient(device, b, L, heads, P, N, seed, options, chunk, dtype, data):
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2), label="S")
    check_against_loop(device, make(device, b, L, H, Hqk, P, N, S, seed, options, dtype), chunk, dtype, seed)


def check_against_loop(device, t, chunk, dtype, seed):
    """Outputs, final states and the gradient of every input against the float64 loop."""
    b, L, H, P = t["V"].shape
    x = leaves(t)
    out, *finals = ssm_triton.mamba3_siso_combined(**x, chunk_size=chunk, return_final_states=True)
    x64 = leaves({k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in t.items()})
    if "Input_States" in t:
        x64["Input_States"] = tuple(s.double().detach().requires_grad_() for s in t["Input_States"])
    want, want_states = reference(x64)
    assert out.dtype == dtype and out.shape == (b, L, H, P)
    assert_mamba3_matches(out, finals, want, want_states, x, x64, dtype, seed, STATE_NAMES)


@SMALL
@given(L=st.integers(1, 40), P=st.sampled_from([1, 3, 8]), seed=seeds(),
       dtype=st.sampled_from([torch.bfloat16, torch.float16]))
def test_d_gradient_keeps_its_digits_when_its_sum_cancels(device, L, P, seed, dtype):
    """With the gate, ``dD`` is summed from the unrounded ``dout silu(z)``: a cotangent whose sum nearly
    cancels (cancelling_grad) still gives the float64 loop's ``dD`` (rounded first, it lost 17% on CPU)."""
    t = make(device, 2, L, 2, 1, P, 8, 2, seed, True, dtype)
    x = leaves(t)
    out = ssm_triton.mamba3_siso_combined(**x, chunk_size=16)
    dout = cancelling_grad(normal(out.shape, seed + 20, device), t["Z"], t["V"], False, dtype)
    out.backward(dout)
    x64 = leaves({k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in t.items()})
    want, _ = reference(x64)
    want.backward(dout.double())
    assert_close(x["D"].grad, x64["D"].grad, dtype, "dD")


PIPELINE_ONLY = ("num_warps", "num_stages", "warps", "stages", "bwd_warps", "bwd_stages", "dx_warps", "dx_stages")


def test_every_tuning_candidate_matches_the_loop(device):
    """Whatever the tuner picks (heads per prep program, warps, the SSD stages' tile plans) gives the
    float64 loop's values and gradients: each GPU candidate, pinned in turn."""
    from ssm_triton.kernels import tuning
    from ssm_triton.kernels.mamba3 import launch as ml
    from ssm_triton.kernels.mamba3 import prep
    from ssm_triton.kernels.ssd import launch as kl
    from ssm_triton.kernels.tuning import H100

    b, L, H, Hqk, P, N, S, chunk = 1, 45, 4, 1, 8, 16, 3, 64
    t = make(device, b, L, H, Hqk, P, N, S, 5, True, torch.float32)
    bt = ml.steps_per_block(device, chunk)
    prep_problem = (b, L, H, Hqk, N, S, chunk, bt, torch.float32, False)
    plan_problem = kl.SSDProblem(b, L, H, P, H, N, chunk, torch.float32, True, False)
    for choice, space in ((prep.siso_prep_kernel, prep.siso_prep_kernel.space(prep_problem, H100)),
                          (prep.siso_prep_bwd_kernel, prep.siso_prep_bwd_kernel.space(prep_problem, H100)),
                          (ml.siso_fwd_plan, ml.siso_fwd_plan.space(plan_problem, H100)),
                          (ml.siso_bwd_plan, ml.siso_bwd_plan.space(plan_problem, H100))):
        assert len(space) > 1, choice.name
        # the interpreter ignores warps and stages (the kernels' and the plans' own): candidates that differ only
        # there run once
        pins = []
        for option in space:
            pin = {k: v for k, v in option.items() if not (ssm_triton.INTERPRET and k in PIPELINE_ONLY)}
            if pin not in pins:
                pins.append(pin)
        for pin in pins:
            tuning.pin(choice.name, **pin)
            try:
                check_against_loop(device, t, chunk, torch.float32, 5)
            finally:
                tuning.unpin(choice.name)


@SMALL
@given(L=st.integers(1, 70), seed=seeds(), chunks=st.sampled_from([(16, 64), (32, 16), (16, 128)]))
def test_chunk_size_changes_nothing_but_rounding(device, L, seed, chunks):
    t = make(device, 1, L, 2, 1, 4, 8, 3, seed, True, torch.float32)
    a, b = (ssm_triton.mamba3_siso_combined(**t, chunk_size=c, return_final_states=True) for c in chunks)
    for name, x, y in zip(("out", "angle", "ssm", "k", "v"), a, b):
        if name == "angle":
            assert_angle_close(x, y.double(), torch.float32, name)
        else:
            assert_close(x, y.double(), torch.float32, name)


@examples(4)
@given(L=st.integers(17, 60), heads=st.sampled_from([(2, 1), (3, 3)]), P=st.sampled_from([3, 8, 20]), seed=seeds(),
       options=st.booleans(), segments=st.sampled_from([1, 2, 3]), carry=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_inference_takes_the_one_launch_forward(device, L, heads, P, seed, options, segments, carry, dtype):
    """A call that keeps nothing for a backward runs the scan after the prep kernel in the SSD's one-launch
    forward (the steps' weights, decays and diagonal correction given: ``fused.mamba3_fused_forward``), whole rows
    or in segments with or without the carry pass: outputs and every final state against the float64 loop, and
    the same as the staged launches of a call that keeps its tensors for a backward."""
    from ssm_triton.kernels.ssd import fused, launch
    H, Hqk = heads
    t = make(device, 1, L, H, Hqk, P, 8, 3, seed, options, dtype)
    want = reference(t)
    launched = []
    real = fused.ssd_fused_fwd_kernel.launch

    def spy(*a, **k):
        launched.append(k.get("STEPS_GIVEN"))
        return real(*a, **k)

    before = fused.SEGMENTS, fused.ALIGN, fused.CARRY, launch.FUSED
    fused.SEGMENTS, fused.ALIGN, fused.CARRY, launch.FUSED = str(segments), 16, "1" if carry else "0", "1"
    fused.ssd_fused_fwd_kernel.launch = spy
    try:
        nseg = fused.segments(1, L, H, P, 1, ssm_triton.INTERPRET)[0]
        with torch.no_grad():
            got = ssm_triton.mamba3_siso_combined(**t, chunk_size=16, return_final_states=True)
    finally:
        fused.ssd_fused_fwd_kernel.launch = real
        fused.SEGMENTS, fused.ALIGN, fused.CARRY, launch.FUSED = before
    assert launched == [True] * (2 if nseg > 1 else 1)   # the summary launch, then the outputs'
    staged = ssm_triton.mamba3_siso_combined(**leaves(t), chunk_size=16, return_final_states=True)
    for name, g, w, s in zip(("out",) + STATE_NAMES, got, (want[0], *want[1]), staged):
        if name == "angle":
            assert_angle_close(g, w, dtype, name)
        else:
            assert_close(g, w, dtype, name)
            assert_close(g, s.detach().double(), dtype, f"{name} vs the staged forward")


@given(bt=st.sampled_from([8, 16]), chunk=st.sampled_from([16, 32, 48, 64, 128]),
       want=st.sampled_from(["", "8", "16", "32", "64", "128"]), interpreted=st.booleans())
def test_prep_backward_blocks_are_whole_forward_blocks_inside_a_chunk(bt, chunk, want, interpreted):
    """``SSM_TRITON_PREP_BWD_STEPS``: the prep backward's steps per program are a multiple of the forward's (its
    angle blocks) that divides the chunk, the word's where it can be, else the largest such below it; unset, 64
    compiled where the chunk takes it (32 measured slower than 16), else the forward's, and the forward's
    interpreted."""
    from ssm_triton.kernels.mamba3 import launch as ml
    before = ml.PREP_BWD_STEPS
    try:
        ml.PREP_BWD_STEPS = want
        got = ml.bwd_steps(bt, chunk, interpreted)
    finally:
        ml.PREP_BWD_STEPS = before
    assert got % bt == 0 and chunk % got == 0
    if want:
        assert got == max([bt] + [m for m in (16, 32, 64, 128) if m % bt == 0 and chunk % m == 0 and m <= int(want)])
    else:
        assert got == (64 if not interpreted and chunk % 64 == 0 else bt)


@examples(4)
@given(L=st.integers(1, 70), heads=st.sampled_from([(2, 1), (3, 3), (6, 1)]), N=st.sampled_from([5, 16]),
       seed=seeds(), options=st.booleans(), chunk=st.sampled_from([32, 64]), steps=st.sampled_from(["16", "32"]),
       cuts=st.lists(st.floats(0.0, 1.0), max_size=3), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       ahead=st.booleans(), merge=st.booleans())
def test_prep_backward_in_longer_blocks(device, L, heads, N, seed, options, chunk, steps, cuts, dtype, ahead, merge):
    """The prep backward over blocks of 2 or 4 of the forward's angle blocks (``SSM_TRITON_PREP_BWD_STEPS``; the
    interpreter's forward blocks are 8 steps), each head's loads issued by itself or by the head before it
    (``SSM_TRITON_PREP_AHEAD``; six heads a Q/K head are three a program in the interpreter's two planes), the
    biases' four column sums in one reduction or four (``SSM_TRITON_PREP_MERGE``): every
    gradient against the float64 loop, and for a packed row (``cu_seqlens``: each sequence's angles restart inside a
    block) the same gradients as the forward's blocks give; the kernel seen launched with the longer blocks."""
    from ssm_triton.kernels import replay
    from ssm_triton.kernels.mamba3 import launch as ml
    H, Hqk = heads
    seen = []
    kernel = ml.siso_prep_bwd_kernel

    class Spy:
        def launch(self, problem, pinned, **k):
            seen.append((k["BLOCK_T"], k["THETA_EVERY"], k["AHEAD"], k["MERGE"]))
            return kernel.launch(problem, pinned, **k)

    before = ml.PREP_BWD_STEPS, ml.PREP_AHEAD, ml.PREP_MERGE, replay.ENABLED
    replay.ENABLED = False
    try:
        ml.siso_prep_bwd_kernel = Spy()
        ml.PREP_BWD_STEPS = steps
        ml.PREP_AHEAD = "1" if ahead else "0"
        ml.PREP_MERGE = "1" if merge else "0"
        check_against_loop(device, make(device, 1, L, H, Hqk, 4, N, N // 2, seed, options, dtype), chunk, dtype, seed)
        fwd_bt = ml.steps_per_block(torch.device(device), chunk)
        assert seen and all(s == (int(steps), int(steps) // fwd_bt, ahead, merge) for s in seen)
        bounds = sorted({0, L, *(min(L - 1, max(1, int(c * L))) for c in cuts)})
        t = make(device, 1, L, H, Hqk, 4, N, N // 2, seed, options, torch.float32)
        t.pop("Input_States", None)
        grads = []
        for word in (steps, ""):
            ml.PREP_BWD_STEPS = word
            x = leaves(t)
            out = ssm_triton.mamba3_siso_combined(**x, chunk_size=chunk, cu_seqlens=torch.tensor(bounds, device=device))
            grads.append(torch.autograd.grad(out, list(flat(x).values()), normal(out.shape, seed + 40, device, torch.float32)))
        for name, a, b in zip(flat(t), *grads):
            assert_close(a, b.double(), torch.float32, f"d {name} packed")
    finally:
        ml.siso_prep_bwd_kernel = kernel
        ml.PREP_BWD_STEPS, ml.PREP_AHEAD, ml.PREP_MERGE, replay.ENABLED = before


def per_sequence_states(device, n, H, P, N, S, seed):
    """One set of input states per packed sequence, as ``make`` draws a batch's."""
    return (uniform((n, H, S), 0.0, 2 * math.pi, seed + 50, device, torch.float32),
            normal((n, H, P, N), seed + 51, device, torch.float32, 0.5),
            normal((n, H, N), seed + 52, device, torch.float32), normal((n, H, P), seed + 53, device, torch.float32))


@examples(4)   # up to five sequences alone and the packed row, each with its backward: 6 took 91 s of CI
@given(L=st.integers(2, 60 if BIG else 40), cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4), seed=seeds(),
       heads=st.sampled_from([(2, 1), (3, 3)]), N=st.sampled_from([5, 8]), options=st.booleans(),
       states=st.booleans(), chunk=st.sampled_from([16, 32]))
def test_packed_row_equals_each_sequence_alone(device, L, cuts, seed, heads, N, options, states, chunk):
    """cu_seqlens: outputs, per-sequence final states, and every input's gradient (through the outputs and every
    final state; the per-sequence input states' included) equal each sequence run on its own."""
    H, Hqk = heads
    bounds = sorted({0, L, *(min(L - 1, max(1, int(c * L))) for c in cuts)})
    t = make(device, 1, L, H, Hqk, 4, N, N // 2, seed, options, torch.float32)
    t.pop("Input_States", None)
    if states:
        t["Input_States"] = per_sequence_states(device, len(bounds) - 1, H, 4, N, N // 2, seed)
    cu = torch.tensor(bounds, device=device)
    x = leaves(t)
    out, *finals = ssm_triton.mamba3_siso_combined(**x, chunk_size=chunk, return_final_states=True, cu_seqlens=cu)
    assert out.shape == (1, L, H, 4) and finals[1].shape == (len(bounds) - 1, H, 4, N)
    g = normal(out.shape, seed + 40, device, torch.float32)
    gk, ga, gv, gs = (normal(f.shape, seed + 41 + i, device, torch.float32)
                      for i, f in enumerate((finals[2], finals[0], finals[3], finals[1])))

    def loss(o, angle, k, v, ssm):
        return (o * g).sum() + (torch.sin(angle) * ga).sum() + (k * gk).sum() + (v * gv).sum() + (ssm * gs).sum()

    got = torch.autograd.grad(loss(out, finals[0], finals[2], finals[3], finals[1]), list(flat(x).values()))
    alone = leaves(t)
    total, outs = 0.0, []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = {k: (v[..., a:b] if k in ("ADT", "DT", "Trap") else v[:, a:b] if v.dim() == 4 else v)
                for k, v in alone.items() if k != "Input_States"}
        if states:
            part["Input_States"] = tuple(st_[i:i + 1] for st_ in alone["Input_States"])
        o, *f = ssm_triton.mamba3_siso_combined(**part, chunk_size=chunk, return_final_states=True)
        outs.append(o)
        assert_angle_close(finals[0][i], f[0][0].double(), torch.float32, f"angle of sequence {i}")
        for name, mine, theirs in zip(STATE_NAMES[1:], finals[1:], f[1:]):
            assert_close(mine[i], theirs[0].double(), torch.float32, f"{name} of sequence {i}")
        total = total + (o * g[:, a:b]).sum() + (torch.sin(f[0][0]) * ga[i]).sum() + (f[2][0] * gk[i]).sum() \
            + (f[3][0] * gv[i]).sum() + (f[1][0] * gs[i]).sum()
    assert_close(out, torch.cat(outs, 1).double(), torch.float32, "packed out")
    want = torch.autograd.grad(total, list(flat(alone).values()))
    for name, a, w in zip(flat(x), got, want):
        assert_close(a, w.double(), torch.float32, f"d {name}")


def test_returns_follow_mamba_ssm(device):
    t = make(device, 1, 5, 2, 2, 3, 4, 2, 0, False, torch.float32)
    assert isinstance(ssm_triton.mamba3_siso_combined(**t), torch.Tensor)
    out, angle, ssm, k, v = ssm_triton.mamba3_siso_combined(**t, return_final_states=True)
    assert (angle.shape, ssm.shape, k.shape, v.shape) == ((1, 2, 2), (1, 2, 3, 4), (1, 2, 4), (1, 2, 3))
    # the final states are exactly what Input_States takes: running on from them equals one longer call
    t2 = make(device, 1, 9, 2, 2, 3, 4, 2, 1, False, torch.float32)
    whole = ssm_triton.mamba3_siso_combined(**t2, chunk_size=16)
    head = {k_: (v_[..., :4] if k_ in ("ADT", "DT", "Trap") else v_[:, :4] if v_.dim() == 4 else v_) for k_, v_ in t2.items()}
    tail = {k_: (v_[..., 4:] if k_ in ("ADT", "DT", "Trap") else v_[:, 4:] if v_.dim() == 4 else v_) for k_, v_ in t2.items()}
    first, *states = ssm_triton.mamba3_siso_combined(**head, chunk_size=16, return_final_states=True)
    second = ssm_triton.mamba3_siso_combined(**tail, chunk_size=16, Input_States=tuple(states))
    assert_close(torch.cat([first, second], 1), whole.double(), torch.float32, "split run")


GOOD = dict(Q=torch.ones(1, 6, 2, 8), K=torch.ones(1, 6, 2, 8), V=torch.ones(1, 6, 4, 3), ADT=-torch.ones(1, 4, 6),
            DT=torch.ones(1, 4, 6), Trap=torch.ones(1, 4, 6), Q_bias=torch.ones(4, 8), K_bias=torch.ones(4, 8),
            Angles=torch.ones(1, 6, 4, 2))


@pytest.mark.parametrize("override, exc, match", [
    (dict(V=torch.ones(6, 4, 3)), ValueError, r"V must be 4-D \(batch, L, H, P\)"),
    (dict(V=torch.ones(1, 6, 4, 3, dtype=torch.float64)), TypeError, "V must have dtype"),
    (dict(Q=torch.ones(1, 6, 3, 8), K=torch.ones(1, 6, 3, 8)), ValueError, "Hqk = 3 heads"),
    (dict(K=torch.ones(1, 6, 2, 7)), ValueError, r"K must have shape \(batch, L, Hqk, N\) as Q"),
    (dict(Q=torch.ones(1, 6, 2, 8, dtype=torch.float16), K=torch.ones(1, 6, 2, 8, dtype=torch.float16)),
     TypeError, "Q must have the same dtype as V"),
    (dict(Q=torch.ones(1, 6, 2, 300), K=torch.ones(1, 6, 2, 300)), ValueError, "state size N = 300"),
    (dict(V=torch.ones(1, 6, 4, 300)), ValueError, "head dimension P = 300"),
    (dict(DT=torch.ones(1, 6, 4)), ValueError, r"DT must have shape \(batch, H, L\)"),
    (dict(Trap=torch.ones(1, 4, 6, dtype=torch.int32)), TypeError, "Trap must have dtype"),
    (dict(Q_bias=torch.ones(2, 8)), ValueError, r"Q_bias must have shape \(H, N\)"),
    (dict(Angles=torch.ones(1, 6, 4, 5)), ValueError, "2 S must be at most N"),
    (dict(D=torch.ones(3)), ValueError, r"D must have shape \(H,\)"),
    (dict(Z=torch.ones(1, 6, 4, 2)), ValueError, "Z must have shape"),
    (dict(Input_States=(torch.ones(1, 4, 2),)), TypeError, "Input_States must be a tuple"),
    (dict(Input_States=(torch.ones(1, 4, 2), torch.ones(1, 4, 3, 7), torch.ones(1, 4, 8), torch.ones(1, 4, 3))),
     ValueError, r"Input_States\[1\] \(ssm\) must have shape"),
    (dict(chunk_size=48), ValueError, "chunk_size must be one of"),
    (dict(return_final_states=1), TypeError, "return_final_states must be a bool"),
    (dict(cu_seqlens=torch.tensor([0, 2, 6]), Input_States=(torch.ones(1, 4, 2), torch.ones(2, 4, 3, 8),
                                                            torch.ones(2, 4, 8), torch.ones(2, 4, 3))),
     ValueError, r"Input_States\[0\] \(angle\) must have shape \(sequences, H, S\) = \(2, 4, 2\)"),
    (dict(cu_seqlens=torch.tensor([0, 6], dtype=torch.float32)), TypeError, "cu_seqlens must have dtype"),
    (dict(cu_seqlens=torch.tensor([0, 4, 4, 6])), ValueError, "cu_seqlens must rise strictly"),
    (dict(Q=torch.ones(2, 6, 2, 8), K=torch.ones(2, 6, 2, 8), V=torch.ones(2, 6, 4, 3), ADT=-torch.ones(2, 4, 6),
          DT=torch.ones(2, 4, 6), Trap=torch.ones(2, 4, 6), Angles=torch.ones(2, 6, 4, 2), cu_seqlens=torch.tensor([0, 6])),
     ValueError, "must have batch 1"),
    (dict(K=torch.ones(1, 6, 2, 8, device="meta")), ValueError, "K is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(device, override, exc, match):
    args = on(device, {**GOOD, **override})
    if "Input_States" in override:
        args["Input_States"] = tuple(s.to(device) for s in override["Input_States"])
    if "cu_seqlens" in override:
        args["cu_seqlens"] = override["cu_seqlens"]   # a CPU copy is checked at once (on a GPU, asynchronously)
    with pytest.raises(exc, match=match):
        ssm_triton.mamba3_siso_combined(**args)


# ---- the decode step ----

def token(t: dict, i: int) -> dict:
    """The inputs of step ``i`` in the step's layout."""
    out = {}
    for k, v in t.items():
        if k in ("Q", "K", "V", "Z", "Angles"):
            out[k] = v[:, i]
        elif k in ("ADT", "DT", "Trap"):
            out[k] = v[:, :, i]
        elif k != "Input_States":
            out[k] = v
    return out


@SMALL
@given(b=st.integers(1, 2), L=st.integers(1, 9), heads=st.sampled_from([(1, 1), (4, 2), (3, 1)]),
       P=st.sampled_from([1, 5, 8, 70]), N=st.sampled_from([2, 7, 16]), seed=seeds(), options=st.booleans(),
       inplace=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]), data=st.data())
def test_steps_equal_the_chunked_scan_token_by_token(device, b, L, heads, P, N, seed, options, inplace, dtype, data):
    """Stepping through a sequence from the input states gives the scan's outputs and final states; in place,
    the caller's state tensors hold them and nothing else is allocated for them."""
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2), label="S")
    t = make(device, b, L, H, Hqk, P, N, S, seed, options, dtype)
    want, *want_states = ssm_triton.mamba3_siso_combined(**t, chunk_size=16, return_final_states=True)
    states = tuple(s.clone() for s in t["Input_States"]) if options else tuple(
        torch.zeros(shape, device=device) for shape in ((b, H, S), (b, H, P, N), (b, H, N), (b, H, P)))
    held = states
    outs = []
    for i in range(L):
        out, new = ssm_triton.mamba3_siso_step(**token(t, i), Input_States=states, inplace=inplace)
        assert out.shape == (b, H, P) and out.dtype == dtype
        if inplace:
            assert all(a is c for a, c in zip(new, held))
        outs.append(out)
        states = tuple(new)
    assert_close(torch.stack(outs, 1), want.double(), dtype, "stepped out")
    assert_angle_close(states[0], want_states[0].double(), torch.float32, "stepped angle")
    for name, g, w in zip(STATE_NAMES[1:], states[1:], want_states[1:]):
        assert_close(g, w.double(), dtype, f"stepped {name}")


@pytest.mark.parametrize("P", [17, 40])
@examples(3)
@given(b=st.integers(1, 2), seed=seeds())
def test_in_place_steps_over_several_row_blocks(device, P, b, seed):
    """In place, a (batch row, head)'s state rows go to several programs (``step.STEP_ROWS`` at a time) that all
    read the old k~ and angle, which the last of them to have read replaces: four tokens against the float64
    loop, so a program that reads a new k~ or angle as the old one, or a step that writes none, fails."""
    L, H, N, S = 4, 2, 8, 2
    t = make(device, b, L, H, 1, P, N, S, seed, True, torch.float32)
    want, want_states = reference(t)
    held = tuple(s.clone() for s in t["Input_States"])
    outs = [ssm_triton.mamba3_siso_step(**token(t, i), Input_States=held, inplace=True)[0] for i in range(L)]
    assert_close(torch.stack(outs, 1), want, torch.float32, "stepped out")
    # the pairs' counts are the k state's own, reused, and back at zero for the next step
    from ssm_triton.kernels.mamba3.step import counters
    count = counters(held[2], b * H)
    assert count is counters(held[2].view(-1), b * H) and count is not counters(held[2].clone(), b * H)
    assert not count.any()
    assert_angle_close(held[0], want_states[0], torch.float32, "stepped angle")
    for name, g, w in zip(STATE_NAMES[1:], held[1:], want_states[1:]):
        assert_close(g, w, torch.float32, f"stepped {name}")


@pytest.mark.parametrize("rows", [0, 16])
def test_steps_on_column_groups(device, rows):
    """The step's column-group form (``step.STEP_WHOLE`` off: the even, odd and unrotated columns of the state rows
    as three tiles; the whole-row form is the default), one program a pair and in blocks of rows, through the
    token-by-token and the row-block properties above."""
    from ssm_triton.kernels import tuning
    from ssm_triton.kernels.mamba3 import step
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(step, "STEP_WHOLE", False)
        mp.setattr(step, "STEP_ROWS", rows)
        tuning.forget()   # the rule's choice is remembered per problem
        try:
            test_steps_equal_the_chunked_scan_token_by_token(device)
            test_in_place_steps_over_several_row_blocks(device, 17)
        finally:
            tuning.forget()


@pytest.mark.parametrize("case", [(243904, 1, 6, 1, 1, 8, 16, 6, False), (1, 1, 6, 1, 1, 8, 16, 6, False),
                                  (51196, 1, 7, 3, 1, 8, 16, 3, True)])
def test_steps_and_scan_each_match_the_loop_where_the_h200_disagreed(device, case):
    """Cases where steps and scan disagreed on the H200 and not on the CPU (bf16; 2026-12-02 under memcheck: L=6
    P=8 N=16 S=6, scaled error 0.29; 2026-12-04: L=7, 3 heads on one Q/K head, S=3, D, Z and input states,
    0.24): both sides against the float64 loop, so a failure says which one is wrong."""
    seed, b, L, H, Hqk, P, N, S, options = case
    t = make(device, b, L, H, Hqk, P, N, S, seed, options, torch.bfloat16)
    scan = ssm_triton.mamba3_siso_combined(**t, chunk_size=16)
    want, _ = reference(t)
    states = tuple(s.clone() for s in t["Input_States"]) if options else tuple(
        torch.zeros(shape, device=device) for shape in ((b, H, S), (b, H, P, N), (b, H, N), (b, H, P)))
    outs = []
    for i in range(L):
        out, states = ssm_triton.mamba3_siso_step(**token(t, i), Input_States=states, inplace=True)
        outs.append(out)
    assert_close(scan, want, torch.bfloat16, "scan")
    assert_close(torch.stack(outs, 1), want, torch.bfloat16, "steps")


@SMALL
@given(b=st.integers(1, 2), L=st.integers(2, 6), heads=st.sampled_from([(1, 1), (4, 2)]), P=st.sampled_from([3, 8]),
       N=st.sampled_from([4, 16]), seed=seeds(), options=st.booleans(), mimo=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), data=st.data())
def test_planned_steps_reused_and_not_across_layouts(device, b, L, heads, P, N, seed, options, mimo, dtype, data):
    """Steps take an op plan per input signature (``ops/_plans.py``): the first step makes it, the next reuse it
    with new values; halfway the inputs change layout (the step's slices of the sequence, strided when b > 1,
    read where they lie, and angles shared by the heads through a stride of 0, become packed copies): another plan. In place, the caller's states are updated; otherwise each step returns
    new states (copies of the given ones, or zeros for the first step given none) and leaves the given ones as they
    were. Every step's output and the final states against the float64 loop, so a plan that launches with a stale
    or misplaced argument, or that updates or returns the wrong states, fails."""
    from ssm_triton.ops import mamba3 as ops
    from ssm_triton.reference import mamba3_mimo_loop

    H, Hqk = heads
    way = data.draw(st.sampled_from(["inplace", "copies", "from zeros"]), label="states")
    S = data.draw(st.integers(0, N // 2), label="S")
    R = data.draw(st.sampled_from([1, 2]), label="R") if mimo else 1
    f32 = torch.float32
    r = lambda shape, k, scale=1.0, dt=dtype: normal(shape, seed + k, device, dt, scale)  # noqa: E731
    dt_ = uniform((b, H, L), 0.01, 0.8, seed + 4, device, f32)
    lead = (R,) if mimo else ()
    # angles shared by the heads: an expanded view, read through a head stride of 0 (the Mamba3 block's layout)
    shared = data.draw(st.booleans(), label="angles shared")
    angles = r((b, L, 1, S), 8).expand(b, L, H, S) if shared else r((b, L, H, S), 8)
    t = dict(Q=r((b, L, *lead, Hqk, N), 0), K=r((b, L, *lead, Hqk, N), 1), V=r((b, L, H, P), 2),
             ADT=-uniform((b, H, L), 0.05, 1.5, seed + 3, device, f32) * dt_, DT=dt_, Trap=r((b, H, L), 5, 2.0, f32),
             Q_bias=r((H, *lead, N), 6, 0.3, f32), K_bias=r((H, *lead, N), 7, 0.3, f32), Angles=angles)
    if mimo:
        t.update(MIMO_V=r((H, R, P), 9, 1.0, f32), MIMO_Z=r((H, R, P), 10, 1.0, f32), MIMO_Out=r((H, R, P), 11, 1.0, f32))
    if options:
        t.update(D=r((H,), 12, 1.0, f32), Z=r((b, L, H, P), 13))
    states = (uniform((b, H, S), 0.0, 2 * math.pi, seed + 14, device, f32), r((b, H, P, N), 15, 0.5, f32),
              r((b, *lead, H, N), 16, 1.0, f32 if not mimo else dtype), r((b, H, P), 17))
    if way == "from zeros":
        states = tuple(torch.zeros_like(s) for s in states)
    wide = {k: (v.double().cpu() if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
    start = tuple(s.double().cpu() for s in states)
    want, want_states = (mamba3_mimo_loop if mimo else mamba3_siso_loop)(**wide, Input_States=start)
    plans = ops._MIMO_STEP_PLANS if mimo else ops._STEP_PLANS
    plans._seen.clear()   # an earlier example may have left this very signature's plan
    step_fn = ssm_triton.mamba3_mimo_step if mimo else ssm_triton.mamba3_siso_step
    held = tuple(s.clone() for s in states)
    outs = []
    for i in range(L):
        step = {k: (v[:, i] if k in ("Q", "K", "V", "Z", "Angles") else v[:, :, i] if k in ("ADT", "DT", "Trap") else v)
                for k, v in t.items()}
        if i >= L // 2:
            step = {k: (v.contiguous() if isinstance(v, torch.Tensor) else v) for k, v in step.items()}
        if way == "inplace":
            out, new = step_fn(**step, Input_States=held, inplace=True)
            assert all(a is c for a, c in zip(new, held))
        else:
            given = None if way == "from zeros" and i == 0 else held
            if given is None:   # twice: the second call takes the plan the first made
                step_fn(**step, Input_States=None)
            before = tuple(s.clone() for s in held)
            out, new = step_fn(**step, Input_States=given)
            assert new[3] is step["V"] and all(a is not c for a, c in zip(new[:3], held[:3]))
            assert all(torch.equal(a, c) for a, c in zip(held, before))   # the given states are left as they were
            held = tuple(new)
        outs.append(out)
    assert_close(torch.stack(outs, 1), want, dtype, "stepped out")
    assert_angle_close(held[0], want_states[0], f32, "stepped angle")
    for name, g, w in zip(STATE_NAMES[1:], held[1:], want_states[1:]):
        assert_close(g, w, dtype, f"stepped {name}")
    assert len(plans._seen) >= 1 and all(p for p in plans._seen.values())


STEP_GOOD = dict(Q=torch.ones(1, 2, 8), K=torch.ones(1, 2, 8), V=torch.ones(1, 4, 3), ADT=-torch.ones(1, 4),
                 DT=torch.ones(1, 4), Trap=torch.ones(1, 4), Q_bias=torch.ones(4, 8), K_bias=torch.ones(4, 8),
                 Angles=torch.ones(1, 4, 2))


@pytest.mark.parametrize("override, exc, match", [
    (dict(V=torch.ones(1, 4, 3, 1)), ValueError, r"V must be 3-D \(batch, H, P\)"),
    (dict(Q=torch.ones(1, 3, 8), K=torch.ones(1, 3, 8)), ValueError, "Hqk = 3 heads"),
    (dict(K=torch.ones(1, 2, 6)), ValueError, r"K must have shape \(batch, Hqk, N\) as Q"),
    (dict(DT=torch.ones(1, 3)), ValueError, r"DT must have shape \(batch, H\)"),
    (dict(Angles=torch.ones(1, 4, 5)), ValueError, "2 S must be at most N"),
    (dict(Z=torch.ones(1, 4, 2)), ValueError, "Z must have shape"),
    (dict(inplace=True), ValueError, "inplace=True needs Input_States"),
    (dict(Input_States=(torch.ones(1, 4, 2), torch.ones(1, 4, 8, 3).transpose(2, 3), torch.ones(1, 4, 8),
                        torch.ones(1, 4, 3)), inplace=True), ValueError, r"Input_States\[1\] \(ssm\) must be contiguous"),
    (dict(Input_States=(torch.ones(1, 4, 2), torch.ones(1, 4, 3, 8), torch.ones(1, 4, 7), torch.ones(1, 4, 3))),
     ValueError, r"Input_States\[2\] \(k\) must have shape"),
])
def test_step_rejects_bad_input_with_the_argument_named(device, override, exc, match):
    args = on(device, {**STEP_GOOD, **override})
    if "Input_States" in override:
        args["Input_States"] = tuple(s.to(device) for s in override["Input_States"])
    with pytest.raises(exc, match=match):
        ssm_triton.mamba3_siso_step(**args)


@pytest.mark.parametrize("override, match", [
    (dict(dd_A=torch.ones(1, 3)), r"dd_A must have shape \(batch, H\)"),
    (dict(dt_bias=torch.ones(3)), r"dt_bias must have shape \(H,\)"),
    (dict(K_norm=torch.ones(8, 1)), r"K_norm must be 1-D"),
    (dict(Q_norm=torch.ones(7)), r"Q_norm must have shape \(N,\)"),
    (dict(eps=-1.0), "A_floor and eps must be floats >= 0"),
])
def test_block_step_rejects_bad_input_with_the_argument_named(device, override, match):
    """The Mamba3 block's one-launch step (internal) names its own arguments: the logits, not ADT and DT."""
    from ssm_triton.ops.mamba3 import siso_block_step
    good = {k: v for k, v in STEP_GOOD.items() if k not in ("ADT", "DT")}
    args = dict(good, dd_A=torch.ones(1, 4), dd_dt=torch.ones(1, 4), D=None, Z=None, dt_bias=torch.ones(4),
                Q_norm=torch.ones(8), K_norm=torch.ones(8), A_floor=1e-4, eps=1e-5)
    args = on(device, {**args, **override})
    args["states"] = tuple(torch.zeros(s, device=device) for s in ((1, 4, 2), (1, 4, 3, 8), (1, 4, 8), (1, 4, 3)))
    with pytest.raises(ValueError, match=match):
        siso_block_step(**args)


# ---- the MIMO decode step ----

@SMALL
@given(b=st.integers(1, 2), L=st.integers(1, 6), heads=st.sampled_from([(1, 1), (4, 2)]), R=st.sampled_from([1, 2, 4]),
       P=st.sampled_from([3, 8, 70]), N=st.sampled_from([2, 6, 16]), seed=seeds(), options=st.booleans(),
       with_out=st.booleans(), inplace=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       data=st.data())
def test_mimo_steps_equal_the_float64_loop(device, b, L, heads, R, P, N, seed, options, with_out, inplace, dtype, data):
    """Stepping a sequence through mamba3_mimo_step gives the MIMO loop's outputs (summed over ranks by MIMO_Out,
    or per rank) and final states; in place, the caller's tensors hold them."""
    from ssm_triton.reference import mamba3_mimo_loop

    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2), label="S")
    r = lambda shape, k, scale=1.0, dt=dtype: normal(shape, seed + k, device, dt, scale)  # noqa: E731
    f32 = torch.float32
    dt_ = uniform((b, H, L), 0.01, 0.8, seed + 4, device, f32)
    t = dict(Q=r((b, L, R, Hqk, N), 0), K=r((b, L, R, Hqk, N), 1), V=r((b, L, H, P), 2),
             ADT=-uniform((b, H, L), 0.05, 1.5, seed + 3, device, f32) * dt_, DT=dt_, Trap=r((b, H, L), 5, 2.0, f32),
             Q_bias=r((H, R, N), 6, 0.3, f32), K_bias=r((H, R, N), 7, 0.3, f32), MIMO_V=r((H, R, P), 8, 1.0, f32),
             MIMO_Z=r((H, R, P), 9, 1.0, f32), MIMO_Out=r((H, R, P), 10, 1.0, f32) if with_out else None,
             Angles=r((b, L, H, S), 11, 1.0, f32))
    if options:
        t.update(D=r((H,), 12, 1.0, f32), Z=r((b, L, H, P), 13))
        states = (uniform((b, H, S), 0.0, 2 * math.pi, seed + 14, device, f32), r((b, H, P, N), 15, 0.5, f32),
                  r((b, R, H, N), 16, 1.0, f32), r((b, H, P), 17))
    else:
        states = (torch.zeros(b, H, S, device=device), torch.zeros(b, H, P, N, device=device),
                  torch.zeros(b, R, H, N, device=device), torch.zeros(b, H, P, device=device, dtype=dtype))
    want, want_states = mamba3_mimo_loop(**{k: (v.double().cpu() if isinstance(v, torch.Tensor) else v) for k, v in t.items()},
                                         Input_States=tuple(s.double().cpu() for s in states))
    held = tuple(s.clone() for s in states)
    current, outs = held, []
    for i in range(L):
        step = {k: (v[:, i] if k in ("Q", "K", "V", "Z", "Angles") else v[:, :, i] if k in ("ADT", "DT", "Trap") else v)
                for k, v in t.items()}
        out, new = ssm_triton.mamba3_mimo_step(**step, Input_States=current, inplace=inplace)
        assert out.dtype == dtype and out.shape == ((b, H, P) if with_out else (b, R, H, P))
        if inplace:
            assert all(a is c for a, c in zip(new, held))
        outs.append(out)
        current = tuple(new)
    assert_close(torch.stack(outs, 1), want, dtype, "stepped out")
    assert_angle_close(current[0], want_states[0], torch.float32, "stepped angle")
    for name, g, w in zip(("ssm", "k", "x"), current[1:], want_states[1:]):
        assert_close(g, w, dtype, f"stepped {name}")


@pytest.mark.parametrize("override, exc, match", [
    (dict(Q=torch.ones(1, 17, 2, 8), K=torch.ones(1, 17, 2, 8)), ValueError, "rank R = 17"),
    (dict(Q=torch.ones(1, 2, 2, 7), K=torch.ones(1, 2, 2, 7)), ValueError, "must be even"),
    (dict(MIMO_V=torch.ones(4, 3, 3)), ValueError, r"MIMO_V must have shape \(H, R, P\)"),
    (dict(Q_bias=torch.ones(4, 8)), ValueError, r"Q_bias must be 3-D \(H, R, N\)"),
    (dict(Angles=torch.ones(1, 4, 5)), ValueError, "2 S must be at most N"),
    (dict(inplace=True), ValueError, "inplace=True needs Input_States"),
])
def test_mimo_step_rejects_bad_input_with_the_argument_named(device, override, exc, match):
    good = dict(Q=torch.ones(1, 2, 2, 8), K=torch.ones(1, 2, 2, 8), V=torch.ones(1, 4, 3), ADT=-torch.ones(1, 4),
                DT=torch.ones(1, 4), Trap=torch.ones(1, 4), Q_bias=torch.ones(4, 2, 8), K_bias=torch.ones(4, 2, 8),
                MIMO_V=torch.ones(4, 2, 3), MIMO_Z=torch.ones(4, 2, 3), MIMO_Out=torch.ones(4, 2, 3),
                Angles=torch.ones(1, 4, 2))
    with pytest.raises(exc, match=match):
        ssm_triton.mamba3_mimo_step(**on(device, {**good, **override}))


def test_deterministic_gradients_repeat_bit_for_bit(device, monkeypatch):
    """deterministic=True, or torch's deterministic setting, reaches the SSD's pair stage (no atomics there), and
    two backward passes then give identical gradients; the default keeps the atomics."""
    from ssm_triton.kernels import replay
    from ssm_triton.kernels.mamba3 import launch

    seen = []
    pair_grads = launch.ssd.pair_grads

    def spy(*args, **kw):
        seen.append(args[12])   # pair_grads(..., heads, deterministic, diag=...)
        return pair_grads(*args, **kw)

    monkeypatch.setattr(launch.ssd, "pair_grads", spy)
    # the spy watches the launcher on every call: a replay (kernels/replay.py) of the first would skip it
    monkeypatch.setattr(replay, "ENABLED", False)
    t = make(device, 2, 37, 4, 2, 5, 8, 3, 7, True, torch.float32)

    def grads(**kw):
        x = leaves(t)
        out = ssm_triton.mamba3_siso_combined(**x, chunk_size=16, **kw)
        return torch.autograd.grad((out * out).sum(), list(flat(x).values()))

    for a, b in zip(grads(deterministic=True), grads(deterministic=True)):
        assert torch.equal(a, b)
    grads()
    torch.use_deterministic_algorithms(True)
    try:
        grads()
    finally:
        torch.use_deterministic_algorithms(False)
    assert seen == [True, True, False, True]
    with pytest.raises(TypeError, match="deterministic must be a bool"):
        ssm_triton.mamba3_siso_combined(**t, deterministic="yes")


@examples(6)
@given(L=st.integers(1, 60), heads=st.sampled_from([(2, 1), (3, 3)]), P=st.sampled_from([3, 8, 20]), seed=seeds(),
       options=st.booleans(), segments=st.sampled_from([1, 2, 3]), chunk=st.sampled_from([16, 32]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_training_takes_the_one_launch_forward(device, L, heads, P, seed, options, segments, chunk, dtype):
    """A call that records a graph runs its scan in the SSD's one-launch forward when the training route is on
    (``launch.FUSED_TRAIN``): the kernel keeps each chunk's entering state and the output before the gate for the
    backward (the steps' rows are the prep kernel's), whole rows or in segments that start on a chunk. Outputs,
    final states and every gradient against the float64 loop."""
    from ssm_triton.kernels.ssd import fused
    from builders import one_launch_training
    H, Hqk = heads
    t = make(device, 1, L, H, Hqk, P, 8, 3, seed, options, dtype)
    with one_launch_training(segments, "STEPS_GIVEN", "KEEP") as launched:
        nseg = fused.segments(1, L, H, P, 1, ssm_triton.INTERPRET, chunk)[0]
        check_against_loop(device, t, chunk, dtype, seed)
    # the summary launch keeps nothing; the outputs' launch keeps what the backward reads
    assert launched == ([(True, False)] if nseg > 1 else []) + [(True, True)]
