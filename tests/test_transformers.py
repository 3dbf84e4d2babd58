"""ssm_triton.integrations.transformers: tiny randomly initialised Mamba2ForCausalLM / MambaForCausalLM
built from configs (no download) give the same logits, greedy generations, loss and gradients with
``enable()`` as on transformers' PyTorch fallback, and ``disable()`` puts the fallback back."""
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is an optional extra (pip install transformers)")
import ssm_triton.integrations.transformers as st_hf  # noqa: E402
from builders import groups_in_fallback_norm  # noqa: E402


@pytest.fixture(autouse=True)
def _restore():
    """The fallback in exact fp32 as well: on a GPU cuDNN runs its fp32 convolutions on TF32 tensor cores by
    default, which moves the fallback's logits by ~3e-5 (seen on the H200) against our fp32 conv kernel."""
    conv_tf32, mm_precision = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    st_hf.disable()
    yield
    st_hf.disable()
    torch.backends.cudnn.allow_tf32 = conv_tf32
    torch.set_float32_matmul_precision(mm_precision)


def tiny(kind, device, n_groups=2):
    torch.manual_seed(0)
    if kind == "mamba2":
        cfg = transformers.Mamba2Config(vocab_size=50, hidden_size=32, num_heads=4, head_dim=16, expand=2, state_size=8,
                                        n_groups=n_groups, num_hidden_layers=2, chunk_size=16, conv_kernel=4)
        return transformers.Mamba2ForCausalLM(cfg).to(device)
    cfg = transformers.MambaConfig(vocab_size=50, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                                   conv_kernel=4)
    return transformers.MambaForCausalLM(cfg).to(device)


@pytest.mark.parametrize("kind", ["mamba2", "mamba"])
def test_logits_and_greedy_generation_equal_the_fallback(device, kind):
    m = tiny(kind, device).eval()
    ids = torch.randint(0, 50, (2, 17), generator=torch.Generator().manual_seed(1)).to(device)  # crosses a chunk
    with torch.no_grad():
        want = m(ids).logits
        want_gen = m.generate(ids[:, :5], max_new_tokens=4, do_sample=False)
        rebound = st_hf.enable()
        assert st_hf.enabled(kind) and any(kind + "." in r for r in rebound)
        got = m(ids).logits
        got_gen = m.generate(ids[:, :5], max_new_tokens=4, do_sample=False)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert torch.equal(got_gen, want_gen)


@pytest.mark.parametrize("kind", ["mamba2", "mamba"])
def test_training_loss_and_gradients_equal_the_fallback(device, kind):
    """In training mode transformers first tries its fused block function (mamba_ssm's
    mamba_split_conv1d_scan_combined / mamba_inner_fn); with enable() that is ssm_triton's."""
    m = tiny(kind, device, n_groups=2 if groups_in_fallback_norm() else 1).train()
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(2)).to(device)

    def loss_and_grads():
        m.zero_grad()
        loss = m(ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    want_loss, want = loss_and_grads()
    st_hf.enable()
    got_loss, got = loss_and_grads()
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-6)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-3, atol=1e-5, msg=lambda m: f"grad of {k}: {m}")


def test_disable_restores_the_fallback_and_bad_names_are_refused():
    from transformers.models.mamba2 import modeling_mamba2
    original = modeling_mamba2.mamba2_chunk_scan
    st_hf.enable()
    assert modeling_mamba2.mamba2_chunk_scan is not original
    st_hf.enable()  # idempotent: disable still finds the original
    st_hf.disable()
    assert modeling_mamba2.mamba2_chunk_scan is original and not st_hf.enabled("mamba2")
    with pytest.raises(ImportError, match="no_such_model"):
        st_hf.enable(["no_such_model"])
    with pytest.raises(TypeError, match="sequence of model names"):
        st_hf.enable("mamba2")


def _inner_fn_reference(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                        out_proj_bias, A, B=None, C=None, D=None, delta_bias=None, delta_softplus=True,
                        b_rms_weight=None, c_rms_weight=None, dt_rms_weight=None, b_c_dt_rms_eps=1e-6, **kwargs):
    from builders import inner_reference
    f64 = lambda t: t.double() if t is not None else None  # noqa: E731
    rms = None if b_rms_weight is None else {"b": f64(b_rms_weight), "c": f64(c_rms_weight), "d": f64(dt_rms_weight)}
    y = inner_reference(f64(xz), f64(conv1d_weight), f64(conv1d_bias), f64(x_proj_weight), f64(delta_proj_weight),
                        f64(out_proj_weight), f64(A), f64(D), f64(delta_bias), rms, eps=b_c_dt_rms_eps)
    return (y + out_proj_bias.double() if out_proj_bias is not None else y).to(xz.dtype)


