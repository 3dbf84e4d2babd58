"""Generation for the language model, with mamba_ssm's ``generate`` semantics: one prefill through the
chunked kernels, then one decode step per token (replayed from a captured CUDA graph with ``cg``), sampling
with top-k / top-p / min-p, temperature and a repetition penalty, teacher forcing, a streamer, and either the
sequences or an object with ``.sequences`` and ``.scores``."""
import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..modules import InferenceParams
from .graph_cache import GraphCache, capture, step_switches
from .prefill import bucket as _prefill_bucket

# ``generate`` keeps its states and its captured decode step on the model between calls with the same batch size, as
# mamba_ssm's ``generate(cg=True)`` keeps its graph cache: a later call zeroes the states and prefills into them
# instead of allocating them and capturing a step (two eager warm-up steps and a capture, milliseconds a call).
# On by default since it was timed (H100, 2026-12-07, the 130M Mamba2 LM, prompt 128, 256 new tokens, beside mamba_ssm's
# generate(cg=True) 265.8 / 340.5 ms): b1 66.0 ms kept against 78.0 fresh, b16 183.6 against 199.2.
# SSM_TRITON_GENERATE_CACHE=0 turns it off (every call allocates its states and captures its step).
KEEP_STEP = os.environ.get("SSM_TRITON_GENERATE_CACHE", "1").strip() not in ("", "0")


class StatePrefill:
    """The backbone's prefill of ``bsz`` rows into kept states, captured as a CUDA graph at ``length`` steps: a
    prompt of ``L <= length`` steps is padded on the LEFT and masked there (``seq_mask``: the padding is a sequence
    of its own, so each row's states and last hidden state are those of its tokens alone), which is what lets one
    graph per length bucket fill the states (the prefill graphs of ``prefill.py`` pad on the right and keep no
    states). ``__call__(input_ids, attention_mask=None) -> (b, 1, d_model)``, the last position's hidden state."""

    def __init__(self, model, cache: dict, bsz: int, length: int, device):
        self.ids = torch.zeros(bsz, length, dtype=torch.long, device=device)
        self.mask = torch.ones(bsz, length, dtype=torch.int32, device=device)
        params = InferenceParams(max_seqlen=length + 1, max_batch_size=bsz)
        params.key_value_memory_dict = cache
        self._run = lambda: model.backbone(self.ids, inference_params=params, seq_mask=self.mask)[:, -1:]
        self.graph = None
        if self.ids.is_cuda:   # the warm-up prefills' states are overwritten by every replay
            self.graph, self.hidden = capture(self._run, device)

    def __call__(self, input_ids, attention_mask=None):
        pad = self.ids.shape[1] - input_ids.shape[1]
        self.ids[:, :pad].zero_()
        self.ids[:, pad:].copy_(input_ids)
        self.mask[:, :pad].zero_()
        if attention_mask is None:
            self.mask[:, pad:].fill_(1)
        else:
            self.mask[:, pad:].copy_(attention_mask)
        if self.graph is None:   # off a GPU the same padded call, run eagerly
            return self._run()
        self.graph.replay()
        return self.hidden


class _Kept:
    """One batch size's kept states, decode step and prefills (by length bucket, the most recent ``PREFILLS``)."""
    PREFILLS = 3

    def __init__(self, cache, step):
        self.cache, self.step = cache, step
        self.prefills = OrderedDict()


