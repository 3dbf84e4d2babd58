"""mamba_chunk_scan_combined against both float64 references (the loop and the quadratic attention form):
outputs, final and per-sequence states and every gradient over shapes, groups, chunk sizes, options,
packed sequences and dtypes; chunk-size invariance; a packed batch against its sequences run alone;
long rows; bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from builders import BIG
from ssm_triton.reference import ssd_np, ssd_quadratic_torch
from ssm_triton.tolerance import assert_close
from strategies import examples, normal, on, seeds
from builders import stages_only, sums_in_state_passing, cancelling_grad, make_ssd_problem as make_problem

IO_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
GRAD_NAMES = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"]


def sizes():
    return dict(bsz=st.integers(1, 2), L=st.one_of(st.just(1), st.integers(2, 700 if BIG else 70)),
                groups=st.integers(1, 2), heads_per_group=st.integers(1, 3),
                P=st.one_of(st.integers(1, 8), st.sampled_from([16, 64] if BIG else [16])),
                N=st.one_of(st.integers(1, 8), st.sampled_from([16, 64, 128] if BIG else [16])),
                chunk=st.sampled_from([16, 32, 64, 128, 256] if BIG else [16, 32]), seed=seeds(),
                options=st.booleans(), packed=st.booleans(), dtype=st.sampled_from(IO_DTYPES))


def problem(device, bsz, L, groups, heads_per_group, P, N, seed, options, packed, dtype, data=None):
    """x, z, B, C and dt in the I/O dtype; A, D, dt_bias and the initial state fp32, as Mamba-2 keeps them.
    The initial state holds values the I/O dtype represents: the kernels keep the states entering each chunk
    in the tensor cores' dtype (as mamba_ssm does), so a 16-bit run multiplies a rounded copy of it, which
    the float64 reference would not see; with one chunk that rounding lands, amplified by cancellation, in
    ``ddt`` (fp16 2026-12-03: 5.0e-3 of a 5e-3 budget, a single step whose direct and decay terms cancel)."""
    t = make_problem(bsz, L, groups, heads_per_group, P, N, seed, options, device)
    t = {k: (v.to(dtype) if k in ("x", "z", "B", "C", "dt") else v.float()) if isinstance(v, torch.Tensor) else v
         for k, v in t.items()}
    if t.get("initial_states") is not None:
        t["initial_states"] = t["initial_states"].to(dtype).float()
    if packed:
        starts = np.random.default_rng(seed).random(L) < 0.15
        starts[0] = False
        t["seq_idx"] = torch.tensor(np.cumsum(starts), dtype=torch.int32, device=device).expand(bsz, L).contiguous()
    return t


def as_np(t):
    return {k: (v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


@examples(30)   # the profile's 50 took 40 s of CI
@given(**sizes())
def test_forward_matches_both_references(device, bsz, L, groups, heads_per_group, P, N, chunk, seed, options,
                                         packed, dtype):
    t = problem(device, bsz, L, groups, heads_per_group, P, N, seed, options, packed, dtype)
    out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=chunk, return_final_states=True)
    assert out.dtype == dtype and out.shape == t["x"].shape
    assert final.dtype == torch.float32 and final.shape == (bsz, groups * heads_per_group, P, N)
    want_out, want_final = ssd_np(**as_np(t))
    assert_close(out, want_out, dtype, "out")
    assert_close(final, want_final, dtype, "final_states")
    quad_out, quad_final = ssd_quadratic_torch(**{k: (v.cpu().double() if isinstance(v, torch.Tensor) else v)
                                                  for k, v in t.items()})
    assert_close(out, quad_out, dtype, "out vs quadratic form")
    assert_close(final, quad_final, dtype, "final_states vs quadratic form")


@examples(30)   # 50 took 110-136 s of CI's 30 minutes (2 cores); the gpu profile keeps its 100
@given(**sizes(), use_final=st.booleans(), deterministic=st.booleans(), gated=st.booleans(), dx_split=st.booleans())
def test_gradients_match_float64_autograd(device, bsz, L, groups, heads_per_group, P, N, chunk, seed, options,
                                          packed, dtype, use_final, deterministic, gated, dx_split):
    """Every gradient against float64 autograd of the quadratic form; with the options' ``D`` either behind the
    gate (``dD`` from the gate's backward) or without ``z`` (``dD`` from the pair stage's sums); the dx kernel
    with its later slices' decay split into column and row weights or not (``SSM_TRITON_DX_SPLIT``)."""
    from ssm_triton.kernels.ssd import launch
    if BIG:  # the quadratic reference holds (b, L, L, H) in memory
        L = min(L, 300)
    t = problem(device, bsz, L, groups, heads_per_group, P, N, seed, options, packed, dtype)
    if not gated:
        t.pop("z", None)
    leaves = {k: t[k].requires_grad_() for k in GRAD_NAMES if k in t}
    flags = {k: v for k, v in t.items() if k not in leaves}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(launch, "DX_SPLIT", dx_split)
        out, final = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=chunk,
                                                          return_final_states=True, deterministic=deterministic)
        g_out = normal(out.shape, seed + 30, device, dtype)
        g_final = normal(final.shape, seed + 31, device)
        loss = (out * g_out).sum() + ((final * g_final).sum() if use_final else 0)
        got = torch.autograd.grad(loss, list(leaves.values()))

    ref = {k: v.detach().cpu().double().requires_grad_() for k, v in leaves.items()}
    ref_flags = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in flags.items()}
    ref_out, ref_final = ssd_quadratic_torch(**ref, **ref_flags)
    ref_loss = (ref_out * g_out.cpu().double()).sum() + ((ref_final * g_final.cpu().double()).sum() if use_final else 0)
    want = torch.autograd.grad(ref_loss, list(ref.values()))
    for (name, leaf), g, w in zip(leaves.items(), got, want):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape, name
        assert_close(g, w, dtype, f"d{name}")


