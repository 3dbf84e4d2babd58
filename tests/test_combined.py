"""mamba_ssm's whole-block functions, composed from ssm_triton's ops, against the same blocks composed
from the float64 references: outputs, final states and the input's gradient, over their options."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.tolerance import scaled_error
from builders import inner_reference, split_reference
from strategies import examples, normal, seeds

FEW = examples(4)


def both_match(got, want, leaves32, leaves64, cotangents):
    """The output and the final state against float64's, then every fp32 leaf's gradient under one cotangent for
    each (the final state's gradient flows back too)."""
    for a, b in zip(got, want):
        assert scaled_error(a, b) < 1e-4
    torch.autograd.backward(got, tuple(c.float() for c in cotangents))
    torch.autograd.backward(want, cotangents)
    for k in leaves32:
        err = scaled_error(leaves32[k].grad, leaves64[k].grad)
        assert err < 1e-3, f"grad of {k}: scaled error {err:.2e}"


@FEW
@given(L=st.integers(1, 40), G=st.sampled_from([1, 2]), d_mlp=st.sampled_from([0, 4]), norm=st.booleans(),
       gate_first=st.booleans(), outproj=st.booleans(), D_per_channel=st.booleans(), h0=st.booleans(),
       packed=st.booleans(), seed=seeds())
def test_split_conv1d_scan_combined_matches_the_references(device, L, G, d_mlp, norm, gate_first, outproj,
                                                            D_per_channel, h0, packed, seed):
    """Outputs, final states and every gradient (the final states' cotangent included): a training call is one
    autograd node whose backward calls the pieces' backwards (ops/split_conv_whole.py)."""
    H, P, N, W = 4, 8, 8, 4
    width = 2 * d_mlp + 2 * H * P + 2 * G * N + H
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, scale=scale)  # noqa: E731
    t = dict(zxbcdt=r((2, L, width), 0), conv1d_weight=r((H * P + 2 * G * N, W), 1, 0.5),
             conv1d_bias=r((H * P + 2 * G * N,), 2, 0.1), dt_bias=r((H,), 3, 0.3), A=-r((H,), 4).abs() - 0.1,
             D=r((H, P) if D_per_channel else (H,), 5))
    if norm:
        t["rmsnorm_weight"] = 1 + r((H * P,), 6, 0.1)
    if outproj:
        t.update(outproj_weight=r((12, d_mlp + H * P), 7), outproj_bias=r((12,), 9))
    if h0:
        t["initial_states"] = r((2, H, P, N), 10)
    # two sequences a row where packed: the conv's window and the state restart at each
    seq_idx = (torch.arange(L, device=device) >= (seed % L)).int().repeat(2, 1) if packed else None
    x64 = {k: v.clone().requires_grad_() for k, v in t.items()}
    f32 = {k: v.float().requires_grad_() for k, v in t.items()}
    got, got_final = ssm_triton.mamba_split_conv1d_scan_combined(
        **f32, chunk_size=16, headdim=P, ngroups=G, rmsnorm_eps=1e-5, norm_before_gate=not gate_first,
        return_final_states=True, seq_idx=seq_idx)
    g = {k: x64.get(k) for k in ("rmsnorm_weight", "outproj_weight", "outproj_bias", "initial_states")}
    want, want_final = split_reference(x64["zxbcdt"], x64["conv1d_weight"], x64["conv1d_bias"], x64["dt_bias"], x64["A"],
                                       x64["D"], H, P, G, N, d_mlp, g["rmsnorm_weight"], gate_first,
                                       g["outproj_weight"], g["outproj_bias"], g["initial_states"], seq_idx)
    both_match((got, got_final), (want, want_final), f32, x64, (r(tuple(want.shape), 8), r(tuple(want_final.shape), 11)))


