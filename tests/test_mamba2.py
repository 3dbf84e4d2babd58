"""The Mamba2 block: mamba_ssm's parameter names and shapes, its forward against a float64 composition
of the references, and decoding (token by token, and prefill + decode) against the full forward."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import causal_conv1d_torch, rmsnorm_torch, ssd_quadratic_torch
from blocks import perturbed, assert_one_node_unless_hooked, assert_forward_matches, assert_grads_match, prefill_then_decode
from strategies import examples, seeds

# each example runs the whole block (and up to 24 decode steps) through the interpreter
# block-level cases are whole models under the interpreter: few examples there, the GPU profile runs many
FEW = examples(5)

# mamba_ssm's Mamba2(d_model=16, d_state=8, headdim=8, ngroups=2): d_inner 32, 4 heads, conv over x, B, C
# (32 + 2*2*8 = 64 channels), in_proj to z, xBC, dt (32 + 64 + 4 = 100)
EXPECTED_STATE_DICT = {
    "in_proj.weight": (100, 16), "conv1d.weight": (64, 1, 4), "conv1d.bias": (64,), "dt_bias": (4,),
    "A_log": (4,), "D": (4,), "norm.weight": (32,), "out_proj.weight": (16, 32),
}


def build(device, seed, **kw):
    torch.manual_seed(seed)
    cfg = dict(d_model=16, d_state=8, headdim=8, ngroups=2, chunk_size=16, layer_idx=0, device=device)
    cfg.update(kw)
    return ssm_triton.Mamba2(**cfg)


def test_state_dict_names_and_shapes_match_mamba_ssm(device):
    m = build(device, 0)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == EXPECTED_STATE_DICT
    assert (m.A_log.exp() >= 1).all() and (m.A_log.exp() <= 16).all()             # A_init_range
    dt = torch.nn.functional.softplus(m.dt_bias)
    assert (dt >= 1e-3 * 0.999).all() and (dt <= 0.1 * 1.001).all()                # dt in [dt_min, dt_max]


def reference_forward(m, p, u):
    """The block from the references, on ``p`` (parameters by name) and ``u``, differentiable; with the options the
    module takes (the gated MLP part of ``d_ssm < d_inner``, biases, ``D`` per channel, no norm: ``z`` gates the scan)."""
    bsz, L, _ = u.shape
    proj = u @ p["in_proj.weight"].T + p.get("in_proj.bias", 0)
    d_mlp = (proj.shape[-1] - m.d_ssm - m.conv_dim - m.nheads) // 2
    z0, x0, z, xBC, dt = torch.split(proj, [d_mlp, d_mlp, m.d_ssm, m.conv_dim, m.nheads], dim=-1)
    xBC = causal_conv1d_torch(xBC.transpose(1, 2), p["conv1d.weight"][:, 0], p.get("conv1d.bias"),
                              activation="silu").transpose(1, 2)
    x, B, C = torch.split(xBC, [m.d_ssm, m.ngroups * m.d_state, m.ngroups * m.d_state], dim=-1)
    shaped = lambda t: t.reshape(bsz, L, m.nheads, m.headdim)  # noqa: E731
    y, _ = ssd_quadratic_torch(shaped(x), dt, -torch.exp(p["A_log"]),
                               B.reshape(bsz, L, m.ngroups, m.d_state), C.reshape(bsz, L, m.ngroups, m.d_state),
                               D=p["D"].view(m.nheads, m.headdim) if m.D_has_hdim else p["D"],
                               z=None if m.rmsnorm else shaped(z), dt_bias=p["dt_bias"], dt_softplus=True)
    y = y.reshape(bsz, L, m.d_ssm)
    if m.rmsnorm:
        y = rmsnorm_torch(y, p["norm.weight"], z=z, eps=1e-5, group_size=m.d_ssm // m.ngroups, norm_before_gate=False)
    if d_mlp:
        y = torch.cat([torch.nn.functional.silu(z0) * x0, y], dim=-1)
    return y @ p["out_proj.weight"].T + p.get("out_proj.bias", 0)


@FEW
@given(L=st.integers(1, 40), bsz=st.integers(1, 2), seed=seeds())
def test_forward_matches_the_references_composed(device, L, bsz, seed):
    m = build(device, seed % 1000)
    u = torch.randn(bsz, L, 16, device=device, generator=torch.Generator(device).manual_seed(seed))
    assert_forward_matches(m, u, lambda p, u: reference_forward(m, p, u))


OPTIONS = [dict(), dict(D_has_hdim=True, bias=True, conv_bias=False), dict(rmsnorm=False, d_ssm=16)]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()) or "default")
@FEW
@given(L=st.integers(1, 40), seed=seeds())
def test_gradients_match_the_references_composed(device, L, seed, opts):
    """Every parameter's gradient and the input's: a training call is one autograd node whose backward is written
    out (ops/split_conv_whole.py), over the options it takes."""
    m = build(device, seed % 1000, **opts)
    m = perturbed(m) if opts else m
    u = torch.randn(2, L, 16, device=device, generator=torch.Generator(device).manual_seed(seed))
    assert_grads_match(m, u, lambda p, u: reference_forward(m, p, u), seed)


@FEW
@given(L=st.integers(2, 24), prefill=st.integers(0, 23), seed=seeds())
def test_prefill_then_decode_equals_the_full_forward(device, L, prefill, seed):
    m = build(device, seed % 1000)
    u = torch.randn(2, L, 16, device=device, generator=torch.Generator(device).manual_seed(seed))
    with torch.no_grad():
        want = m(u)
    torch.testing.assert_close(prefill_then_decode(m, u, min(prefill, L - 1)), want, rtol=1e-4, atol=1e-5)


def test_step_returns_and_updates_the_states(device):
    m = build(device, 1)
    conv_state, ssm_state = m.allocate_inference_cache(3, 10)
    assert conv_state.shape == (3, 64, 4) and ssm_state.shape == (3, 4, 8, 8)
    with torch.no_grad():
        out, c, s = m.step(torch.randn(3, 1, 16, device=device), conv_state, ssm_state)
    assert out.shape == (3, 1, 16) and c is conv_state and s is ssm_state
    assert conv_state.abs().sum() > 0 and ssm_state.abs().sum() > 0


def test_training_call_is_one_node_unless_a_submodule_is_hooked(device):
    """The training call reads in_proj's, the norm's and out_proj's weights inside one autograd node; a hook (or an
    adapter) on one of them sends it through the modules instead, so the hook still runs."""
    m = build(device, 0)
    assert_one_node_unless_hooked(m, torch.randn(1, 5, 16, device=device, requires_grad=True), m.in_proj)


@given(L=st.integers(1, 9), w=st.integers(2, 4), pad=st.integers(0, 9), seed=seeds())
@examples(30)
def test_the_conv_window_after_a_prefill(device, L, w, pad, seed):
    """``fill_conv_state``: the last ``w`` columns of the prefill's conv input, zeros left of a short one and on left
    padding (``seq_mask``), against the window written out position by position."""
    from ssm_triton.modules.inference import fill_conv_state
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, L, generator=g).to(device)
    mask = (torch.arange(L)[None, :] >= torch.tensor([[min(pad, L - 1)], [0]])).to(torch.int32).to(device)
    for seq_mask in (None, mask):
        got = torch.full((2, 3, w), float("nan"), device=device)
        fill_conv_state(got, x, seq_mask)
        want = torch.zeros(2, 3, w)
        for j in range(w):   # window slot j holds position L - w + j
            t = L - w + j
            if t >= 0 and (seq_mask is None or seq_mask[:, t].bool().all()):
                want[:, :, j] = x[:, :, t].cpu()
            elif t >= 0:
                want[:, :, j] = x[:, :, t].cpu() * seq_mask[:, t, None].cpu()
        torch.testing.assert_close(got.cpu(), want)
