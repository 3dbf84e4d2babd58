"""What one prefill of a small LM launches, counted on a machine without a GPU:
``python -m ssm_triton.bench.launch_counts [Mamba2|Mamba1|Mamba3] [--states]``.

A 2-layer LM (d_model 64, bf16, b1 L128) runs one eager forward (``--states``: a prefill that fills the inference
states, as ``generate``'s) in Triton's interpreter; printed are the PyTorch (aten) calls that launch a kernel on a
GPU (allocations and views apart) and the Triton kernels, each per layer where it scales with the layers. Each
launch is a node of the prefill's CUDA graph (~1.5-3 us of a replay on the H100s here) and ~5-10 us of an eager
call's host. What the interpreter does inside a kernel (its tensor copies) is left out; composite calls seen by
name (``to``, ``contiguous``, ``flatten``) launch only where they copy, so the count is an upper bound."""
import os
import sys
from collections import Counter

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

from ssm_triton import InferenceParams  # noqa: E402
from ssm_triton.models import MambaConfig, MambaLMHeadModel  # noqa: E402

from .host_sim import _NO_LAUNCH  # noqa: E402

LAYERS = 2


class _Aten(TorchDispatchMode):
    """The aten calls made outside the interpreted kernels (``inside``: a kernel runs)."""

    def __init__(self):
        super().__init__()
        self.seen, self.inside = Counter(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.inside:
            self.seen[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count(layer: str, states: bool) -> tuple[Counter, Counter]:
    """``(aten calls that launch, Triton kernels)`` of one prefill of a ``LAYERS``-layer LM of ``layer`` blocks."""
    ssm = {"layer": layer, "d_state": 32 if layer != "Mamba1" else 16}
    if layer != "Mamba1":
        ssm.update(headdim=16, chunk_size=64)
    torch.manual_seed(0)
    model = MambaLMHeadModel(MambaConfig(d_model=64, n_layer=LAYERS, vocab_size=256, ssm_cfg=ssm),
                             dtype=torch.bfloat16).eval()
    ids = torch.randint(0, 256, (1, 128))
    kernels, aten = Counter(), _Aten()
    real = interpreter.GridExecutor.__call__

    def spy(self, *a, **k):
        kernels[getattr(self.fn, "__name__", str(self.fn))] += 1
        aten.inside += 1
        try:
            return real(self, *a, **k)
        finally:
            aten.inside -= 1

    params = None
    if states:
        params = InferenceParams(max_seqlen=256, max_batch_size=1)
        params.key_value_memory_dict = model.allocate_inference_cache(1, 256)
    with torch.inference_mode():
        model(ids, inference_params=params)   # compiled (interpreted) and tuned once
        interpreter.GridExecutor.__call__ = spy
        try:
            with aten:
                model(ids, inference_params=params)
        finally:
            interpreter.GridExecutor.__call__ = real
    launching = Counter({k: v for k, v in aten.seen.items() if k not in _NO_LAUNCH})
    return launching, kernels


def main() -> None:
    layer = next((a for a in sys.argv[1:] if not a.startswith("--")), "Mamba2")
    launching, kernels = count(layer, "--states" in sys.argv)
    total = sum(launching.values()) + sum(kernels.values())
    print(f"{layer} LM, {LAYERS} layers, one prefill{' filling the states' if '--states' in sys.argv else ''}: "
          f"{total} launches")
    for name, n in sorted(launching.items()) + sorted(kernels.items()):
        print(f"  {n:3d}  {name}")


if __name__ == "__main__":
    main()
