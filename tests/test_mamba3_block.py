"""The Mamba3 block (SISO and MIMO): mamba_ssm's parameter names and shapes, its forward and gradients against a float64
composition of the references, decoding (prefill + one token per call) against the full forward, and the LM
with ``layer="Mamba3"``."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from blocks import (assert_one_node_unless_hooked, assert_forward_matches, assert_grads_match, float64_params,
                    prefill_then_decode)
from ssm_triton.reference import mamba3_mimo_loop, mamba3_siso_loop, rmsnorm_torch
from ssm_triton.tolerance import assert_close
from strategies import BIG, examples, seeds


# mamba_ssm's Mamba3(d_model=16, d_state=8, headdim=8, ngroups=1, rope_fraction=0.5): d_inner 32, 4 heads,
# 2 angles; in_proj to z, x, B, C, dd_dt, dd_A, trap, angles (32 + 32 + 8 + 8 + 4 + 4 + 4 + 2 = 94)
EXPECTED_STATE_DICT = {
    "in_proj.weight": (94, 16), "dt_bias": (4,), "B_bias": (4, 1, 8), "C_bias": (4, 1, 8), "B_norm.weight": (8,),
    "C_norm.weight": (8,), "D": (4,), "out_proj.weight": (16, 32),
}


def build(device, seed, **kw):
    torch.manual_seed(seed)
    cfg = dict(d_model=16, d_state=8, headdim=8, chunk_size=16, layer_idx=0, device=device)
    cfg.update(kw)
    m = ssm_triton.Mamba3(**cfg)
    with torch.no_grad():  # off the initial values, so that every term (biases, norms, D) is exercised
        for p in (m.B_bias, m.C_bias, m.B_norm.weight, m.C_norm.weight, m.D,
                  *((m.mimo_x, m.mimo_z, m.mimo_o) if m.is_mimo else ())):
            p.add_(0.3 * torch.randn_like(p))
        if m.is_outproj_norm:
            m.norm.weight.add_(0.3 * torch.randn_like(m.norm.weight))
    return m


def test_state_dict_names_and_shapes_match_mamba_ssm(device):
    assert {k: tuple(v.shape) for k, v in build(device, 0).state_dict().items()} == EXPECTED_STATE_DICT
    m = build(device, 0, rope_fraction=1.0, is_outproj_norm=True, ngroups=2)
    assert m.num_rope_angles == 4 and m.in_proj.weight.shape == (32 + 32 + 32 + 12 + 4, 16)
    assert m.norm.weight.shape == (32,)
    m = build(device, 0, is_mimo=True, mimo_rank=3)   # B and C per rank, and the three rank projections
    assert m.in_proj.weight.shape == (94 + 2 * 2 * 8, 16)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items() if k.startswith(("mimo", "B_bias"))} == {
        "mimo_x": (4, 3, 8), "mimo_z": (4, 3, 8), "mimo_o": (4, 3, 8), "B_bias": (4, 3, 8)}
    dt = F.softplus(build(device, 1).dt_bias)
    assert (dt >= 1e-3 * 0.999).all() and (dt <= 0.1 * 1.001).all()                # dt in [dt_min, dt_max]


def reference_forward(m, p, u):
    """The block composed from float64 references: in_proj, the step sizes, RMSNorm on B and C, the SISO (or MIMO)
    loop, the optional gated norm, out_proj."""
    b, L, _ = u.shape
    H, P, N, G, S, R = m.nheads, m.headdim, m.d_state, m.num_bc_heads, m.num_rope_angles, m.mimo_rank
    z, x, B, C, dd_dt, dd_A, trap, ang = torch.split(u @ p["in_proj.weight"].T,
                                                     [32, 32, N * G * R, N * G * R, H, H, H, S], -1)
    A = torch.clamp(-F.softplus(dd_A), max=-m.A_floor)
    DT = F.softplus(dd_dt + p["dt_bias"])
    z = z.reshape(b, L, H, P)
    if m.is_mimo:
        return _reference_mimo(m, p, b, L, z, x, B, C, A, DT, trap, ang)
    Q = rmsnorm_torch(C.reshape(b, L, G, N), p["C_norm.weight"], eps=1e-5)
    K = rmsnorm_torch(B.reshape(b, L, G, N), p["B_norm.weight"], eps=1e-5)
    y, _ = mamba3_siso_loop(Q, K, x.reshape(b, L, H, P), (A * DT).transpose(1, 2), DT.transpose(1, 2),
                            trap.transpose(1, 2), p["C_bias"][:, 0], p["B_bias"][:, 0],
                            ang[:, :, None].expand(b, L, H, S), p["D"], None if m.is_outproj_norm else z)
    y = y.reshape(b, L, H * P)
    if m.is_outproj_norm:
        y = rmsnorm_torch(y, p["norm.weight"], z=z.reshape(b, L, H * P), eps=1e-5, group_size=P,
                          norm_before_gate=True)
    return y @ p["out_proj.weight"].T


def _reference_mimo(m, p, b, L, z, x, B, C, A, DT, trap, ang):
    H, P, N, G, S, R = m.nheads, m.headdim, m.d_state, m.num_bc_heads, m.num_rope_angles, m.mimo_rank
    norm = m.is_outproj_norm
    Q = rmsnorm_torch(C.reshape(b, L, R, G, N), p["C_norm.weight"], eps=1e-5)
    K = rmsnorm_torch(B.reshape(b, L, R, G, N), p["B_norm.weight"], eps=1e-5)
    y, _ = mamba3_mimo_loop(Q, K, x.reshape(b, L, H, P), (A * DT).transpose(1, 2), DT.transpose(1, 2),
                            trap.transpose(1, 2), p["C_bias"], p["B_bias"], p["mimo_x"], None if norm else p["mimo_z"],
                            None if norm else p["mimo_o"], ang[:, :, None].expand(b, L, H, S), p["D"],
                            None if norm else z)
    if norm:   # each rank's output normalised, gated by z * mimo_z, then summed through mimo_o
        zr = (z[:, :, None] * p["mimo_z"].transpose(0, 1)).reshape(b, L, R, H * P)
        y = rmsnorm_torch(y.reshape(b, L, R, H * P), p["norm.weight"], z=zr, eps=1e-5, group_size=P,
                          norm_before_gate=True).reshape(b, L, R, H, P)
        y = torch.einsum("blrhp,hrp->blhp", y, p["mimo_o"])
    return y.reshape(b, L, H * P) @ p["out_proj.weight"].T


OPTIONS = [dict(), dict(is_outproj_norm=True), dict(rope_fraction=1.0, ngroups=2), dict(is_mimo=True, mimo_rank=2),
           dict(is_mimo=True, mimo_rank=3, is_outproj_norm=True, chunk_size=8, ngroups=2)]
each_option = pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()) or "siso")
FEW = examples(2)


@each_option
@FEW
@given(L=st.integers(1, 40), bsz=st.integers(1, 2), seed=seeds())
def test_forward_matches_the_references_composed(device, L, bsz, seed, opts):
    m = build(device, seed % 1000, **opts)
    u = torch.randn(bsz, L, 16, generator=torch.Generator().manual_seed(seed)).to(device)
    assert_forward_matches(m, u, lambda p, x: reference_forward(m, p, x))


@each_option
@FEW
@given(L=st.integers(1, 30 if BIG else 16), seed=seeds())   # MIMO's took 66-83 s of CI at up to 30 steps
def test_gradients_match_the_references_composed(device, L, seed, opts):
    # One step from zero states with the out-projection norm: y = (gamma q.k + D) v is a multiple of v, the
    # norm is blind to its scale, so every scan parameter's gradient is exactly zero and a relative check
    # would hold fp32 rounding noise to zero. Two steps and more have real gradients.
    L = max(L, 2) if opts.get("is_outproj_norm") else L
    m = build(device, seed % 1000, **opts)
    u = torch.randn(2, L, 16, generator=torch.Generator().manual_seed(seed)).to(device)
    assert_grads_match(m, u, lambda p, x: reference_forward(m, p, x), seed)


@FEW
@given(L=st.integers(1, 16), seed=seeds())
def test_gradients_where_the_decay_floor_holds(device, L, seed):
    """``A = min(-softplus(dd_A), -A_floor)``: with a high floor some steps sit on it (no gradient to dd_A there),
    the rest below it; both against float64 autograd (the training call's backward writes this out by hand)."""
    m = build(device, seed % 1000, A_floor=0.7)
    u = torch.randn(2, L, 16, generator=torch.Generator().manual_seed(seed)).to(device)
    assert_grads_match(m, u, lambda p, x: reference_forward(m, p, x), seed)


@each_option
@FEW
@given(L=st.integers(2, 20), data=st.data(), seed=seeds())
def test_prefill_then_decode_equals_the_full_forward(device, L, data, seed, opts):
    prefill = data.draw(st.integers(0, L - 1), label="prefill")
    m = build(device, seed % 1000, **opts)
    u = torch.randn(2, L, 16, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        want = m(u)
    torch.testing.assert_close(prefill_then_decode(m, u, prefill), want, rtol=1e-4, atol=1e-5)


@each_option
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@FEW
@given(L=st.integers(1, 5), bsz=st.integers(1, 3), seed=seeds(), hooked=st.booleans())
def test_decode_steps_match_the_references_composed(device, L, bsz, seed, hooked, dtype, opts):
    """Decoding from empty states, a token a call, against the float64 block over the whole sequence: the step in
    one kernel (in_proj's row read where it lies; the step sizes, B's and C's norms and biases inside it), or,
    with a hook on B's norm, the composed step (the modules and the public step op), which must then run it. A
    decay floor of 0.7 holds about half the steps' decays (the default 1e-4 is the other decode test's); bf16
    blocks within bf16's tolerance."""
    m = build(device, seed % 1000, A_floor=0.7, **opts).to(dtype)
    calls = []
    if hooked:
        m.B_norm.register_forward_hook(lambda *_: calls.append(1))
    u = torch.randn(bsz, L, 16, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    got = prefill_then_decode(m, u, 0)
    with torch.no_grad():
        want = reference_forward(m, float64_params(m), u.double().cpu())
    assert_close(got.double().cpu(), want, dtype, "decoded")
    assert calls == ([1] * L if hooked else [])


@pytest.mark.parametrize("rank", [1, 2])
def test_step_returns_and_updates_the_states(device, rank):
    m = build(device, 0, is_mimo=rank > 1, mimo_rank=rank)
    cache = m.allocate_inference_cache(2, 8)
    assert [tuple(c.shape) for c in cache] == [(2, 4, 2), (2, 4, 8, 8), (2, rank, 4, 8), (2, 4, 8)]
    before = [c.clone() for c in cache]
    with torch.no_grad():
        out, *states = m.step(torch.randn(2, 1, 16, device=device), *cache)
    assert out.shape == (2, 1, 16)
    assert all(s is c for s, c in zip(states, cache))
    assert all(not torch.equal(b, c) for b, c in zip(before, cache))


def test_unsupported_options_say_so(device):
    with pytest.raises(ValueError, match="rope_fraction"):
        ssm_triton.Mamba3(16, d_state=8, headdim=8, rope_fraction=0.25)
    m = build(device, 0)
    with pytest.raises(NotImplementedError, match="seq_idx"):
        m(torch.randn(1, 4, 16, device=device), seq_idx=torch.zeros(1, 4, dtype=torch.int32, device=device))
    with pytest.raises(ValueError, match=r"seq_mask.*\(batch, L\)"):   # one row's mask would broadcast over both
        m(torch.randn(2, 4, 16, device=device), seq_mask=torch.ones(1, 4, dtype=torch.int32, device=device))


@pytest.mark.parametrize("opts", [dict(), dict(is_mimo=True, mimo_rank=2, chunk_size=8)], ids=["siso", "mimo"])
def test_packed_sequences_equal_each_alone(device, opts):
    m = build(device, 3, **opts)
    u = torch.randn(1, 11, 16, device=device)
    with torch.no_grad():
        packed = m(u, cu_seqlens=torch.tensor([0, 4, 11], device=device))
        alone = torch.cat([m(u[:, :4]), m(u[:, 4:])], 1)
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opts", [dict(), dict(is_outproj_norm=True), dict(is_mimo=True, mimo_rank=2, chunk_size=8),
                                  dict(is_mimo=True, mimo_rank=2, chunk_size=8, is_outproj_norm=True)],
                         ids=["siso", "siso-norm", "mimo", "mimo-norm"])
@FEW
@given(lengths=st.lists(st.integers(1, 21), min_size=2, max_size=3), seed=seeds())
def test_left_padded_rows_equal_each_alone(device, opts, lengths, seed):
    """Rows of different lengths padded on the LEFT with ``seq_mask``: each row's outputs at its tokens and the four
    states its prefill leaves (angle, ssm, k, v) are the row's alone (the padding crosses chunks: the state, the
    running angle and the trapezoid's previous input must all still be zero where the row starts)."""
    m = build(device, seed, **opts)
    L, b = max(lengths), len(lengths)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, L, 16, generator=g).to(device)
    mask = torch.stack([torch.arange(L) >= L - n for n in lengths]).to(device)
    u = u.masked_fill(~mask[..., None], 5.0)   # the padding's values must not matter
    params = ssm_triton.InferenceParams(max_seqlen=L, max_batch_size=b)
    with torch.no_grad():
        out = m(u, inference_params=params, seq_mask=mask.int())
        for row, n in enumerate(lengths):
            alone_params = ssm_triton.InferenceParams(max_seqlen=L, max_batch_size=1)
            alone = m(u[row:row + 1, L - n:], inference_params=alone_params)
            torch.testing.assert_close(out[row:row + 1, L - n:], alone, rtol=1e-4, atol=1e-5)
            for got, want in zip(params.key_value_memory_dict[0], alone_params.key_value_memory_dict[0]):
                torch.testing.assert_close(got[row:row + 1], want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="exclude each other"):
        m(u[:1], seq_mask=mask[:1].int(), cu_seqlens=torch.tensor([0, L], device=device))


