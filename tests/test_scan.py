"""linear_scan against the float64 loop references: values, gradients, gradcheck, bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from builders import BIG
from ssm_triton.reference import linear_scan_np, linear_scan_torch
from ssm_triton.tolerance import assert_close
from ssm_triton.kernels import tuning
from strategies import DTYPES, examples, lengths, normal, seeds, uniform

# Ranges of the decay a: tiny (state forgotten at once), near 1 (long memory), the unit interval,
# and signed values (oscillating recurrences).
A_RANGES = {"near0": (0.0, 1e-3), "near1": (0.999, 1.0), "unit": (0.0, 1.0), "signed": (-1.0, 1.0)}


def lead_shapes():
    side = st.integers(1, 48 if BIG else 3)
    return st.lists(side, min_size=0, max_size=2).map(tuple)


def make_inputs(lead, L, dtype, a_range, with_h0, seed, device):
    lo, hi = A_RANGES[a_range]
    a = uniform((*lead, L), lo, hi, seed, device, dtype)
    b = normal((*lead, L), seed + 1, device, dtype)
    h0 = normal(lead, seed + 2, device, dtype) if with_h0 else None
    return a, b, h0


def np64(x):
    return None if x is None else x.detach().to("cpu", torch.float64).numpy()


@given(lead=lead_shapes(), L=lengths(), dtype=st.sampled_from(DTYPES), a_range=st.sampled_from(list(A_RANGES)),
       with_h0=st.booleans(), reverse=st.booleans(), seed=seeds())
def test_forward_matches_loop_reference(device, lead, L, dtype, a_range, with_h0, reverse, seed):
    a, b, h0 = make_inputs(lead, L, dtype, a_range, with_h0, seed, device)
    h = ssm_triton.linear_scan(a, b, h0, reverse=reverse)
    assert h.shape == b.shape and h.dtype == b.dtype
    assert_close(h, linear_scan_np(np64(a), np64(b), np64(h0), reverse), dtype, "h")


@given(lead=lead_shapes(), L=lengths(), dtype=st.sampled_from(DTYPES), a_range=st.sampled_from(list(A_RANGES)),
       with_h0=st.booleans(), reverse=st.booleans(), seed=seeds())
def test_gradients_match_float64_autograd(device, lead, L, dtype, a_range, with_h0, reverse, seed):
    if BIG:  # the autograd loop reference is slow over long sequences
        L = min(L, 2048)
    a, b, h0 = make_inputs(lead, L, dtype, a_range, with_h0, seed, device)
    grad = normal(b.shape, seed + 3, device, dtype)
    leaves = [t.requires_grad_() for t in (a, b, h0) if t is not None]
    h = ssm_triton.linear_scan(a, b, h0, reverse=reverse)
    got = torch.autograd.grad(h, leaves, grad)

    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref_h0 = ref_leaves[2] if with_h0 else None
    ref = linear_scan_torch(ref_leaves[0], ref_leaves[1], ref_h0, reverse)
    want = torch.autograd.grad(ref, ref_leaves, grad.double())
    for name, g, w, leaf in zip(("da", "db", "dh0"), got, want, leaves):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape
        assert_close(g, w, dtype, name)


@given(lead=lead_shapes(), L=lengths(), dtype=st.sampled_from(DTYPES), a_range=st.sampled_from(list(A_RANGES)),
       with_h0=st.booleans(), reverse=st.booleans(), seed=seeds())
@examples(10, 100)
def test_the_aligned_backward_matches_float64_autograd(device, lead, L, dtype, a_range, with_h0, reverse, seed):
    """The backward's aligned form (``ALIGNED``: it scans ``z = a lam`` and reads no ``a`` one step off),
    pinned, against the float64 autograd of the loop: every decay range, both directions, ``h0``, lengths
    that cross tiles and leave a partial one."""
    if BIG:
        L = min(L, 2048)
    a, b, h0 = make_inputs(lead, L, dtype, a_range, with_h0, seed, device)
    grad = normal(b.shape, seed + 3, device, dtype)
    leaves = [t.requires_grad_() for t in (a, b, h0) if t is not None]
    tuning.pin("scan_bwd_kernel", ALIGNED=True)
    try:
        got = torch.autograd.grad(ssm_triton.linear_scan(a, b, h0, reverse=reverse), leaves, grad)
    finally:
        tuning.unpin("scan_bwd_kernel")
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref = linear_scan_torch(ref_leaves[0], ref_leaves[1], ref_leaves[2] if with_h0 else None, reverse)
    want = torch.autograd.grad(ref, ref_leaves, grad.double())
    for name, g, w, leaf in zip(("da", "db", "dh0"), got, want, leaves):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape
        assert_close(g, w, dtype, name)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_fp64(device, reverse):
    a = uniform((2, 19), -1.0, 1.0, 0, device).requires_grad_()
    b = normal((2, 19), 1, device).requires_grad_()
    h0 = normal((2,), 2, device).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, h0: ssm_triton.linear_scan(a, b, h0, reverse=reverse), (a, b, h0))


def test_long_sequence_stays_finite_and_close(device):
    # many tiles in one program: the carry between tiles must hold over the whole length
    L = (1 << 20) + 3 if BIG else 3001
    a = uniform((2, L), 0.99, 1.0, 7, device, torch.float32)
    b = normal((2, L), 8, device, torch.float32)
    h = ssm_triton.linear_scan(a, b)
    assert torch.isfinite(h).all()
    assert_close(h, linear_scan_np(np64(a), np64(b)), torch.float32, "h")


def test_non_contiguous_inputs_give_the_contiguous_result(device):
    a = uniform((40, 3), 0.0, 1.0, 3, device).t()  # (3, 40), stride (1, 3)
    b = normal((40, 3), 4, device).t()
    h0_base = normal((6,), 5, device)
    h0 = h0_base[::2]
    assert not a.is_contiguous() and not h0.is_contiguous()
    torch.testing.assert_close(ssm_triton.linear_scan(a, b, h0), ssm_triton.linear_scan(a.contiguous(), b.contiguous(), h0.contiguous()))
    np.testing.assert_allclose(ssm_triton.linear_scan(a, b, h0).cpu().numpy(), linear_scan_np(np64(a), np64(b), np64(h0)), rtol=1e-10, atol=1e-10)
    # the backward reads the kept a and h0 (strided as given) as rows too; a strided incoming gradient as well
    g = normal((40, 3), 6, device).t()
    bases = [t.detach().clone().requires_grad_() for t in (a.t(), b.t(), h0_base)]
    views = [bases[0].t(), bases[1].t(), bases[2][::2]]              # strided, as the inputs above
    flat = [t.detach().contiguous().requires_grad_() for t in (a, b, h0)]
    got = torch.autograd.grad(ssm_triton.linear_scan(*views), views, g)
    want = torch.autograd.grad(ssm_triton.linear_scan(*flat), flat, g.contiguous())
    assert not views[0].is_contiguous() and not views[2].is_contiguous()
    for x, y in zip(got, want):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y)


def test_empty_sequence(device):
    a = torch.rand(3, 0, device=device)
    assert ssm_triton.linear_scan(a, a.clone()).shape == (3, 0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(a=[1.0], b=torch.ones(3)), TypeError, "a must be a torch.Tensor"),
    (dict(a=torch.ones(3), b=torch.ones(4)), ValueError, "b must have shape"),
    (dict(a=torch.ones(3), b=torch.ones(3, dtype=torch.float64)), TypeError, "b must have the same dtype as a"),
    (dict(a=torch.ones(3, dtype=torch.int32), b=torch.ones(3, dtype=torch.int32)), TypeError, "a must have dtype"),
    (dict(a=torch.tensor(1.0), b=torch.tensor(1.0)), ValueError, "a must have at least 1 dims"),
    (dict(a=torch.ones(2, 3), b=torch.ones(2, 3), h0=torch.ones(3)), ValueError, "h0 must have shape"),
    (dict(a=torch.ones(2, 3), b=torch.ones(2, 3), reverse="yes"), TypeError, "reverse must be a bool"),
    (dict(a=torch.ones(2, 3), b=torch.ones(2, 3, device="meta")), ValueError, "b is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ssm_triton.linear_scan(**kwargs)


def test_cpu_tensors_without_interpreter_get_a_clear_error(monkeypatch):
    monkeypatch.setattr(ssm_triton._runtime, "INTERPRET", False)
    with pytest.raises(ValueError, match="a is a CPU tensor.*TRITON_INTERPRET=1"):
        ssm_triton.linear_scan(torch.ones(2, 3), torch.ones(2, 3))


@examples(6)
@given(lead=lead_shapes(), L=st.integers(2, 40), dtype=st.sampled_from(DTYPES), with_h0=st.booleans(),
       reverse=st.booleans(), seed=seeds())
def test_planned_forward_reused_across_calls(device, lead, L, dtype, with_h0, reverse, seed):
    """Calls that record no graph take an op plan per input signature (``ops/_plans.py``): made by the first
    call, reused with other values by the next; a ``b`` of the same shape with other strides finds its own
    plan (or none), not that one."""
    from ssm_triton.ops import scan as ops
    lead = (2, *lead)   # at least two rows, so the transposed copy differs in memory
    for k in range(3):
        a, b, h0 = make_inputs(lead, L, dtype, "unit", with_h0, seed + k, device)
        if k == 2:   # same values, steps and rows swapped in memory
            b = b.movedim(-1, 0).contiguous().movedim(0, -1)
        h = ssm_triton.linear_scan(a, b, h0, reverse=reverse)
        assert_close(h, linear_scan_np(np64(a), np64(b), np64(h0), reverse), dtype, f"h, call {k}")
    assert any(p for p in ops._PLANS._seen.values())
