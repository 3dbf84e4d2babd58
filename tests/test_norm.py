"""rmsnorm_fn against the float64 reference: outputs and gradients over shapes, groups, gate orders,
options and dtypes; the compile route; bad input."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import rmsnorm_torch
from ssm_triton.tolerance import assert_close
from strategies import examples, normal, on, seeds

IO_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@given(rows=st.integers(1, 9), groups=st.integers(1, 3), group_size=st.integers(1, 40), lead=st.booleans(),
       gated=st.booleans(), before=st.booleans(), with_bias=st.booleans(), dtype=st.sampled_from(IO_DTYPES),
       seed=seeds())
def test_matches_float64_reference_with_gradients(device, rows, groups, group_size, lead, gated, before, with_bias,
                                                  dtype, seed):
    D = groups * group_size
    shape = (2, rows, D) if lead else (rows, D)
    t = {"x": normal(shape, seed, device, dtype), "weight": normal((D,), seed + 1, device, dtype)}
    if with_bias:
        t["bias"] = normal((D,), seed + 2, device, dtype)
    if gated:
        t["z"] = normal(shape, seed + 3, device, dtype)
    leaves = {k: v.requires_grad_() for k, v in t.items()}
    y = ssm_triton.rmsnorm_fn(**leaves, eps=1e-5, group_size=group_size, norm_before_gate=before)
    assert y.dtype == dtype and y.shape == shape
    g = normal(shape, seed + 4, device, dtype)
    got = torch.autograd.grad(y, list(leaves.values()), g)
    ref = {k: v.detach().cpu().double().requires_grad_() for k, v in leaves.items()}
    want_y = rmsnorm_torch(**ref, eps=1e-5, group_size=group_size, norm_before_gate=before)
    want = torch.autograd.grad(want_y, list(ref.values()), g.cpu().double())
    assert_close(y, want_y, dtype, "y")
    for name, a, b in zip(leaves, got, want):
        assert a.dtype == dtype and a.shape == leaves[name].shape, name
        assert_close(a, b, dtype, f"d{name}")


@examples(6)
@given(rows=st.integers(2, 9), groups=st.integers(1, 3), group_size=st.integers(1, 40), gated=st.booleans(),
       before=st.booleans(), with_bias=st.booleans(), dtype=st.sampled_from(IO_DTYPES), seed=seeds(),
       sliced=st.booleans())
def test_planned_forward_reused_across_calls(device, rows, groups, group_size, gated, before, with_bias, dtype, seed,
                                            sliced):
    """Calls that record no graph take an op plan per input signature (``ops/_plans.py``): made by the first
    call, reused with other values by the next; then an ``x`` of the same shape read in place from a wider
    tensor (another row stride) finds its own plan, not that one."""
    from ssm_triton.ops import norm as ops
    D = groups * group_size
    shape = (2, rows, D)
    for k in range(3):
        t = {"x": normal(shape, seed + 10 * k, device, dtype), "weight": normal((D,), seed + 1, device, dtype)}
        if with_bias:
            t["bias"] = normal((D,), seed + 2, device, dtype)
        if gated:
            t["z"] = normal(shape, seed + 3 + 10 * k, device, dtype)
        if k == 2 and sliced:   # the same values as a slice of a wider tensor's columns
            wide = normal((2, rows, D + 3), seed + 7, device, dtype)
            wide[..., 1:D + 1] = t["x"]
            t["x"] = wide[..., 1:D + 1]
        y = ssm_triton.rmsnorm_fn(**t, eps=1e-5, group_size=group_size, norm_before_gate=before)
        want = rmsnorm_torch(**{n: v.cpu().double() for n, v in t.items()}, eps=1e-5, group_size=group_size,
                             norm_before_gate=before)
        assert y.shape == shape and y.dtype == dtype
        assert_close(y, want, dtype, f"y, call {k}")
    assert any(p for p in ops._PLANS._seen.values())


def test_fullgraph_compile_forward_and_backward(device):
    x, z, w, b = (normal(s, i, device).float().requires_grad_() for i, s in enumerate([(3, 8), (3, 8), (8,), (8,)]))
    fn = lambda *a: ssm_triton.rmsnorm_fn(a[0], a[2], a[3], z=a[1], group_size=4, norm_before_gate=False)  # noqa: E731
    want = fn(x, z, w, b)
    want_g = torch.autograd.grad(want.sum(), (x, z, w, b))
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True)(x, z, w, b)
    got_g = torch.autograd.grad(got.sum(), (x, z, w, b))
    torch.testing.assert_close(got, want)
    for a, c in zip(got_g, want_g):
        torch.testing.assert_close(a, c)


GOOD = dict(x=torch.ones(3, 8), weight=torch.ones(8))


@pytest.mark.parametrize("override, exc, match", [
    (dict(x=torch.ones(3, 8, dtype=torch.float64)), TypeError, "x must have dtype"),
    (dict(weight=torch.ones(7)), ValueError, r"weight must have shape \(D,\)"),
    (dict(bias=torch.ones(8, 1)), ValueError, r"bias must be 1-D"),
    (dict(z=torch.ones(3, 7)), ValueError, "z must have shape"),
    (dict(group_size=3), ValueError, "group_size must be a positive int dividing D = 8"),
    (dict(group_size=0), ValueError, "group_size must be a positive int"),
    (dict(eps=0.0), ValueError, "eps must be a positive number"),
    (dict(norm_before_gate=None), TypeError, "norm_before_gate must be a bool"),
    (dict(weight=torch.ones(8, device="meta")), ValueError, "weight is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(device, override, exc, match):
    with pytest.raises(exc, match=match):
        ssm_triton.rmsnorm_fn(**on(device, {**GOOD, **override}))


@given(rows=st.integers(1, 9), D=st.integers(1, 40), first=st.booleans(), keep32=st.booleans(),
       dtype=st.sampled_from(IO_DTYPES), seed=seeds())
def test_add_rmsnorm_is_the_pre_norm_blocks_two_steps(device, rows, D, first, keep32, dtype, seed):
    """``add_rmsnorm`` (the LM's inference path): the residual sum in its own dtype, and the norm of that sum
    rounded to x's dtype, each against float64; and exactly what the two unfused steps give."""
    from ssm_triton.ops.norm import add_rmsnorm
    keep = torch.float32 if keep32 else dtype
    x = normal((2, rows, D), seed, device, dtype)
    res = None if first else normal((2, rows, D), seed + 1, device, keep)
    w = normal((D,), seed + 2, device, dtype)
    with torch.no_grad():
        normed, res_out = add_rmsnorm(x, res, w, 1e-5, keep)
        total = x if res is None else x + res
        two_steps = ssm_triton.rmsnorm_fn(total.to(dtype), w, eps=1e-5)
    want_total = x.double() + (res.double() if res is not None else 0)
    assert res_out.dtype == keep and normed.dtype == dtype
    assert_close(res_out, want_total.cpu(), keep, "residual")
    assert_close(normed, rmsnorm_torch(total.to(dtype).cpu().double(), w.cpu().double(), eps=1e-5), dtype, "normed")
    if dtype == torch.float32 or device.type == "cuda":
        # bit-equal to the two steps; the interpreter rounds a kernel's fp32 -> bf16/fp16 casts toward zero
        # (torch rounds to nearest even), so on CPU only fp32 can match bit for bit
        assert torch.equal(res_out, total.to(keep))
        assert torch.equal(normed, two_steps)


def test_add_rmsnorm_refuses_a_graph(device):
    from ssm_triton.ops.norm import add_rmsnorm
    x = torch.ones(2, 4, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        add_rmsnorm(x, None, torch.ones(4, device=device), 1e-5, torch.float32)
