"""The blocks' decode steps fused (``kernels/fused_step.py``): Mamba-2's in three launches a layer,
Mamba-1's in five (the composed steps take eight to ten). The blocks' ``step`` and the language model's
decoding take them whenever they serve the call, and the composed step (the ops one by one) otherwise.
Inference only: nothing here records a graph.

``SSM_TRITON_FUSED_STEP=0`` (or ``ENABLED = False`` here) keeps the composed step everywhere, for
comparisons (the ``Mamba3`` block's one-launch step, ``modules/mamba3.py``, too); the two agree up to the order in
which products are summed.

Eager decoding calls a layer's step once a token, so its host work is paid per token and per layer (on the
H200 the eager 130M step took 4.8 ms against 0.35 ms replayed, 2026-12-03; ~170 us a layer of Python on the
CPU machine with the launches stubbed). :func:`step` therefore keeps a **plan** per block and batch size:
the buffers between the launches (the projection, the state update's output), the views of them and of the
parameters, and each launch bound to its compiled binary (``kernels/tuning.py``'s ``Bound``). A planned
step checks that the call still fits (shapes, dtypes, devices, contiguity, the same parameter tensors at
the same addresses, the norms' epsilons, the same stream), allocates its two outputs and issues three
(Mamba-1: five) bound launches. The block's structural options (``rmsnorm``, ``norm_before_gate``, group
counts) are read when the plan is built. Anything that does not fit builds a new plan through :func:`serves`; a CUDA graph capture takes
the unplanned step (its buffers come from the graph's pool, not from a plan that may be replaced).
"""
from __future__ import annotations

import os
import weakref

import torch

from ..kernels import fused_step as _k
from ..kernels import in_update as _ku
from ..kernels import tuning
from ..kernels.arrivals import counters
from ..kernels.state_update import state_update, state_update_args, state_update_kernel
from ..modules.inference import plain
from ._layout import records_graph
from ._spec import compiling

ENABLED = os.environ.get("SSM_TRITON_FUSED_STEP", "1").strip() not in ("", "0")
# The most rows a captured (replayed) fused step takes, per block; more take the composed step (cuBLAS). H200,
# 130M LMs, replayed steps, same process: 2026-12-02, Mamba2 at 16 rows 1.02 vs 0.78 ms composed (tensor-core
# tiles); 2026-12-04 (bench/results/h200-2026-12-04c), with the matrix-vector form over 4 rows a program among the
# tuner's candidates, Mamba2 still 1.167 vs 0.775 (its in_step 25 us a layer, not explained) but Mamba-1 0.652 vs 0.884;
# 2026-12-06 (H100, bench/results/h100-2026-12-06g) the composed step without PyTorch launches between its kernels:
# Mamba2 at 16 rows 0.820 -> 0.646 ms (the fused step not timed against it since)
# Past its rows a replayed Mamba2 step takes the composed step (or, with SSM_TRITON_M2_STEP=1, in_proj,
# ops/mamba2_step.py's one launch and out_proj); SSM_TRITON_M2_FUSED_ROWS moves the line, for an A/B
MAX_BATCH = {"Mamba2": int(os.environ.get("SSM_TRITON_M2_FUSED_ROWS", "4")), "Mamba": 16}
# Called eagerly the composed step is host-bound (the 130M Mamba2 LM at b16: 10.2 ms a step against ~1 ms of
# kernels replayed, H200 2026-12-03), so outside a CUDA graph capture the fused step serves up to this many rows
MAX_EAGER_BATCH = 64
# True while a CUDA graph capture's warm-up runs (models/graph_cache.as_captured): the steps take the routes the
# capture will (past MAX_BATCH rows the composed step, whose kernels are then tuned at the graph's rows; an eager step
# of those rows takes the fused step, so a capture ran the composed kernels' rule tiles)
WARMING = False
# Programmatic dependent launch by default up to this many rows (H200, 130M LMs, replayed steps, same process):
# 2026-12-03, Mamba-2 0.350 vs 0.384 ms at b1 but 0.586 vs 0.544 at b4, Mamba-1 0.368 vs 0.368 at b1 and 0.502 vs
# 0.579 at b4; 2026-12-04 with the one-tile projections (kernels/fused_step.py), Mamba-2 0.361 vs 0.475 at b4
PDL_ROWS = {"Mamba2": 4, "Mamba": 4}
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Mamba-1's dt_proj inside the state update (``kernels/state_update.py``'s ``DT_LOW``: each program projects the
# low-rank rows for its channels), four launches a step instead of five: the 130M Mamba LM's replayed step 0.2769 /
# 0.3608 / 0.6009 ms at 1 / 4 / 16 rows against five launches' 0.2878 / 0.3880 / 0.6464 (H200, 2026-12-07, call 24)
DT_IN_UPDATE = os.environ.get("SSM_TRITON_M1_DT_IN_UPDATE", "1").strip() not in ("", "0")
# Mamba-2's state update inside the input projection's launch (``kernels/in_update.py``), up to its rows: 1, two
# launches a step instead of three (the out step apart); 2, one (the out step in the same launch); 0 (off) by default:
# both slower on the H200 (2026-12-07, call 24: the 130M Mamba2 LM's replayed step b1 0.353 / 0.412 ms against 0.225)
IN_UPDATE = {"1": 1, "2": 2}.get(os.environ.get("SSM_TRITON_M2_IN_UPDATE", "0").strip(), 0)


