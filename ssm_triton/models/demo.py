"""``python -m ssm_triton generate``: builds a randomly initialised Mamba language model, generates from a
random prompt and prints prefill and decode throughput. A tiny config by default on CPU (the
interpreter), a mamba2-130m-sized one on a GPU; the weights are random, so the tokens are too."""
import argparse
import time

import torch

from .. import _runtime
from .lm import MambaConfig, MambaLMHeadModel

SIZES = {
    "tiny": dict(d_model=32, n_layer=2, vocab_size=256, d_state=16, headdim=16, chunk_size=16),
    "130m": dict(d_model=768, n_layer=24, vocab_size=50277, d_state=128, headdim=64, chunk_size=256),
}


def build(layer: str, size: str, device, dtype) -> MambaLMHeadModel:
    """A randomly initialised LM of one of ``SIZES``, in eval mode (the demo's and the benchmark's)."""
    cfg = dict(SIZES[size])
    ssm = {"layer": layer, "d_state": cfg.pop("d_state")}
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


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(args) -> int:
    device = _runtime.default_device()
    gpu = device.type == "cuda"
    L = args.prompt_len or (2048 if gpu else 16)
    new = args.new_tokens if args.new_tokens is not None else (256 if gpu else 8)
    torch.manual_seed(args.seed)
    model = build(args.layer, args.size or ("130m" if gpu else "tiny"), device,
                  torch.bfloat16 if gpu else torch.float32)
    prompt = torch.randint(0, model.config.vocab_size, (args.batch, L), device=device)
    model.generate(prompt, 3, top_k=args.top_k)  # compile (or warm) every kernel at these sizes first
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(prompt, num_last_tokens=1)
    _sync(device)
    t1 = time.perf_counter()
    out = model.generate(prompt, new, top_k=args.top_k)
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