class GenerateGraphs(GraphCache):
    """``generate``'s kept states, decode step and prefill graphs of one model, by (batch, device, the fused steps'
    switches); at most two batch sizes (each holds its states and its graphs' memory pools), all dropped when the
    weights change. ``clear()`` frees them."""

    def __init__(self, capacity: int = 2):
        super().__init__(capacity)

    def kept(self, model, bsz: int, device) -> _Kept:
        """The kept states (zeroed, as freshly allocated) and graphs for ``bsz`` rows; the decode step captured on
        the first call of its key, with the states it will replay on."""
        key = (bsz, device, *step_switches())
        made = []

        def make():
            cache = model.allocate_inference_cache(bsz, 1)   # an SSM's states do not grow with the length
            params = InferenceParams(max_seqlen=2, max_batch_size=bsz)
            params.key_value_memory_dict, params.seqlen_offset = cache, 1   # a decode step's offset
            made.append(True)
            return _Kept(cache, DecodeGraph(model, params, bsz, device)), key

        kept = self.graph(self.model_fingerprint(model), key, make)
        if not made:   # the capture restores the zeros it found; a kept cache holds the last call's states
            torch._foreach_zero_([t for states in kept.cache.values() for t in states])
        return kept

    @staticmethod
    def prefill(model, kept: _Kept, input_ids, attention_mask=None):
        """The last position's logits ``(b, vocab)`` of ``input_ids (b, L)`` (left padding marked 0 in
        ``attention_mask``, as generate takes it), the kept states filled, through the graph of ``L``'s bucket."""
        from .lm import left_padding_mask   # (lm imports this module)
        if attention_mask is not None:
            attention_mask = left_padding_mask(attention_mask, input_ids)
        bsz, L = input_ids.shape
        length = _prefill_bucket(L)
        graph = kept.prefills.get(length)
        if graph is None:
            while len(kept.prefills) >= kept.PREFILLS:
                kept.prefills.popitem(last=False)
            graph = kept.prefills[length] = StatePrefill(model, kept.cache, bsz, length, input_ids.device)
        kept.prefills.move_to_end(length)
        return model.lm_head(graph(input_ids, attention_mask))[:, -1]


@dataclass
class GenerateOutput:
    """``sequences (b, L')`` token ids (prompt included); ``scores``: one ``(b, vocab)`` tensor of logits
    per generated token (before sampling's processing), as mamba_ssm's ``generate`` returns them."""
    sequences: torch.Tensor
    scores: tuple | None = None


def sample(logits, temperature=1.0, top_k=1, top_p=0.0, generator=None, min_p=0.0):
    """``logits (b, vocab)`` -> token ids ``(b,)``: greedy for ``top_k == 1`` or ``temperature == 0``;
    otherwise a draw from the ``temperature``-scaled distribution cut to the ``top_k`` best (0: all), to the
    smallest set holding probability ``top_p`` (0: off), and to the tokens with at least ``min_p`` times
    the best one's probability (0: off)."""
    if top_k == 1 or temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        srt, idx = torch.sort(logits, descending=True, dim=-1)
        probs = F.softmax(srt, dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop = probs.cumsum(-1) - probs > top_p
        logits = logits.scatter(-1, idx, srt.masked_fill(drop, float("-inf")))
    if min_p > 0.0:
        probs = F.softmax(logits, dim=-1)
        logits = logits.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


def apply_repetition_penalty(logits, sequences, penalty: float):
    """mamba_ssm's (and CTRL's) rule: the logit of every token already in a row is divided by ``penalty``
    where positive and multiplied where negative (``penalty`` > 1 discourages repeats)."""
    if penalty == 1.0:
        return logits
    seen = logits.gather(1, sequences)
    return logits.scatter(1, sequences, torch.where(seen < 0, seen * penalty, seen / penalty))


class DecodeGraph:
    """The whole model's decode step captured once as a CUDA graph and replayed per token. At small
    batch a step is a few dozen short kernels, and launching them from Python costs more than running
    them; a replay launches them all at once. The states in ``params`` are updated in place by the replay
    as by an eager step; capturing runs two warm-up steps, whose effect on the states is undone."""

    def __init__(self, model, params, bsz, device):
        cache = params.key_value_memory_dict
        saved = {k: tuple(t.clone() for t in v) for k, v in cache.items()}
        self.tok = torch.zeros(bsz, 1, dtype=torch.long, device=device)
        graphs = getattr(model, "_decode_graphs", None)   # the model's eager decode graphs stay out of this one
        if graphs is not None:
            graphs.capturing = True
        try:
            self.graph, self.logits = capture(lambda: model(self.tok, inference_params=params).logits[:, -1], device)
        finally:
            if graphs is not None:
                graphs.capturing = False
        for k, v in saved.items():
            for t, s in zip(cache[k], v):
                t.copy_(s)

    def __call__(self, tok):
        self.tok.copy_(tok)
        self.graph.replay()
        return self.logits


def _check(input_ids, max_length, max_new_tokens):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] < 1:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be (batch, L) with L >= 1, got {shape}")
    L = input_ids.shape[1]
    if max_new_tokens is not None:
        if max_length is not None:
            raise ValueError("give max_length (the total length) or max_new_tokens, not both")
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        return max_new_tokens
    if max_length is None:
        raise ValueError("generate needs max_length (the total length, prompt included) or max_new_tokens")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < L:
        raise ValueError(f"max_length must be an int >= the prompt's length {L}, got {max_length!r}")
    return max_length - L