def capturing(hidden_states) -> bool:
    """Whether a step takes a capture's routes: inside a CUDA graph capture or its warm-up (``WARMING``)."""
    return WARMING or (hidden_states.is_cuda and torch.cuda.is_current_stream_capturing())


def serves(mixer, hidden_states, conv_state, ssm_state, max_batch: int | None = None) -> bool:
    """Whether a fused step computes this ``Mamba2.step`` or ``Mamba.step`` call: enabled, no graph recorded
    (nor a ``torch.compile`` trace), states shaped as the block allocates them for this batch, one
    floating dtype for the input and the projections, batch ≤ ``max_batch`` (default: the block's
    ``MAX_BATCH``, the replayed steps' limit); for Mamba-2 no gated-MLP
    columns in in_proj. Anything else, bad input included, goes the composed way, which checks and
    reports it."""
    if not ENABLED or not isinstance(hidden_states, torch.Tensor) or hidden_states.dim() != 3:
        return False
    if max_batch is None:
        max_batch = MAX_BATCH["Mamba2" if hasattr(mixer, "nheads") else "Mamba"]
    bsz, one, d_model = hidden_states.shape
    if not (one == 1 and 0 < bsz <= max_batch and d_model == mixer.d_model and hidden_states.dtype in _DTYPES
            and isinstance(conv_state, torch.Tensor) and isinstance(ssm_state, torch.Tensor)
            and ssm_state.dtype in _DTYPES and hidden_states.device == conv_state.device == ssm_state.device):
        return False
    if hasattr(mixer, "nheads"):   # Mamba-2
        weights = (mixer.in_proj.weight, mixer.out_proj.weight)
        fits = (mixer.d_ssm == mixer.d_inner and tuple(conv_state.shape) == (bsz, mixer.conv_dim, mixer.d_conv)
                and tuple(ssm_state.shape) == (bsz, mixer.nheads, mixer.headdim, mixer.d_state))
        params = (mixer.A_log, mixer.dt_bias, mixer.D)
    else:                          # Mamba-1
        weights = (mixer.in_proj.weight, mixer.x_proj.weight, mixer.dt_proj.weight, mixer.out_proj.weight)
        fits = (tuple(conv_state.shape) == (bsz, mixer.d_inner, mixer.d_conv)
                and tuple(ssm_state.shape) == (bsz, mixer.d_inner, mixer.d_state))
        params = (mixer.A_log, mixer.dt_proj.bias, mixer.D)
    return (fits and all(w.dtype == hidden_states.dtype and w.is_contiguous() and w.device == hidden_states.device
                         for w in weights) and mixer.conv1d.weight.is_contiguous()
            and not records_graph(hidden_states, *weights, *params))