@pytest.mark.parametrize("extra", [dict(), dict(is_mimo=True, mimo_rank=2, chunk_size=8)], ids=["siso", "mimo"])
def test_lm_with_mamba3_layers_generates_what_its_forward_scores(device, extra):
    """A two-layer LM of Mamba3 mixers: greedy generation's scores at each step are the full forward's
    logits for the generated prefix (the decode path and the chunked path agree through the whole model)."""
    from ssm_triton.models import MambaConfig, MambaLMHeadModel

    torch.manual_seed(0)
    cfg = MambaConfig(d_model=16, n_layer=2, vocab_size=32, pad_vocab_size_multiple=8,
                      ssm_cfg={**dict(layer="Mamba3", d_state=8, headdim=8, chunk_size=16), **extra})
    model = MambaLMHeadModel(cfg, device=device)
    ids = torch.randint(0, 32, (1, 5), device=device)
    out = model.generate(ids, max_length=9, output_scores=True, return_dict_in_generate=True, cg=False)
    with torch.no_grad():
        logits = model(out.sequences[:, :-1]).logits
    scores = torch.stack(out.scores, 1)
    torch.testing.assert_close(scores, logits[:, 4:], rtol=1e-4, atol=1e-4)
    assert math.isfinite(float(scores.abs().max()))


