"""``mamba3_mimo`` (Mamba-3's MIMO chunked scan) against the float64 step-by-step loop: values, final states and
every gradient; the decode step continuing from the scan's states; bad input."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import mamba3_mimo_loop
from ssm_triton.tolerance import assert_close, tolerance
from builders import walking_backward, assert_angle_close, assert_mamba3_matches, mamba3_leaves, mamba3_tensors
from strategies import examples, normal, on, seeds, uniform

STATE_NAMES = ("angle", "ssm", "k", "x")


def make(device, b, L, R, H, Hqk, P, N, S, seed, options, with_out, dtype):
    """Inputs as a Mamba3 block feeds them: DT positive, ADT = A DT with A < 0, small biases."""
    r = lambda shape, k, scale=1.0, dt=dtype: normal(shape, seed + k, device, dt, scale)  # noqa: E731
    f32 = torch.float32
    dt = uniform((b, H, L), 0.01, 0.8, seed + 4, device, f32)
    t = dict(Q=r((b, L, R, Hqk, N), 0), K=r((b, L, R, Hqk, N), 1), V=r((b, L, H, P), 2),
             ADT=-uniform((b, H, L), 0.05, 1.5, seed + 3, device, f32) * dt, DT=dt, Trap=r((b, H, L), 5, 2.0, f32),
             Q_bias=r((H, R, N), 6, 0.3, f32), K_bias=r((H, R, N), 7, 0.3, f32), MIMO_V=r((H, R, P), 8, 1.0, f32),
             MIMO_Z=r((H, R, P), 9, 1.0, f32) if options else None,
             MIMO_Out=r((H, R, P), 10, 0.5, f32) if with_out else None,
             Angles=r((b, L, H, S), 11))
    if options:
        t.update(D=r((H,), 12, 1.0, f32), Z=r((b, L, H, P), 13),
                 Input_States=(uniform((b, H, S), 0.0, 2 * math.pi, seed + 14, device, f32),
                               r((b, H, P, N), 15, 0.5, f32), r((b, R, H, N), 16, 1.0, f32), r((b, H, P), 17)))
    return t


def _tensors(t: dict) -> dict:
    return mamba3_tensors(t, STATE_NAMES)


def _leaves(t: dict, cast=None) -> dict:
    return mamba3_leaves(t, bool(cast))


@examples(5)   # 10 took 97 s of CI (2 cores, 2026-12-04); the gpu profile keeps its 100
@given(b=st.integers(1, 2), L=st.one_of(st.integers(1, 24), st.just(17)), R=st.sampled_from([1, 2, 3, 4]),
       heads=st.sampled_from([(1, 1), (2, 1), (4, 2)]), P=st.sampled_from([1, 5, 8]), N=st.sampled_from([2, 6, 16]),
       seed=seeds(), options=st.booleans(), with_out=st.booleans(), chunk=st.sampled_from([4, 8, 16]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), data=st.data())
def test_matches_the_loop_with_every_gradient(device, b, L, R, heads, P, N, seed, options, with_out, chunk, dtype,
                                              data):
    """Outputs, final states and every gradient against the float64 loop; the output backward's and the prep
    forward's sums merged across the ranks or taken one at a time (``SSM_TRITON_MIMO_OUT_MERGE``,
    ``SSM_TRITON_MIMO_PREP_MERGE``), the output backward walking one to three step blocks a program
    (``SSM_TRITON_MIMO_OUT_ITERS``), reading the next block's inputs ahead or not (``SSM_TRITON_MIMO_OUT_AHEAD``),
    the prep kernels' cos / sin libdevice's or the SFU's (``SSM_TRITON_MIMO_PREP_TRIG``, on a GPU), the prep
    backward a program per rank or every rank in one (``SSM_TRITON_MIMO_PREP_BWD_RANKS``)."""
    from ssm_triton.kernels.mamba3 import mimo as terms, mimo_out, mimo_prep_bwd
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2), label="S")
    before = (mimo_out.OUT_MERGE, terms.PREP_MERGE, mimo_out.OUT_ITERS, mimo_out.OUT_AHEAD, terms.PREP_TRIG,
              mimo_prep_bwd.PREP_BWD_RANKS)
    mimo_prep_bwd.PREP_BWD_RANKS = "1" if data.draw(st.booleans(), label="prep_bwd_ranks") else "0"
    mimo_out.OUT_MERGE = "1" if data.draw(st.booleans(), label="out_merge") else "0"
    terms.PREP_MERGE = "1" if data.draw(st.booleans(), label="prep_merge") else "0"
    mimo_out.OUT_ITERS = str(data.draw(st.integers(1, 3), label="out_iters"))   # (the interpreter's default: 2)
    mimo_out.OUT_AHEAD = "1" if data.draw(st.booleans(), label="out_ahead") else "0"
    terms.PREP_TRIG = "fast" if data.draw(st.booleans(), label="prep_trig") else ""   # the SFU's forms on a GPU
    try:
        check_against_loop(make(device, b, L, R, H, Hqk, P, N, S, seed, options, with_out, dtype), chunk, dtype, seed)
    finally:
        (mimo_out.OUT_MERGE, terms.PREP_MERGE, mimo_out.OUT_ITERS, mimo_out.OUT_AHEAD, terms.PREP_TRIG,
         mimo_prep_bwd.PREP_BWD_RANKS) = before


@pytest.mark.parametrize("merge", [False, True])
@examples(1)
@given(L=st.integers(9, 24), R=st.sampled_from([2, 3, 4]), options=st.booleans(), with_out=st.booleans(),
       seed=seeds())
def test_output_backward_reading_ahead_matches_the_loop(device, merge, L, R, options, with_out, seed):
    """The output backward reading each next step block's inputs (and MIMO_V's rows once a program) while a block
    computes (``SSM_TRITON_MIMO_OUT_AHEAD``), over two blocks a program, every gradient against the float64 loop."""
    from ssm_triton.kernels.mamba3 import mimo_out
    before = mimo_out.OUT_AHEAD, mimo_out.OUT_MERGE, mimo_out.OUT_ITERS
    mimo_out.OUT_AHEAD, mimo_out.OUT_MERGE, mimo_out.OUT_ITERS = "1", "1" if merge else "0", "2"
    try:
        check_against_loop(make(device, 1, L, R, 2, 1, 8, 16, 4, seed, options, with_out, torch.float32), 8,
                           torch.float32, seed)
    finally:
        mimo_out.OUT_AHEAD, mimo_out.OUT_MERGE, mimo_out.OUT_ITERS = before


@examples(3)
@given(b=st.integers(1, 2), L=st.integers(1, 20), R=st.sampled_from([1, 2, 4]), heads=st.sampled_from([(1, 1), (2, 1)]),
       P=st.sampled_from([1, 5, 8]), N=st.sampled_from([2, 6, 20]), seed=seeds(), options=st.booleans(),
       with_out=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]), data=st.data())
def test_backward_in_one_launch(device, b, L, R, heads, P, N, seed, options, with_out, dtype, data):
    """``SSM_TRITON_WALK_BWD=1``: the rank-steps' scan's backward in one launch (``walk_bwd.py``, chunks of 32
    rank-steps walked 16 at a time, rows in one or two segments side by side, loads a block ahead or not): outputs,
    final states and every gradient against the float64 loop, the launch seen."""
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2), label="S")
    chunk = 32 // R
    segments = data.draw(st.integers(1, 2), label="segments")
    ahead = data.draw(st.booleans(), label="ahead")
    frec = data.draw(st.booleans(), label="frec")
    # 32 rank-steps a chunk, in halves
    with walking_backward(sub=16, segments=segments, ahead=ahead, frec=frec) as launched:
        check_against_loop(make(device, b, L, R, H, Hqk, P, N, S, seed, options, with_out, dtype), chunk, dtype, seed)
    nc = -(-L * R // 32)
    kq = torch.float32 if dtype == torch.float32 else torch.bfloat16   # the per-head dk, dq: bf16 for 16-bit cores
    assert launched == [(32, 16, -(-nc // -(-nc // segments)), kq, kq, ahead)]


def check_against_loop(t, chunk, dtype, seed):
    """Outputs, final states and every gradient of ``mamba3_mimo`` against the float64 loop."""
    b, L, H, P = t["V"].shape
    R = t["Q"].shape[2]
    x = _leaves(t)
    out, finals = ssm_triton.mamba3_mimo(**{k: v for k, v in x.items() if k != "Input_States"}, chunk_size=chunk,
                                         return_state=True, Input_States=x.get("Input_States"))
    x64 = _leaves(t, cast=True)
    want, want_states = mamba3_mimo_loop(**x64)
    assert out.dtype == dtype and out.shape == ((b, L, H, P) if t["MIMO_Out"] is not None else (b, L, R, H, P))
    assert_mamba3_matches(out, finals, want, want_states, x, x64, dtype, seed, STATE_NAMES)


@examples(4)
@given(b=st.integers(1, 2), L=st.integers(1, 20), R=st.sampled_from([1, 2, 4]),
       heads=st.sampled_from([(1, 1), (4, 2)]), P=st.sampled_from([3, 8]), N=st.sampled_from([4, 16]), seed=seeds(),
       options=st.booleans(), with_out=st.booleans(), chunk=st.sampled_from([4, 16]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), data=st.data())
def test_the_common_call_is_one_autograd_node(device, b, L, R, heads, P, N, seed, options, with_out, chunk, dtype,
                                              data):
    """Unpacked rows without input or final states (a training call's usual form) run as one op: the output's
    graph node has only the inputs behind it, and the output and every gradient match the float64 loop."""
    H, Hqk = heads
    S = data.draw(st.integers(1, N // 2), label="S")
    t = make(device, b, L, R, H, Hqk, P, N, S, seed, options, with_out, dtype)
    t.pop("Input_States", None)
    x = _leaves(t)
    out = ssm_triton.mamba3_mimo(**x, chunk_size=chunk)
    assert all(n is None or type(n).__name__ == "AccumulateGrad" for n, _ in out.grad_fn.next_functions)
    x64 = _leaves(t, cast=True)
    want, _ = mamba3_mimo_loop(**x64)
    assert_close(out, want, dtype, "out", computed_operands=True)
    w = normal(want.shape, seed + 20, device)
    names = [n for n, v in x.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    got = torch.autograd.grad((out.double() * w).sum(), [x[n] for n in names])
    exp = torch.autograd.grad((want * w).sum(), [x64[n] for n in names])
    scale = max(float(e.abs().max()) for e in exp if e.numel())
    for name, g, e in zip(names, got, exp):
        assert g.dtype == x[name].dtype, name
        if not bool(e.any()):   # zero by structure (ADT's at L = 1): fp32 rounding of cancelling sums, bounded
            assert float(g.double().abs().max()) / scale <= tolerance(dtype, True), name
            continue
        assert_close(g, e, dtype, f"d {name}", computed_operands=True)


def test_a_short_cancelling_product_in_bf16(device):
    """The case hypothesis found on the H200 (2026-12-02; N = 2, no turned pairs, one rank, bf16): the stages
    multiply q~ and k~ rounded to bf16, and a two-term product that nearly cancels lost 5% of an output until
    the in-step block took back the stages' own rounded product rather than the exact one. (The interpreter
    emulates the tensor cores' bf16 products, so CPU runs check it too.)"""
    t = make(device, 2, 22, 1, 2, 1, 8, 2, 0, 1_280_793_308, True, True, torch.bfloat16)
    x = _leaves(t)
    out, finals = ssm_triton.mamba3_mimo(**{k: v for k, v in x.items() if k != "Input_States"}, chunk_size=8,
                                         return_state=True, Input_States=x.get("Input_States"))
    x64 = _leaves(t, cast=True)
    want, want_states = mamba3_mimo_loop(**x64)
    assert_mamba3_matches(out, finals, want, want_states, x, x64, torch.bfloat16, 1_280_793_308, STATE_NAMES)


def test_the_prep_kernels_with_rows_reloaded(device, monkeypatch):
    """The prep kernels hold every rank's Q, K rows in registers only for few ranks (``HOIST_RANKS``); more ranks
    take the paths that reload them, checked here by lowering the bound below R."""
    from ssm_triton.kernels.mamba3 import mimo as terms
    monkeypatch.setattr(terms, "HOIST_RANKS", 0)
    seed = 11
    t = make(device, 1, 13, 3, 4, 2, 5, 8, 3, seed, True, True, torch.float32)
    x = _leaves(t)
    out, finals = ssm_triton.mamba3_mimo(**{k: v for k, v in x.items() if k != "Input_States"}, chunk_size=4,
                                         return_state=True, Input_States=x.get("Input_States"))
    x64 = _leaves(t, cast=True)
    want, want_states = mamba3_mimo_loop(**x64)
    assert_mamba3_matches(out, finals, want, want_states, x, x64, torch.float32, seed, STATE_NAMES)


@examples(2)
@given(R=st.sampled_from([1, 3, 4]), heads=st.sampled_from([(2, 1), (4, 2)]), N=st.sampled_from([6, 8]),
       seed=seeds(), data=st.data())
def test_prep_backward_with_every_rank_in_a_program(device, R, heads, N, seed, data):
    """``SSM_TRITON_MIMO_PREP_BWD_RANKS=1`` (kernels/mamba3/mimo_prep_bwd.py): the prep backward's programs hold
    every rank (ranks a tensor axis, padded past R), the angle's gradient summed over them in the program, at a
    column block the tuner may pick (1 pair to all of them); every gradient against the float64 loop."""
    from ssm_triton.kernels import tuning
    from ssm_triton.kernels.mamba3 import mimo as terms, mimo_prep_bwd
    H, Hqk = heads
    S = data.draw(st.integers(1, N // 2), label="S")
    pairs = data.draw(st.sampled_from([1, 2, 4]), label="BLOCK_H")
    t = make(device, 2, 11, R, H, Hqk, 3, N, S, seed, True, True, torch.float32)
    x = _leaves(t)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mimo_prep_bwd, "PREP_BWD_RANKS", "1")
        tuning.pin(terms.prep_bwd_ranks_kernel.name, BLOCK_H=pairs)
        try:
            out, finals = ssm_triton.mamba3_mimo(**{k: v for k, v in x.items() if k != "Input_States"}, chunk_size=4,
                                                 return_state=True, Input_States=x.get("Input_States"))
            x64 = _leaves(t, cast=True)
            want, want_states = mamba3_mimo_loop(**x64)
            # the backward runs in here, under the switch and the pin
            assert_mamba3_matches(out, finals, want, want_states, x, x64, torch.float32, seed, STATE_NAMES)
        finally:
            tuning.unpin(terms.prep_bwd_ranks_kernel.name)


@pytest.mark.parametrize("L, R, heads", [(1, 2, (2, 1)), (1, 3, (4, 2)), (2, 4, (2, 2))])
def test_short_sequences_with_ranks_and_heads(device, L, R, heads):
    """One or two steps, several ranks and heads: broadcasting over a length-1 axis can leave the ranks and
    heads swapped in memory, which the kernels must not read as the pseudo-step order."""
    H, Hqk = heads
    t = make(device, 2, L, R, H, Hqk, 3, 8, 2, 7, True, True, torch.float32)
    out, finals = ssm_triton.mamba3_mimo(**{k: v for k, v in t.items() if k != "Input_States"}, return_state=True,
                                         Input_States=t["Input_States"])
    want, want_states = mamba3_mimo_loop(**_leaves(t, cast=True))
    assert_close(out, want, torch.float32, "out")
    assert_close(finals[1], want_states[1], torch.float32, "final ssm")


@examples(4)
@given(L=st.integers(2, 12), R=st.sampled_from([1, 2, 4]), seed=seeds(), inplace=st.booleans())
def test_decode_steps_continue_the_scan(device, L, R, seed, inplace):
    """A prefill by the scan, then decode steps from its final states, gives the scan of the whole sequence."""
    b, H, Hqk, P, N, S = 2, 2, 1, 4, 8, 2
    t = make(device, b, L, R, H, Hqk, P, N, S, seed, True, True, torch.float32)
    t.pop("Input_States")
    want = ssm_triton.mamba3_mimo(**t, chunk_size=4)
    cut = L // 2
    head = {k: (v[:, :cut] if k in ("Q", "K", "V", "Angles", "Z") else v[..., :cut] if k in ("ADT", "DT", "Trap")
                else v) for k, v in t.items()}
    out, states = ssm_triton.mamba3_mimo(**head, chunk_size=4, return_state=True)
    outs = [out]
    states = [s.detach().contiguous() for s in states]
    for i in range(cut, L):
        tok = {k: (v[:, i] if k in ("Q", "K", "V", "Angles", "Z") else v[..., i] if k in ("ADT", "DT", "Trap") else v)
               for k, v in t.items()}
        y, states = ssm_triton.mamba3_mimo_step(**tok, Input_States=tuple(states), inplace=inplace)
        outs.append(y[:, None])
    assert_close(torch.cat(outs, 1), want.double(), torch.float32, "prefill + steps")


@examples(4)
@given(L=st.integers(2, 30), cuts=st.lists(st.floats(0.05, 0.95), min_size=1, max_size=3), seed=seeds(),
       R=st.sampled_from([1, 2, 3]), heads=st.sampled_from([(1, 1), (2, 1)]), options=st.booleans())
def test_packed_row_equals_each_sequence_alone(device, L, cuts, seed, R, heads, options):
    """cu_seqlens: outputs, per-sequence final states, and every input's gradient (through the outputs and every
    final state) equal each sequence run on its own, from its own input states with ``options``."""
    H, Hqk = heads
    bounds = sorted({0, L, *(min(L - 1, max(1, int(c * L))) for c in cuts)})
    n = len(bounds) - 1
    t = make(device, 1, L, R, H, Hqk, 3, 8, 2, seed, options, True, torch.float32)
    if options:   # one input state per sequence
        t["Input_States"] = tuple(normal((n, *s.shape[1:]), seed + 60 + i, device, torch.float32)
                                  for i, s in enumerate(t["Input_States"]))
    cu = torch.tensor(bounds, device=device)
    x = _leaves(t)
    out, finals = ssm_triton.mamba3_mimo(**x, chunk_size=4, return_state=True, cu_seqlens=cu)
    assert out.shape == (1, L, H, 3) and [f.shape[0] for f in finals] == [n] * 4
    g = normal(out.shape, seed + 40, device, torch.float32)
    ga, gs, gk, gx = (normal(finals[i].shape, seed + 41 + i, device, torch.float32) for i in range(4))

    def loss(o, angle, ssm, k, xs):
        return (o * g).sum() + (torch.sin(angle) * ga).sum() + (ssm * gs).sum() + (k * gk).sum() + (xs * gx).sum()

    got = torch.autograd.grad(loss(out, *finals), list(_tensors(x).values()))
    alone = _leaves(t)
    total, outs = 0.0, []
    steps = ("Q", "K", "V", "Angles", "Z")
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = {k: (v[..., a:b] if k in ("ADT", "DT", "Trap") else v[:, a:b] if k in steps else v)
                for k, v in alone.items() if k != "Input_States"}
        if options:
            part["Input_States"] = tuple(st_[i:i + 1] for st_ in alone["Input_States"])
        o, f = ssm_triton.mamba3_mimo(**part, chunk_size=4, return_state=True)
        outs.append(o)
        assert_angle_close(finals[0][i], f[0][0].double(), torch.float32, f"angle of sequence {i}")
        for name, mine, theirs in zip(STATE_NAMES[1:], finals[1:], f[1:]):
            assert_close(mine[i], theirs[0].double(), torch.float32, f"{name} of sequence {i}")
        total = total + (o * g[:, a:b]).sum() + (torch.sin(f[0][0]) * ga[i]).sum() + (f[1][0] * gs[i]).sum() \
            + (f[2][0] * gk[i]).sum() + (f[3][0] * gx[i]).sum()
    assert_close(out, torch.cat(outs, 1).double(), torch.float32, "packed out")
    want = torch.autograd.grad(total, list(_tensors(alone).values()))
    for name, a, w in zip(_tensors(x), got, want):
        assert_close(a, w.double(), torch.float32, f"d {name}")


GOOD = dict(Q=torch.ones(1, 3, 2, 1, 8), K=torch.ones(1, 3, 2, 1, 8), V=torch.ones(1, 3, 2, 4), ADT=-torch.ones(1, 2, 3),
            DT=torch.ones(1, 2, 3), Trap=torch.ones(1, 2, 3), Q_bias=torch.ones(2, 2, 8), K_bias=torch.ones(2, 2, 8),
            MIMO_V=torch.ones(2, 2, 4), MIMO_Z=torch.ones(2, 2, 4), MIMO_Out=torch.ones(2, 2, 4),
            Angles=torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize("override, exc, match", [
    (dict(V=torch.ones(1, 3, 2)), ValueError, r"V must be 4-D \(batch, L, H, P\)"),
    (dict(Q=torch.ones(1, 3, 2, 8)), ValueError, r"Q must be 5-D \(batch, L, R, Hqk, N\)"),
    (dict(Q=torch.ones(1, 3, 17, 1, 8), K=torch.ones(1, 3, 17, 1, 8)), ValueError, "rank R = 17"),
    (dict(Q=torch.ones(1, 3, 2, 3, 8), K=torch.ones(1, 3, 2, 3, 8)), ValueError, "Hqk = 3 heads"),
    (dict(Q=torch.ones(1, 3, 2, 1, 7), K=torch.ones(1, 3, 2, 1, 7)), ValueError, "N = 7"),
    (dict(K=torch.ones(1, 3, 2, 1, 6)), ValueError, r"K must have shape \(batch, L, R, Hqk, N\) as Q"),
    (dict(DT=torch.ones(1, 3, 2)), ValueError, r"DT must have shape \(batch, H, L\)"),
    (dict(Q_bias=torch.ones(2, 8)), ValueError, r"Q_bias must be 3-D"),
    (dict(MIMO_V=None), ValueError, "MIMO_V .* is required"),
    (dict(MIMO_Z=None, Z=torch.ones(1, 3, 2, 4)), ValueError, "MIMO_Z .* is required when Z is given"),
    (dict(MIMO_Out=torch.ones(2, 3, 4)), ValueError, r"MIMO_Out must have shape \(H, R, P\)"),
    (dict(Angles=torch.ones(1, 3, 2, 5)), ValueError, "2 S must be at most N"),
    (dict(rotary_dim_divisor=2), ValueError, "rotary_dim_divisor = 2"),
    (dict(chunk_size=12), ValueError, "chunk_size must be one of"),
    (dict(V=torch.ones(1, 3, 2, 4, dtype=torch.float64)), TypeError, "V must have dtype"),
    (dict(Input_States=(torch.ones(1, 2, 2), torch.ones(1, 2, 4, 8), torch.ones(1, 2, 8), torch.ones(1, 2, 4))),
     ValueError, r"Input_States\[2\] \(k\) must be 4-D"),
    (dict(cu_seqlens=torch.tensor([0, 1, 3]), Input_States=(torch.ones(1, 2, 2), torch.ones(1, 2, 4, 8),
                                                            torch.ones(1, 2, 2, 8), torch.ones(1, 2, 4))),
     ValueError, r"Input_States\[0\] \(angle\) must have shape \(sequences, H, S\)"),
    (dict(cu_seqlens=torch.tensor([[0, 3]])), ValueError, "cu_seqlens must be 1-D"),
    (dict(K=torch.ones(1, 3, 2, 1, 8, device="meta")), ValueError, "K is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(device, override, exc, match):
    args = on(device, {**GOOD, **override})
    if "Input_States" in override:
        args["Input_States"] = tuple(s.to(device) for s in override["Input_States"])
    with pytest.raises(exc, match=match):
        ssm_triton.mamba3_mimo(**args)


@examples(12)
@given(b=st.integers(1, 2), L=st.integers(1, 40), S=st.integers(1, 3), rate=st.sampled_from([0.1, 3.0, 400.0]),
       seed=seeds(), with_init=st.booleans(), packed=st.booleans(), data=st.data())
def test_running_angle_equals_a_float64_sum_mod_2pi(b, L, S, rate, seed, with_init, packed, data):
    """The blocked fp32/fp64 running angle against one float64 cumsum per sequence, wrapped into (-pi, pi]
    before comparing (values near 0 and 2 pi are the same angle); large rates make the sums thousands of
    radians, where a plain fp32 cumsum drifts. Runs on CPU tensors (no kernel)."""
    from ssm_triton.ops.mamba3_mimo import _running_angle
    from ssm_triton.kernels.ssd.launch import seq_idx_from_cu_seqlens
    g = torch.Generator().manual_seed(seed)
    H = 2
    b = 1 if packed else b
    inc = (torch.rand(b, L, H, S, generator=g, dtype=torch.float64) * 2 - 0.5) * rate
    cu = seq = None
    starts = [0]
    if packed:
        cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, L - 1)), max_size=3), label="cuts")) - {L})
        starts = [0] + [c for c in cuts if 0 < c < L]
        cu = torch.tensor(starts + [L], dtype=torch.int32)
        seq = seq_idx_from_cu_seqlens(cu, L)
    rows = len(starts) if packed else b
    angle0 = torch.rand(rows, H, S, generator=g, dtype=torch.float64) * 6.0 if with_init else None
    got = _running_angle(inc.float(), angle0.float() if angle0 is not None else None, cu, seq).double()
    want = torch.empty_like(inc)
    if packed:
        for i, (s0, s1) in enumerate(zip(starts, starts[1:] + [L])):
            want[:, s0:s1] = torch.cumsum(inc[:, s0:s1], 1) + (angle0[i] if angle0 is not None else 0.0)
    else:
        want = torch.cumsum(inc, 1) + (angle0[:, None] if angle0 is not None else 0.0)
    assert float(got.min()) >= 0.0 and float(got.max()) <= 2 * math.pi
    wrap = torch.remainder(got - want + math.pi, 2 * math.pi) - math.pi
    # fp32 rounding of the largest within-block sums (blocks of angle_block's steps: 4 in the interpreter, 64 where
    # it is off, as on the GPU machine; increments up to 1.5 rate). PyTorch's CPU cumsum accumulates fp32 in double,
    # so on CPU this holds the blocks, restarts and wrapping, not the fp32 drift the blocks avoid on a GPU
    from ssm_triton.kernels.mamba3.mimo import angle_block
    blk = angle_block(inc.device)
    assert float(wrap.abs().max()) < 3e-7 * (blk * 1.5 * rate + 10.0), float(wrap.abs().max())