@examples(6)
@given(L=st.integers(1, 70), P=st.integers(1, 8), seed=seeds(), dtype=st.sampled_from([torch.bfloat16, torch.float16]))
def test_d_gradient_keeps_its_digits_when_its_sum_cancels(device, L, P, seed, dtype):
    """With z, ``dD`` is summed from the unrounded ``dout silu(z)``: under a cotangent whose sum nearly
    cancels (cancelling_grad), per head or per channel by the seed, it still matches float64 autograd."""
    t = problem(device, 2, L, 1, 2, P, 4, seed, True, False, dtype)
    leaves = {k: t[k].requires_grad_() for k in ("x", "D")}
    flags = {k: v for k, v in t.items() if k not in leaves}
    out = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=16)
    dout = cancelling_grad(normal(out.shape, seed + 30, device), t["z"], t["x"], t["D"].dim() == 2, dtype)
    got = torch.autograd.grad(out, leaves["D"], dout)[0]
    ref = {k: v.detach().cpu().double().requires_grad_() for k, v in leaves.items()}
    ref_out, _ = ssd_quadratic_torch(**ref, **{k: (v.cpu().double() if isinstance(v, torch.Tensor) else v)
                                               for k, v in flags.items()})
    want = torch.autograd.grad(ref_out, ref["D"], dout.cpu().double())[0]
    assert_close(got, want, dtype, "dD")


@pytest.mark.parametrize("L", [1, 37, 100])
def test_chunk_size_does_not_change_the_result(device, L):
    t = problem(device, 2, L, 1, 2, 5, 6, 3, True, True, torch.float32)
    leaves = {k: t[k].requires_grad_() for k in GRAD_NAMES}
    flags = {k: v for k, v in t.items() if k not in leaves}
    results = []
    for chunk in (16, 32, 64):
        out, final = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=chunk, return_final_states=True)
        grads = torch.autograd.grad(out.sum() + final.sum(), list(leaves.values()))
        results.append((out, final, *grads))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)


