"""Checkpoints: save -> load is bit-exact in both of mamba_ssm's layouts (torch and safetensors files); a
checkpoint saved by transformers' MambaForCausalLM / Mamba2ForCausalLM loads and gives transformers' logits;
teacher-forced generation scores are the forward's logits; bad checkpoints get errors naming the file and
the key."""
import json
import warnings

import pytest
import torch

from builders import groups_in_fallback_norm
from ssm_triton.models import MambaConfig, MambaLMHeadModel

VOCAB = 37


def build(device, layer, seed=0, **ssm):
    torch.manual_seed(seed)
    cfg = {"layer": layer, "d_state": 8, **ssm}
    if layer == "Mamba2":
        cfg.update(headdim=8, chunk_size=16)
    return MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=VOCAB, ssm_cfg=cfg), device=device).eval()


def _formats():
    out = [False]
    try:
        import safetensors  # noqa: F401
        out.append(True)
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("safe", _formats())
@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_save_then_load_is_bit_exact(device, tmp_path, layer, safe):
    m = build(device, layer, 3)
    m.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / "config.json").is_file()
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    got = MambaLMHeadModel.from_pretrained(tmp_path, device=device)
    assert got.config == m.config
    want_state, got_state = m.state_dict(), got.state_dict()
    assert want_state.keys() == got_state.keys()
    for k in want_state:
        assert torch.equal(want_state[k], got_state[k]), k
    assert got.lm_head.weight is got.backbone.embedding.weight          # still tied
    ids = torch.randint(0, VOCAB, (2, 19), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        assert torch.equal(got(ids).logits, m(ids).logits)


def test_load_casts_to_the_requested_dtype(device, tmp_path):
    m = build(device, "Mamba2", 1)
    m.save_pretrained(tmp_path)
    got = MambaLMHeadModel.from_pretrained(tmp_path, device=device, dtype=torch.bfloat16)
    assert got.backbone.embedding.weight.dtype == torch.bfloat16
    assert torch.equal(got.backbone.layers[0].mixer.in_proj.weight,
                       m.backbone.layers[0].mixer.in_proj.weight.to(torch.bfloat16))


def test_teacher_forced_scores_equal_the_forward_logits(device):
    """mamba_ssm's own generation test: force the tokens, compare each step's scores with the forward's."""
    for layer in ("Mamba1", "Mamba2"):
        m = build(device, layer, 2)
        teacher = torch.randint(0, VOCAB, (2, 14), generator=torch.Generator().manual_seed(5)).to(device)
        res = m.generate(teacher[:, :6], 14, teacher_outputs=teacher, return_dict_in_generate=True,
                         output_scores=True, top_k=0, temperature=1.0)
        assert torch.equal(res.sequences, teacher)                     # the forced tokens, not sampled ones
        with torch.no_grad():
            full = m(teacher[:, :-1]).logits[:, 5:, :VOCAB]
        torch.testing.assert_close(torch.stack(res.scores, 1), full, rtol=1e-4, atol=1e-5)


transformers = pytest.importorskip("transformers", reason="transformers is an optional extra")


def _hf_tiny(kind, device):
    torch.manual_seed(0)
    if kind == "mamba2":
        cfg = transformers.Mamba2Config(vocab_size=50, hidden_size=32, num_heads=4, head_dim=16, expand=2,
                                        state_size=8, n_groups=2 if groups_in_fallback_norm() else 1,
                                        num_hidden_layers=2, chunk_size=16, conv_kernel=4, layer_norm_epsilon=1e-4)
        return transformers.Mamba2ForCausalLM(cfg).to(device).eval()
    cfg = transformers.MambaConfig(vocab_size=50, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                                   conv_kernel=4, layer_norm_epsilon=1e-4)
    return transformers.MambaForCausalLM(cfg).to(device).eval()


@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_a_transformers_checkpoint_loads_and_gives_its_logits(device, tmp_path, kind):
    hf = _hf_tiny(kind, device)
    with torch.no_grad():   # random weights drawn small: make the output depend on every layer
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(tmp_path)
    ids = torch.randint(0, 50, (2, 21), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        want = hf(ids).logits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = MambaLMHeadModel.from_pretrained(tmp_path, device=device)
    assert not [w for w in caught if "ignored keys" in str(w.message)], [str(w.message) for w in caught]
    with torch.no_grad():
        got = m(ids).logits
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _write(tmp_path, config, state):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    if state is not None:
        torch.save(state, tmp_path / "pytorch_model.bin")
    return tmp_path


def test_bad_checkpoints_get_errors_naming_the_file_and_the_key(device, tmp_path):
    m = build(device, "Mamba1", 0)
    good = tmp_path / "good"
    m.save_pretrained(good)
    config = json.loads((good / "config.json").read_text())
    state = torch.load(good / "pytorch_model.bin", weights_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json is missing"):
        MambaLMHeadModel.from_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match="holds no weights"):
        MambaLMHeadModel.from_pretrained(_write(tmp_path / "noweights", config, None))
    wrong = dict(config, ssm_cfg=dict(config["ssm_cfg"], d_state=4))
    with pytest.raises(ValueError, match=r"pytorch_model.bin: backbone.layers.0.mixer.A_log has shape \(32, 8\), the config needs \(32, 4\)"):
        MambaLMHeadModel.from_pretrained(_write(tmp_path / "shape", wrong, state))
    extra = dict(state, **{"backbone.layers.0.mixer.stray": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"pytorch_model.bin: .*unexpected backbone.layers.0.mixer.stray"):
        MambaLMHeadModel.from_pretrained(_write(tmp_path / "extra", config, extra))
    fewer = {k: v for k, v in state.items() if k != "backbone.norm_f.weight"}
    with pytest.raises(ValueError, match="missing backbone.norm_f.weight"):
        MambaLMHeadModel.from_pretrained(_write(tmp_path / "fewer", config, fewer))
    with pytest.warns(UserWarning, match="ignored keys flavour"):
        MambaLMHeadModel.from_pretrained(_write(tmp_path / "unknown", dict(config, flavour="x"), state))
    with pytest.raises(ValueError, match="no such directory"):   # a path, so the hub is not asked
        MambaLMHeadModel.from_pretrained(str(tmp_path / "not-here"))


def test_a_hub_id_is_resolved_through_the_huggingface_cache_without_network(device, tmp_path, monkeypatch):
    """A checkpoint in huggingface_hub's cache layout (refs/main -> snapshots/<commit>/files) is found by
    its hub id, with the hub switched off."""
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--some-org--tiny-mamba2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    m = build(device, "Mamba2", 7)
    m.save_pretrained(repo / "snapshots" / commit)
    got = MambaLMHeadModel.from_pretrained("some-org/tiny-mamba2", device=device)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), got.state_dict().values()))
    with pytest.raises(ValueError, match="neither a directory nor a hub id that could be resolved"):
        MambaLMHeadModel.from_pretrained("some-org/absent")