@examples(10)
@given(b=st.integers(1, 2), L=st.integers(1, 40), S=st.integers(1, 3), rate=st.sampled_from([0.1, 3.0, 400.0]),
       seed=seeds(), with_init=st.booleans())
def test_the_running_angle_kernels_equal_a_float64_sum_mod_2pi(device, b, L, S, rate, seed, with_init):
    """The unpacked rows' running angle (kernels/mamba3/mimo.py: SISO's block sums and prefix, then one launch
    writing each block's angles) against a float64 cumsum of ``pi tanh(Angles) DT``, wrapped into (-pi, pi]; large
    rates make the sums thousands of radians."""
    from ssm_triton.kernels.mamba3 import mimo
    g = torch.Generator().manual_seed(seed)
    H = 2
    angles = torch.randn(b, L, H, S, generator=g, dtype=torch.float64)
    dt = torch.rand(b, H, L, generator=g, dtype=torch.float64) * rate
    angle0 = torch.rand(b, H, S, generator=g, dtype=torch.float64) * 6.0 if with_init else None
    got = mimo.running_angle(angles.float().to(device), dt.float().to(device),
                             angle0.float().to(device) if with_init else None).double().cpu()
    a32, dt32 = angles.float().double(), dt.float().double()   # the inputs as the kernels read them
    want = torch.cumsum(math.pi * torch.tanh(a32) * dt32.transpose(1, 2)[..., None], 1)
    if with_init:
        want = want + angle0.float().double()[:, None]
    assert got.shape == (b, L, H, S) and float(got.min()) >= 0.0 and float(got.max()) <= 2 * math.pi
    wrap = torch.remainder(got - want + math.pi, 2 * math.pi) - math.pi
    # fp32 sums inside blocks of 4 steps (increments up to pi rate), the blocks' entering angles reduced mod 2 pi
    assert float(wrap.abs().max()) < 3e-7 * (4 * math.pi * rate + 10.0 + L), float(wrap.abs().max())
    # the backward kernels against float64 autograd of the same sum
    a64, d64 = a32.clone().requires_grad_(), dt32.clone().requires_grad_()
    t0 = angle0.float().double().requires_grad_() if with_init else None
    ref = torch.cumsum(math.pi * torch.tanh(a64) * d64.transpose(1, 2)[..., None], 1) + (t0[:, None] if with_init else 0.0)
    dth = torch.randn(b, L, H, S, generator=g, dtype=torch.float64)
    want = torch.autograd.grad(ref, [a64, d64] + ([t0] if with_init else []), dth)
    got = mimo.running_angle_backward(dth.float().to(device), angles.float().to(device), dt.float().to(device))
    for name, gt, w in zip(("Angles", "DT", "angle0"), got, want):
        scale = float(w.abs().max()) + 1.0
        assert float((gt.double().cpu() - w).abs().max()) < 1e-5 * scale * (L + 1), name


