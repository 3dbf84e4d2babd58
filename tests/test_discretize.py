"""discretize against the float64 references: values, gradients, gradcheck, the A -> 0 limit, bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from builders import BIG
from ssm_triton.reference import discretize_np, discretize_torch
from ssm_triton.tolerance import assert_close
from strategies import DTYPES, examples, normal, seeds, uniform

METHODS = ["zoh", "mamba", "bilinear"]
# Step sizes from tiny to large, and A from exactly/near zero to strongly negative.
DELTA_RANGES = {"tiny": (1e-6, 1e-4), "typical": (1e-3, 0.1), "large": (0.5, 10.0)}
A_RANGES = {"zero": (0.0, 0.0), "near0": (-1e-6, 1e-6), "typical": (-16.0, -0.5), "wide": (-100.0, 0.0)}


def problem_sizes():
    return st.tuples(st.integers(1, 3 if not BIG else 4), st.integers(1, 5 if not BIG else 32),
                     st.integers(1, 23 if not BIG else 300), st.integers(1, 9 if not BIG else 256))


def make_inputs(sizes, dtype, delta_range, a_range, seed, device):
    bsz, dim, L, N = sizes
    delta = uniform((bsz, dim, L), *DELTA_RANGES[delta_range], seed, device, dtype)
    A = uniform((dim, N), *A_RANGES[a_range], seed + 1, device, torch.float32 if dtype != torch.float64 else dtype)
    B = normal((bsz, N, L), seed + 2, device, dtype)
    return delta, A, B


def np64(x):
    return x.detach().to("cpu", torch.float64).numpy()


def out_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@examples(6)
@given(sizes=problem_sizes(), dtype=st.sampled_from(DTYPES), method=st.sampled_from(METHODS), seed=seeds())
def test_planned_forward_reused_and_not_for_strided_inputs(device, sizes, dtype, method, seed):
    """Calls that record no graph take an op plan per input signature (``ops/_plans.py``): made by the first
    call, reused with other values by the next, each against the float64 reference; then ``delta`` with its
    steps and channels swapped in memory (no plan: the launcher copies it)."""
    from ssm_triton.ops import discretize as ops
    for k in range(4):
        delta, A, B = make_inputs(sizes, dtype, "typical", "typical", seed + k, device)
        if k == 3:
            delta = delta.transpose(1, 2).contiguous().transpose(1, 2)
        abar, bbar = ssm_triton.discretize(delta, A, B, method)
        ref_a, ref_b = discretize_np(np64(delta), np64(A), np64(B), method)
        assert_close(abar, ref_a, out_dtype(dtype), f"Abar, call {k}")
        assert_close(bbar, ref_b, out_dtype(dtype), f"Bbar, call {k}")
    assert any(p for p in ops._PLANS._seen.values())


@given(sizes=problem_sizes(), dtype=st.sampled_from(DTYPES), method=st.sampled_from(METHODS),
       delta_range=st.sampled_from(list(DELTA_RANGES)), a_range=st.sampled_from(list(A_RANGES)), seed=seeds())
def test_forward_matches_float64_reference(device, sizes, dtype, method, delta_range, a_range, seed):
    delta, A, B = make_inputs(sizes, dtype, delta_range, a_range, seed, device)
    abar, bbar = ssm_triton.discretize(delta, A, B, method)
    assert abar.shape == bbar.shape == (*delta.shape, A.shape[1])
    assert abar.dtype == bbar.dtype == out_dtype(dtype)  # A is fp32 (fp64 in the fp64 case): promoted
    ref_a, ref_b = discretize_np(np64(delta), np64(A), np64(B), method)
    # inputs were rounded to `dtype` already; the kernel computes in fp32, so fp32 bounds apply
    assert_close(abar, ref_a, out_dtype(dtype), "Abar")
    assert_close(bbar, ref_b, out_dtype(dtype), "Bbar")


@given(sizes=problem_sizes(), dtype=st.sampled_from(DTYPES), method=st.sampled_from(METHODS),
       delta_range=st.sampled_from(list(DELTA_RANGES)), a_range=st.sampled_from(list(A_RANGES)),
       which=st.sampled_from(["both", "abar", "bbar"]), seed=seeds())
def test_gradients_match_float64_autograd(device, sizes, dtype, method, delta_range, a_range, which, seed):
    delta, A, B = make_inputs(sizes, dtype, delta_range, a_range, seed, device)
    leaves = [t.requires_grad_() for t in (delta, A, B)]
    abar, bbar = ssm_triton.discretize(delta, A, B, method)
    ga = normal(abar.shape, seed + 3, device, abar.dtype)
    gb = normal(bbar.shape, seed + 4, device, bbar.dtype)
    loss = {"both": (abar * ga).sum() + (bbar * gb).sum(), "abar": (abar * ga).sum(), "bbar": (bbar * gb).sum()}[which]
    got = torch.autograd.grad(loss, leaves)

    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ra, rb = discretize_torch(*ref_leaves, method)
    ref_loss = {"both": (ra * ga.double()).sum() + (rb * gb.double()).sum(),
                "abar": (ra * ga.double()).sum(), "bbar": (rb * gb.double()).sum()}[which]
    want = [w if w is not None else torch.zeros_like(r)
            for w, r in zip(torch.autograd.grad(ref_loss, ref_leaves, allow_unused=True), ref_leaves)]
    for name, g, w, leaf in zip(("ddelta", "dA", "dB"), got, want, leaves):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape
        # each gradient is accumulated in fp32 and stored in its input's dtype, which sets the budget
        assert_close(g, w, g.dtype, name)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_fp64(device, method):
    delta = uniform((1, 2, 3), 0.01, 1.0, 0, device).requires_grad_()
    A = uniform((2, 3), -2.0, -0.1, 1, device)
    A[0, 0] = 1e-7  # inside the series branch of phi1
    A.requires_grad_()
    B = normal((1, 3, 3), 2, device).requires_grad_()
    assert torch.autograd.gradcheck(lambda d, a, b: ssm_triton.discretize(d, a, b, method), (delta, A, B))


def test_zoh_is_finite_and_exact_as_A_goes_to_zero(device):
    delta = uniform((1, 1, 8), 0.01, 2.0, 3, device, torch.float32)
    B = normal((1, 1, 8), 4, device, torch.float32)
    for a in [0.0, 1e-30, -1e-12, 1e-7, -1e-3, -0.49, -0.51]:
        A = torch.full((1, 1), a, device=device)
        abar, bbar = ssm_triton.discretize(delta, A, B, "zoh")
        ref_a, ref_b = discretize_np(np64(delta), np64(A), np64(B), "zoh")
        assert torch.isfinite(bbar).all()
        assert_close(bbar, ref_b, torch.float32, f"Bbar at A={a}")
        assert_close(abar, ref_a, torch.float32, f"Abar at A={a}")


def test_non_contiguous_inputs(device):
    delta = uniform((3, 2, 7), 0.01, 1.0, 5, device).transpose(0, 2)  # (7, 2, 3)
    A = uniform((4, 2), -3.0, -0.1, 6, device).t()                    # (2, 4)
    B = normal((3, 4, 7), 7, device).transpose(0, 2)                   # (7, 4, 3)
    got = ssm_triton.discretize(delta, A, B, "zoh")
    want = discretize_np(np64(delta), np64(A), np64(B), "zoh")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.cpu().numpy(), w, rtol=1e-10, atol=1e-12)


GOOD = dict(delta=torch.ones(2, 3, 5), A=-torch.ones(3, 4), B=torch.ones(2, 4, 5))


@pytest.mark.parametrize("override, exc, match", [
    (dict(delta=torch.ones(2, 3)), ValueError, r"delta must be 3-D \(batch, dim, L\)"),
    (dict(A=-torch.ones(4, 4)), ValueError, r"A must have shape \(dim, N\)"),
    (dict(A=-torch.ones(3)), ValueError, "A must be 2-D"),
    (dict(B=torch.ones(2, 5, 5)), ValueError, r"B must have shape \(batch, N, L\)"),
    (dict(B=torch.ones(1, 4, 5)), ValueError, "B must have shape"),
    (dict(B=torch.ones(2, 4, 5, dtype=torch.int64)), TypeError, "B must have dtype"),
    (dict(delta="0.1"), TypeError, "delta must be a torch.Tensor"),
    (dict(method="euler"), ValueError, "method must be one of"),
    (dict(A=-torch.ones(3, 4, device="meta")), ValueError, "A is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(override, exc, match):
    kwargs = {**GOOD, "method": "zoh", **override}
    with pytest.raises(exc, match=match):
        ssm_triton.discretize(**kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_reference_gradients_match_closed_forms_far_from_zero(method):
    # Guards the reference itself: with z = delta*A around -70 and -150, autograd of a careless
    # spelling of ZOH loses the exp(z) terms entirely (see reference/discretize.py).
    delta = torch.tensor([[[6.0, 9.7, 0.3]]], dtype=torch.float64, requires_grad=True)
    A = torch.tensor([[-11.7]], dtype=torch.float64, requires_grad=True)
    B = torch.tensor([[[0.27, -1.6, 0.8]]], dtype=torch.float64, requires_grad=True)
    ga, gb = 0.45, -0.6
    abar, bbar = discretize_torch(delta, A, B, method)
    got = torch.autograd.grad(ga * abar.sum() + gb * bbar.sum(), (delta, A, B))
    d, a, b = delta.detach()[0, 0], A.item(), B.detach()[0, 0]
    z = d * a
    if method == "bilinear":
        w = 1 - z / 2
        dabar_dd, dk_dd, k = a / w**2, 1 / w**2, d / w
    else:
        dabar_dd = a * torch.exp(z)
        dk_dd = torch.exp(z) if method == "zoh" else torch.ones_like(z)
        k = torch.expm1(z) / a if method == "zoh" else d
    want_ddelta = ga * dabar_dd + gb * b * dk_dd
    torch.testing.assert_close(got[0][0, 0], want_ddelta, rtol=1e-12, atol=0)
    torch.testing.assert_close(got[2][0, 0], gb * k, rtol=1e-12, atol=0)
