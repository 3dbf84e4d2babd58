"""The clone's root off ``sys.path``: its top-level ``kernels/`` (installed as ``ssm_triton.kernels``) would
otherwise be found as the Hugging Face ``kernels`` package, which transformers (5.25 and later) imports
(``from kernels import CUDAProperties`` failed in every transformers test run from the root by ``python -m``).
"""
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def drop_checkout_root() -> None:
    """Removes this checkout's root (``''`` included, when it is the working directory) from ``sys.path``.
    An installed copy has no ``kernels/`` beside it and is left alone; ``ssm_triton`` itself imports
    through its install (editable or not), never through that entry."""
    if not (_ROOT / "kernels" / "tuning.py").is_file() or not (_ROOT / "ssm_triton").is_dir():
        return
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if Path(p or cwd).resolve() != _ROOT]