@pytest.mark.parametrize("extra,fused", [(dict(), True), (dict(is_outproj_norm=True), True),
                                         (dict(is_mimo=True, mimo_rank=2, chunk_size=8), True),
                                         (dict(is_mimo=True, mimo_rank=2, chunk_size=8, is_outproj_norm=True), True),
                                         (dict(is_outproj_norm=True), False)],
                         ids=["siso", "siso-outproj_norm", "mimo", "mimo-outproj_norm", "switched-off"])
@pytest.mark.parametrize("residual_in_fp32", [False, True])
def test_lm_decoding_with_the_projections_in_the_fused_steps_kernels(device, extra, fused, residual_in_fp32,
                                                                     monkeypatch):
    """``SSM_TRITON_M3_FUSED_PROJ`` (ops/mamba3_fused_step.py, on by default): the LM block's add+norm with in_proj in
    one launch, the output norm with out_proj in another; greedy generation's scores are still the full forward's
    logits, and the route is taken (but for MIMO's per-rank output norm, which keeps the module's step, and where
    the switch is off: the module's step with the LM's add+norm apart)."""
    from ssm_triton.models import MambaConfig, MambaLMHeadModel
    from ssm_triton.ops import mamba3_fused_step as m3_fused

    monkeypatch.setattr(m3_fused, "FUSED_PROJ", fused)
    taken = []
    real = m3_fused.step

    def spy(*args):
        done = real(*args)
        taken.append(done is not None)
        return done

    monkeypatch.setattr(m3_fused, "step", spy)
    torch.manual_seed(1)
    cfg = MambaConfig(d_model=16, n_layer=2, vocab_size=32, pad_vocab_size_multiple=8,
                      residual_in_fp32=residual_in_fp32,
                      ssm_cfg={**dict(layer="Mamba3", d_state=8, headdim=8, chunk_size=16), **extra})
    model = MambaLMHeadModel(cfg, device=device)
    with torch.no_grad():
        for p in model.parameters():   # away from the initial ones (norm weights 1, zero biases)
            p.add_(0.1 * torch.randn_like(p))
    ids = torch.randint(0, 32, (2, 5), device=device)
    out = model.generate(ids, max_length=8, output_scores=True, return_dict_in_generate=True, cg=False)
    with torch.no_grad():
        logits = model(out.sequences[:, :-1]).logits
    torch.testing.assert_close(torch.stack(out.scores, 1), logits[:, 4:], rtol=1e-4, atol=1e-4)
    route = fused and not (extra.get("is_mimo") and extra.get("is_outproj_norm"))
    assert taken and all(t == route for t in taken)