def _hybrid(name):
    """A tiny random config of each hybrid family with Mamba layers (a Mamba layer and an attention or
    hybrid layer where the family has both), or None when this transformers lacks the family."""
    T = transformers
    mamba2 = dict(mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=16)
    small = dict(vocab_size=50, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    build = {
        "falcon_mamba": lambda: T.FalconMambaConfig(vocab_size=50, hidden_size=32, state_size=8, num_hidden_layers=2,
                                                    expand=2, conv_kernel=4),
        "jamba": lambda: T.JambaConfig(**small, num_key_value_heads=1, num_experts=2, num_experts_per_tok=1,
                                       expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2,
                                       attn_layer_offset=1, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2,
                                       mamba_dt_rank=4, use_mamba_kernels=True),
        "bamba": lambda: T.BambaConfig(**small, num_key_value_heads=1, attn_layer_indices=[1], mamba_n_heads=4,
                                       mamba_d_head=16, mamba_n_groups=1, **mamba2),
        "granitemoehybrid": lambda: T.GraniteMoeHybridConfig(**small, num_key_value_heads=1,
                                                             layer_types=["mamba", "attention"], mamba_n_heads=4,
                                                             mamba_d_head=16, mamba_n_groups=1, num_local_experts=2,
                                                             num_experts_per_tok=1, shared_intermediate_size=32,
                                                             **mamba2),
        "falcon_h1": lambda: T.FalconH1Config(**small, num_key_value_heads=1, head_dim=16, mamba_n_heads=4,
                                              mamba_d_head=16, mamba_n_groups=1, mamba_d_ssm=64, **mamba2),
        "zamba2": lambda: T.Zamba2Config(**small, num_key_value_heads=2, attention_head_dim=16, mamba_headdim=16,
                                         n_mamba_heads=4, mamba_ngroups=1, mamba_d_state=8, mamba_d_conv=4,
                                         mamba_expand=2, chunk_size=16, layers_block_type=["mamba", "hybrid"],
                                         hybrid_layer_ids=[1], num_mem_blocks=1, adapter_rank=4),
        "nemotron_h": lambda: T.NemotronHConfig(**small, num_key_value_heads=1, head_dim=16, mamba_num_heads=4,
                                                mamba_head_dim=16, n_groups=1, ssm_state_size=8, conv_kernel=4,
                                                expand=2, chunk_size=16, hybrid_override_pattern="M*"),
    }[name]
    try:
        cfg = build()
        cls = getattr(T, type(cfg).__name__.replace("Config", "ForCausalLM"))
    except (AttributeError, TypeError) as e:   # this transformers lacks the family, or its config differs
        return None, f"{type(e).__name__}: {e}"
    return cls, cfg


@pytest.mark.parametrize("family", [f for f in st_hf.FAMILIES if f not in ("mamba", "mamba2")])
def test_hybrid_families_run_on_the_kernels_after_one_enable(device, family):
    """After ``enable()`` with no argument, each hybrid family gives its own PyTorch path's logits (eval),
    loss and gradients (train) and greedy tokens, through ssm_triton's functions (counted)."""
    cls, cfg = _hybrid(family)
    if cls is None:
        pytest.skip(f"transformers {transformers.__version__} lacks {family} ({cfg}): reported, not failed")
    torch.manual_seed(0)
    m = cls(cfg).to(device)
    ids = torch.randint(0, 50, (2, 19), generator=torch.Generator().manual_seed(1)).to(device)

    def run():
        m.eval()
        with torch.no_grad():
            logits = m(ids).logits
            gen = m.generate(ids[:, :5], max_new_tokens=3, do_sample=False, pad_token_id=0)
        m.train()
        m.zero_grad()
        loss = m(ids, labels=ids).loss
        loss.backward()
        return logits, gen, loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    from transformers.models.falcon_mamba import modeling_falcon_mamba as falcon
    if family == "falcon_mamba" and hasattr(falcon, "mamba_inner_fn"):
        # before 5.25 its training path calls mamba_inner_fn, whose fallback is missing (transformers then takes
        # its slow path, which normalises dt before its projection; mamba_ssm's kernel, after): the expectation
        # in training is mamba_ssm's function, composed from the float64 references. 5.25 dropped that path.
        mod = falcon
        saved = mod.mamba_inner_fn
        mod.mamba_inner_fn = _inner_fn_reference
        try:
            want = run()
        finally:
            mod.mamba_inner_fn = saved
    else:
        want = run()
    calls = []
    adapters = dict(st_hf.ADAPTERS)
    try:
        for name, fn in adapters.items():   # count what the model calls through ssm_triton
            st_hf.ADAPTERS[name] = lambda *a, _fn=fn, _n=name, **kw: calls.append(_n) or _fn(*a, **kw)
        st_hf.enable()
        assert family not in st_hf.unavailable() and st_hf.enabled(family)
        got = run()
    finally:
        st_hf.ADAPTERS.update(adapters)
    assert {"causal_conv1d_fn", "causal_conv1d_update"} <= set(calls)
    assert {"mamba_selective_scan", "mamba2_chunk_scan", "mamba_inner_fn", "mamba2_split_conv1d_scan_combined"} & set(calls)
    torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-6)
    assert got[3].keys() == want[3].keys()
    for k in want[3]:
        torch.testing.assert_close(got[3][k], want[3][k], rtol=1e-3, atol=1e-5, msg=lambda msg: f"grad of {k}: {msg}")
