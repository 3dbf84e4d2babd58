"""causal_conv1d_fn / causal_conv1d_update against the float64 references: outputs and gradients over
shapes, widths, bias, activation, packed sequences and dtypes; step-by-step updates against the full
convolution; strided states; bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import causal_conv1d_torch, causal_conv1d_update_torch
from ssm_triton.tolerance import assert_close
from strategies import examples, normal, on, seeds

IO_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@given(bsz=st.integers(1, 2), dim=st.integers(1, 9), L=st.integers(1, 40), W=st.integers(2, 4), with_bias=st.booleans(),
       act=st.sampled_from([None, "silu"]), packed=st.booleans(), dtype=st.sampled_from(IO_DTYPES), seed=seeds(),
       wider=st.sampled_from([0, 3, 8, 14]))
def test_matches_float64_reference_with_gradients(device, bsz, dim, L, W, with_bias, act, packed, dtype, seed, wider):
    """``wider``: 0 a contiguous ``x (b, dim, L)``; else ``x`` is channels ``1 .. dim`` of rows ``dim + wider`` wide,
    channel-last (in_proj's output as a block hands it: its step stride divisible by 2, 4, 8 or 16 by the draw, which
    the kernels take as a hint, ``kernels/hints.py``)."""
    t = {"x": normal((bsz, dim, L), seed, device, dtype), "weight": normal((dim, W), seed + 1, device, dtype)}
    if wider:
        rows = torch.zeros((bsz, L, dim + wider), device=device, dtype=dtype)
        rows[..., 1:dim + 1] = t["x"].transpose(1, 2)
        t["x"] = rows[..., 1:dim + 1].transpose(1, 2)
    if with_bias:
        t["bias"] = normal((dim,), seed + 2, device, dtype)
    seq = None
    if packed:
        starts = np.random.default_rng(seed).random((bsz, L)) < 0.2
        seq = torch.tensor(np.cumsum(starts, axis=1), dtype=torch.int32, device=device)
    leaves = {k: v.requires_grad_() for k, v in t.items()}
    y = ssm_triton.causal_conv1d_fn(**leaves, seq_idx=seq, activation=act)
    g = normal(y.shape, seed + 3, device, dtype)
    got = torch.autograd.grad(y, list(leaves.values()), g)
    ref = {k: v.detach().cpu().double().requires_grad_() for k, v in leaves.items()}
    want_y = causal_conv1d_torch(**ref, seq_idx=seq.cpu() if seq is not None else None, activation=act)
    want = torch.autograd.grad(want_y, list(ref.values()), g.cpu().double())
    assert y.dtype == dtype and y.shape == (bsz, dim, L)
    assert_close(y, want_y, dtype, "out")
    for name, a, b in zip(leaves, got, want):
        assert a.dtype == dtype and a.shape == leaves[name].shape, name
        assert_close(a, b, dtype, f"d{name}")


@given(bsz=st.integers(1, 2), dim=st.integers(1, 9), W=st.integers(2, 4), extra=st.integers(0, 3), L=st.integers(1, 5),
       token=st.booleans(), strided=st.booleans(), x_layout=st.sampled_from(["contiguous", "slice", "channel_last"]),
       act=st.sampled_from([None, "silu"]), seed=seeds())
def test_update_matches_reference(device, bsz, dim, W, extra, L, token, strided, x_layout, act, seed):
    """``x`` contiguous, a slice of a wider row (a decode step's channels of in_proj's output, read in place) or
    channel-last; the state contiguous or strided."""
    S = W - 1 + extra
    if token:
        L = 1
    base = normal((bsz, S, dim), seed, device).float()
    state = base.transpose(1, 2) if strided else base.transpose(1, 2).contiguous()   # (b, dim, S)
    if x_layout == "slice":   # channels 2 .. dim + 1 of rows of dim + 5
        wide = normal((bsz, dim + 5) if token else (bsz, dim + 5, L), seed + 1, device).float()
        x = wide[:, 2:dim + 2]
    elif x_layout == "channel_last" and not token:
        x = normal((bsz, L, dim), seed + 1, device).float().transpose(1, 2)
    else:
        x = normal((bsz, dim) if token else (bsz, dim, L), seed + 1, device).float()
    w, b = normal((dim, W), seed + 2, device).float(), normal((dim,), seed + 3, device).float()
    want_out, want_state = causal_conv1d_update_torch(x.double(), state.double(), w.double(), b.double(), act)
    out = ssm_triton.causal_conv1d_update(x, state, w, b, act)
    assert out.shape == x.shape
    assert_close(out, want_out, torch.float32, "out")
    assert_close(state, want_state, torch.float32, "conv_state")


@examples(6)
@given(bsz=st.integers(1, 2), dim=st.integers(2, 9), W=st.integers(2, 4), extra=st.integers(1, 3), token=st.booleans(),
       with_bias=st.booleans(), act=st.sampled_from([None, "silu"]), seed=seeds())
def test_planned_updates_reused_and_not_across_layouts(device, bsz, dim, W, extra, token, with_bias, act, seed):
    """Steps take an op plan per input signature (``ops/_plans.py``): three steps with a contiguous state (the
    first makes the plan, the next reuse it), each against the float64 step, then the state in the other
    layout (steps contiguous per channel swapped for channels contiguous per step): its own plan; then two
    steps whose ``x`` is a slice of wider rows (their own plan, made and reused)."""
    from ssm_triton.ops import conv1d as ops
    S = W - 1 + extra
    state = normal((bsz, dim, S), seed, device).float()
    w = normal((dim, W), seed + 2, device).float()
    b = normal((dim,), seed + 3, device).float() if with_bias else None
    for k in range(6):
        x = normal((bsz, dim) if token else (bsz, dim, 2), seed + 10 + k, device).float()
        if k == 3:
            state = state.transpose(1, 2).contiguous().transpose(1, 2)
        if k >= 4:   # x a slice of wider rows: a plan of its own, made then reused
            x = normal((bsz, dim + 3) if token else (bsz, dim + 3, 2), seed + 10 + k, device).float()[:, 1:dim + 1]
        want_out, want_state = causal_conv1d_update_torch(x.double(), state.double(), w.double(),
                                                          b.double() if b is not None else None, act)
        out = ssm_triton.causal_conv1d_update(x, state, w, b, act)
        assert_close(out, want_out, torch.float32, f"out, step {k}")
        assert_close(state, want_state, torch.float32, f"conv_state, step {k}")
    assert any(p for p in ops._UPDATE_PLANS._seen.values())


@examples(6)
@given(bsz=st.integers(1, 2), dim=st.integers(2, 9), L=st.integers(1, 30), W=st.integers(2, 4), with_bias=st.booleans(),
       packed=st.booleans(), act=st.sampled_from([None, "silu"]), dtype=st.sampled_from(IO_DTYPES), seed=seeds())
def test_planned_forward_reused_and_not_across_layouts(device, bsz, dim, L, W, with_bias, packed, act, dtype, seed):
    """Forwards that record no graph take an op plan per input signature (``ops/_plans.py``): made by the first
    call, reused with other values by the next, each against the float64 convolution; then ``x`` strided
    (every other step of a wider tensor: its own plan) and channel-last (no plan: its output is channel-last)."""
    from ssm_triton.ops import conv1d as ops
    w = normal((dim, W), seed + 2, device).to(dtype)
    b = normal((dim,), seed + 3, device).to(dtype) if with_bias else None
    seq = None
    if packed:
        starts = np.random.default_rng(seed).random(L) < 0.2
        seq = torch.tensor(np.cumsum(starts), dtype=torch.int32, device=device).expand(bsz, L).contiguous()
    with torch.no_grad():
        for k in range(5):
            x = normal((bsz, dim, L), seed + 10 + k, device).to(dtype)
            if k == 3:
                x = normal((bsz, dim, 2 * L), seed + 10 + k, device).to(dtype)[..., ::2]
            if k == 4:
                x = x.transpose(1, 2).contiguous().transpose(1, 2)
            want = causal_conv1d_torch(x.double(), w.double(), b.double() if b is not None else None, seq, act)
            out = ssm_triton.causal_conv1d_fn(x, w, b, seq, act)
            assert out.shape == x.shape and out.dtype == dtype
            assert_close(out, want, dtype, f"out, call {k}")
    assert any(p for p in ops._FWD_PLANS._seen.values())


@given(L=st.integers(1, 20), W=st.integers(2, 4), dim=st.integers(1, 6), seed=seeds())
def test_token_by_token_updates_equal_the_convolution(device, L, W, dim, seed):
    x = normal((1, dim, L), seed, device).float()
    w, b = normal((dim, W), seed + 1, device).float(), normal((dim,), seed + 2, device).float()
    full = ssm_triton.causal_conv1d_fn(x, w, b, activation="silu")
    state = torch.zeros(1, dim, W - 1, device=device)
    steps = torch.stack([ssm_triton.causal_conv1d_update(x[..., i], state, w, b, "silu") for i in range(L)], -1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-6)


def test_fullgraph_compile_forward_and_backward(device):
    x, w, b = (normal(s, i, device).float().requires_grad_() for i, s in enumerate([(2, 3, 11), (3, 4), (3,)]))
    fn = lambda x, w, b: ssm_triton.causal_conv1d_fn(x, w, b, activation="silu")  # noqa: E731
    want = fn(x, w, b)
    want_g = torch.autograd.grad(want.sum(), (x, w, b))
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True)(x, w, b)
    got_g = torch.autograd.grad(got.sum(), (x, w, b))
    torch.testing.assert_close(got, want)
    for a, c in zip(got_g, want_g):
        torch.testing.assert_close(a, c)


GOOD = dict(x=torch.ones(2, 3, 7), weight=torch.ones(3, 4))


@pytest.mark.parametrize("override, exc, match", [
    (dict(x=torch.ones(3, 7)), ValueError, r"x must be 3-D \(batch, dim, L\)"),
    (dict(x=torch.ones(2, 3, 7, dtype=torch.float64)), TypeError, "x must have dtype"),
    (dict(weight=torch.ones(3, 5)), ValueError, r"width in \(2, 3, 4\)"),
    (dict(weight=torch.ones(2, 4)), ValueError, "with dim = 3"),
    (dict(bias=torch.ones(4)), ValueError, r"bias must have shape \(dim,\)"),
    (dict(seq_idx=torch.zeros(2, 7, dtype=torch.int64)), TypeError, "seq_idx must have dtype"),
    (dict(seq_idx=torch.zeros(2, 6, dtype=torch.int32)), ValueError, "seq_idx must have shape"),
    (dict(activation="relu"), ValueError, "activation must be one of"),
    (dict(weight=torch.ones(3, 4, device="meta")), ValueError, "weight is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(device, override, exc, match):
    with pytest.raises(exc, match=match):
        ssm_triton.causal_conv1d_fn(**on(device, {**GOOD, **override}))


GOOD_UPDATE = dict(x=torch.ones(2, 3), conv_state=torch.zeros(2, 3, 3), weight=torch.ones(3, 4))


@pytest.mark.parametrize("override, exc, match", [
    (dict(x=torch.ones(2, 3, 1, 1)), ValueError, r"x must be \(batch, dim\) or \(batch, dim, L\)"),
    (dict(conv_state=torch.zeros(2, 3, 2)), ValueError, r"conv_state must have shape \(batch, dim, state_len\)"),
    (dict(conv_state=torch.zeros(1, 3, 3)), ValueError, "conv_state must have shape"),
    (dict(conv_state=torch.zeros(2, 3)), ValueError, "conv_state must be 3-D"),
    (dict(activation="gelu"), ValueError, "activation must be one of"),
    (dict(x=torch.ones(2, 3, requires_grad=True)), RuntimeError, "not differentiable"),
])
def test_update_bad_input_is_rejected(device, override, exc, match):
    with pytest.raises(exc, match=match):
        ssm_triton.causal_conv1d_update(**on(device, {**GOOD_UPDATE, **override}))
