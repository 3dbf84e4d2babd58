"""The language model: mamba_ssm's state-dict names, generation (prefill through the chunked kernels,
then decode steps) against the full forward, sampling rules, and training lowering the loss."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.models import MambaConfig, MambaLMHeadModel, sample
from builders import BIG
from strategies import examples, seeds

VOCAB = 37  # padded to 40 (pad_vocab_size_multiple 8)


def build(device, layer, seed, n_layer=2):
    torch.manual_seed(seed)
    ssm = {"layer": layer, "d_state": 8}
    if layer in ("Mamba2", "Mamba3"):
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
@examples(3)
@given(L=st.integers(1, 20), new=st.integers(1, 6 if BIG else 4), bsz=st.integers(1, 2), seed=seeds())
def test_generate_logits_equal_the_full_forward(device, layer, L, new, bsz, seed):
    """Each new token's logits from prefill + decode steps equal the full forward's over the sequence
    generated, and greedy tokens are their argmax."""
    m = build(device, layer, seed % 1000)
    ids = torch.randint(0, VOCAB, (bsz, L), generator=torch.Generator().manual_seed(seed)).to(device)
    res = m.generate(ids, max_length=L + new, return_dict_in_generate=True, output_scores=True)
    out, logits = res.sequences, torch.stack(res.scores, 1).float()
    assert out.shape == (bsz, L + new) and torch.equal(out[:, :L], ids)
    with torch.no_grad():
        full = m(out[:, :-1]).logits[:, L - 1:, :VOCAB].float()
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-5)
    assert torch.equal(out[:, L:], logits.argmax(-1))


@examples(20)
@given(bsz=st.integers(1, 4), vocab=st.integers(2, 50), top_k=st.integers(0, 8), top_p=st.floats(0.0, 1.0),
       min_p=st.sampled_from([0.0, 0.05, 0.3, 0.9]), temperature=st.floats(0.1, 3.0), seed=seeds())
def test_sampling_keeps_to_top_k_top_p_and_min_p(bsz, vocab, top_k, top_p, min_p, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(bsz, vocab, generator=g) * 3
    tok = sample(logits, temperature, top_k, top_p, g, min_p)
    assert tok.shape == (bsz,) and ((tok >= 0) & (tok < vocab)).all()
    rank = (logits > logits.gather(1, tok[:, None])).sum(1)         # 0 for the best token
    if top_k == 1:
        assert torch.equal(tok, logits.argmax(-1))
        return
    probs = torch.softmax(logits / temperature, -1)
    if top_k > 1:
        assert (rank < top_k).all()
    if 0 < top_p < 1:
        above = (probs * (logits > logits.gather(1, tok[:, None]))).sum(1)  # mass ranked above the token
        assert (above <= top_p + 1e-6).all()
    if min_p > 0 and top_k == 0 and top_p in (0.0, 1.0):
        # alone, min_p keeps exactly the tokens with at least min_p times the best one's probability
        assert (probs.gather(1, tok[:, None])[:, 0] >= min_p * probs.max(-1).values * (1 - 1e-6)).all()


@examples(20)
@given(bsz=st.integers(1, 3), vocab=st.integers(2, 30), penalty=st.floats(1.0, 3.0), seed=seeds())
def test_repetition_penalty_lowers_only_the_tokens_seen(bsz, vocab, penalty, seed):
    from ssm_triton.models.generation import apply_repetition_penalty
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(bsz, vocab, generator=g) * 3
    seen = torch.randint(0, vocab, (bsz, 4), generator=g)
    out = apply_repetition_penalty(logits, seen, penalty)
    mask = torch.zeros(bsz, vocab, dtype=torch.bool).scatter(1, seen, True)
    assert torch.equal(out[~mask], logits[~mask])                       # unseen tokens untouched
    assert (out[mask] <= logits[mask]).all()                            # seen ones never gain
    want = torch.where(logits < 0, logits * penalty, logits / penalty)
    torch.testing.assert_close(out[mask], want[mask])


def test_forward_returns_mamba_ssm_output_and_generate_keeps_its_options(device):
    """``.logits`` as mamba_ssm's namedtuple; ``max_length`` counts the prompt; ``eos_token_id`` ends rows and
    then generation; the streamer sees the prompt, each token, then the end."""
    m = build(device, "Mamba2", 4).eval()
    ids = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(4)).to(device)
    out = m(ids)
    assert type(out).__name__ == "CausalLMOutput" and out.logits.shape == (2, 5, 40)
    assert m(ids, num_last_tokens=2).logits.shape == (2, 2, 40)
    seq = m.generate(ids, 9)
    assert seq.shape == (2, 9) and torch.equal(seq, m.generate(ids, max_new_tokens=4))

    class Streamer:
        def __init__(self):
            self.got, self.ended = [], False

        def put(self, t):
            self.got.append(t)

        def end(self):
            self.ended = True
    s = Streamer()
    eos = int(seq[0, 5])   # row 0's first greedy token: row 0 ends at once, the run once row 1 meets it too
    res = m.generate(ids, 9, eos_token_id=eos, streamer=s, return_dict_in_generate=True)
    assert res.scores is None and torch.equal(res.sequences[:, :5], ids)
    assert (res.sequences[0, 5:] == eos).all() and s.ended and torch.equal(s.got[0], ids.cpu())
    assert len(s.got) == 1 + res.sequences.shape[1] - 5


@pytest.mark.parametrize("every", [1, 3, 16])
def test_generation_ends_where_the_last_row_meets_eos_however_often_the_device_is_read(device, every, monkeypatch):
    """Rows forced (teacher_outputs) to meet eos at steps 2 and 4: the result is the prompt and 5 new tokens,
    each row eos from its end on, and 5 scores, whether the end is read every token or every few."""
    from ssm_triton.models import generation
    monkeypatch.setattr(generation, "CHECK_EVERY", every)
    m = build(device, "Mamba2", 4).eval()
    eos, L, new = 7, 3, 12
    ids = torch.randint(8, VOCAB, (2, L), generator=torch.Generator().manual_seed(5)).to(device)
    teacher = torch.randint(8, VOCAB, (2, L + new), generator=torch.Generator().manual_seed(6)).to(device)
    teacher[0, L + 2] = teacher[1, L + 4] = eos
    res = m.generate(ids, L + new, eos_token_id=eos, teacher_outputs=teacher, return_dict_in_generate=True,
                     output_scores=True)
    want = torch.cat([ids, teacher[:, L:L + 5]], dim=1)
    want[0, L + 2:] = eos
    assert torch.equal(res.sequences, want) and len(res.scores) == 5


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_a_few_training_steps_lower_the_loss(device, layer):
    """Next-token prediction on a repeating pattern: the loss after 6 Adam steps is well below the first."""
    m = build(device, layer, 3, n_layer=1)
    pattern = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6], device=device)
    ids = pattern.repeat(1, 2)                                        # (1, 16)
    opt = torch.optim.Adam(m.parameters(), lr=5e-2)
    losses = []
    for _ in range(6):
        logits = m(ids[:, :-1]).logits[..., :VOCAB]
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
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        m.generate(torch.zeros(1, 3, dtype=torch.long, device=device), max_new_tokens=-1)
    with pytest.raises(ValueError, match="max_length must be an int >= the prompt's length 3"):
        m.generate(torch.zeros(1, 3, dtype=torch.long, device=device), 2)
    with pytest.raises(ValueError, match="not both"):
        m.generate(torch.zeros(1, 3, dtype=torch.long, device=device), 5, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"teacher_outputs must be \(batch, length\)"):
        m.generate(torch.zeros(2, 3, dtype=torch.long, device=device), 5,
                   teacher_outputs=torch.zeros(1, 5, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="ssm_cfg"):
        MambaLMHeadModel(MambaConfig(d_model=16, n_layer=1, vocab_size=8, ssm_cfg={"layer": "Mamba4"}))
    with pytest.raises(ValueError, match="not supported"):
        MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=8, attn_layer_idx=[1]))


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2", "Mamba3"])
def test_left_padded_prompts_of_different_lengths_generate_as_alone(device, layer):
    """A batch of prompts of different lengths, left-padded with an attention mask, gives each row the
    tokens and scores it gets alone (the longer prompt crosses a chunk; the shorter one is shorter than
    the conv window's reach into the padding)."""
    m = build(device, layer, 6)
    g = torch.Generator().manual_seed(6)
    long, short = torch.randint(0, VOCAB, (19,), generator=g).to(device), torch.randint(0, VOCAB, (2,), generator=g).to(device)
    ids = torch.stack([long, torch.cat([torch.full((17,), 7, device=device), short])])
    mask = torch.stack([torch.ones(19, device=device), torch.cat([torch.zeros(17, device=device), torch.ones(2, device=device)])])
    res = m.generate(ids, max_new_tokens=4, attention_mask=mask, return_dict_in_generate=True, output_scores=True)
    for row, prompt in enumerate((long, short)):
        alone = m.generate(prompt[None], max_new_tokens=4, return_dict_in_generate=True, output_scores=True)
        assert torch.equal(res.sequences[row, 19:], alone.sequences[0, prompt.shape[0]:])
        torch.testing.assert_close(torch.stack(res.scores, 1)[row], torch.stack(alone.scores, 1)[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="left padding"):
        m(ids, attention_mask=mask.flip(1))


def test_benchmark_models_have_the_released_state_sizes():
    """The bench's 130M-sized models match the released checkpoints' state sizes: mamba2-130m 128, mamba-130m
    16 (the Mamba-1 model took 128 until 2026-12-03, and its rows timed 8x the selective scan's work)."""
    from ssm_triton.models.demo import build
    meta = torch.device("meta")
    assert build("Mamba2", "130m", meta, torch.bfloat16).backbone.layers[0].mixer.d_state == 128
    mixer = build("Mamba1", "130m", meta, torch.bfloat16).backbone.layers[0].mixer
    assert mixer.d_state == 16 and tuple(mixer.A_log.shape) == (1536, 16)