@examples(4)
@given(L=st.integers(1, 24), R=st.sampled_from([1, 2, 3, 4]), chunk=st.sampled_from([4, 8, 16]), seed=seeds(),
       options=st.booleans(), segments=st.sampled_from([1, 2]), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_training_takes_the_one_launch_forward(device, L, R, chunk, seed, options, segments, dtype):
    """With the training route on (``launch.FUSED_TRAIN``), the stages over rank-steps run in the SSD's one-launch
    forward keeping each chunk's entering state (the op's chunks of rank-steps are powers of two from 16, which hold
    whole tiles of the kernel: ``fused.keeps``), whole rows or in segments: values, final states and every gradient
    against the float64 loop."""
    from ssm_triton.kernels.ssd import fused
    from builders import one_launch_training
    t = make(device, 1, L, R, 2, 1, 5, 8, 2, seed, options, True, dtype)
    with one_launch_training(segments, "RANKS", "KEEP") as launched:
        x = _leaves(t)
        out, finals = ssm_triton.mamba3_mimo(**{k: v for k, v in x.items() if k != "Input_States"}, chunk_size=chunk,
                                             return_state=True, Input_States=x.get("Input_States"))
        pseudo_chunk = min(256, max(16, 1 << (chunk * R - 1).bit_length()))   # the op's chunk of rank-steps
        nseg = fused.segments(1, L * R, 2, 5, 1, ssm_triton.INTERPRET, pseudo_chunk)[0]
    assert launched == ([(R, False)] if nseg > 1 else []) + [(R, True)]
    x64 = _leaves(t, cast=True)
    want, want_states = mamba3_mimo_loop(**x64)
    assert_mamba3_matches(out, finals, want, want_states, x, x64, dtype, seed, STATE_NAMES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("route", ["one node", "op by op", "staged forward", "fp32 ranks by switch"])
def test_rank_tensors_take_v_dtype_and_the_stages_output_stays_fp32(device, monkeypatch, dtype, route):
    """The ranks' inputs ``x`` and the gradients ``dy, dx`` the stages trade for them (each ``R`` times ``V``) are in
    ``V``'s dtype where it is 16-bit, fp32 otherwise; the stages' output ``y`` stays fp32 (the output kernel takes
    back terms the stages added, which a rounded ``y`` would keep). The one-node call, the op-by-op one (input
    states), the staged forward in place of the one-launch one, and ``SSM_TRITON_MIMO_RANKS=32`` (fp32 rank tensors,
    the route before 2026-12-05, kept to time against)."""
    from ssm_triton.kernels.mamba3 import mimo, mimo_out
    from ssm_triton.kernels.ssd import launch
    if route == "staged forward":
        monkeypatch.setattr(launch, "FUSED_TRAIN", "0")
    if route == "fp32 ranks by switch":
        monkeypatch.setattr(mimo, "RANKS", "32")
    whole = route != "op by op"
    seen = {}
    for module, name in ((mimo_out, "out_forward"), (mimo_out, "out_backward"), (mimo, "rank_inputs_backward")):
        real = getattr(module, name)

        def spy(*a, _real=real, _name=name, **kw):
            got = _real(*a, **kw)
            seen[_name] = (a[0].dtype, got[0].dtype if isinstance(got, tuple) else got.dtype)
            return got
        monkeypatch.setattr(module, name, spy)
    t = make(device, 1, 9, 2, 2, 1, 4, 8, 2, 0, not whole, True, dtype)
    x = _leaves(t)
    out = ssm_triton.mamba3_mimo(**{k: v for k, v in x.items() if k != "Input_States"}, chunk_size=4,
                                 Input_States=x.get("Input_States"))
    out.float().square().sum().backward()
    ranks = torch.float32 if route == "fp32 ranks by switch" else dtype
    assert seen["out_forward"][0] == torch.float32                 # y, from the stages
    assert seen["out_backward"][1] == ranks                        # dy, to the stages
    assert seen["rank_inputs_backward"][0] == ranks                # dx, from the stages


@examples(2)
@given(R=st.sampled_from([1, 2]), P=st.sampled_from([3, 8]), seed=seeds(), data=st.data())
def test_replays_follow_the_output_backward_switch(device, R, P, seed, data):
    """Two fwd+bwd calls of one signature, replays on, ``mimo_out.OUT_ITERS`` changed between them: the second
    call's output backward walks the new count of step blocks a program. A replay keyed without the switch issues
    the first call's launches again, right values and the switch ignored, which no comparison of values sees."""
    from ssm_triton.kernels import replay, tuning
    from ssm_triton.kernels.mamba3 import mimo_out
    first, second = data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2, unique=True), label="iters")
    t = make(device, 1, 12, R, 1, 1, P, 4, 1, seed, False, True, torch.float32)
    seen = []
    real = tuning.Kernel._launch

    def spy(self, grid, args, kw):
        if "ITERS" in args or "ITERS" in kw:
            seen.append({**args, **kw}["ITERS"])
        return real(self, grid, args, kw)

    before = mimo_out.OUT_ITERS, replay.ENABLED
    tuning.Kernel._launch = spy
    replay.ENABLED = True
    try:
        for iters in (first, second, second):
            mimo_out.OUT_ITERS = str(iters)
            seen.clear()
            x = _leaves(t)
            out = ssm_triton.mamba3_mimo(**{k: v for k, v in x.items() if k != "Input_States"}, chunk_size=4)
            out.sum().backward()
            assert seen == [iters], (iters, seen)
    finally:
        tuning.Kernel._launch = real
        mimo_out.OUT_ITERS, replay.ENABLED = before
