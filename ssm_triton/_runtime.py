"""Chooses between compiled Triton kernels and the Triton interpreter.

This module must run before any ``@triton.jit`` decorator does: Triton decides at decoration
time whether a kernel is compiled or interpreted, from the ``TRITON_INTERPRET`` variable.
"""
import logging
import os

import torch

log = logging.getLogger("ssm_triton")


def _configure() -> bool:
    chosen = os.environ.get("TRITON_INTERPRET")
    if chosen is not None:  # the user decided; respect it either way
        return chosen.strip() not in ("", "0")
    if torch.cuda.is_available():
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    log.warning("ssm_triton: no CUDA device found; kernels run on CPU tensors through the Triton interpreter (slow)")
    return True


INTERPRET: bool = _configure()
"""True when kernels run through the Triton interpreter (CPU tensors)."""

if INTERPRET:
    from . import _interpreter
    _interpreter.install()


def default_device() -> torch.device:
    """The device ``check`` and the tests use: CUDA when kernels are compiled, else CPU."""
    return torch.device("cpu") if INTERPRET else torch.device("cuda")