# Mamba-2's composed step (past the fused step's rows) with in_proj and the conv windows in one launch, the tensor-core
# form without a norm (kernels/fused_step.in_step), in place of cuBLAS's in_proj and the conv update (5.1 + 2.2 us a
# layer at 16 rows). On by default since the H100 run of 2026-12-07 (call 35): the 130M Mamba2 LM's replayed step at 16
# rows 0.6318 ms against 0.6496 with SSM_TRITON_M2_CONV_IN_PROJ=0 (one process each); timed at 16 rows only, so it
# serves up to 16.
CONV_IN_PROJ = os.environ.get("SSM_TRITON_M2_CONV_IN_PROJ", "1").strip() not in ("", "0")
CONV_IN_PROJ_ROWS = 16


def conv_in_projection(mixer, hidden_states, conv_state, ssm_state):
    """``in_proj(hidden_states)`` of a ``Mamba2`` block's composed step with its ``xBC`` columns through the conv
    windows and silu (``conv_state`` rolled in place), where ``CONV_IN_PROJ`` is on and the block is one the fused
    steps compute (any rows up to ``CONV_IN_PROJ_ROWS``, 16, in_proj a plain ``nn.Linear``); else None (the caller
    projects and convolves as two ops). ``hidden_states (b, 1, d_model)`` -> ``(b, in_proj's width)``."""
    if not (CONV_IN_PROJ and serves(mixer, hidden_states, conv_state, ssm_state, CONV_IN_PROJ_ROWS)
            and plain(mixer.in_proj)):
        return None
    return _in_projection(mixer, hidden_states, conv_state, None, None, False, mixer.d_ssm, False)[0]


def mamba2_step(mixer, hidden_states, conv_state, ssm_state, residual=None, norm=None, residual_in_fp32=False):
    """One token through a ``Mamba2`` block, states updated in place; call where :func:`serves` says so.

    ``hidden_states (b, 1, d_model)``. Without ``norm`` it is the block's input and the result is
    ``(out (b, 1, d_model), None)``. With ``norm`` (the LM block's pre-norm ``RMSNorm``) the block's input
    is ``norm(hidden_states + residual)`` (``residual`` (b, 1, d_model) or None) and the result
    ``(out, hidden_states + residual)``, the sum in fp32 when ``residual_in_fp32``: the LM block's
    ``(mixer output, residual)``."""
    bsz, d_ssm = hidden_states.shape[0], mixer.d_ssm
    pdl = _k.pdl_enabled(hidden_states.device, bsz, PDL_ROWS["Mamba2"])
    mode = _in_update(mixer, bsz)
    if mode:
        zx, y, res_out, out = _ku.in_update(
            *_in_rows(hidden_states, residual, norm, residual_in_fp32), *_in_update_params(mixer, conv_state, ssm_state),
            pdl=pdl, d_ssm=d_ssm, ngroups=mixer.ngroups, out_step=_out_params(mixer) if mode == 2 else None)
        res_out = res_out.view(hidden_states.shape) if res_out is not None else None
        if out is not None:
            return out[:, None], res_out
    else:
        zx, res_out = _in_projection(mixer, hidden_states, conv_state, residual, norm, residual_in_fp32, d_ssm, pdl)
        y = state_update(ssm_state, *_mamba2_update_inputs(mixer, zx), True, None, a_is_log=True, pdl=pdl)
    out = _k.out_step(y.view(bsz, d_ssm), zx, *_mamba2_gate(mixer), mixer.out_proj.weight, mixer.out_proj.bias,
                      pdl=pdl)
    return out[:, None], res_out


