"""The language model: mamba_ssm's state-dict names, generation (prefill through the chunked kernels,
then decode steps) against the full forward, sampling rules, and training lowering the loss."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssm_triton.models import MambaConfig, MambaLMHeadModel, sample
from builders import BIG
from strategies import seeds

VOCAB = 37  # padded to 40 (pad_vocab_size_multiple 8)


def build(device, layer, seed, n_layer=2):
    torch.manual_seed(seed)
    ssm = {"layer": layer, "d_state": 8}
    if layer == "Mamba2":
        ssm.update(headdim=8, chunk_size=16)
    return MambaLMHeadModel(MambaConfig(d_model=16, n_layer=n_layer, vocab_size=VOCAB, ssm_cfg=ssm), device=device)


def test_state_dict_names_match_mamba_ssm(device):
    """mamba_ssm's MambaLMHeadModel(d_model=16, n_layer=2, vocab_size=37): backbone.embedding,
    backbone.layers.{i}.norm / .mixer.*, backbone.norm_f, lm_head tied to the embedding."""
    m = build(device, "Mamba1", 0)
    names = set(m.state_dict())
    mixer1 = {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias",
              "A_log", "D", "out_proj.weight"}
    want = {"backbone.embedding.weight", "backbone.norm_f.weight", "lm_head.weight"}
    for i in range(2):
        want |= {f"backbone.layers.{i}.norm.weight"} | {f"backbone.layers.{i}.mixer.{k}" for k in mixer1}
    assert names == want
    assert m.lm_head.weight.shape == (40, 16) and m.lm_head.weight is m.backbone.embedding.weight
    m2 = build(device, "Mamba2", 0)
    assert "backbone.layers.1.mixer.norm.weight" in m2.state_dict() and "backbone.layers.1.mixer.dt_bias" in m2.state_dict()


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])   # each block type, whatever the examples drawn
@settings(max_examples=100 if BIG else 3)
@given(L=st.integers(1, 20), new=st.integers(1, 6 if BIG else 4), bsz=st.integers(1, 2), seed=seeds())
def test_generate_logits_equal_the_full_forward(device, layer, L, new, bsz, seed):
    """Each new token's logits from prefill + decode steps equal the full forward's over the sequence
    generated, and greedy tokens are their argmax."""
    m = build(device, layer, seed % 1000)
    ids = torch.randint(0, VOCAB, (bsz, L), generator=torch.Generator().manual_seed(seed)).to(device)
    out, logits = m.generate(ids, new, return_logits=True)
    assert out.shape == (bsz, L + new) and torch.equal(out[:, :L], ids)
    with torch.no_grad():
        full = m(out[:, :-1])[:, L - 1:, :VOCAB].float()
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-5)
    assert torch.equal(out[:, L:], logits.argmax(-1))


@settings(max_examples=100 if BIG else 20, deadline=None)
@given(bsz=st.integers(1, 4), vocab=st.integers(2, 50), top_k=st.integers(0, 8), top_p=st.floats(0.0, 1.0),
       temperature=st.floats(0.1, 3.0), seed=seeds())
def test_sampling_keeps_to_top_k_and_top_p(bsz, vocab, top_k, top_p, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(bsz, vocab, generator=g) * 3
    tok = sample(logits, temperature, top_k, top_p, g)
    assert tok.shape == (bsz,) and ((tok >= 0) & (tok < vocab)).all()
    rank = (logits > logits.gather(1, tok[:, None])).sum(1)         # 0 for the best token
    if top_k == 1:
        assert torch.equal(tok, logits.argmax(-1))
    elif top_k > 1:
        assert (rank < top_k).all()
    if 0 < top_p < 1 and top_k != 1:
        probs = torch.softmax(logits / temperature, -1)
        above = (probs * (logits > logits.gather(1, tok[:, None]))).sum(1)  # mass ranked above the token
        assert (above <= top_p + 1e-6).all()


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_a_few_training_steps_lower_the_loss(device, layer):
    """Next-token prediction on a repeating pattern: the loss after 6 Adam steps is well below the first."""
    m = build(device, layer, 3, n_layer=1)
    pattern = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6], device=device)
    ids = pattern.repeat(1, 2)                                        # (1, 16)
    opt = torch.optim.Adam(m.parameters(), lr=5e-2)
    losses = []
    for _ in range(6):
        logits = m(ids[:, :-1])[..., :VOCAB]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB).float(), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], losses


def test_bad_input_gets_a_clear_error(device):
    m = build(device, "Mamba1", 0, n_layer=1)
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, L\)"):
        m.generate(torch.zeros(5, dtype=torch.long, device=device), 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        m.generate(torch.zeros(1, 3, dtype=torch.long, device=device), -1)
    with pytest.raises(ValueError, match="ssm_cfg"):
        MambaLMHeadModel(MambaConfig(d_model=16, n_layer=1, vocab_size=8, ssm_cfg={"layer": "Mamba3"}))
    with pytest.raises(ValueError, match="not supported"):
        MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=8, attn_layer_idx=[1]))