@FEW
@given(L=st.integers(1, 30), rms=st.booleans(), bias=st.booleans(), seed=seeds())
def test_inner_fn_matches_the_references(device, L, rms, bias, seed):
    """Outputs, the last state and every gradient (the last state's cotangent included); without the norms a
    training call is one autograd node (ops/inner_whole.py), with them the ops composed."""
    d, N, R, dm = 16, 8, 2, 8
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, scale=scale)  # noqa: E731
    t = dict(xz=r((2, 2 * d, L), 0), conv1d_weight=r((d, 1, 4), 1, 0.5), conv1d_bias=r((d,), 2, 0.1),
             x_proj_weight=r((R + 2 * N, d), 3, 0.3), delta_proj_weight=r((d, R), 4, 0.5), out_proj_weight=r((dm, d), 5),
             A=-torch.arange(1, N + 1, device=device, dtype=torch.float64).repeat(d, 1) * (1 + r((d, 1), 12, 0.1).abs()),
             D=r((d,), 6), delta_bias=r((d,), 7, 0.3))
    if bias:
        t["out_proj_bias"] = r((dm,), 13)
    norms = {k: 1 + r((n,), 8 + i, 0.1) for i, (k, n) in enumerate(zip("bcd", (N, N, d)))} if rms else None
    f32 = {k: v.float().requires_grad_() for k, v in t.items()}
    x64 = {k: v.clone().requires_grad_() for k, v in t.items()}
    kw = dict(b_rms_weight=norms["b"].float(), c_rms_weight=norms["c"].float(), dt_rms_weight=norms["d"].float()) if rms else {}
    got, got_last = ssm_triton.mamba_inner_fn(**{"out_proj_bias": None, **f32}, **kw, return_last_state=True)
    want, want_last = inner_reference(x64["xz"], x64["conv1d_weight"], x64["conv1d_bias"], x64["x_proj_weight"],
                                      x64["delta_proj_weight"], x64["out_proj_weight"], x64["A"], x64["D"],
                                      x64["delta_bias"], norms, out_b=x64.get("out_proj_bias"), last=True)
    both_match((got, got_last), (want, want_last), f32, x64, (r(tuple(want.shape), 11), r(tuple(want_last.shape), 14)))


def test_bad_input_gets_a_clear_error(device):
    z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
    good = dict(zxbcdt=z(1, 5, 2 * 32 + 2 * 8 + 4), conv1d_weight=z(32 + 16, 4), conv1d_bias=None, dt_bias=z(4),
                A=z(4), D=z(4), chunk_size=16, headdim=8)
    ssm_triton.mamba_split_conv1d_scan_combined(**good)
    with pytest.raises(ValueError, match="headdim is required"):
        ssm_triton.mamba_split_conv1d_scan_combined(**{**good, "headdim": None})
    with pytest.raises(ValueError, match="zxbcdt's last dim"):
        ssm_triton.mamba_split_conv1d_scan_combined(**{**good, "zxbcdt": z(1, 5, 83)})
    with pytest.raises(ValueError, match="ngroups"):
        ssm_triton.mamba_split_conv1d_scan_combined(**{**good, "ngroups": 3})
    with pytest.raises(ValueError, match=r"dt_bias must have shape \(H,\)"):
        ssm_triton.mamba_split_conv1d_scan_combined(**{**good, "dt_bias": z(5)})
    with pytest.raises(ValueError, match=r"xz must have shape \(batch, 2 d, L\)"):
        ssm_triton.mamba_inner_fn(z(1, 6, 5), z(4, 1, 4), None, z(2 + 16, 4), z(4, 2), z(8, 4), None, z(4, 8))
    with pytest.raises(ValueError, match="x_proj_weight must have shape"):
        ssm_triton.mamba_inner_fn(z(1, 8, 5), z(4, 1, 4), None, z(3 + 16, 4), z(4, 2), z(8, 4), None, z(4, 8))


