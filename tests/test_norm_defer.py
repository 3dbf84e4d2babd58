"""A Mamba2 layer's gated norm deferred past out_proj (ops/norm_defer.py): the deferred output, its scale taken
by the next add+norm's kernel, the decode step's state update with it, and the LM's prefill and composed decode steps
with it, against float64 compositions and the route without it."""
import copy
from unittest import mock

import torch
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.kernels.ssd import launch
from ssm_triton.models import MambaConfig, MambaLMHeadModel
from ssm_triton.modules import mamba2 as mamba2_module
from ssm_triton.ops import norm_defer
from ssm_triton.ops.norm import add_rmsnorm
from ssm_triton.tolerance import scaled_error
from builders import split_reference
from strategies import examples, normal, seeds


def stages():
    """The SSD's staged route (an eager call this small takes the one-launch kernel, which has no deferred form)."""
    return mock.patch.object(launch, "FUSED", "0")


@examples(4)
@given(L=st.integers(1, 40), D_per_channel=st.booleans(), packed=st.booleans(), P=st.sampled_from([8, 24]),
       seed=seeds())
def test_deferred_block_matches_the_float64_block(device, L, D_per_channel, packed, P, seed):
    """``raw * scale`` (the :class:`Deferred`'s output) and the final states against the block composed from the
    float64 references (gate first, one norm group, out_proj without bias); ``P = 24`` pads the chunk scan's channel
    tile, whose padding must stay out of the sums of squares."""
    H, N, W, dm = 3, 8, 4, 12
    width = 2 * H * P + 2 * N + H
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, scale=scale)  # noqa: E731
    t = dict(zxbcdt=r((2, L, width), 0), conv1d_weight=r((H * P + 2 * N, W), 1, 0.5),
             conv1d_bias=r((H * P + 2 * N,), 2, 0.1), dt_bias=r((H,), 3, 0.3), A=-r((H,), 4).abs() - 0.1,
             D=r((H, P) if D_per_channel else (H,), 5), norm_w=1 + r((H * P,), 6, 0.1), out_w=r((dm, H * P), 7))
    seq_idx = (torch.arange(L, device=device) >= (seed % L)).int().repeat(2, 1) if packed else None
    f = {k: v.float() for k, v in t.items()}
    with torch.no_grad(), stages():
        got, final = norm_defer.split_conv1d_scan_deferred(
            f["zxbcdt"], f["conv1d_weight"], f["conv1d_bias"], f["dt_bias"], torch.log(-f["A"]), f["D"], 16, seq_idx,
            (0.0, float("inf")), True, f["norm_w"], 1e-5, f["out_w"], P, 1)
    assert isinstance(got, norm_defer.Deferred) and got.raw.shape == (2, L, dm) and got.dim == H * P
    want, want_final = split_reference(t["zxbcdt"], t["conv1d_weight"], t["conv1d_bias"], t["dt_bias"], t["A"], t["D"],
                                       H, P, 1, N, 0, t["norm_w"], True, t["out_w"], None, None, seq_idx)
    assert scaled_error(got.materialize(), want) < 1e-4
    assert scaled_error(final, want_final) < 1e-4


@examples(4)
@given(R=st.integers(1, 20), k=st.integers(1, 6), residual=st.booleans(), seed=seeds())
def test_add_norm_applies_the_deferred_scale(device, R, k, residual, seed):
    """The add+norm kernel given a :class:`Deferred`: ``residual' = raw / rms + residual`` and its norm, against
    float64; ``k`` partial sums a row."""
    Dm, dim, eps = 24, 40, 1e-5
    r = lambda shape, j, scale=1.0: normal(shape, seed + j, device, scale=scale)  # noqa: E731
    raw, res, w = r((2, R, Dm), 0), r((2, R, Dm), 1) if residual else None, 1 + r((Dm,), 2, 0.1)
    ss = r((2, R, k), 3).abs() * dim / k
    d = norm_defer.Deferred(raw.float(), ss.float(), dim, eps)
    with torch.no_grad():
        normed, res_out = add_rmsnorm(d, res.float() if residual else None, w.float(), 1e-6, torch.float32)
    scale = torch.rsqrt(ss.sum(-1, keepdim=True) / dim + eps)
    want_res = raw * scale + (res if residual else 0)
    want = want_res * torch.rsqrt((want_res ** 2).mean(-1, keepdim=True) + 1e-6) * w
    assert scaled_error(res_out, want_res) < 1e-5
    assert scaled_error(normed, want) < 1e-5


def _lm(device, seed, ngroups, bias, dtype):
    torch.manual_seed(seed)
    ssm = dict(layer="Mamba2", d_state=8, headdim=8, chunk_size=16, ngroups=ngroups, bias=bias)
    return MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=37, ssm_cfg=ssm), device=device,
                            dtype=dtype).eval()


