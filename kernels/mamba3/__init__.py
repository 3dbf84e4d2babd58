"""Mamba-3's SISO and MIMO chunked scans (public as ``ssm_triton.mamba3_siso_combined`` and
``ssm_triton.mamba3_mimo``), built on the SSD stages.

Per batch row and head, with ``lam = sigmoid(Trap)``, ``e_t = DT_t (1 - lam_t)``, ``gamma_t = lam_t DT_t``,
``q~, k~`` the rotated, biased queries and keys (``prep.py``), the scan is an SSD whose step size is
``scale_t = gamma_t + e_{t+1}``, whose decay is ``ADT`` and whose diagonal is corrected by
``diag_t = -e_{t+1} (q'_t . k'_t)`` (so step ``t`` weighs itself by ``gamma_t``); input states enter as the
SSD's initial state ``H_in + e_0 v_{-1} k~_{-1}^T``.

| stage | kernel (file) |
|---|---|
| scale, decay sums, angles, q~, k~, diag, q'.k' | ``_siso_prep_kernel`` (``prep.py``) |
| chunk states, state passing, ``k~ q~^T``, output (+ diag x, gate) | the SSD's (``kernels/ssd``), ``chunk_scan`` with ``DIAG`` |
| backward: gate, adjoint chunk sums, reversed state passing, pair gradients (+ d diag) | the SSD's, ``pair_grads`` with ``diag`` |
| backward: decay, scale, diag, rotations and angles back to the inputs | ``_siso_prep_bwd_kernel`` (``prep.py``) |

MIMO (rank R) runs the SSD stages over ``L R`` rank-steps with given per-step terms (``core.py``): step size
``scale_t`` on every rank-step of step ``t``, decay ``ADT_t`` on its first; ``_decay_grad_kernel`` gives the
decay's gradient. The rotations (half-split pairs), rank projections and running angle (``mimo.py``) and the
in-step ``R x R`` block, skip, gate and output projection (``mimo_out.py``; the ranks of one step meet through
``gamma_t``, where the rank-step scan gave the pairs ``r' <= r`` weight ``scale_t``) are kernels around it, composed
in ``ssm_triton/ops/mamba3_mimo.py``.
"""
