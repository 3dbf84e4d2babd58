"""mamba_ssm's own language model as a peer of ours, with the same weights: ``mamba_lm(model)``.

mamba_ssm (2.3.2, its sources carried as ``.peers/``, no CUDA extension built) runs its Mamba-2 LM on its Triton
kernels: the block's memory-efficient path needs causal-conv1d's CUDA extension, so the peer is built with
``use_mem_eff_path=False`` (mamba_ssm's own fallback: PyTorch's conv1d in the prefill, its PyTorch conv update in a
step, its Triton SSD, gated norm and state update), which is also what the latency issue's table timed. Its Mamba-1
block imports the compiled selective scan at import time: where that is absent a stand-in module lets the package
import, and a Mamba-1 peer is refused (``None`` with the reason) rather than run on a stand-in.

The peer is loaded from our model's ``state_dict`` (mamba_ssm's names and shapes: the drop-in contract), so the two
compute the same function; :func:`logits_gap` says how far apart their logits are on one prefill.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import sys
import types

import torch

from .peers import load_past_package_init


@contextlib.contextmanager
def _scan_stand_in():
    """``selective_scan_cuda`` importable for the duration (an empty module) when the real one is not; yields
    whether it is real."""
    if "selective_scan_cuda" in sys.modules or importlib.util.find_spec("selective_scan_cuda") is not None:
        yield True
        return
    sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
    try:
        yield False
    finally:
        # the selective scan's own peer row must find the extension missing, not an interface bound to the stand-in
        sys.modules.pop("selective_scan_cuda", None)
        sys.modules.pop("mamba_ssm.ops.selective_scan_interface", None)


def mamba_lm(model):
    """``(peer, None)``: mamba_ssm's ``MambaLMHeadModel`` of our ``model``'s config (Mamba-2 blocks without the
    memory-efficient path) on its device and dtype, in eval mode, holding our weights; or ``(None, why)``."""
    cfg = model.config
    layer = cfg.ssm_cfg.get("layer", "Mamba1")
    with _scan_stand_in() as real_scan:
        mod, why = load_past_package_init("mamba_ssm.models.mixer_seq_simple")
        if mod is None:
            return None, f"mamba_ssm's LM does not import: {why}"
        if layer == "Mamba1" and not real_scan:
            return None, "mamba_ssm's Mamba-1 LM needs its compiled selective scan (selective_scan_cuda), not built"
        if layer not in ("Mamba1", "Mamba2"):
            return None, f"mamba_ssm 2.3.2's LM has no {layer} layer"
        config_mod, why = load_past_package_init("mamba_ssm.models.config_mamba")
        if config_mod is None:
            return None, f"mamba_ssm's config does not import: {why}"
        fields = dataclasses.asdict(cfg)
        ssm_cfg = dict(fields.pop("ssm_cfg"))
        if layer == "Mamba2":
            ssm_cfg["use_mem_eff_path"] = False   # the fused path calls causal-conv1d's CUDA extension
        param = next(model.parameters())
        try:
            peer = mod.MambaLMHeadModel(config_mod.MambaConfig(**fields, ssm_cfg=ssm_cfg), device=param.device,
                                        dtype=param.dtype)
            peer.load_state_dict(model.state_dict())
        except Exception as e:   # a peer's failure is a note, not the benchmark's end
            return None, f"mamba_ssm's LM could not be built with our weights: {type(e).__name__}: {e}"[:200]
    return peer.eval(), None


def logits_gap(model, peer, ids) -> str:
    """One prefill of ``ids (b, L)`` through both: the largest difference of their last-position logits against
    the largest logit, as a line for the benchmark's notes."""
    with torch.inference_mode():
        ours = model(ids, num_last_tokens=1).logits.float()
        theirs = peer(ids, num_last_tokens=1).logits.float()
    gap = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    return (f"mamba_ssm's LM with our weights: last-position logits differ by at most {gap:.3g} "
            f"(largest logit {scale:.3g})")


def decode_graph(peer, bsz: int, max_seqlen: int):
    """mamba_ssm's own CUDA-graph decode step (``mamba_ssm.utils.generation.capture_graph``, what its
    ``generate(cg=True)`` replays) for ``bsz`` rows of fresh states, as its graph cache builds them:
    ``run(tokens (bsz, 1)) -> logits``."""
    gen, why = load_past_package_init("mamba_ssm.utils.generation")
    if gen is None:
        raise RuntimeError(f"mamba_ssm's generation utilities do not import: {why}")
    device = next(peer.parameters()).device
    params = gen.InferenceParams(max_seqlen=max_seqlen, max_batch_size=bsz, seqlen_offset=max_seqlen - 1,
                                 key_value_memory_dict=peer.allocate_inference_cache(bsz, max_seqlen),
                                 lengths_per_sample=torch.full((bsz,), max_seqlen - 1, dtype=torch.int32,
                                                               device=device))
    step = gen.capture_graph(peer, params, bsz, max_seqlen)
    positions = torch.zeros((bsz, 1), dtype=torch.long, device=device)
    return lambda tokens: step(tokens, positions, max_seqlen - 1)
