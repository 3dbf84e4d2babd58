"""``python -m ssm_triton generate``: without ``--model``, builds a randomly initialised Mamba language model,
generates from a random prompt and prints prefill and decode throughput (a tiny config by default on CPU,
the interpreter; a mamba2-130m-sized one on a GPU; the weights are random, so the tokens are too). With
``--model DIR_OR_ID --prompt TEXT``, loads that checkpoint and continues the prompt, tokenised with the
tokenizer found beside the weights (transformers' ``AutoTokenizer``), and prints the text."""
import argparse
import time

import torch

from .. import _runtime
from .checkpoint import resolve
from .lm import MambaConfig, MambaLMHeadModel

SIZES = {
    "tiny": dict(d_model=32, n_layer=2, vocab_size=256, d_state=16, headdim=16, chunk_size=16),
    "130m": dict(d_model=768, n_layer=24, vocab_size=50277, d_state=128, headdim=64, chunk_size=256),
}


def build(layer: str, size: str, device, dtype) -> MambaLMHeadModel:
    """A randomly initialised LM of one of ``SIZES``, in eval mode (the demo's and the benchmark's). Mamba-1
    layers keep the Mamba block's own 16 states, as the released mamba-130m does (until 2026-12-03 they took
    the Mamba-2 size's 128, which made the selective scan 8x the work: the "Mamba-1 LM" rows before then)."""
    cfg = dict(SIZES[size])
    d_state = cfg.pop("d_state")
    ssm = {"layer": layer, "d_state": d_state if layer != "Mamba1" else 16}
    headdim, chunk = cfg.pop("headdim"), cfg.pop("chunk_size")
    if layer == "Mamba2":
        ssm.update(headdim=headdim, chunk_size=chunk)
    return MambaLMHeadModel(MambaConfig(**cfg, ssm_cfg=ssm), device=device, dtype=dtype).eval()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", choices=["Mamba1", "Mamba2"], default="Mamba2")
    p.add_argument("--size", choices=sorted(SIZES), default=None, help="default: tiny on CPU, 130m on a GPU")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=None, help="default: 16 on CPU, 2048 on a GPU")
    p.add_argument("--new-tokens", type=int, default=None, help="default: 8 on CPU, 256 on a GPU")
    p.add_argument("--top-k", type=int, default=1, help="1: greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="a checkpoint directory or hub id (mamba_ssm's or transformers' "
                   "layout); default: a random model")
    p.add_argument("--prompt", default=None, help="text to continue (with --model)")
    p.add_argument("--max-length", type=int, default=None, help="total length in tokens, prompt included "
                   "(with --model; default: the prompt and 32 more)")
    p.add_argument("--tokenizer", default=None, help="where the tokenizer is, if not beside the weights")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_checkpoint(args) -> int:
    """Loads ``args.model``, continues ``args.prompt`` and prints the text."""
    if args.prompt is None:
        raise SystemExit("generate --model needs --prompt TEXT")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise SystemExit("generate --model needs transformers for the tokenizer (pip install transformers)") from None
    device = _runtime.default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(args.seed)
    model = MambaLMHeadModel.from_pretrained(args.model, device=device, dtype=dtype)
    source = args.tokenizer or str(resolve(args.model))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as e:  # noqa: BLE001 - no tokenizer files there
        raise SystemExit(f"no tokenizer found in {source} ({type(e).__name__}); pass --tokenizer") from None
    ids = tokenizer(args.prompt, return_tensors="pt").input_ids.to(device)
    max_length = args.max_length or ids.shape[1] + 32
    t0 = time.perf_counter()
    out = model.generate(ids, max_length, top_k=args.top_k, eos_token_id=tokenizer.eos_token_id)
    _sync(device)
    seconds = time.perf_counter() - t0
    print(tokenizer.decode(out[0], skip_special_tokens=True))
    print(f"({out.shape[1] - ids.shape[1]} new tokens in {seconds:.2f} s on {device.type})")
    return 0


def run(args) -> int:
    if args.model is not None:
        return run_checkpoint(args)
    device = _runtime.default_device()
    gpu = device.type == "cuda"
    L = args.prompt_len or (2048 if gpu else 16)
    new = args.new_tokens if args.new_tokens is not None else (256 if gpu else 8)
    torch.manual_seed(args.seed)
    model = build(args.layer, args.size or ("130m" if gpu else "tiny"), device,
                  torch.bfloat16 if gpu else torch.float32)
    prompt = torch.randint(0, model.config.vocab_size, (args.batch, L), device=device)
    model.generate(prompt, max_new_tokens=3, top_k=args.top_k)  # compile (or warm) every kernel at these sizes first
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(prompt, num_last_tokens=1)
    _sync(device)
    t1 = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=new, top_k=args.top_k)
    _sync(device)
    t2 = time.perf_counter()
    # generate = one prefill + the decode steps (+ one CUDA-graph capture on a GPU, counted as decode)
    decode_s = max(t2 - t1 - (t1 - t0), 1e-9)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.layer} LM, {n_params / 1e6:.1f}M parameters, {device.type}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if gpu else ' (triton interpreter)'}")
    print(f"prefill: {args.batch} x {L} tokens in {1e3 * (t1 - t0):.1f} ms = {args.batch * L / (t1 - t0):,.0f} tokens/s")
    print(f"decode:  {args.batch} x {new} tokens in {1e3 * decode_s:.1f} ms = {args.batch * new / decode_s:,.1f} tokens/s")
    print("tokens:", out[0, L:L + 16].tolist(), "..." if new > 16 else "")
    return 0