def test_training_calls_are_one_autograd_node(device):
    """A call that records a graph is one node whose inputs are the leaves themselves (the engine's cost per node is
    most of a small fwd+bwd's host time): the split-conv function, and mamba_inner_fn's projected call."""
    r = lambda *s: torch.randn(*s, device=device).requires_grad_()  # noqa: E731
    H, P, N = 2, 8, 8
    split = ssm_triton.mamba_split_conv1d_scan_combined(
        r(1, 5, 2 * H * P + 2 * N + H), r(H * P + 2 * N, 4), r(H * P + 2 * N), r(H), r(H), r(H), 16, headdim=P,
        rmsnorm_weight=r(H * P), outproj_weight=r(6, H * P))
    inner = ssm_triton.mamba_inner_fn(r(1, 2 * 8, 5), r(8, 1, 4), r(8), r(2 + 2 * N, 8), r(8, 2), r(6, 8), r(6),
                                      (-torch.rand(8, N, device=device)).requires_grad_(), D=r(8), delta_bias=r(8))
    for out in (split, inner):
        parents = [f for f, _ in out.grad_fn.next_functions if f is not None]
        assert parents and all(type(f).__name__ == "AccumulateGrad" for f in parents), \
            [type(f).__name__ for f in parents]


def test_the_one_node_switch_composes_the_ops(device, monkeypatch):
    """``SSM_TRITON_ONE_NODE=0`` (``ops/_layout.ONE_NODE``): the training call composes the ops again, each its own
    node, with the same result."""
    from ssm_triton.ops import _layout
    r = lambda *s: torch.randn(*s, device=device, generator=torch.Generator(device).manual_seed(sum(s)))  # noqa: E731
    H, P, N = 2, 8, 8
    args = [r(1, 5, 2 * H * P + 2 * N + H), r(H * P + 2 * N, 4), r(H * P + 2 * N), r(H), -r(H).abs(), r(H)]
    leaves = [a.clone().requires_grad_() for a in args]
    one = ssm_triton.mamba_split_conv1d_scan_combined(*leaves, 16, headdim=P, rmsnorm_weight=torch.ones(H * P, device=device))
    monkeypatch.setattr(_layout, "ONE_NODE", False)
    composed = ssm_triton.mamba_split_conv1d_scan_combined(*leaves, 16, headdim=P, rmsnorm_weight=torch.ones(H * P, device=device))
    assert type(one.grad_fn).__name__ != type(composed.grad_fn).__name__
    torch.testing.assert_close(one, composed)


@pytest.mark.parametrize("kind", ["Mamba", "Mamba2", "Mamba3", "Mamba3-MIMO"])
def test_blocks_under_autocast_match_the_composed_ops(device, kind, monkeypatch):
    """Under autocast a block casts what autocast would (the projections' operands) and runs its one-node op with
    autocast off: the output and the gradients of the input and of every parameter are the composed call's."""
    from ssm_triton.ops import _layout
    torch.manual_seed(0)
    m = {"Mamba": lambda: ssm_triton.Mamba(16, d_state=8, device=device),
         "Mamba2": lambda: ssm_triton.Mamba2(16, d_state=8, headdim=8, chunk_size=16, device=device),
         "Mamba3": lambda: ssm_triton.Mamba3(16, d_state=8, headdim=8, chunk_size=16, is_outproj_norm=True,
                                             device=device),
         "Mamba3-MIMO": lambda: ssm_triton.Mamba3(16, d_state=8, headdim=8, chunk_size=16, is_mimo=True, mimo_rank=2,
                                                  device=device)}[kind]()
    u = torch.randn(1, 6, 16, device=device)
    runs = []
    for one in (True, False):
        monkeypatch.setattr(_layout, "ONE_NODE", one)
        m.zero_grad()
        x = u.clone().requires_grad_()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = m(x)
        assert ("whole" in type(out.grad_fn).__name__) == one, type(out.grad_fn).__name__
        out.float().sum().backward()
        runs.append((out.detach(), x.grad, *(p.grad.clone() for p in m.parameters())))
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
