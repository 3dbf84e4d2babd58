"""The Mamba (Mamba-1) block: mamba_ssm's parameter names, shapes and initialisation, its forward and
gradients against a float64 composition of the references, and decoding (token by token, and
prefill + decode) against the full forward."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import causal_conv1d_torch, selective_scan_ref
from blocks import perturbed, assert_forward_matches, assert_grads_match, prefill_then_decode
from strategies import BIG, examples, seeds

# block-level cases are whole models under the interpreter: few examples there, the GPU profile runs many
FEW = examples(5)

# mamba_ssm's Mamba(d_model=16, d_state=8): d_inner 32, dt_rank ceil(16/16) = 1, x_proj to dt, B, C
# (1 + 2*8 = 17), conv over the 32 inner channels
EXPECTED_STATE_DICT = {
    "in_proj.weight": (64, 16), "conv1d.weight": (32, 1, 4), "conv1d.bias": (32,), "x_proj.weight": (17, 32),
    "dt_proj.weight": (32, 1), "dt_proj.bias": (32,), "A_log": (32, 8), "D": (32,), "out_proj.weight": (16, 32),
}


def build(device, seed, **kw):
    torch.manual_seed(seed)
    cfg = dict(d_model=16, d_state=8, layer_idx=0, device=device)
    cfg.update(kw)
    return ssm_triton.Mamba(**cfg)


def test_state_dict_names_shapes_and_initialisation_match_mamba_ssm(device):
    m = build(device, 0)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == EXPECTED_STATE_DICT
    # S4D-real: A[:, n] = -(n + 1) on every channel
    torch.testing.assert_close(-m.A_log.exp(), -torch.arange(1., 9., device=device).expand(32, 8))
    assert m.A_log.dtype == torch.float32 and (m.D == 1).all()
    dt = F.softplus(m.dt_proj.bias)
    assert (dt >= 1e-3 * 0.999).all() and (dt <= 0.1 * 1.001).all()           # dt in [dt_min, dt_max]
    assert m.dt_proj.weight.abs().max() <= 1.0                                  # uniform(+-dt_rank^-0.5)
    assert build(device, 0, dt_rank=3, d_conv=2).x_proj.weight.shape == (3 + 16, 32)


def reference_forward(m, p, u):
    """The block from the references, on ``p`` (parameters by name) and ``u``, differentiable."""
    x, z = (u @ p["in_proj.weight"].T + p.get("in_proj.bias", 0)).transpose(1, 2).chunk(2, dim=1)
    x = causal_conv1d_torch(x, p["conv1d.weight"][:, 0], p.get("conv1d.bias"), activation="silu")
    dt, B, C = torch.split(x.transpose(1, 2) @ p["x_proj.weight"].T, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = dt @ p["dt_proj.weight"].T
    y = selective_scan_ref(x, dt.transpose(1, 2), -torch.exp(p["A_log"]), B.transpose(1, 2), C.transpose(1, 2),
                           D=p["D"], z=z, delta_bias=p["dt_proj.bias"], delta_softplus=True)
    return y.transpose(1, 2) @ p["out_proj.weight"].T + p.get("out_proj.bias", 0)


@FEW
@given(L=st.integers(1, 40), bsz=st.integers(1, 2), seed=seeds())
def test_forward_matches_the_references_composed(device, L, bsz, seed):
    m = build(device, seed % 1000)
    u = torch.randn(bsz, L, 16, device=device, generator=torch.Generator(device).manual_seed(seed))
    assert_forward_matches(m, u, lambda p, u: reference_forward(m, p, u))


@pytest.mark.parametrize("opts", [dict(), dict(bias=True, conv_bias=False)], ids=("default", "biases"))
@FEW
@given(L=st.integers(1, 40), seed=seeds())
def test_gradients_match_the_references_composed(device, L, seed, opts):
    """Every parameter's gradient and the input's: a training call is one autograd node whose backward is written
    out (ops/inner_whole.py), with and without the biases."""
    m = build(device, seed % 1000, **opts)
    m = perturbed(m) if opts else m
    u = torch.randn(2, L, 16, device=device, generator=torch.Generator(device).manual_seed(seed))
    assert_grads_match(m, u, lambda p, u: reference_forward(m, p, u), seed)


@FEW
# each decode step costs the interpreter ~1.5 s (the fused step's in-projection): CI's sequences are shorter
@given(L=st.integers(2, 24 if BIG else 12), prefill=st.integers(0, 23), d_conv=st.integers(2, 4), seed=seeds())
def test_prefill_then_decode_equals_the_full_forward(device, L, prefill, d_conv, seed):
    m = build(device, seed % 1000, d_conv=d_conv)
    u = torch.randn(2, L, 16, device=device, generator=torch.Generator(device).manual_seed(seed))
    with torch.no_grad():
        want = m(u)
    torch.testing.assert_close(prefill_then_decode(m, u, min(prefill, L - 1)), want, rtol=1e-4, atol=1e-5)


def test_step_returns_and_updates_the_states(device):
    m = build(device, 1)
    conv_state, ssm_state = m.allocate_inference_cache(3, 10)
    assert conv_state.shape == (3, 32, 4) and ssm_state.shape == (3, 32, 8)
    with torch.no_grad():
        out, c, s = m.step(torch.randn(3, 1, 16, device=device), conv_state, ssm_state)
    assert out.shape == (3, 1, 16) and c is conv_state and s is ssm_state
    assert conv_state.abs().sum() > 0 and ssm_state.abs().sum() > 0


def test_bad_input_gets_a_clear_error(device):
    m = build(device, 2)
    conv_state, ssm_state = m.allocate_inference_cache(1, 4)
    with pytest.raises(ValueError, match=r"hidden_states must be \(batch, 1, d_model\)"):
        m.step(torch.randn(1, 2, 16, device=device), conv_state, ssm_state)
    m.layer_idx = None
    with pytest.raises(ValueError, match="layer_idx"):
        m(torch.randn(1, 3, 16, device=device), inference_params=ssm_triton.InferenceParams(3, 1))
    with pytest.raises(ValueError, match="dt_init"):
        build(device, 0, dt_init="xavier")


def test_training_call_is_one_autograd_node(device):
    """in_proj, the conv, the projections, the scan and out_proj in one node over the parameters (leaves)."""
    m = build(device, 0)
    out = m(torch.randn(1, 5, 16, device=device, requires_grad=True))
    parents = [type(f).__name__ for f, _ in out.grad_fn.next_functions if f is not None]
    assert parents and set(parents) == {"AccumulateGrad"}, parents