def mamba_step(mixer, hidden_states, conv_state, ssm_state, residual=None, norm=None, residual_in_fp32=False):
    """One token through a Mamba-1 ``Mamba`` block, states updated in place; call where :func:`serves` says
    so. Arguments and result as :func:`mamba2_step`. Five launches: [add + norm +] in_proj with the conv
    windows of ``x``; x_proj; dt_proj; the state update (``A`` read as ``A_log``, gate ``silu(z)``); out_proj. Four
    with ``DT_IN_UPDATE``: dt_proj in the state update."""
    bsz, d, R = hidden_states.shape[0], mixer.d_inner, mixer.dt_rank
    pdl = _k.pdl_enabled(hidden_states.device, bsz, PDL_ROWS["Mamba"])
    xz, res_out = _in_projection(mixer, hidden_states, conv_state, residual, norm, residual_in_fp32, 0, pdl)
    x = xz[:, :d]
    x_dbl, _ = _k.in_step(x, None, None, 0.0, None, mixer.x_proj.weight, None, pdl=pdl)
    low = _dt_in_update(mixer)
    dt = x_dbl[:, :R] if low else _k.in_step(x_dbl[:, :R], None, None, 0.0, None, mixer.dt_proj.weight, None, pdl=pdl)[0]
    y = state_update(ssm_state[:, None], *_mamba_update_inputs(mixer, xz, x_dbl, dt), True, None, a_is_log=True,
                     pdl=pdl, dt_weight=mixer.dt_proj.weight if low else None)
    out = _k.out_step(y.view(bsz, d), xz, None, 0.0, d, False, mixer.out_proj.weight, mixer.out_proj.bias, pdl=pdl)
    return out[:, None], res_out


def _dt_in_update(mixer) -> bool:
    """Whether this Mamba-1 block's step computes dt_proj in the state update (``DT_IN_UPDATE``; its kernel reads
    the weight packed)."""
    return DT_IN_UPDATE and mixer.dt_proj.weight.is_contiguous()


def _in_projection(mixer, hidden_states, conv_state, residual, norm, residual_in_fp32, conv_lo, pdl=None):
    """The first launch of both steps: [the pre-norm block's add and norm ->] in_proj -> the conv windows of
    the columns from ``conv_lo`` on. ``(projection (b, O), residual' (b, 1, d_model) or None)``."""
    conv = mixer.conv1d
    zx, res_out = _k.in_step(*_in_rows(hidden_states, residual, norm, residual_in_fp32), mixer.in_proj.weight,
                             mixer.in_proj.bias, conv.weight.squeeze(1), conv.bias, conv_state, conv_lo, pdl=pdl)
    return zx, res_out.view(hidden_states.shape) if res_out is not None else None


def _in_rows(hidden_states, residual, norm, residual_in_fp32) -> tuple:
    """``(rows (b, d_model), residual rows or None, norm weight, eps, kept residual dtype)``: the input projection
    launches' first arguments."""
    bsz = hidden_states.shape[0]
    rows = hidden_states.reshape(bsz, -1)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    res_rows, keep = None, None
    if norm is not None:
        res_rows = residual.reshape(bsz, -1).contiguous() if residual is not None else None
        keep = _residual_dtype(residual_in_fp32, residual, hidden_states)
    return (rows, res_rows, *_norm_args(norm), keep)


def _in_update(mixer, bsz) -> int:
    """How this Mamba-2 step updates its state inside the input projection's launch (``IN_UPDATE``'s mode where the
    launch fits the block, else 0)."""
    return IN_UPDATE if IN_UPDATE and _ku.fits(bsz, mixer.d_model, mixer.d_ssm, IN_UPDATE == 2) else 0


def _out_params(mixer) -> tuple:
    """The out step's part of the one-launch step: the gate's norm (weight, eps, group size, gate first), out_proj."""
    return (*_mamba2_gate(mixer), mixer.out_proj.weight, mixer.out_proj.bias)


def _in_update_params(mixer, conv_state, ssm_state) -> tuple:
    """``kernels/in_update.py``'s arguments after the input's: the projection's and conv's parameters, the states,
    ``A_log, D, dt_bias``, whether ``y`` is gated, the state's counters."""
    conv = mixer.conv1d
    D = mixer.D.view(mixer.nheads, mixer.headdim) if mixer.D_has_hdim else mixer.D
    return (mixer.in_proj.weight, mixer.in_proj.bias, conv.weight.squeeze(1), conv.bias, conv_state, ssm_state,
            mixer.A_log, D, mixer.dt_bias, not mixer.rmsnorm, counters(ssm_state, _ku.COUNTERS))


def _norm_args(norm) -> tuple:
    """``(weight, eps)`` of an RMSNorm, ``(None, 0.0)`` without one (the steps' kernels take no norm then)."""
    return (norm.weight, norm.eps) if norm is not None else (None, 0.0)


