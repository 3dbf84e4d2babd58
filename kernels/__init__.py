"""Triton kernels and their launchers (grid, strides, autotune configs). Installed as ``ssm_triton.kernels``.

Launchers take contiguous tensors that the public API has already validated; nothing here checks input.
"""
