"""Eager decode steps from CUDA graphs (ssm_triton/models/decode_graphs.py): which calls may replay, when a
graph is captured again (another batch, another state cache, a replaced weight, a switch flipped), that the
returned logits are the eager step's and the caller's own, and on a GPU the replayed steps against the eager ones."""
import contextlib
import copy
import pickle

import pytest
import torch

from ssm_triton import InferenceParams
from ssm_triton.models import decode_graphs, generation, lm, prefill
from ssm_triton.ops import fused_step
from ssm_triton.tolerance import assert_close
from test_lm import VOCAB, build


def _params(m, bsz, device, offset=3):
    params = InferenceParams(max_seqlen=16, max_batch_size=bsz)
    params.key_value_memory_dict = m.allocate_inference_cache(bsz, 16)
    params.seqlen_offset = offset
    return params


def replayed_against_eager(m, ref, bsz, dev, eager=contextlib.nullcontext):
    """Under inference mode: one random prompt through both models, then four decode steps, ``m``'s replayed from
    its decode graph (captured at the first), ``ref``'s eager inside ``eager()``; logits at each step and every
    layer's states after, held together. Returns the prompt."""
    m.cuda_graph_decode, ref.cuda_graph_decode = True, False
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, VOCAB, (bsz, 7), generator=gen).to(dev)
    params, want_params = _params(m, bsz, dev, 0), _params(ref, bsz, dev, 0)
    m(prompt, inference_params=params)
    ref(prompt, inference_params=want_params)
    params.seqlen_offset = want_params.seqlen_offset = 7
    for step in range(4):
        tok = torch.randint(0, VOCAB, (bsz, 1), generator=gen).to(dev)
        got = m(tok, inference_params=params).logits
        with eager():
            want = ref(tok, inference_params=want_params).logits
        assert_close(got, want.double(), torch.float32, f"logits, step {step}")
        params.seqlen_offset += 1
        want_params.seqlen_offset += 1
    for k, states in params.key_value_memory_dict.items():
        for t, w in zip(states, want_params.key_value_memory_dict[k]):
            assert_close(t, w.double(), torch.float32, f"layer {k} state")
    return prompt


def test_only_plain_decode_calls_replay(device):
    m = build(device, "Mamba2", 0)
    params = _params(m, 2, device)
    tok = torch.zeros(2, 1, dtype=torch.long, device=device)
    with torch.no_grad():
        assert decode_graphs.replayable(tok, params, None, {}) == tok.is_cuda
        assert not decode_graphs.replayable(tok, None, None, {})                       # a plain forward
        assert not decode_graphs.replayable(tok, _params(m, 2, device, 0), None, {})    # the prefill
        assert not decode_graphs.replayable(tok.expand(2, 3), params, None, {})         # several tokens
        assert not decode_graphs.replayable(tok, params, torch.ones_like(tok), {})
        assert not decode_graphs.replayable(tok, params, None, {"extra": 1})
    assert not decode_graphs.replayable(tok, params, None, {})   # grad enabled: a graph may be recorded


@pytest.mark.parametrize("module, variable", [(decode_graphs, "SSM_TRITON_DECODE_GRAPH"),
                                              (prefill, "SSM_TRITON_PREFILL_GRAPH")])
def test_the_graphs_are_on_by_default_and_their_switch_turns_them_off(monkeypatch, module, variable):
    """The decode and the prefill graphs' switches (``graph_cache.switched_on``)."""
    monkeypatch.delenv(variable, raising=False)
    assert module.enabled_by_env()
    monkeypatch.setenv(variable, "0")
    assert not module.enabled_by_env()
    monkeypatch.setenv(variable, "1")
    assert module.enabled_by_env()