def _residual_dtype(residual_in_fp32, residual, hidden_states):
    """The dtype the pre-norm block keeps its running residual in."""
    return torch.float32 if residual_in_fp32 else (residual.dtype if residual is not None else hidden_states.dtype)


def _mamba2_update_inputs(mixer, zx) -> tuple:
    """``x, dt, A, B, C, D, z, dt_bias`` of Mamba-2's state update as views of in_step's output ``zx (b, O)``
    (``[z | x | B | C | dt]``) and of the parameters (``A`` as ``A_log``)."""
    bsz = zx.shape[0]
    H, P, N, G, d_ssm = mixer.nheads, mixer.headdim, mixer.d_state, mixer.ngroups, mixer.d_ssm
    gn = G * N
    D = mixer.D.view(H, P) if mixer.D_has_hdim else mixer.D[:, None].expand(H, P)
    return (zx[:, d_ssm:2 * d_ssm].view(bsz, H, P), zx[:, 2 * d_ssm + 2 * gn:][..., None].expand(bsz, H, P),
            mixer.A_log[:, None, None].expand(H, P, N), zx[:, 2 * d_ssm:2 * d_ssm + gn].view(bsz, G, N),
            zx[:, 2 * d_ssm + gn:2 * d_ssm + 2 * gn].view(bsz, G, N), D,
            None if mixer.rmsnorm else zx[:, :d_ssm].view(bsz, H, P), mixer.dt_bias[:, None].expand(H, P))


