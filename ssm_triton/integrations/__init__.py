"""Switches other libraries' Mamba code onto ssm_triton's kernels (optional; each imports its library
only when asked)."""
