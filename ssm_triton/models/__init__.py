"""Whole models on ssm_triton's kernels."""
from .lm import MambaConfig, MambaLMHeadModel, sample

__all__ = ["MambaConfig", "MambaLMHeadModel", "sample"]
