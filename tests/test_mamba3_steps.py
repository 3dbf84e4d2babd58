"""The Mamba3 block's step sizes in one launch (``kernels/mamba3/block_steps.py``) against the block's PyTorch
composition in float64, and the block's inference forward through it against its PyTorch route."""
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.ops import mamba3_steps
from ssm_triton.tolerance import assert_close
from strategies import examples, normal, seeds


@examples(8)
@given(b=st.integers(1, 2), L=st.integers(1, 70), H=st.integers(1, 9), extra=st.integers(0, 5), masked=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=seeds())
def test_block_steps_match_the_composition(device, b, L, H, extra, masked, dtype, seed):
    """DT, ADT and Trap ``(b, H, L)`` from a projection's columns read in place (a slice of wider rows), against
    softplus / clamp / product in float64, with left padding zeroing the steps; large inputs take softplus's linear
    branch, the A floor binds for the most negative decays."""
    C = 3 * H + 2 * extra + 3
    proj = (normal((b, L, C + 4), seed, device) * 8).to(dtype)[..., 2:C + 2]   # row stride past the columns
    dt_bias = normal((H,), seed + 1, device, torch.float32)
    at, floor = extra + 1, 0.05
    mask = (torch.arange(L, device=device)[None] >= torch.randint(0, L + 1, (b, 1), device=device)) if masked else None
    DT, ADT, trap = mamba3_steps.block_steps(proj, at, at + H, at + 2 * H, H, dt_bias, floor, mask)
    p = proj.double()
    dt = F.softplus(p[..., at:at + H] + dt_bias.double())
    if masked:
        dt = dt * mask[..., None]
    adt = torch.clamp(-F.softplus(p[..., at + H:at + 2 * H]), max=-floor) * dt
    for got, want, name in ((DT, dt, "DT"), (ADT, adt, "ADT"), (trap, p[..., at + 2 * H:at + 3 * H], "Trap")):
        assert got.shape == (b, H, L) and got.dtype == torch.float32 and got.is_contiguous()
        assert_close(got, want.transpose(1, 2), torch.float32, name)


@pytest.mark.parametrize("opts", [dict(), dict(is_mimo=True, mimo_rank=2, chunk_size=8)], ids=["siso", "mimo"])
@pytest.mark.parametrize("masked", [False, True])
def test_block_inference_takes_one_launch_for_its_steps(device, opts, masked):
    """A Mamba3 block's inference forward (and a prefill filling its states) with the one-launch step sizes equals
    its PyTorch route, left-padded rows included; a call asking for gradients keeps the PyTorch route."""
    torch.manual_seed(2)
    m = ssm_triton.Mamba3(d_model=16, d_state=8, headdim=8, chunk_size=opts.get("chunk_size", 16), layer_idx=0,
                          device=device, **{k: v for k, v in opts.items() if k != "chunk_size"})
    u = normal((2, 21, 16), 3, device, torch.float32)
    mask = (torch.arange(21, device=device)[None] >= torch.tensor([[0], [13]], device=device)).int() if masked else None
    calls = []
    real = mamba3_steps.block_steps

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    with torch.no_grad():
        with mock.patch.object(mamba3_steps, "ENABLED", False):
            want = m(u, seq_mask=mask)
        with mock.patch.object(mamba3_steps, "ENABLED", True), mock.patch.object(mamba3_steps, "block_steps", spy):
            got = m(u, seq_mask=mask)
            assert calls == [1]
            params = ssm_triton.InferenceParams(max_seqlen=21, max_batch_size=2)
            filled = m(u, inference_params=params, seq_mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(filled, want, rtol=1e-5, atol=1e-6)
    with mock.patch.object(mamba3_steps, "ENABLED", True), mock.patch.object(mamba3_steps, "block_steps", spy):
        m(u.requires_grad_(), seq_mask=mask).sum().backward()
    assert calls == [1, 1] and m.dt_bias.grad is not None


@examples(10)
@given(x=st.lists(st.floats(-60.0, 40.0, allow_nan=False, width=32), min_size=1, max_size=40), seed=seeds())
def test_softplus_keeps_relative_precision_over_its_range(device, x, seed):
    """The kernels' softplus (``kernels/activations.py``, through the step-size kernel) element by element against
    float64: relative error at fp32's scale down to the tiny steps of very negative inputs (``log(1 + exp(x))``
    in fp32 gave 0 below -16.6 and lost digits near it; the H100 run of 12-07 found it)."""
    v = torch.tensor(x, dtype=torch.float32, device=device)
    H = v.numel()
    proj = torch.stack([v, v, v], 0).reshape(1, 1, 3 * H)   # dd_dt, dd_A, trap columns of one token
    DT, ADT, _ = mamba3_steps.block_steps(proj, 0, H, 2 * H, H, torch.zeros(H, device=device), 0.0)
    want = F.softplus(v.double())
    err = ((DT.double().reshape(-1) - want).abs() / want).max().item()
    assert err <= 3e-6, f"softplus: relative error {err:.2e}"
    # ADT = min(-softplus, -floor) * DT with the floor 0: -softplus(x)^2, relative precision kept likewise where the
    # square is a normal fp32 number (fp32 holds nothing of a square below 1e-38; a GPU flushes its subnormals)
    sq = want * want
    normal_ = sq > 1e-30
    err_a = ((ADT.double().reshape(-1) + sq).abs() / sq)[normal_]
    assert err_a.numel() == 0 or err_a.max().item() <= 6e-6, f"ADT: relative error {err_a.max().item():.2e}"
