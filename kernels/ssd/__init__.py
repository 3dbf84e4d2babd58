"""Mamba-2's SSD chunked scan, one file per stage (public as ``ssm_triton.mamba_chunk_scan_combined``).

Forward, for a row cut into chunks of ``Q`` steps (per batch row and head):

1. ``cumsum.py``      step sizes (bias, softplus, clamp) and their within-chunk cumulative ``dt*A``;
2. ``chunk_state.py`` each chunk's own end state ``sum_s exp(cum_end - cum_s) dt_s x_s B_s^T`` (``tl.dot``);
3. ``state_passing.py`` the states entering each chunk, a short sequential scan over chunks in fp32;
4. ``chunk_scan.py``  the output: ``C_t . h_enter`` plus the masked, decayed ``(C B^T) X`` inside the
   chunk, ``D x`` and the ``silu(z)`` gate, in one kernel (``C B^T`` is never written to memory).

The backward (``backward.py``, ``bwd_dt.py``) runs the same stages as adjoints; ``launch.py`` holds
both orchestrations. Layouts are mamba_ssm's: ``x (b, L, H, P)``, ``dt (b, L, H)``, ``B, C (b, L, G, N)``.
"""