@examples(8)
@given(bsz=st.integers(1, 2), L=st.integers(1, 70), heads_per_group=st.integers(1, 3), chunk=st.sampled_from([16, 32]),
       seed=seeds(), options=st.booleans(), packed=st.booleans(), longest_first=st.booleans(), split=st.booleans(),
       tiles=st.sampled_from([(), (16, 16), (16, 32), (32, 16)]), dtype=st.sampled_from(IO_DTYPES),
       state_tiles=st.sampled_from([(), (16, 16, 16, 1, 1)]))
def test_chunk_scan_forms_give_the_same_output(device, bsz, L, heads_per_group, chunk, seed, options, packed,
                                               longest_first, split, tiles, dtype, state_tiles):
    """The stages' forward with the chunk scan's step blocks launched longest first (``SSM_TRITON_SCAN_ORDER=1``; a
    partial last chunk's blocks past ``L`` store nothing), with the decay of its earlier slices split into column and
    row weights (``SSM_TRITON_SCAN_SPLIT=1``), with its own step tiles (``SSM_TRITON_SCAN_TILES``) and with the chunk
    states' own tiles (``SSM_TRITON_STATE_TILES``), against the float64 loop."""
    from ssm_triton.kernels.ssd import launch
    t = problem(device, bsz, L, 1, heads_per_group, 5, 6, seed, options, packed, dtype)
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        mp.setattr(launch, "SCAN_LONGEST_FIRST", "1" if longest_first else "0")
        mp.setattr(launch, "SCAN_SPLIT", "1" if split else "0")
        mp.setattr(launch, "SCAN_TILES", tiles + (4, 1) if tiles else ())
        mp.setattr(launch, "FUSED", "0")
        mp.setattr(launch, "STATE_TILES", state_tiles)
        out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=chunk, return_final_states=True)
    want_out, want_final = ssd_np(**as_np(t))
    assert_close(out, want_out, dtype, "out")
    assert_close(final, want_final, dtype, "final_states")


@examples(25)   # the profile's 50 took 61 s of CI
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=4), seed=seeds(), options=st.booleans(),
       chunk=st.sampled_from([16, 32]), give_seq_idx=st.booleans())
def test_packed_row_equals_each_sequence_alone(device, lengths, seed, options, chunk, give_seq_idx):
    L = sum(lengths)
    t = problem(device, 1, L, 1, 2, 3, 4, seed, options, False, torch.float32)
    t.pop("initial_states", None)  # belongs to the row's first sequence only
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64, device=device)
    if give_seq_idx:
        t["seq_idx"] = torch.repeat_interleave(torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device))[None]
    out, final, varlen = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=chunk, cu_seqlens=cu,
                                                              return_final_states=True, return_varlen_states=True)
    assert varlen.shape == (len(lengths), 2, 3, 4)
    torch.testing.assert_close(varlen[-1], final[0])
    for s in range(len(lengths)):
        a, b = int(cu[s]), int(cu[s + 1])
        part = {k: (v[:, a:b] if k in ("x", "dt", "B", "C", "z") else v) for k, v in t.items() if k != "seq_idx"}
        o, f = ssm_triton.mamba_chunk_scan_combined(**part, chunk_size=chunk, return_final_states=True)
        torch.testing.assert_close(out[:, a:b], o, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(varlen[s], f[0], rtol=1e-4, atol=1e-5)


def test_long_row_stays_finite_and_close(device):
    L = 2**20 if BIG else 3000
    t = problem(device, 1, L, 1, 2, 16 if BIG else 4, 16 if BIG else 4, 5, True, False, torch.float32)
    out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=256 if BIG else 64, return_final_states=True)
    assert torch.isfinite(out).all() and torch.isfinite(final).all()
    want_out, want_final = ssd_np(**as_np(t))
    assert_close(out, want_out, torch.float32, "out")
    assert_close(final, want_final, torch.float32, "final_states")


