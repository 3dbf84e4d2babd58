"""ssm_triton.integrations.transformers: tiny randomly initialised Mamba2ForCausalLM / MambaForCausalLM
built from configs (no download) give the same logits, greedy generations, loss and gradients with
``enable()`` as on transformers' PyTorch fallback, and ``disable()`` puts the fallback back."""
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is an optional extra (pip install transformers)")
import ssm_triton.integrations.transformers as st_hf  # noqa: E402


@pytest.fixture(autouse=True)
def _restore():
    st_hf.disable()
    yield
    st_hf.disable()


def groups_in_fallback_norm() -> bool:
    """Whether transformers' own gated norm normalises each of n_groups apart, as mamba_ssm's does. Before
    about 5.20 (5.17 on the GPU machine) it normalised all groups together; with n_groups > 1 its training
    loss then differs from mamba_ssm's fused function, and so from ours, by its own choice."""
    import inspect

    from transformers.models.mamba2 import modeling_mamba2
    return "group_size" in inspect.signature(modeling_mamba2.MambaRMSNormGated.__init__).parameters


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