def test_a_model_with_decode_graphs_copies_and_pickles(device):
    m = build(device, "Mamba2", 0)
    assert isinstance(copy.deepcopy(m)._decode_graphs, decode_graphs.DecodeGraphs)
    assert pickle.loads(pickle.dumps(m._decode_graphs)).graphs == {}


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_captured_once_per_signature_and_the_logits_are_the_eager_steps(device, layer, monkeypatch):
    """The capture is stood in for by a plain eager step (CUDA graphs need a GPU), the call routed through the
    model's forward as a CUDA call would be: one capture per (batch, cache, weights, switches), logits equal
    to the eager step's, of shape (b, 1, vocab), a copy the next step does not overwrite."""
    captures = []

    class Captured:
        def __init__(self, model, params, bsz, dev):
            captures.append(bsz)
            self.model, self.params = model, params
            self.out = None

        def __call__(self, tok):   # as a replay: one static output, overwritten by each call
            self.model._decode_graphs.capturing = True   # what the graph holds: the eager step's launches
            try:
                logits = self.model(tok, inference_params=self.params).logits[:, -1]
            finally:
                self.model._decode_graphs.capturing = False
            if self.out is None:
                self.out = logits.clone()
            self.out.copy_(logits)
            return self.out

    monkeypatch.setattr(generation, "DecodeGraph", Captured)
    monkeypatch.setattr(lm, "decode_replayable", lambda ids, p, mask, kw: p is not None and p.seqlen_offset > 0
                        and ids.shape[1] == 1 and not torch.is_grad_enabled())
    m = build(device, layer, 1).eval()
    ref = copy.deepcopy(m)
    m.cuda_graph_decode, ref.cuda_graph_decode = True, False
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        params, want_params = _params(m, 2, device), _params(ref, 2, device)
        kept = []
        for step in range(3):
            tok = torch.randint(0, VOCAB, (2, 1), generator=gen).to(device)
            got = m(tok, inference_params=params).logits
            want = ref(tok, inference_params=want_params).logits
            assert got.shape == want.shape == (2, 1, m.lm_head.weight.shape[0])
            assert_close(got, want.double(), torch.float32, f"logits, step {step}")
            kept.append((got, want))
        for step, (got, want) in enumerate(kept):   # each step's logits are the caller's own
            assert_close(got, want.double(), torch.float32, f"kept logits, step {step}")
        for k, states in params.key_value_memory_dict.items():
            for t, w in zip(states, want_params.key_value_memory_dict[k]):
                assert_close(t, w.double(), torch.float32, f"layer {k} state")
        assert captures == [2]
        m(tok[:1], inference_params=_params(m, 1, device))                       # another batch
        assert captures == [2, 1]
        m(tok, inference_params=_params(m, 2, device))                           # another cache
        assert captures == [2, 1, 2]
        cache = params.key_value_memory_dict                                     # one layer's states replaced
        cache[0] = tuple(t.clone() for t in cache[0])
        m(tok, inference_params=params)
        assert captures == [2, 1, 2, 2]
        m(tok, inference_params=params)
        assert captures == [2, 1, 2, 2]
        m.backbone.layers[-1].mixer.out_proj.weight.mul_(1.0)                    # values in place: same graph
        m(tok, inference_params=params)
        assert len(captures) == 4
        m.backbone.layers[0].mixer.in_proj.weight = torch.nn.Parameter(m.backbone.layers[0].mixer.in_proj.weight.clone())
        m(tok, inference_params=params)                                          # a replaced weight: all dropped
        assert len(captures) == 5 and len(m._decode_graphs.graphs) == 1
        monkeypatch.setattr(fused_step, "ENABLED", not fused_step.ENABLED)       # a switch the launches read
        m(tok, inference_params=params)
        assert len(captures) == 6
        m.cuda_graph_decode = False                                              # off: the eager step
        m(tok, inference_params=params)
        assert len(captures) == 6