def test_non_contiguous_inputs(device):
    t = problem(device, 2, 21, 1, 2, 4, 5, 8, True, False, torch.float32)
    x = t["x"].transpose(0, 1).contiguous().transpose(0, 1)
    assert not x.is_contiguous()
    got = ssm_triton.mamba_chunk_scan_combined(**{**t, "x": x}, chunk_size=16)
    torch.testing.assert_close(got, ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16))


def test_a_remembered_signature_still_rejects_a_bad_call(device):
    """A call's checks run once per signature (shapes, dtypes, devices, plain arguments): the next call that
    differs only in a plain argument's type (1 for True), a tensor's shape or dtype is checked again and
    rejected, and a call like the first one gives the same answer."""
    t = problem(device, 1, 9, 1, 2, 4, 5, 8, True, False, torch.float32)
    first = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)
    with pytest.raises(TypeError, match="dt_softplus must be a bool"):
        ssm_triton.mamba_chunk_scan_combined(**{**t, "dt_softplus": int(t.get("dt_softplus", False))}, chunk_size=16)
    with pytest.raises(ValueError, match="C must have shape"):
        ssm_triton.mamba_chunk_scan_combined(**{**t, "C": t["C"][:, :8]}, chunk_size=16)
    with pytest.raises(TypeError, match="x must have dtype"):
        ssm_triton.mamba_chunk_scan_combined(**{**t, "x": t["x"].double()}, chunk_size=16)
    with pytest.raises(ValueError, match="chunk_size"):
        ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=True)
    torch.testing.assert_close(ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16), first)


def test_deterministic_backward_repeats_bit_for_bit(device):
    t = problem(device, 2, 50, 1, 3, 4, 5, 12, True, True, torch.float32)
    leaves = {k: t[k].requires_grad_() for k in GRAD_NAMES}
    flags = {k: v for k, v in t.items() if k not in leaves}

    def grads():
        out = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=16, deterministic=True)
        return torch.autograd.grad(out.sum(), [leaves["B"], leaves["C"], leaves["x"]])

    for a, b in zip(grads(), grads()):
        assert torch.equal(a, b)


def test_return_order_follows_mamba_ssm(device):
    t = problem(device, 1, 10, 1, 1, 2, 3, 9, False, False, torch.float32)
    cu = torch.tensor([0, 4, 10], device=device)
    out = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)
    assert isinstance(out, torch.Tensor)
    o, f = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16, return_final_states=True)
    assert f.shape == (1, 1, 2, 3)
    o, v = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16, cu_seqlens=cu, return_varlen_states=True)
    assert v.shape == (2, 1, 2, 3)
    o, f, v = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16, cu_seqlens=cu, return_final_states=True,
                                                   return_varlen_states=True)
    torch.testing.assert_close(v[1], f[0])


GOOD = dict(x=torch.ones(1, 6, 4, 3), dt=torch.ones(1, 6, 4), A=-torch.ones(4), B=torch.ones(1, 6, 2, 5),
            C=torch.ones(1, 6, 2, 5), chunk_size=16)