@examples(3)
@given(L=st.integers(1, 24), ngroups=st.sampled_from([1, 2]), bias=st.booleans(), padded=st.integers(0, 3),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=seeds())
def test_lm_with_deferred_norms_matches_the_route_without(device, L, ngroups, bias, padded, dtype, seed):
    """A 2-layer Mamba2 LM's logits and filled states with the deferral against ``SSM_TRITON_NORM_DEFER=0``'s route
    (the first row left-padded by ``padded`` steps, fp32 or bf16); the layers defer exactly where the block fits (one
    group, no out_proj bias)."""
    from ssm_triton import InferenceParams
    model = _lm(device, seed, ngroups, bias, dtype)
    ids = torch.randint(0, 37, (2, L), device=device, generator=torch.Generator(device).manual_seed(seed))
    mask = torch.ones(2, L, dtype=torch.long, device=device)
    mask[0, :min(padded, L - 1)] = 0
    made = []
    real = norm_defer.split_conv1d_scan_deferred

    def counted(*a, **k):
        out = real(*a, **k)
        made.append(out is not None)
        return out

    def run(defer, m=model):
        params = InferenceParams(max_seqlen=L + 1, max_batch_size=2)
        with torch.no_grad(), stages(), mock.patch.object(norm_defer, "DEFER", defer), \
                mock.patch.object(mamba2_module, "split_conv1d_scan_deferred", counted):
            logits = m(ids, inference_params=params, attention_mask=mask).logits
        return logits, [s.clone() for layer in params.key_value_memory_dict.values() for s in layer]
    want, want_states = run(False)
    assert not any(made)
    made.clear()
    got, got_states = run(True)
    assert sum(made) == (2 if ngroups == 1 and not bias else 0)
    if dtype == torch.float32:
        assert scaled_error(got, want) < 1e-4
        for a, b in zip(got_states, want_states):
            assert scaled_error(a, b) < 1e-4
    else:   # the routes round differently (g w, against the normed y, before out_proj): each against the model in
        # fp32, the deferral no further off than the route without it
        made.clear()
        exact, _ = run(False, copy.deepcopy(model).float())
        assert scaled_error(got, exact) < 1.5 * scaled_error(want, exact) + 5e-3


@examples(4)
@given(bsz=st.integers(1, 5), H=st.integers(1, 3), P=st.sampled_from([4, 8, 24]), seed=seeds())
def test_state_update_defers_the_gated_norm(device, bsz, H, P, seed):
    """The decode step's state update with the norm's weight: ``g w`` and each channel's ``g^2`` (``g = y silu(z)``)
    against the float64 step, and the state updated as without it."""
    from ssm_triton.reference import selective_state_update_np
    N = 8
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, scale=scale)  # noqa: E731
    state, x, dt = r((bsz, H, P, N), 0), r((bsz, H, P), 1), r((bsz, H, P), 2, 0.5)
    A_log, B, C = r((H, P, N), 3, 0.3), r((bsz, 1, N), 4), r((bsz, 1, N), 5)
    D, z, bias, w = r((H, P), 6), r((bsz, H, P), 7), r((H, P), 8, 0.3), 1 + r((H * P,), 9, 0.1)
    f = lambda t: t.float()  # noqa: E731
    s32 = f(state)
    with torch.no_grad():
        gw, ss = norm_defer.state_update_deferred(s32, f(x), f(dt), f(A_log), f(B), f(C), f(D), f(z), f(bias), f(w))
    g, want_state = selective_state_update_np(state.cpu(), x.cpu(), dt.cpu(), -torch.exp(A_log).cpu(), B.cpu(),
                                              C.cpu(), D.cpu(), z.cpu(), bias.cpu(), dt_softplus=True)
    g = torch.as_tensor(g)
    assert scaled_error(gw, g * w.cpu().view(H, P)) < 1e-5
    assert scaled_error(ss.view(bsz, H, P), g ** 2) < 1e-5
    assert scaled_error(s32, torch.as_tensor(want_state)) < 1e-5


@examples(3)
@given(bsz=st.integers(1, 3), steps=st.integers(1, 3), seed=seeds())
def test_lm_decode_steps_with_deferred_norms_match_the_route_without(device, bsz, steps, seed):
    """A 2-layer Mamba2 LM's composed decode steps (the fused steps off) after a prefill, deferring each layer's gated
    norm into the next add+norm (``SSM_TRITON_NORM_DEFER_STEP=1``), against the route without it: every step's
    logits and the states."""
    from ssm_triton import InferenceParams
    from ssm_triton.ops import fused_step
    model = _lm(device, seed, 1, False, torch.float32)
    ids = torch.randint(0, 37, (bsz, 5 + steps), device=device, generator=torch.Generator(device).manual_seed(seed))
    taken = []
    real = norm_defer.state_update_deferred

    def counted(*a, **k):
        taken.append(1)
        return real(*a, **k)

    def run(defer):
        params = InferenceParams(max_seqlen=ids.shape[1] + 1, max_batch_size=bsz)
        logits = []
        with torch.no_grad(), stages(), mock.patch.object(norm_defer, "DEFER", defer), \
                mock.patch.object(norm_defer, "DEFER_STEP", defer), mock.patch.object(fused_step, "ENABLED", False), \
                mock.patch.object(norm_defer, "state_update_deferred", counted):
            model(ids[:, :5], inference_params=params)
            params.seqlen_offset = 5
            for t in range(steps):
                logits.append(model(ids[:, 5 + t:6 + t], inference_params=params).logits)
                params.seqlen_offset += 1
        return logits, [s.clone() for layer in params.key_value_memory_dict.values() for s in layer]
    want, want_states = run(False)
    assert not taken
    got, got_states = run(True)
    # at least one call a layer a step: on a GPU the eager steps replay CUDA graphs (models/decode_graphs.py), whose
    # warm-up and capture call it too (6 calls for one step of 2 layers, H100 12-07)
    assert len(taken) >= 2 * steps
    for a, b in zip(got, want):
        assert scaled_error(a, b) < 1e-4
    for a, b in zip(got_states, want_states):
        assert scaled_error(a, b) < 1e-4
