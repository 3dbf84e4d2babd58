"""Hypothesis strategies shared by the op tests; sizes follow the active profile.

``PROFILE`` is ``ci`` under the interpreter (few, small, derandomized examples) and ``gpu`` with CUDA;
``SSM_TRITON_PROFILE=ci|gpu`` overrides it (conftest.py registers and loads the profiles). ``BIG`` says
whether large shapes are in play.
"""
import os

import torch
from hypothesis import settings
from hypothesis import strategies as st

import ssm_triton

PROFILE = os.environ.get("SSM_TRITON_PROFILE", "ci" if ssm_triton.INTERPRET else "gpu")
BIG = PROFILE == "gpu"


def examples(ci: int, gpu: int = 100) -> settings:
    """A test's example count: ``ci`` under the ci profile, ``gpu`` under the gpu one, never more than
    ``SSM_TRITON_EXAMPLES`` when that is set (a GPU smoke run or compute-sanitizer asks for few)."""
    n = gpu if BIG else ci
    if os.environ.get("SSM_TRITON_EXAMPLES"):
        n = min(n, int(os.environ["SSM_TRITON_EXAMPLES"]))
    return settings(max_examples=n, deadline=None)

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def seeds():
    return st.integers(0, 2**31 - 1)


def lengths():
    """Sequence lengths: 1, small odd/prime ones, lengths that leave a partial tile, and long ones."""
    hi = 20_000 if BIG else 70
    return st.one_of(st.just(1), st.integers(2, hi), st.sampled_from([17, 31, 33, 64, 65] + ([4097, 65_537] if BIG else [])))


def generator(seed: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def uniform(shape, lo, hi, seed, device, dtype=torch.float64):
    g = generator(seed, device)
    return (torch.rand(shape, generator=g, device=device, dtype=torch.float64) * (hi - lo) + lo).to(dtype)


def normal(shape, seed, device, dtype=torch.float64, scale=1.0):
    g = generator(seed, device)
    return (torch.randn(shape, generator=g, device=device, dtype=torch.float64) * scale).to(dtype)


def on(device, tensors: dict) -> dict:
    """The dict with its tensors moved to ``device`` (meta tensors, which stand for a wrong device,
    stay put), so that bad-input cases reach the check they are about rather than the device check."""
    move = lambda v: v.to(device) if isinstance(v, torch.Tensor) and v.device.type != "meta" else v  # noqa: E731
    return {k: move(v) for k, v in tensors.items()}