def test_training_call_is_one_node_unless_a_submodule_is_hooked(device):
    """SISO's training call reads the submodules' weights inside one autograd node; a hook on one of them (here the
    output norm's) sends it through the modules instead, so the hook still runs."""
    m = build(device, 0, is_outproj_norm=True)
    assert_one_node_unless_hooked(m, torch.randn(1, 5, 16, device=device, requires_grad=True), m.norm)



@pytest.mark.parametrize("opts", OPTIONS[:3], ids=["siso", "outproj_norm", "rope_full-ngroups2"])
@FEW
@given(L=st.integers(2, 5), bsz=st.integers(1, 3), seed=seeds())
def test_decode_steps_on_column_groups(device, L, bsz, seed, opts):
    """The SISO block's one-launch step in its column-group form (``step.STEP_WHOLE`` off; the block's logits and
    B/C norms inside): decoding from empty states against the float64 block, bf16, as the test above (at least two
    tokens: a first token's output does not see its angle)."""
    from ssm_triton.kernels import tuning
    from ssm_triton.kernels.mamba3 import step
    m = build(device, seed % 1000, A_floor=0.7, **opts).to(torch.bfloat16)
    u = torch.randn(bsz, L, 16, generator=torch.Generator().manual_seed(seed)).to(device, torch.bfloat16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(step, "STEP_WHOLE", False)
        tuning.forget()   # the rule's choice is remembered per problem
        try:
            got = prefill_then_decode(m, u, 0)
        finally:
            tuning.forget()
    with torch.no_grad():
        want = reference_forward(m, float64_params(m), u.double().cpu())
    assert_close(got.double().cpu(), want, torch.bfloat16, "decoded")
