"""Whole models on ssm_triton's kernels."""
from .generation import DecodeGraph, GenerateOutput, sample
from .lm import CausalLMOutput, MambaConfig, MambaLMHeadModel

__all__ = ["CausalLMOutput", "DecodeGraph", "GenerateOutput", "MambaConfig", "MambaLMHeadModel", "sample"]
