"""Column slices of a wide projection, read in place (ssm_triton/ops/_layout.py): the SSD's inference
forward (both routes), the conv1d in channel-last layout (forward and backward) and the gated norm take
``x``, ``z``, ``B``, ``C``, ``dt`` cut from one ``(batch, L, width)`` tensor, as Mamba2's block cuts them from
``in_proj``'s output, and must give the float64 references' answers. The pad columns between the slices
hold large values, so a kernel that read past its slice or used the wrong stride would show it."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.kernels import conv1d as conv_k
from ssm_triton.ops._layout import step_strided
from ssm_triton.reference import causal_conv1d_torch, rmsnorm_torch, ssd_np, ssd_quadratic_torch
from ssm_triton.tolerance import assert_close
from builders import assert_angle_close, make_ssd_problem
from ssm_triton.kernels.mamba3.prep import angle_rows
from strategies import examples, normal, seeds
from test_mamba3 import STATE_NAMES, make, reference
from test_ssd_fused import as_np, counting, route


def packed(parts: dict, pads, seed, device, dtype):
    """One ``(batch, L, width)`` tensor holding each ``(batch, L, ...)`` part's values in its own columns,
    ``pads[i]`` columns of 1e4 before part ``i``; returns the parts as views of it."""
    first = next(iter(parts.values()))
    bsz, L = first.shape[:2]
    widths = [p[0, 0].numel() for p in parts.values()]
    wide = torch.full((bsz, L, sum(widths) + sum(pads) + 1), 1e4, dtype=dtype, device=device)
    views, col = {}, 0
    for (name, part), width, pad in zip(parts.items(), widths, pads):
        col += pad
        wide[:, :, col:col + width] = part.reshape(bsz, L, width).to(dtype)
        views[name] = wide[:, :, col:col + width].view(part.shape)
        col += width
    return views


@examples(6)
@given(bsz=st.integers(1, 2), L=st.integers(1, 40), groups=st.integers(1, 2), P=st.integers(1, 9),
       N=st.sampled_from([4, 16]), pads=st.lists(st.integers(0, 3), min_size=5, max_size=5), seed=seeds(),
       options=st.booleans(), fused=st.sampled_from(["0", "1"]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_ssd_inference_reads_projection_slices_in_place(device, bsz, L, groups, P, N, pads, seed, options, fused,
                                                         dtype):
    """Both inference routes (the one-launch kernel and the stages) on slices, against the float64 loop;
    with a gradient to come the same slices give the same answer through the contiguous route."""
    t = make_ssd_problem(bsz, L, groups, 1, P, N, seed, options, device)
    cut = {k: t[k] for k in ("x", "z", "B", "C", "dt") if k in t}
    views = packed(cut, pads[:len(cut)], seed, device, dtype)
    t.update(views)
    t = {k: (v.float() if isinstance(v, torch.Tensor) and k not in views else v) for k, v in t.items()}
    for name, v in views.items():
        assert not v.is_contiguous() or v.shape[0] * v.shape[1] == 1, name
        assert step_strided(v).data_ptr() == v.data_ptr(), name   # the kernels get the slice itself
    want_out, want_final = ssd_np(**as_np(t))
    with torch.no_grad(), route(fused), counting() as calls:
        out, final = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16, return_final_states=True)
    assert len(calls) == (1 if fused == "1" else 0)
    assert out.is_contiguous() and out.shape == t["x"].shape
    assert_close(out, want_out, dtype, "out")
    assert_close(final, want_final, dtype, "final_states")
    x = t["x"].detach().clone().requires_grad_()
    graded = ssm_triton.mamba_chunk_scan_combined(**{**t, "x": x}, chunk_size=16)
    assert_close(graded.detach(), want_out, dtype, "out, gradient route")


@examples(6)
@given(bsz=st.integers(1, 2), L=st.integers(1, 40), groups=st.integers(1, 2), P=st.integers(1, 9),
       N=st.sampled_from([4, 16]), pads=st.lists(st.integers(0, 3), min_size=5, max_size=5), seed=seeds(),
       options=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_ssd_training_reads_projection_slices_in_place(device, bsz, L, groups, P, N, pads, seed, options, dtype):
    """A call with a gradient to come keeps the slices of x, dt, B and C as they are (the backward's kernels take
    their step strides) and every gradient matches float64 autograd of the quadratic form; z is copied (the gate's
    backward reads it contiguous)."""
    t = make_ssd_problem(bsz, L, groups, 1, P, N, seed, options, device)
    cut = {k: t[k] for k in ("x", "z", "B", "C", "dt") if k in t}
    views = packed(cut, pads[:len(cut)], seed, device, dtype)
    leaves = {k: v.detach().requires_grad_() for k, v in views.items()}
    flags = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in t.items() if k not in views}
    grad_flags = {k: v.requires_grad_() for k, v in flags.items() if k in ("A", "D", "dt_bias")}
    out = ssm_triton.mamba_chunk_scan_combined(**leaves, **flags, chunk_size=16)
    g = normal(out.shape, seed + 30, device, dtype)
    names = [*leaves, *grad_flags]
    got = torch.autograd.grad(out, [*leaves.values(), *grad_flags.values()], g)
    ref = {k: v.detach().cpu().double().requires_grad_() for k, v in (*leaves.items(), *grad_flags.items())}
    # the reference runs in float64 throughout (a float32 initial state met float64 in its einsum on the H200)
    rest = {k: (v.cpu().double() if v.is_floating_point() else v.cpu()) if isinstance(v, torch.Tensor) else v
            for k, v in flags.items() if k not in ref}
    want = torch.autograd.grad(ssd_quadratic_torch(**ref, **rest)[0], list(ref.values()), g.cpu().double())
    for name, a, b in zip(names, got, want):
        assert_close(a, b, dtype, f"d{name}")


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 4)), skip=st.integers(0, 3),
       batch_gap=st.integers(0, 2))
def test_step_strided_passes_only_what_the_kernels_can_address(shape, skip, batch_gap):
    """A slice whose batch stride is L steps passes as itself; anything else (an inner dimension with a
    gap, a batch stride that is not L steps) is copied, and the copy holds the same values."""
    b, L, n = shape
    wide = torch.arange(b * (L + batch_gap) * (n + skip), dtype=torch.float32).view(b, L + batch_gap, n + skip)
    t = wide[:, :L, :n]
    got = step_strided(t)
    assert torch.equal(got, t)
    fits = b == 1 or batch_gap == 0 or L == 1
    assert (got.data_ptr() == t.data_ptr()) == (fits or t.is_contiguous())
    if got.data_ptr() == t.data_ptr() and b > 1:   # what the kernels' addressing assumes
        assert got.stride(0) == L * got.stride(1)
    inner_gap = wide[:, :L, :n].unsqueeze(-1).expand(b, L, n, 2)[..., :1]   # a stride-0 inner dimension of 1
    assert torch.equal(step_strided(inner_gap), inner_gap)
    if n > 1:
        transposed = wide[:, :L, :n].transpose(1, 2)                          # inner dimension not contiguous
        assert step_strided(transposed).is_contiguous()


@given(bsz=st.integers(1, 2), dim=st.integers(1, 9), L=st.integers(1, 30), W=st.integers(2, 4),
       pads=st.lists(st.integers(0, 3), min_size=2, max_size=2), act=st.sampled_from([None, "silu"]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=seeds())
def test_conv1d_reads_and_writes_channel_last(device, bsz, dim, L, W, pads, act, dtype, seed):
    """``x`` a channel-last slice ``(b, L, d) -> (b, d, L)``: the output comes channel-last (contiguous once
    transposed back), and it and every gradient match the float64 reference."""
    src = normal((bsz, L, dim), seed, device, dtype)
    other = normal((bsz, L, 2), seed + 4, device, dtype)
    x = packed({"other": other, "x": src}, pads, seed, device, dtype)["x"].transpose(1, 2)
    assert conv_k.channel_last(x) or dim == 1 or L == 1
    weight = normal((dim, W), seed + 1, device, dtype).requires_grad_()
    bias = normal((dim,), seed + 2, device, dtype).requires_grad_()
    leaf = x.detach().requires_grad_()
    y = ssm_triton.causal_conv1d_fn(leaf.transpose(1, 2).transpose(1, 2), weight, bias, activation=act)
    if dim > 1 and L > 1:
        assert y.transpose(1, 2).is_contiguous()
    g = normal(y.shape, seed + 3, device, dtype)
    got = torch.autograd.grad(y, (leaf, weight, bias), g)
    ref = [v.detach().cpu().double().requires_grad_() for v in (x, weight, bias)]
    want_y = causal_conv1d_torch(*ref, activation=act)
    want = torch.autograd.grad(want_y, ref, g.cpu().double())
    assert_close(y, want_y, dtype, "out")
    for name, a, b in zip(("x", "weight", "bias"), got, want):
        assert_close(a, b, dtype, f"d{name}")


@given(rows=st.tuples(st.integers(1, 2), st.integers(1, 7)), groups=st.integers(1, 3), size=st.integers(1, 9),
       pads=st.lists(st.integers(0, 3), min_size=2, max_size=2), before=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=seeds())
def test_gated_norm_reads_strided_rows(device, rows, groups, size, pads, before, dtype, seed):
    """``x`` and the gate ``z`` as column slices (Mamba2's ``z`` is one of ``in_proj``'s): forward and every
    gradient against the float64 reference."""
    D = groups * size
    parts = packed({"x": normal((*rows, D), seed, device), "z": normal((*rows, D), seed + 1, device)}, pads, seed,
                   device, dtype)
    x, z = (parts[k].detach().requires_grad_() for k in ("x", "z"))
    weight = normal((D,), seed + 2, device, dtype).requires_grad_()
    y = ssm_triton.rmsnorm_fn(x, weight, None, z=z, eps=1e-5, group_size=size, norm_before_gate=before)
    assert y.is_contiguous()
    g = normal(y.shape, seed + 3, device, dtype)
    got = torch.autograd.grad(y, (x, z, weight), g)
    ref = [v.detach().cpu().double().requires_grad_() for v in (x, z, weight)]
    want_y = rmsnorm_torch(ref[0], ref[2], None, z=ref[1], eps=1e-5, group_size=size, norm_before_gate=before)
    want = torch.autograd.grad(want_y, ref, g.cpu().double())
    assert_close(y, want_y, dtype, "out")
    for name, a, b in zip(("x", "z", "weight"), got, want):
        assert_close(a, b, dtype, f"d{name}")


@pytest.mark.parametrize("layer", ["Mamba2", "Mamba3"])
def test_block_prefill_copies_no_slice(device, layer):
    """Mamba2's and Mamba3's inference forwards hand their projection slices to the kernels in place: no
    ``contiguous`` copy of ``x``, ``B``, ``C``, ``dt`` or ``z``, nor of Mamba3's angle rates expanded over the heads
    (each a full pass over a tensor on the GPU)."""
    block = getattr(ssm_triton, layer)(32, d_state=16, headdim=8, chunk_size=16, device=device)
    u = normal((1, 20, 32), 0, device, torch.float32)
    copies = []
    real = torch.Tensor.contiguous

    def spy(self, *a, **k):
        if not self.is_contiguous():
            copies.append(tuple(self.shape))
        return real(self, *a, **k)

    with torch.no_grad():
        want = block(u)
        torch.Tensor.contiguous = spy
        try:
            got = block(u)
        finally:
            torch.Tensor.contiguous = real
    assert copies == []
    assert torch.equal(got, want)


@examples(6)
@given(bsz=st.integers(1, 2), L=st.integers(1, 40), heads=st.sampled_from([(1, 1), (3, 1), (4, 2)]),
       P=st.sampled_from([3, 8]), pads=st.lists(st.integers(0, 3), min_size=3, max_size=3), seed=seeds(),
       fused=st.sampled_from(["0", "1"]), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_mamba3_inference_reads_projection_columns_in_place(device, bsz, L, heads, P, pads, seed, fused, dtype):
    """``mamba3_siso_combined`` with no backward to come reads ``V`` and ``Z`` as column slices of one wide tensor
    and ``Angles`` as one row of rates a step expanded over the heads (head stride 0, the slices' dtype), as the
    Mamba3 block passes them: on both inference routes, against the float64 loop on contiguous copies."""
    H, Hqk = heads
    S = 3
    t = make(device, bsz, L, H, Hqk, P, 8, S, seed, True, dtype)
    t.pop("Input_States")
    rates = normal((bsz, L, 1, S), seed + 20, device, torch.float32)
    views = packed({"V": t["V"], "Z": t["Z"], "rates": rates}, pads, seed, device, dtype)
    strided = dict(t, V=views["V"], Z=views["Z"], Angles=views["rates"].expand(bsz, L, H, S))
    assert strided["Angles"].stride(2) == 0 or H == 1
    assert angle_rows(strided["Angles"])[0].data_ptr() == strided["Angles"].data_ptr()   # read where it lies
    for name in ("V", "Z"):
        assert step_strided(strided[name]).data_ptr() == strided[name].data_ptr(), name
    want = reference(dict(t, Angles=views["rates"].float().expand(bsz, L, H, S).contiguous()))
    from ssm_triton.ops import mamba3 as m3_op
    with torch.no_grad(), route(fused):
        got = ssm_triton.mamba3_siso_combined(**strided, chunk_size=16, return_final_states=True)
        before, m3_op.IN_PLACE = m3_op.IN_PLACE, False   # the A/B switch: contiguous copies, the same numbers
        try:
            copied = ssm_triton.mamba3_siso_combined(**strided, chunk_size=16, return_final_states=True)
        finally:
            m3_op.IN_PLACE = before
    for g, c in zip(got, copied):
        torch.testing.assert_close(g, c, rtol=0, atol=0)
    for name, g, w in zip(("out",) + STATE_NAMES, got, (want[0], *want[1])):
        if name == "angle":
            assert_angle_close(g, w, dtype, name)
        else:   # q~ and k~ are kernel-computed tensor-core operands (tolerance.COMPUTED_OPERANDS), as test_mamba3's
            assert_close(g, w, dtype, name, computed_operands=True)
