"""Mamba-2's SSD chunked scan, one file per stage (public as ``ssm_triton.mamba_chunk_scan_combined``).

Per batch row and head, a row cut into chunks of ``Q`` steps; ``dt`` the step sizes after bias, softplus
and clamp, ``cum`` their within-chunk cumulative ``dt*A``, ``h_c`` the state entering chunk ``c``.

Forward (launchers in ``launch.py``, in this order):

| stage | equation | kernel (file) |
|---|---|---|
| step sizes | ``dt_t = clamp(softplus(dt_t + bias))``, ``cum_t = sum_{s<=t in chunk} dt_s A`` (fp64, two fp32 planes) | ``_dt_cumsum_kernel`` (``cumsum.py``) |
| chunk states | ``own_c = sum_s exp(cum_end - cum_s) dt_s x_s B_s^T`` | ``_chunk_state_kernel``, ``MODE_STATE`` (``chunk_state.py``) |
| state passing | ``h_{c+1} = keep_c exp(cum_end_c) h_c + own_c`` | ``_state_fwd_kernel`` (``state_passing.py``); ``own_state_passing`` |
| ``C B^T`` | ``cb_ts = C_t . B_s`` per group and chunk | ``_bmm_kernel`` (``bmm.py``) |
| output | ``y_t = exp(cum_t) C_t h_c + sum_{s<=t} cb_ts exp(cum_t - cum_s) dt_s x_s + D x_t``, ``out = y silu(z)`` | ``_chunk_scan_fwd_kernel`` (``chunk_scan.py``) |
| varlen states | each packed sequence's last state | ``_chunk_state_kernel``, ``MODE_VARLEN`` |

``SSM_TRITON_SSD_OWN_FUSED=1`` makes the chunk states inside the state passing (``_state_fwd_own_kernel``: a program
per state tile walks the chunks, no fp32 ``own`` stored), ``SSM_TRITON_SSD_ADJ_FUSED=1`` the backward's adjoint sums
inside the reversed one (``_state_bwd_adjoint_kernel``); both off (timed on an H100, 2026-12-05: the same time at
chunk 128 with 138 MiB less, 3.6% slower at 256).

A call that keeps nothing for a backward (``launch.ssd_inference``) may instead run all of it in one launch,
``_ssd_fused_fwd_kernel`` (``fused.py``): a program per (row, head, channel tile) walks the chunks in order with
the state in registers. ``fused.use_fused`` says where (short rows, or moderate rows with many heads: measured);
packed rows and varlen states stay staged.

Backward (``launch.ssd_backward``: the same stages as adjoints, mirrored; ``E_ts = M_ts exp(cum_t - cum_s)``
with ``M`` the causal same-sequence mask, ``W_st = E_ts dt_s (dy_t . x_s)``):

| gradient | equation | kernel (file), launcher |
|---|---|---|
| gate | ``dy = dout silu(z)``, ``dz = dout y silu'(z)``, and ``dD`` from the fp32 ``dy`` | ``_gate_bwd_kernel`` (``bwd_dt.py``) |
| to each entering state | ``adj_c = sum_t exp(cum_t) dy_t C_t^T`` | ``_chunk_state_kernel``, ``MODE_ADJOINT``; ``chunk_state`` |
| reversed state passing | ``ds_c = dh_{c+1}``, ``dh_c = adj_c + keep_c exp(cum_end_c) dh_{c+1}``; ``dh0``; the carried decay's part ``f_c`` | ``_state_bwd_kernel`` (``state_passing.py``); ``adjoint_state_passing`` |
| dx, dD | ``v_s = sum_t cb_ts E_ts dy_t + exp(cum_end - cum_s) ds_c B_s``, ``dx_s = dt_s v_s + D dy_s`` | ``_dx_dd_kernel`` (``bwd_pairs.py``); ``pair_grads`` |
| dB (and dC's pair part) | ``dB_s = sum_t (sum_h W_st) C_t + sum_h dt_s exp(cum_end - cum_s) ds_c^T x_s``; ``dC_t += sum_s W_st B_s`` (atomics) | ``_db_dc_pairs_kernel`` (``bwd_pairs.py``); ``pair_grads`` |
| dC (entering-state part, stored first) | ``dC_t = sum_h exp(cum_t) h_c^T dy_t`` (deterministic: the pair part too) | ``_dc_states_kernel`` (``bwd_pairs.py``); ``pair_grads`` |
| step sizes | ``d cum_t = rs_t + inter_t - cs_t - u_t``, ``d dt_r = x_r . v_r + A sum_{t>=r} d cum_t``, ``dA``, ``d dt_bias`` through clamp and softplus | ``_dt_bwd_kernel`` (``bwd_dt.py``) |

Where every head has its own keys and queries (``G = H``: Mamba-3) the backward but the gate may run in one launch,
``_walk_bwd_kernel`` (``walk_bwd.py``): a program per (row, head), or per segment of its row where few pairs would
leave SMs idle (``_walk_sums_kernel`` first), walks the chunks in reverse holding ``dh``. ``launch.walks`` takes it
by default where its programs fill the GPU's waves (faster than the stages on an H100, 2026-12-05,
``bench/walk_choice.py``); ``SSM_TRITON_WALK_BWD`` 1 forces it, 0 the stages.

``pair_grads`` keeps its fp32 partials and per-step terms in a ``PairScratch`` (named fields), the forward
what the backward reads in a ``Saved``. Layouts are mamba_ssm's: ``x (b, L, H, P)``, ``dt (b, L, H)``,
``B, C (b, L, G, N)``.
"""