@pytest.mark.parametrize("override, exc, match", [
    (dict(x=torch.ones(6, 4, 3)), ValueError, r"x must be 4-D \(batch, L, H, P\)"),
    (dict(x=[[1.0]]), TypeError, "x must be a torch.Tensor"),   # before the op plans' lookup reads x
    (dict(x=torch.ones(1, 6, 4, 3, dtype=torch.float64)), TypeError, "x must have dtype"),
    (dict(x=torch.ones(1, 0, 4, 3), dt=torch.ones(1, 0, 4), B=torch.ones(1, 0, 2, 5), C=torch.ones(1, 0, 2, 5)),
     ValueError, "every size at least 1"),
    (dict(dt=torch.ones(1, 6, 5)), ValueError, r"dt must have shape \(batch, L, H\)"),
    (dict(A=-torch.ones(4, 1)), ValueError, r"A must be 1-D \(H,\)"),
    (dict(B=torch.ones(1, 6, 3, 5), C=torch.ones(1, 6, 3, 5)), ValueError, "B has G = 3 groups"),
    (dict(B=torch.ones(1, 6, 2, 300), C=torch.ones(1, 6, 2, 300)), ValueError, "state size N = 300"),
    (dict(C=torch.ones(1, 6, 2, 4)), ValueError, r"C must have shape \(batch, L, G, N\) as B"),
    (dict(D=torch.ones(3)), ValueError, r"D must have shape \(H,\)"),
    (dict(z=torch.ones(1, 6, 4, 2)), ValueError, "z must have shape"),
    (dict(dt_bias=torch.ones(4, dtype=torch.int32)), TypeError, "dt_bias must have dtype"),
    (dict(initial_states=torch.ones(1, 4, 3, 4)), ValueError, "initial_states must have shape"),
    (dict(seq_idx=torch.zeros(1, 6)), TypeError, "seq_idx must have dtype"),
    (dict(seq_idx=torch.zeros(1, 5, dtype=torch.int32)), ValueError, "seq_idx must have shape"),
    (dict(chunk_size=48), ValueError, "chunk_size must be one of"),
    (dict(chunk_size=512), ValueError, "chunk_size must be one of"),
    (dict(dt_softplus=1), TypeError, "dt_softplus must be a bool"),
    (dict(deterministic="yes"), TypeError, "deterministic must be a bool"),
    (dict(dt_limit=(1.0, 0.5)), ValueError, "dt_limit must satisfy lo <= hi"),
    (dict(dt_limit="wide"), TypeError, "dt_limit must be a pair"),
    (dict(return_varlen_states=True), ValueError, "return_varlen_states=True needs cu_seqlens"),
    (dict(cu_seqlens=torch.tensor([0, 3, 3, 6])), ValueError, "cu_seqlens must rise strictly"),
    (dict(cu_seqlens=torch.tensor([0, 3, 5])), ValueError, "cu_seqlens must rise strictly"),
    (dict(cu_seqlens=torch.tensor([[0, 6]])), ValueError, "cu_seqlens must be 1-D"),
    (dict(x=torch.ones(2, 6, 4, 3), dt=torch.ones(2, 6, 4), B=torch.ones(2, 6, 2, 5), C=torch.ones(2, 6, 2, 5),
          cu_seqlens=torch.tensor([0, 6])), ValueError, "must have batch 1"),
    (dict(x=torch.ones(1, 6, 4, 300), chunk_size=16), ValueError, "head dimension P = 300"),
    (dict(B=torch.ones(1, 6, 2, 5, device="meta")), ValueError, "B is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(device, override, exc, match):
    args = on(device, {**GOOD, **override})
    if isinstance(override.get("cu_seqlens"), torch.Tensor):
        args["cu_seqlens"] = override["cu_seqlens"]   # a CPU copy is checked at once (on a GPU, asynchronously)
        # a good call with cu_seqlens first: value checks must not be skipped for a call seen before
        ssm_triton.mamba_chunk_scan_combined(**on(device, GOOD), cu_seqlens=torch.tensor([0, 2, 6]))
    with pytest.raises(exc, match=match):
        ssm_triton.mamba_chunk_scan_combined(**args)


@examples(20)   # the profile's 50 took 88 s of CI (2 cores, 2026-12-04)
@given(L=st.integers(20, 64), chunk=st.sampled_from([32, 64]), rate=st.floats(2.0, 12.0), seed=seeds())
def test_accurate_when_a_chunk_decays_by_hundreds_of_nats(device, L, chunk, rate, seed):
    # cum_t - cum_s must keep fp32 accuracy where both are large; a single fp32 cumsum loses it
    t = problem(device, 1, L, 1, 2, 4, 4, seed, False, False, torch.float32)
    t["dt"] = t["dt"].abs() + 1.0
    t["A"] = t["A"] * rate
    leaves = {k: t[k].requires_grad_() for k in ("x", "dt", "A", "B", "C")}
    out, final = ssm_triton.mamba_chunk_scan_combined(**leaves, chunk_size=chunk, return_final_states=True)
    want_out, want_final = ssd_np(**as_np(t))
    assert_close(out, want_out, torch.float32, "out")
    assert_close(final, want_final, torch.float32, "final_states")
    g = normal(out.shape, seed + 1, device)
    got = torch.autograd.grad((out * g).sum(), list(leaves.values()))
    ref = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    want = torch.autograd.grad((ssd_quadratic_torch(**ref)[0] * g.double()).sum(), list(ref.values()))
    for name, a, b in zip(leaves, got, want):
        assert_close(a, b, torch.float32, f"d{name}")


@examples(4)   # two full forwards an example under the interpreter
@given(L=st.integers(1, 40), seed=seeds(), data=st.data())
def test_fp32_follows_torch_matmul_precision(device, L, seed, data):
    """fp32 inputs: IEEE products under "highest" (held to the fp32 tolerance), TF32 tensor cores under "high"
    (operands rounded to 10 mantissa bits, fp32 sums: held to fp16's budget for operands computed inside the
    kernels, ``tolerance.COMPUTED_OPERANDS``, as the decay-weighted x and the states are; a flat 5e-3 failed on
    the H200 at 5.7e-3, 2026-12-04); the plan says which it took."""
    import triton.language as tl

    from ssm_triton.kernels.ssd import launch
    from ssm_triton.kernels.ssd.common import TF32

    t = problem(device, data.draw(st.integers(1, 2)), L, 4, 2, 3, 5, seed, True, True, torch.float32)
    want = ssd_np(**as_np(t))[0]
    before = torch.get_float32_matmul_precision()
    try:
        tf32_tol = ssm_triton.tolerance.tolerance(torch.float16, computed_operands=True)
        for precision, dot, tol in (("highest", tl.float32, 1e-4), ("high", TF32, tf32_tol)):
            torch.set_float32_matmul_precision(precision)
            assert launch.plan(t["x"], 5, 16).dot == dot
            out = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)
            err = ssm_triton.tolerance.scaled_error(out, want)
            assert err <= tol, f"{precision}: scaled error {err:.2e} > {tol:.0e}"
    finally:
        torch.set_float32_matmul_precision(before)


@examples(6)
@given(L=st.sampled_from([16, 32]), N=st.integers(1, 20), seed=seeds(),
       dot=st.sampled_from([torch.bfloat16, torch.float16]))
def test_tensor_core_products_round_their_operands(device, L, N, seed, dot):
    """The stages' products in bf16 / fp16 take operands rounded to that dtype and sum exact products in fp32,
    on a GPU's tensor cores and in the interpreter alike (which emulates them: its own bf16 ``tl.dot`` is wrong),
    so CPU tests see the rounding that fp32 operands computed in a kernel (Mamba-3's q~, k~) get on a GPU."""
    import triton.language as tl

    from ssm_triton.kernels.ssd import launch

    g = torch.Generator().manual_seed(seed)
    B, C = (torch.randn(1, L, 1, N, generator=g).to(device) for _ in range(2))
    p = launch.plan(torch.empty(1, L, 1, 8, device=device), N, 16,
                    dot=tl.bfloat16 if dot == torch.bfloat16 else tl.float16)
    cb = launch.bmm(B, C, p)[0, 0].double().cpu()                      # (chunks, Q, Q): C_t . B_s
    rb, rc = (t.to(dot).double().cpu()[0, :, 0].view(-1, 16, N) for t in (B, C))
    want = rc @ rb.transpose(1, 2)
    exact = C.double().cpu()[0, :, 0].view(-1, 16, N) @ B.double().cpu()[0, :, 0].view(-1, 16, N).transpose(1, 2)
    scale = want.abs().max().item() + 1e-30
    assert (cb - want).abs().max().item() <= 1e-6 * scale * N        # rounded operands, fp32 sums
    assert (want - exact).abs().max().item() > 1e-5 * scale           # and the rounding is visible


@examples(12)
@given(bsz=st.integers(1, 2), L=st.one_of(st.just(1), st.integers(2, 300 if BIG else 70)), groups=st.integers(1, 2),
       heads_per_group=st.integers(1, 2), P=st.integers(1, 9), N=st.integers(1, 18),
       chunk=st.sampled_from([16, 32, 64, 128] if BIG else [16, 32]), seed=seeds(), options=st.booleans(),
       packed=st.booleans(), dtype=st.sampled_from(IO_DTYPES), use_final=st.booleans(), gated=st.booleans())
def test_chunk_sums_inside_the_state_passings(device, bsz, L, groups, heads_per_group, P, N, chunk, seed, options,
                                               packed, dtype, use_final, gated):
    """``SSM_TRITON_SSD_OWN_FUSED=1`` and ``SSM_TRITON_SSD_ADJ_FUSED=1``: the state passing makes each chunk's own
    end state itself, the reversed one each chunk's adjoint sum (no fp32 per-chunk sums stored), the staged forward
    running. Output, final state and every gradient against float64 autograd of the quadratic form and against the
    two-stage route (the same products in the same order: equal but for the atomics' order elsewhere), packed
    sequences, initial states and the final state's cotangent included."""
    t = problem(device, bsz, L, groups, heads_per_group, P, N, seed, options, packed, dtype)
    if not gated:
        t.pop("z", None)
    leaves = {k: t[k].requires_grad_() for k in GRAD_NAMES if k in t}
    flags = {k: v for k, v in t.items() if k not in leaves}
    g_out = normal(t["x"].shape, seed + 30, device, dtype)
    g_final = normal((bsz, groups * heads_per_group, P, N), seed + 31, device)

    def grads():
        out, final = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=chunk,
                                                          return_final_states=True, deterministic=True)
        loss = (out * g_out).sum() + ((final * g_final).sum() if use_final else 0)
        return (out, final, *torch.autograd.grad(loss, list(leaves.values())))

    with sums_in_state_passing() as launched:
        got = grads()
    assert launched == {"own": [chunk], "adjoint": [chunk]}
    with stages_only():   # not the one-launch forward a training call of few rows takes by default (a GPU's rule)
        staged = grads()
    ref = {k: v.detach().cpu().double().requires_grad_() for k, v in leaves.items()}
    ref_out, ref_final = ssd_quadratic_torch(**ref, **{k: (v.cpu() if isinstance(v, torch.Tensor) else v)
                                                       for k, v in flags.items()})
    ref_loss = (ref_out * g_out.cpu().double()).sum() + ((ref_final * g_final.cpu().double()).sum() if use_final else 0)
    want = (ref_out, ref_final, *torch.autograd.grad(ref_loss, list(ref.values())))
    for name, g, s, w in zip(["out", "final_states", *(f"d{k}" for k in leaves)], got, staged, want):
        assert_close(g, w, dtype, name)
        scale = float(s.detach().abs().max()) if s.numel() else 0.0
        torch.testing.assert_close(g, s, rtol=1e-5, atol=1e-6 * max(scale, 1.0), msg=f"{name} against the stages")


def test_chunk_scan_forms_key_the_replays(device):
    """A call's recorded launches serve only calls under the same chunk scan form: switching the split decay and the
    order between calls of the same inputs runs the launcher under each form once, and the outputs agree."""
    from ssm_triton.kernels.ssd import launch
    t = problem(device, 1, 40, 1, 2, 5, 6, 3, True, False, torch.float32)
    seen, outs = [], []
    real = launch.chunk_scan

    def counted(*a, **k):
        seen.append(launch.SCAN_SPLIT + launch.SCAN_LONGEST_FIRST)
        return real(*a, **k)
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        mp.setattr(launch, "FUSED", "0")
        mp.setattr(launch, "chunk_scan", counted)
        for form in ("00", "11", "00", "11", "10"):
            mp.setattr(launch, "SCAN_SPLIT", form[0])
            mp.setattr(launch, "SCAN_LONGEST_FIRST", form[1])
            outs.append(ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16))
    assert sorted(set(seen)) == ["00", "10", "11"]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=1e-5, atol=1e-6)