def test_the_graphs_keep_at_most_their_capacity(device, monkeypatch):
    monkeypatch.setattr(generation, "DecodeGraph", lambda model, params, bsz, dev: (
        lambda tok: model(tok, inference_params=params).logits[:, -1]))
    m = build(device, "Mamba2", 2).eval()
    m.cuda_graph_decode = False   # the stand-in steps the model eagerly: not through its own graphs
    graphs = decode_graphs.DecodeGraphs(capacity=2)
    with torch.no_grad():
        for bsz in (1, 2, 3, 2):
            graphs(m, (), torch.zeros(bsz, 1, dtype=torch.long, device=device), _params(m, bsz, device))
    assert [k.parts[0] for k in graphs.graphs] == [3, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_replayed_decode_steps_equal_the_eager_ones(layer):
    """Several steps from a prefill, logits and states, with the graphs on and off; generate's own graph
    captures without nesting one of these."""
    dev = torch.device("cuda")
    m = build(dev, layer, 3).eval()
    ref = copy.deepcopy(m)
    with torch.inference_mode():
        prompt = replayed_against_eager(m, ref, 2, dev)
        assert len(m._decode_graphs.graphs) == 1
        out = m.generate(prompt, max_length=12)
        assert out.shape == (2, 12) and len(m._decode_graphs.graphs) == 1


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2", "Mamba3"])
def test_generate_keeps_its_states_and_step_between_calls(device, layer, monkeypatch):
    """``generation.KEEP_STEP``: generate's states and captured step kept by batch size (the capture stood in for
    by a counted eager step), the prefill padded on the left to its length bucket (run eagerly off a GPU): later
    calls zero the states and prefill into them, so each call's tokens and scores are a fresh model's, prompts of
    other lengths and left-padded rows included; another batch size captures its own (two kept, the least recent
    dropped), a replaced weight captures again, and the kept states are the ones the steps read."""
    captures = []

    def stand_in(model, params, bsz, dev):
        captures.append(bsz)
        return lambda tok: model(tok, inference_params=params).logits[:, -1]

    monkeypatch.setattr(generation, "DecodeGraph", stand_in)
    m = build(device, layer, 4).eval()
    m.cuda_graph_decode = False
    gen = torch.Generator().manual_seed(3)
    prompts = {b: [torch.randint(0, VOCAB, (b, L), generator=gen).to(device) for L in (5, 3)] for b in (1, 2, 3)}
    left_padded = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], device=device)

    def run(prompt, keep, attention_mask=None):
        monkeypatch.setattr(generation, "KEEP_STEP", keep)
        with torch.inference_mode():
            return m.generate(prompt, max_length=prompt.shape[1] + 4, cg=True, output_scores=True,
                              return_dict_in_generate=True, attention_mask=attention_mask)

    want = {(b, i): run(p, False) for b, ps in prompts.items() for i, p in enumerate(ps)}
    masked = run(prompts[2][0], False, left_padded), run(prompts[2][0], True, left_padded)
    assert torch.equal(masked[1].sequences, masked[0].sequences)
    for s, w in zip(masked[1].scores, masked[0].scores):
        assert_close(s, w.double(), torch.float32, "left-padded scores")
    captures.clear()
    for n, (b, i) in enumerate([(2, 0), (2, 1), (1, 0), (2, 0), (3, 1), (1, 1)]):
        got = run(prompts[b][i], True)
        assert torch.equal(got.sequences, want[b, i].sequences), (b, i)
        for s, w in zip(got.scores, want[b, i].scores):
            assert_close(s, w.double(), torch.float32, f"scores {b} {i}")
        if n == 1:   # two rows kept since the left-padded call: prefills of 5 and 3 steps, buckets 8 and 4
            assert [sorted(k.prefills) for k in m._generate_graphs.graphs.values()] == [[4, 8]]
    # 2 was captured by the left-padded call; then 1; 3 drops 1 (the least recent of two); 1 drops 2
    assert captures == [1, 3, 1]
    assert sorted(k[0] for k in m._generate_graphs.graphs) == [1, 3]
    with torch.no_grad():   # a replaced weight: every kept step is dropped and captured again
        m.lm_head.weight = torch.nn.Parameter(m.lm_head.weight.detach().clone())
    run(prompts[1][0], True)
    assert captures[-1] == 1 and len(m._generate_graphs.graphs) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2", "Mamba3"])
def test_generate_with_kept_graphs_equals_fresh_calls(layer, monkeypatch):
    """On a GPU, with real captures: generate's kept states, step and left-padded prefill graphs give each call the
    tokens and scores of a call that allocates and captures its own, across prompts, their lengths and batch sizes."""
    dev = torch.device("cuda")
    m = build(dev, layer, 5).eval()
    gen = torch.Generator().manual_seed(4)

    def run(prompt, keep):
        monkeypatch.setattr(generation, "KEEP_STEP", keep)
        with torch.inference_mode():
            return m.generate(prompt, max_length=14, output_scores=True, return_dict_in_generate=True)

    for bsz, L in ((2, 6), (2, 3), (1, 8), (2, 6)):
        prompt = torch.randint(0, VOCAB, (bsz, L), generator=gen).to(dev)
        want, got = run(prompt, False), run(prompt, True)
        assert torch.equal(got.sequences, want.sequences)
        for s, w in zip(got.scores, want.scores):
            assert_close(s, w.double(), torch.float32, "scores")
    assert sorted(k[0] for k in m._generate_graphs.graphs) == [1, 2]