def _mamba2_gate(mixer) -> tuple:
    """``norm weight, eps, group size, gate first`` of out_step for a Mamba-2 block."""
    gate = mixer.norm if mixer.rmsnorm else None
    return (*_norm_args(gate), mixer.d_ssm // mixer.ngroups, not mixer.norm_before_gate)


def _mamba_update_inputs(mixer, xz, x_dbl, dt) -> tuple:
    """``x, dt, A, B, C, D, z, dt_bias`` of Mamba-1's state update, one head of ``d_inner`` channels: views of
    in_proj's ``xz (b, 2 d)``, x_proj's ``x_dbl (b, R + 2N)``, dt_proj's ``dt (b, d)`` and the parameters."""
    d, N, R = mixer.d_inner, mixer.d_state, mixer.dt_rank
    return (xz[:, None, :d], dt[:, None], mixer.A_log[None], x_dbl[:, None, R:R + N], x_dbl[:, None, R + N:],
            mixer.D[None], xz[:, None, d:], mixer.dt_proj.bias[None])


def step(mixer, hidden_states, conv_state, ssm_state, residual=None, norm=None, residual_in_fp32=False):
    """:func:`mamba2_step` or :func:`mamba_step` (by the block's kind) through the block's plan for this
    call, built where :func:`serves` says the fused step serves it; None where it does not (the caller
    takes the composed step). Same arguments and result as :func:`mamba2_step`."""
    if not ENABLED or type(hidden_states) is not torch.Tensor or hidden_states.dim() != 3 or compiling():
        return None
    plans = _PLANS.get(mixer)
    key = (hidden_states.shape[0], residual is None, residual_in_fp32)
    plan = plans.get(key) if plans is not None else None
    if plan is not None:
        stream = plan.stream_now()
        if plan.fits(hidden_states, conv_state, ssm_state, residual, norm, stream):
            return plan(hidden_states, conv_state, ssm_state, residual, stream)
    captured = capturing(hidden_states)
    if not serves(mixer, hidden_states, conv_state, ssm_state, None if captured else MAX_EAGER_BATCH):
        return None
    kind = mamba2_step if hasattr(mixer, "nheads") else mamba_step
    if captured or not _plannable(hidden_states, conv_state, ssm_state, residual):
        return kind(mixer, hidden_states, conv_state, ssm_state, residual, norm, residual_in_fp32)
    plan = (_Mamba2Plan if kind is mamba2_step else _MambaPlan)(
        mixer, hidden_states, conv_state, ssm_state, residual, norm, residual_in_fp32)
    if plans is None:
        plans = _PLANS[mixer] = {}
    plans[key] = plan
    return plan(hidden_states, conv_state, ssm_state, residual, plan.stream)


# block -> {(batch, residual is None, residual_in_fp32): plan}: kept beside the blocks, not in them, so that
# copying or pickling a block never meets a plan's compiled launches; a block's plans go with the block
_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def plans_of(mixer) -> dict:
    """The block's current plans, by ``(batch, residual is None, residual_in_fp32)`` (for tests)."""
    return dict(_PLANS.get(mixer, {}))


def _plannable(hidden_states, conv_state, ssm_state, residual) -> bool:
    """A plan takes contiguous tensors (its strides are fixed when it is built)."""
    return (hidden_states.is_contiguous() and conv_state.is_contiguous() and ssm_state.is_contiguous()
            and (residual is None or (residual.is_contiguous() and residual.shape == hidden_states.shape
                                      and residual.device == hidden_states.device)))


class _Plan:
    """What a block's planned step keeps: the parameters it was built from (each checked by identity and
    address per call), the shapes and dtypes of the call, the stream, the launches."""

    def __init__(self, mixer, hidden, conv_state, ssm_state, residual, norm, residual_in_fp32, parts):
        """``parts``: ``(parent, name)`` pairs of the submodules and ``(module, name)`` of the parameters
        the step reads."""
        self.device = hidden.device
        self.dev = hidden.get_device()
        self.stream = self.stream_now()
        self.hshape, self.dtype = hidden.shape, hidden.dtype
        self.cshape, self.cdtype = conv_state.shape, conv_state.dtype
        self.sshape, self.sdtype = ssm_state.shape, ssm_state.dtype
        self.rdtype = residual.dtype if residual is not None else None
        self.norm, self.pdl_setting = norm, _k.PDL_ENABLED
        # the epsilons the launches were built with (the gate's norm, Mamba-2's, and the block's pre-norm)
        self.eps = [(m, m.eps) for m in (getattr(mixer, "norm", None), norm) if m is not None]
        self.keep = _residual_dtype(residual_in_fp32, residual, hidden)
        self.modules = [(parent._modules, name, parent._modules[name]) for parent, name in parts[0]]
        self.params = [(m._parameters, name, m._parameters[name],
                        m._parameters[name].data_ptr() if m._parameters[name] is not None else 0) for m, name in parts[1]]

    def stream_now(self):
        return tuning._raw_stream(self.dev) if self.dev >= 0 else None

    def fits(self, hidden, conv_state, ssm_state, residual, norm, stream) -> bool:
        dev = self.dev
        if not (hidden.shape == self.hshape and hidden.dtype is self.dtype and hidden.get_device() == dev
                and hidden.is_contiguous() and conv_state.shape == self.cshape and conv_state.dtype is self.cdtype
                and conv_state.get_device() == dev and conv_state.is_contiguous() and ssm_state.shape == self.sshape
                and ssm_state.dtype is self.sdtype and ssm_state.get_device() == dev and ssm_state.is_contiguous()
                and norm is self.norm and stream == self.stream and _k.PDL_ENABLED is self.pdl_setting):
            return False
        if residual is not None and not (residual.shape == self.hshape and residual.dtype is self.rdtype
                                         and residual.get_device() == dev and residual.is_contiguous()):
            return False
        if torch.is_grad_enabled() and (hidden.requires_grad or (residual is not None and residual.requires_grad)
                                        or any(t is not None and t.requires_grad for _, _, t, _ in self.params)):
            return False
        if WARMING or (dev >= 0 and torch.cuda.is_current_stream_capturing()):
            return False
        for modules, name, m in self.modules:
            if modules.get(name) is not m:
                return False
        for params, name, t, ptr in self.params:
            if params.get(name) is not t or (t is not None and t.data_ptr() != ptr):
                return False
        for module, eps in self.eps:
            if module.eps != eps:
                return False
        return True

    def _outputs(self, out_dtype):
        res_out = torch.empty(self.hshape, device=self.device, dtype=self.keep) if self.norm is not None else None
        return torch.empty(self.hshape, device=self.device, dtype=out_dtype), res_out

    def _in_tensors(self, hidden, residual, res_out, conv_state):
        if self.norm is None:
            return hidden, conv_state
        return (hidden, residual, res_out, conv_state) if residual is not None else (hidden, res_out, conv_state)

    def _in_vary(self, residual):
        if self.norm is None:
            return ("HID", "CONV_S")
        return ("HID", "RES", "RES_OUT", "CONV_S") if residual is not None else ("HID", "RES_OUT", "CONV_S")


def _norm_parts(norm):
    return [(norm, "weight")] if norm is not None else []


class _Mamba2Plan(_Plan):
    """A ``Mamba2`` block's planned step (:func:`mamba2_step`'s three launches)."""

    def __init__(self, mixer, hidden, conv_state, ssm_state, residual, norm, residual_in_fp32):
        gate = mixer.norm if mixer.rmsnorm else None
        subs = ["in_proj", "conv1d", "out_proj"] + (["norm"] if gate is not None else [])
        params = [(mixer.in_proj, "weight"), (mixer.in_proj, "bias"), (mixer.conv1d, "weight"),
                  (mixer.conv1d, "bias"), (mixer, "A_log"), (mixer, "dt_bias"), (mixer, "D"),
                  (mixer.out_proj, "weight"), (mixer.out_proj, "bias")] + _norm_parts(gate) + _norm_parts(norm)
        super().__init__(mixer, hidden, conv_state, ssm_state, residual, norm, residual_in_fp32,
                         ([(mixer, n) for n in subs], params))
        bsz, H, P, d_ssm = hidden.shape[0], mixer.nheads, mixer.headdim, mixer.d_ssm
        w_in, conv, w_out = mixer.in_proj.weight, mixer.conv1d, mixer.out_proj.weight
        pdl = _k.pdl_enabled(hidden.device, bsz, PDL_ROWS["Mamba2"])
        self.zx = zx = torch.empty((bsz, w_in.shape[0]), device=hidden.device, dtype=w_in.dtype)
        self.y = torch.empty((bsz, H, P), device=hidden.device, dtype=zx.dtype)
        self.out_dtype = w_out.dtype
        out, res_out = self._outputs(w_out.dtype)
        self.l_su = self.l_out = None
        mode = _in_update(mixer, bsz)
        self.one = mode == 2
        if mode:   # one launch for both (or all three), its counters the state's
            problem, args = _ku.in_update_args(
                hidden, residual, *_norm_args(norm), *_in_update_params(mixer, conv_state, ssm_state), zx,
                self.y.view(bsz, d_ssm), res_out, pdl, d_ssm=d_ssm, ngroups=mixer.ngroups,
                out_step=(*_out_params(mixer), out) if self.one else None)
            self.l_in = tuning.Launch(_ku.in_update_kernel, problem, args,
                                      self._in_vary(residual) + ("S", "CNT") + (("OUT",) if self.one else ()))
        else:
            problem, args = _k.in_step_args(
                hidden, residual, *_norm_args(norm), self.keep, w_in, mixer.in_proj.bias, conv.weight.squeeze(1),
                conv.bias, conv_state, d_ssm, zx, res_out, pdl)
            self.l_in = tuning.Launch(_k.in_step_kernel, problem, args, self._in_vary(residual))
            problem, args = state_update_args(ssm_state, *_mamba2_update_inputs(mixer, zx), True, None, self.y,
                                              a_is_log=True, pdl=pdl)
            self.l_su = tuning.Launch(state_update_kernel, problem, args, ("S",))
        if not self.one:
            problem, args = _k.out_step_args(self.y.view(bsz, d_ssm), zx, *_mamba2_gate(mixer), w_out,
                                             mixer.out_proj.bias, out, pdl)
            self.l_out = tuning.Launch(_k.out_step_kernel, problem, args, ("OUT",))

    def __call__(self, hidden, conv_state, ssm_state, residual, stream):
        out, res_out = self._outputs(self.out_dtype)
        if self.l_su is None:
            cnt = counters(ssm_state, _ku.COUNTERS)
            if self.one:
                self.l_in(stream, *self._in_tensors(hidden, residual, res_out, conv_state), ssm_state, cnt, out)
                return out, res_out
            self.l_in(stream, *self._in_tensors(hidden, residual, res_out, conv_state), ssm_state, cnt)
        else:
            self.l_in(stream, *self._in_tensors(hidden, residual, res_out, conv_state))
            self.l_su(stream, ssm_state)
        self.l_out(stream, out)
        return out, res_out


class _MambaPlan(_Plan):
    """A Mamba-1 ``Mamba`` block's planned step (:func:`mamba_step`'s five launches)."""

    def __init__(self, mixer, hidden, conv_state, ssm_state, residual, norm, residual_in_fp32):
        params = [(mixer.in_proj, "weight"), (mixer.in_proj, "bias"), (mixer.conv1d, "weight"),
                  (mixer.conv1d, "bias"), (mixer.x_proj, "weight"), (mixer.dt_proj, "weight"),
                  (mixer.dt_proj, "bias"), (mixer, "A_log"), (mixer, "D"), (mixer.out_proj, "weight"),
                  (mixer.out_proj, "bias")] + _norm_parts(norm)
        subs = ["in_proj", "conv1d", "x_proj", "dt_proj", "out_proj"]
        super().__init__(mixer, hidden, conv_state, ssm_state, residual, norm, residual_in_fp32,
                         ([(mixer, n) for n in subs], params))
        bsz, d, R = hidden.shape[0], mixer.d_inner, mixer.dt_rank
        w_in, conv, w_out = mixer.in_proj.weight, mixer.conv1d, mixer.out_proj.weight
        pdl = _k.pdl_enabled(hidden.device, bsz, PDL_ROWS["Mamba"])
        dev = hidden.device
        self.xz = xz = torch.empty((bsz, w_in.shape[0]), device=dev, dtype=w_in.dtype)
        self.x_dbl = torch.empty((bsz, mixer.x_proj.weight.shape[0]), device=dev, dtype=mixer.x_proj.weight.dtype)
        self.dt = torch.empty((bsz, d), device=dev, dtype=mixer.dt_proj.weight.dtype)
        self.y = torch.empty((bsz, d), device=dev, dtype=xz.dtype)
        self.out_dtype = w_out.dtype
        out, res_out = self._outputs(w_out.dtype)
        problem, args = _k.in_step_args(
            hidden, residual, *_norm_args(norm), self.keep, w_in, mixer.in_proj.bias, conv.weight.squeeze(1), conv.bias,
            conv_state, 0, xz, res_out, pdl)
        self.l_in = tuning.Launch(_k.in_step_kernel, problem, args, self._in_vary(residual))
        x = xz[:, :d]
        problem, args = _k.in_step_args(x, None, None, 0.0, None, mixer.x_proj.weight, None, None, None, None, 0,
                                        self.x_dbl, None, pdl)
        self.l_x = tuning.Launch(_k.in_step_kernel, problem, args, ())
        low = _dt_in_update(mixer)
        self.l_dt = None
        if not low:
            problem, args = _k.in_step_args(self.x_dbl[:, :R], None, None, 0.0, None, mixer.dt_proj.weight, None, None,
                                            None, None, 0, self.dt, None, pdl)
            self.l_dt = tuning.Launch(_k.in_step_kernel, problem, args, ())
        # the state is passed as itself: its (b, 1, d, N) view has the same address, and the strides say the rest
        dt = self.x_dbl[:, :R] if low else self.dt
        problem, args = state_update_args(ssm_state[:, None], *_mamba_update_inputs(mixer, xz, self.x_dbl, dt),
                                          True, None, self.y[:, None], a_is_log=True, pdl=pdl,
                                          dt_weight=mixer.dt_proj.weight if low else None)
        self.l_su = tuning.Launch(state_update_kernel, problem, args, ("S",))
        problem, args = _k.out_step_args(self.y, xz, None, 0.0, d, False, w_out, mixer.out_proj.bias, out, pdl)
        self.l_out = tuning.Launch(_k.out_step_kernel, problem, args, ("OUT",))

    def __call__(self, hidden, conv_state, ssm_state, residual, stream):
        out, res_out = self._outputs(self.out_dtype)
        self.l_in(stream, *self._in_tensors(hidden, residual, res_out, conv_state))
        self.l_x(stream)
        if self.l_dt is not None:
            self.l_dt(stream)
        self.l_su(stream, ssm_state)
        self.l_out(stream, out)
        return out, res_out
