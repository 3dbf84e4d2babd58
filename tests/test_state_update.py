"""selective_state_update against its float64 reference over layouts, groups, stride-0 broadcasts, options,
dtypes and cache indexing; token-by-token decoding against the full-sequence references; bad input."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import selective_scan_np, selective_state_update_np, ssd_np
from ssm_triton.tolerance import assert_close
from strategies import examples, normal, on, seeds, uniform

IO_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def make(device, single, bsz, H, P, N, G, options, broadcast, seed, io, state_dtype, extra_rows):
    """Inputs of one step; ``broadcast`` names which of dt (with D and dt_bias) and A are stride-0 views
    of one value per head, as Mamba-2's step passes all of them."""
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, scale=scale)  # noqa: E731
    if single:
        H, P, G = 1, P, 1
    t = {"state": r((bsz + extra_rows, H, P, N), 0).to(state_dtype), "x": r((bsz, H, P), 1).to(io),
         "B": r((bsz, G, N), 3).to(io), "C": r((bsz, G, N), 4).to(io)}
    if "dt" in broadcast:
        t["dt"] = r((bsz, H), 2, 0.5)[..., None].expand(bsz, H, P).to(io)
    else:
        t["dt"] = r((bsz, H, P), 2, 0.5).to(io)
    if "A" in broadcast:
        t["A"] = (-uniform((H,), 0.1, 2.0, seed + 5, device))[:, None, None].expand(H, P, N).float()
    else:
        t["A"] = (-uniform((H, P, N), 0.1, 2.0, seed + 5, device)).float()
    if not options:
        t["dt"] = t["dt"].abs() + 0.01
    else:
        t["z"] = r((bsz, H, P), 6).to(io)
        t["dt_softplus"] = True
        if "dt" in broadcast:
            t["D"] = r((H,), 7)[:, None].expand(H, P).float()
            t["dt_bias"] = r((H,), 8, 0.3)[:, None].expand(H, P).float()
        else:
            t["D"], t["dt_bias"] = r((H, P), 7).float(), r((H, P), 8, 0.3).float()
    if extra_rows:
        perm = np.random.default_rng(seed).permutation(bsz + extra_rows)[:bsz]
        t["state_batch_indices"] = torch.tensor(perm, device=device)
    if single:  # drop the head axis
        for k in ("state", "x", "dt", "z", "B", "C"):
            if k in t:
                t[k] = t[k][:, 0]
        t["A"] = t["A"][0]
        for k in ("D", "dt_bias"):
            if k in t:
                t[k] = t[k][0]
    return t