CHECK_EVERY = 16


@torch.inference_mode()
def generate(model, input_ids, max_length=None, top_k=1, top_p=0.0, min_p=0.0, temperature=1.0,
             repetition_penalty=1.0, return_dict_in_generate=False, output_scores=False, cg=None,
             teacher_outputs=None, eos_token_id=None, streamer=None, *, max_new_tokens=None, generator=None,
             attention_mask=None):
    """See ``MambaLMHeadModel.generate``."""
    new = _check(input_ids, max_length, max_new_tokens)
    bsz, L = input_ids.shape
    vocab = model.config.vocab_size
    if teacher_outputs is not None and (teacher_outputs.dim() != 2 or teacher_outputs.shape[0] != bsz):
        raise ValueError(f"teacher_outputs must be (batch, length) with batch = {bsz}, "
                         f"got {tuple(teacher_outputs.shape)}")
    if cg is None:
        cg = input_ids.is_cuda
    params = InferenceParams(max_seqlen=L + new, max_batch_size=bsz)
    graphs = getattr(model, "_generate_graphs", None) if KEEP_STEP and cg and new > 1 else None
    kept = graph = None
    if graphs is not None:
        kept = graphs.kept(model, bsz, input_ids.device)
        params.key_value_memory_dict, graph = kept.cache, kept.step
    else:
        params.key_value_memory_dict = model.allocate_inference_cache(bsz, L + new)
    if streamer is not None:
        streamer.put(input_ids.cpu())
    tokens, scores = [input_ids], []
    if kept is not None:   # the prefill too from a graph (per length bucket, left padded)
        logits = graphs.prefill(model, kept, input_ids, attention_mask)
    else:
        logits = model(input_ids, inference_params=params, num_last_tokens=1,
                       attention_mask=attention_mask).logits[:, -1] if new else None
    params.seqlen_offset = L
    step = (lambda tok: model(tok, inference_params=params).logits[:, -1])  # noqa: E731
    if graph is not None:
        step = graph
    elif cg and new > 1:
        step = DecodeGraph(model, params, bsz, input_ids.device)
    done = torch.zeros(bsz, dtype=torch.bool, device=input_ids.device)
    # whether every row has ended is read from the device every CHECK_EVERY tokens, not every token (a host
    # sync a token keeps the host from queueing the next step while the GPU runs this one); the steps run
    # past the end are cut off, so the result is the same. A streamer reads every token anyway.
    every = 1 if streamer is not None else CHECK_EVERY
    ended, unread = [], 0
    for i in range(new):
        if i:
            logits = step(tokens[-1])
            params.seqlen_offset += 1
        logits = logits[:, :vocab]
        if output_scores or return_dict_in_generate:  # a graph replay overwrites its logits: keep a copy
            scores.append(logits.clone())
        if teacher_outputs is not None and teacher_outputs.shape[1] > L + i:
            nxt = teacher_outputs[:, L + i].to(input_ids.device)
        else:
            if repetition_penalty != 1.0:   # the rows so far, only when they are needed
                logits = apply_repetition_penalty(logits.float(), torch.cat(tokens, dim=1), repetition_penalty)
            nxt = sample(logits, temperature, top_k, top_p, generator, min_p)
        if eos_token_id is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
            done |= nxt == eos_token_id
        tokens.append(nxt[:, None])
        if streamer is not None:
            streamer.put(nxt.cpu())
        if eos_token_id is not None:
            ended.append(done.all())
            if len(ended) - unread == every or i == new - 1:
                flags = torch.stack(ended[unread:])
                if bool(flags.any()):
                    last = unread + int(flags.nonzero()[0, 0])   # the step at which the last row ended
                    del tokens[last + 2:], scores[last + 1:]
                    break
                unread = i + 1
    if streamer is not None:
        streamer.end()
    sequences = torch.cat(tokens, dim=1)
    if return_dict_in_generate:
        return GenerateOutput(sequences, tuple(scores) if output_scores else None)
    return sequences
