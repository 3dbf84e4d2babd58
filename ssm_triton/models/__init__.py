"""Whole models on ssm_triton's kernels."""
from .lm import DecodeGraph, MambaConfig, MambaLMHeadModel, sample

__all__ = ["DecodeGraph", "MambaConfig", "MambaLMHeadModel", "sample"]