def as_np(t):
    return {k: (v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) and v.is_floating_point()
                else v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


@given(single=st.booleans(), bsz=st.integers(1, 3), H=st.integers(1, 4), P=st.integers(1, 70), N=st.integers(1, 40),
       G=st.sampled_from([1, 2]), options=st.booleans(), broadcast=st.sampled_from(["", "dt", "A", "dt A"]), seed=seeds(),
       io=st.sampled_from(IO_DTYPES), state_dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       extra_rows=st.sampled_from([0, 3]))
def test_step_matches_reference(device, single, bsz, H, P, N, G, options, broadcast, seed, io, state_dtype, extra_rows):
    H = H * G
    t = make(device, single, bsz, H, P, N, G, options, broadcast, seed, io, state_dtype, extra_rows)
    want_out, want_state = selective_state_update_np(**as_np(t))
    before = t["state"].clone()
    out = ssm_triton.selective_state_update(**t)
    assert out.dtype == io and out.shape == t["x"].shape
    assert_close(out, want_out, io if io != torch.float32 else state_dtype, "out")
    assert_close(t["state"], want_state, state_dtype, "state")
    if extra_rows:  # rows the batch does not index are untouched, bit for bit
        untouched = torch.ones(before.shape[0], dtype=torch.bool, device=device)
        untouched[t["state_batch_indices"]] = False
        assert torch.equal(t["state"][untouched], before[untouched])


@examples(6)
@given(single=st.booleans(), bsz=st.integers(1, 3), H=st.integers(1, 3), P=st.integers(1, 20), N=st.integers(1, 20),
       options=st.booleans(), broadcast=st.sampled_from(["", "dt", "A", "dt A"]), seed=seeds(),
       io=st.sampled_from(IO_DTYPES))
def test_planned_steps_reused_token_after_token(device, single, bsz, H, P, N, options, broadcast, seed, io):
    """Steps without cache indices take an op plan per input signature (``ops/_plans.py``): three steps of one
    signature (the first makes it, the next reuse it) each against the float64 step, the state carried; then
    a state of the same shape in another layout finds its own plan (or none), not that one."""
    from ssm_triton.ops import state_update as ops
    t = make(device, single, bsz, H, P, N, 1, options, broadcast, seed, io, torch.float32, 0)
    for k in range(4):
        if k:   # the next token's inputs
            t["x"] = t["x"] * 0.5 + 0.1 * k
            t["C"] = t["C"].flip(-1).contiguous()
        if k == 3:   # same values, the state's last two axes swapped in memory
            t["state"] = t["state"].transpose(-1, -2).contiguous().transpose(-1, -2)
        want_out, want_state = selective_state_update_np(**as_np(t))
        out = ssm_triton.selective_state_update(**t)
        assert_close(out, want_out, io, f"out, step {k}")
        assert_close(t["state"], want_state, torch.float32, f"state, step {k}")
    assert any(p for p in ops._PLANS._seen.values())


@examples(6)
@given(single=st.booleans(), bsz=st.integers(1, 3), H=st.integers(1, 3), P=st.integers(1, 20), N=st.integers(1, 20),
       options=st.booleans(), dt_broadcast=st.booleans(), seed=seeds(), io=st.sampled_from(IO_DTYPES),
       log_dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_the_step_from_A_log_matches_reference(device, single, bsz, H, P, N, options, dt_broadcast, seed, io,
                                               log_dtype):
    """``state_update_from_log`` (the blocks' composed steps: ``A = -exp(A_log)`` in the kernel) against the
    float64 step given ``-exp(A_log)``, ``A_log`` in the module's dtype, one value a head broadcast (Mamba-2's
    step) and one a channel and state (Mamba-1's); two tokens each, the second through the op plan the first
    made."""
    from ssm_triton.ops.state_update import state_update_from_log
    for per_head in (True, False):
        broadcast = ("dt " if dt_broadcast else "") + ("A" if per_head else "")
        t = make(device, single, bsz, H, P, N, 1, options, broadcast, seed, io, torch.float32, 0)
        A = t.pop("A")
        if per_head:   # one value a head, kept a stride-0 view
            A_log = torch.log(-A[..., :1, :1]).to(log_dtype).expand(A.shape)
        else:
            A_log = torch.log(-A).to(log_dtype)
        for k in range(2):
            t["x"] = t["x"] * 0.5 + 0.1 * k
            want_out, want_state = selective_state_update_np(**as_np({**t, "A": -torch.exp(A_log.double())}))
            out = state_update_from_log(**t, A_log=A_log)
            assert_close(out, want_out, io, f"out, step {k}, A per head {per_head}")
            assert_close(t["state"], want_state, torch.float32, f"state, step {k}, A per head {per_head}")
    with pytest.raises(ValueError, match="A_log"):   # bad input names the argument the caller passed
        state_update_from_log(**t, A_log=A_log[..., :-1] if N > 1 else A_log[..., None])


@given(L=st.integers(1, 12), H=st.integers(1, 3), G=st.sampled_from([1, 2]), P=st.integers(1, 6), N=st.integers(1, 6),
       seed=seeds())
def test_decoding_token_by_token_equals_the_ssd_forward(device, L, H, G, P, N, seed):
    H = H * G
    x, dt, B, C, z = (normal(s, seed + i, device).float() for i, s in
                      enumerate([(1, L, H, P), (1, L, H), (1, L, G, N), (1, L, G, N), (1, L, H, P)]))
    A = -uniform((H,), 0.1, 2.0, seed + 9, device).float()
    D, bias, h0 = normal((H,), seed + 10, device).float(), normal((H,), seed + 11, device).float(), normal((1, H, P, N), seed + 12, device).float()
    want_y, want_h = ssd_np(x.numpy(), dt.numpy(), A.numpy(), B.numpy(), C.numpy(), D=D.numpy(), z=z.numpy(),
                            dt_bias=bias.numpy(), initial_states=h0.numpy(), dt_softplus=True) if device.type == "cpu" else \
        ssd_np(*(v.cpu().numpy() for v in (x, dt, A, B, C)), D=D.cpu().numpy(), z=z.cpu().numpy(),
               dt_bias=bias.cpu().numpy(), initial_states=h0.cpu().numpy(), dt_softplus=True)
    state = h0.clone()
    per_head = lambda v: v[:, None].expand(H, P)  # noqa: E731
    ys = []
    for i in range(L):
        ys.append(ssm_triton.selective_state_update(
            state, x[:, i], dt[:, i, :, None].expand(1, H, P), A[:, None, None].expand(H, P, N), B[:, i], C[:, i],
            D=per_head(D), z=z[:, i], dt_bias=per_head(bias), dt_softplus=True))
    assert_close(torch.stack(ys, 1), want_y, torch.float32, "decoded outputs")
    assert_close(state, want_h, torch.float32, "state after the last token")


@given(L=st.integers(1, 10), d=st.integers(1, 6), N=st.integers(1, 6), seed=seeds())
def test_single_head_decoding_equals_the_selective_scan(device, L, d, N, seed):
    u, delta, z = (normal((1, d, L), seed + i, device).float() for i in range(3))
    B, C = normal((1, N, L), seed + 3, device).float(), normal((1, N, L), seed + 4, device).float()
    A = -uniform((d, N), 0.1, 2.0, seed + 5, device).float()
    D, bias = normal((d,), seed + 6, device).float(), normal((d,), seed + 7, device).float()
    want_out, want_last = selective_scan_np(*(v.cpu().double().numpy() for v in (u, delta, A, B, C)),
                                            D=D.cpu().numpy(), z=z.cpu().numpy(), delta_bias=bias.cpu().numpy(),
                                            delta_softplus=True)
    state = torch.zeros(1, d, N, device=device)
    outs = [ssm_triton.selective_state_update(state, u[..., i], delta[..., i], A, B[..., i], C[..., i], D=D, z=z[..., i],
                                              dt_bias=bias, dt_softplus=True) for i in range(L)]
    assert_close(torch.stack(outs, -1), want_out, torch.float32, "decoded outputs")
    assert_close(state, want_last, torch.float32, "last state")


def test_fullgraph_compile_updates_the_state(device):
    t = make(device, False, 2, 4, 5, 6, 2, True, "dt A", 3, torch.float32, torch.float32, 0)
    ref_state = t["state"].clone()
    want = ssm_triton.selective_state_update(**{**t, "state": ref_state})
    torch._dynamo.reset()
    step = torch.compile(lambda s, x: ssm_triton.selective_state_update(s, x, *(t[k] for k in ("dt", "A", "B", "C")),
                                                                       D=t["D"], z=t["z"], dt_bias=t["dt_bias"],
                                                                       dt_softplus=True), fullgraph=True)
    got = step(t["state"], t["x"])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(t["state"], ref_state)


GOOD = dict(state=torch.zeros(2, 4, 3, 5), x=torch.ones(2, 4, 3), dt=torch.ones(2, 4, 3), A=-torch.ones(4, 3, 5),
            B=torch.ones(2, 2, 5), C=torch.ones(2, 2, 5))


@pytest.mark.parametrize("override, exc, match", [
    (dict(state=torch.zeros(2, 5)), ValueError, r"state must be \(cache, d, N\) or \(cache, H, P, N\)"),
    (dict(state=torch.zeros(2, 4, 3, 5, dtype=torch.float64)), TypeError, "state must have dtype"),
    (dict(state=torch.zeros(2, 4, 3, 300), A=-torch.ones(4, 3, 300), B=torch.ones(2, 2, 300), C=torch.ones(2, 2, 300)),
     ValueError, "N = 300"),
    (dict(x=torch.ones(2, 4)), ValueError, r"x must be 3-D \(batch, H, P\)"),
    (dict(dt=torch.ones(2, 4, 2)), ValueError, r"dt must have shape \(batch, H, P\)"),
    (dict(A=-torch.ones(4, 3)), ValueError, r"A must be 3-D \(H, P, N\)"),
    (dict(B=torch.ones(2, 3, 5), C=torch.ones(2, 3, 5)), ValueError, "B has G = 3 groups"),
    (dict(C=torch.ones(2, 1, 5)), ValueError, r"C must have shape \(batch, G, N\) as B"),
    (dict(D=torch.ones(4)), ValueError, r"D must be 2-D \(H, P\)"),
    (dict(z=torch.ones(1, 4, 3)), ValueError, "z must have shape"),
    (dict(state=torch.zeros(2, 4, 2, 5)), ValueError, r"state must have shape \(cache, 4, 3, 5\)"),
    (dict(state=torch.zeros(3, 4, 3, 5)), ValueError, "pass state_batch_indices"),
    (dict(state=torch.zeros(3, 4, 3, 5), state_batch_indices=torch.tensor([0, 3])), ValueError, "rows of the cache, in \\[0, 3\\)"),
    (dict(state=torch.zeros(3, 4, 3, 5), state_batch_indices=torch.tensor([1, 1])), ValueError, "distinct rows"),
    (dict(state_batch_indices=torch.tensor([0.0, 1.0])), TypeError, "state_batch_indices must have dtype"),
    (dict(dt_softplus="yes"), TypeError, "dt_softplus must be a bool"),
    (dict(x=torch.ones(2, 4, 3, requires_grad=True)), RuntimeError, "not differentiable"),
    (dict(B=torch.ones(2, 2, 5, device="meta"), C=torch.ones(2, 2, 5, device="meta")), ValueError, "B is on meta"),
])
def test_bad_input_is_rejected_with_the_argument_named(device, override, exc, match):
    args = on(device, {**GOOD, **override})
    if "state_batch_indices" in override:
        # a CPU copy of the indices is what gets a ValueError at once; on a GPU, device-resident indices
        # are checked asynchronously (see the graph-capture test)
        args["state_batch_indices"] = override["state_batch_indices"]
        # a good call with indices first: value checks must not be skipped for a call seen before
        good = on(device, {**GOOD, "state": torch.zeros(3, 4, 3, 5)})
        ssm_triton.selective_state_update(**good, state_batch_indices=torch.tensor([2, 0]))
    with pytest.raises(exc, match=match):
        ssm_triton.selective_state_update(**args)


def test_a_remembered_signature_still_rejects_a_bad_call(device):
    """The checks run once per signature: after a good call, calls that differ from it in one plain
    argument's type, one tensor's dtype, or that record a graph are still rejected."""
    good = on(device, GOOD)
    ssm_triton.selective_state_update(**{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in good.items()})
    for override, exc, match in ((dict(dt_softplus=int(good.get("dt_softplus", False))), TypeError, "dt_softplus"),
                                 (dict(x=good["x"].double()), TypeError, "x must have dtype"),
                                 (dict(x=good["x"].clone().requires_grad_()), RuntimeError, "not differentiable")):
        with pytest.raises(exc, match=match):
            ssm_triton.selective_state_update(**{**good, **override})


def test_an_out_of_range_cache_row_is_neither_read_nor_written(device):
    """The indices are checked without a host sync (asynchronously on a GPU), so the kernel must stand
    a bad one: its row of the output is NaN, no cache row outside the valid ones is touched, and the
    valid rows are updated as the reference says."""
    from ssm_triton.kernels import state_update as kst
    H, P, N = 2, 3, 4
    state = normal((3, H, P, N), 0, device, torch.float32)
    x, dt = normal((2, H, P), 1, device, torch.float32), uniform((2, H, P), 0.01, 1.0, 2, device, torch.float32)
    A = -uniform((H, P, N), 0.1, 2.0, 3, device, torch.float32)
    B, C = normal((2, 1, N), 4, device, torch.float32), normal((2, 1, N), 5, device, torch.float32)
    idx = torch.tensor([2, 7], device=device)
    before = state.clone()
    out = kst.state_update(state, x, dt, A, B, C, None, None, None, False, idx)
    want_out, want_state = selective_state_update_np(*(t[:1].double().cpu().numpy() for t in (before[2:], x, dt)),
                                                     A.double().cpu().numpy(), B[:1].double().cpu().numpy(),
                                                     C[:1].double().cpu().numpy())
    assert torch.isnan(out[1]).all() and not torch.isnan(out[0]).any()
    assert_close(out[:1], want_out, torch.float32, "valid row's output")
    assert_close(state[2:], want_state, torch.float32, "valid row's state")
    assert torch.equal(state[:2], before[:2]), "rows that no index names stay as they were"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-graph capture needs a GPU")
def test_cache_slots_and_packed_sequences_can_be_captured_in_a_cuda_graph(device):
    """Serving systems capture the decode step with device-resident cache slots, and prefill packed
    sequences: neither validation may sync with the host."""
    bsz, H, P, N = 2, 2, 4, 8
    state = normal((4, H, P, N), 0, device, torch.float32)
    x, dt = normal((bsz, H, P), 1, device, torch.float32), uniform((bsz, H, P), 0.01, 1.0, 2, device, torch.float32)
    A = -uniform((H, P, N), 0.1, 2.0, 3, device, torch.float32)
    B, C = normal((bsz, 1, N), 4, device, torch.float32), normal((bsz, 1, N), 5, device, torch.float32)
    idx = torch.tensor([3, 1], device=device)
    xs, dts = normal((1, 12, H, P), 6, device, torch.float32), uniform((1, 12, H), 0.01, 0.5, 7, device, torch.float32)
    As = -uniform((H,), 0.5, 2.0, 8, device, torch.float32)
    Bs, Cs = normal((1, 12, 1, N), 9, device, torch.float32), normal((1, 12, 1, N), 10, device, torch.float32)
    cu = torch.tensor([0, 5, 12], device=device, dtype=torch.int32)

    def step():
        out = ssm_triton.selective_state_update(state, x, dt, A, B, C, state_batch_indices=idx)
        y, varlen = ssm_triton.mamba_chunk_scan_combined(xs, dts, As, Bs, Cs, 16, cu_seqlens=cu,
                                                         return_varlen_states=True)
        return out, y, varlen

    start = state.clone()
    eager = step()
    state.copy_(start)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    state.copy_(start)
    graph.replay()
    torch.cuda.synchronize()
    for got, want in zip(captured, eager):
        torch.testing.assert_close(got, want)
    # outside capture a bad slot still fails, at the next synchronisation, naming the argument; a
    # device-side assert leaves the CUDA context unusable, so it runs in a process of its own
    code = ("import torch, ssm_triton; s = torch.zeros(2, 2, 4, 8, device='cuda'); x = torch.zeros(2, 2, 4, "
            "device='cuda'); A = -torch.ones(2, 4, 8, device='cuda'); B = torch.zeros(2, 1, 8, device='cuda'); "
            "ssm_triton.selective_state_update(s, x, x + 0.1, A, B, B, state_batch_indices=torch.tensor([0, 9], "
            "device='cuda')); torch.cuda.synchronize()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "state_batch_indices must be rows of the cache" in proc.stderr, proc.stderr[-2000:]
