"""mamba_ssm's whole-block functions, ``mamba_split_conv1d_scan_combined`` (Mamba-2) and ``mamba_inner_fn``
(Mamba-1), from ssm_triton's ops: the same arguments and results. They run the pieces' kernels (not fused into
fewer kernels than the pieces); a call that records a graph is one autograd node whose backward calls the pieces'
backwards (``split_conv_whole.py``, ``inner_whole.py``; mamba_inner_fn's with norms, biases or a mask composes the
ops), and a call that records none composes the ops, replayed per signature. They exist so that code calling
mamba_ssm's names (mamba_ssm's own modules, the transformers library's) runs here unchanged.
"""
import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _validate
from ..kernels import replay as _replay

IO = (torch.float32, torch.bfloat16, torch.float16)
from .conv1d import causal_conv1d_fn, split_conv
from .norm import rmsnorm_fn
from .selective_scan import scan_from_log, selective_scan_fn
from .ssd import _route, chunk_scan_from_log, mamba_chunk_scan_combined
from . import _layout
from ._spec import compiling
from . import inner_whole as _inner_whole
from . import split_conv_whole as _whole


def mamba_split_conv1d_scan_combined(zxbcdt: Tensor, conv1d_weight: Tensor, conv1d_bias: Optional[Tensor],
                                     dt_bias: Tensor, A: Tensor, D: Tensor, chunk_size: int,
                                     initial_states: Optional[Tensor] = None, seq_idx: Optional[Tensor] = None,
                                     dt_limit=(0.0, float("inf")), return_final_states: bool = False,
                                     activation: Optional[str] = "silu", rmsnorm_weight: Optional[Tensor] = None,
                                     rmsnorm_eps: float = 1e-6, outproj_weight: Optional[Tensor] = None,
                                     outproj_bias: Optional[Tensor] = None, headdim: Optional[int] = None,
                                     ngroups: int = 1, norm_before_gate: bool = True):
    """Mamba-2's block after in_proj: split, conv + activation, SSD, (gated RMSNorm), (out_proj).

    ``zxbcdt (b, L, 2 d_mlp + 2 H P + 2 G N + H)``: a gated-MLP part ``(z0, x0)`` (``d_mlp`` may be 0), the
    gate ``z``, the conv's input ``xBC`` and ``dt``. ``conv1d_weight (H P + 2 G N, W)``; ``dt_bias, A (H,)``;
    ``D (H,)`` (then ``headdim`` is required) or ``(H, P)``. With ``rmsnorm_weight (H P,)`` the SSD output
    goes through the gated norm (group size ``H P / ngroups``), else ``z`` gates it inside the scan.
    Returns ``out (b, L, d_out)`` (``d_out`` = out_proj's rows, else ``d_mlp + H P``), and
    ``final_states (b, H, P, N)`` too with ``return_final_states``.
    """
    # the split, the pieces and the PyTorch between them, replayed per signature where no graph is recorded (a
    # replay exists only for a signature that passed the checks below)
    if isinstance(dt_limit, list):
        dt_limit = tuple(dt_limit)
    args = (zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states, seq_idx, dt_limit,
            return_final_states, activation, rmsnorm_weight, rmsnorm_eps, outproj_weight, outproj_bias, headdim,
            ngroups, norm_before_gate)
    # the SSD's route switches (one launch or stages, segments, carry) and precision: what the recording depends on
    key = None if compiling() else _replay.key_of(args, _route(zxbcdt))
    return _SPLIT_REPLAYS.checked(key, args, lambda: _check_split(*args), _split_conv1d_scan)


def _check_split(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states, seq_idx, dt_limit,
                 return_final_states, activation, rmsnorm_weight, rmsnorm_eps, outproj_weight, outproj_bias, headdim,
                 ngroups, norm_before_gate) -> None:
    """:func:`mamba_split_conv1d_scan_combined`'s own checks (the pieces check the rest)."""
    _validate.tensor("zxbcdt", zxbcdt, ndim=3, dtypes=(torch.float32, torch.bfloat16, torch.float16),
                     shape_doc="(batch, L, 2 d_mlp + 2 H P + 2 G N + H)")
    _validate.tensor("D", D, dtypes=(torch.float32, torch.bfloat16, torch.float16), shape_doc="(H,) or (H, P)")
    _validate.tensor("conv1d_weight", conv1d_weight, ndim=2, shape_doc="(H P + 2 G N, width)")
    if D.dim() == 1:
        if headdim is None:
            raise ValueError("headdim is required when D is (H,)")
        H, P = D.shape[0], int(headdim)
    elif D.dim() == 2:
        H, P = D.shape
    else:
        raise ValueError(f"D must be (H,) or (H, P), got shape {tuple(D.shape)}")
    dim = H * P
    if not isinstance(ngroups, int) or ngroups < 1 or H % ngroups:
        raise ValueError(f"ngroups must be a positive int dividing H = {H}, got {ngroups!r}")
    N2 = conv1d_weight.shape[0] - dim
    if N2 <= 0 or N2 % (2 * ngroups):
        raise ValueError(f"conv1d_weight must have H P + 2 G N rows with H P = {dim}, G = {ngroups}; "
                         f"got {conv1d_weight.shape[0]}")
    N = N2 // (2 * ngroups)
    extra = zxbcdt.shape[-1] - (2 * dim + 2 * ngroups * N + H)
    if extra < 0 or extra % 2:
        raise ValueError(f"zxbcdt's last dim must be 2 d_mlp + {2 * dim + 2 * ngroups * N + H} (2 H P + 2 G N + H "
                         f"with H={H}, P={P}, G={ngroups}, N={N}), got {zxbcdt.shape[-1]}")
    for name, t in (("dt_bias", dt_bias), ("A", A)):
        _validate.tensor(name, t, ndim=1, shape_doc="(H,)")
        _validate.shape(name, t, (H,), "(H,)")
    if outproj_weight is None and outproj_bias is not None:
        raise ValueError("outproj_bias needs outproj_weight")


_SPLIT_REPLAYS = _replay.Replays()
_SPLIT_LOG_REPLAYS = _replay.Replays()
# "0": the *_from_log block functions compute A = -exp(A_log) in PyTorch (three launches a layer) and call the
# public ones, as before 2026-12-07 (the A/B of the blocks' inference forwards)
A_IN_KERNELS = os.environ.get("SSM_TRITON_A_LOG", "1") != "0"


def split_conv1d_scan_from_log(zxbcdt: Tensor, conv1d_weight: Tensor, conv1d_bias: Optional[Tensor], dt_bias: Tensor,
                               A_log: Tensor, D: Tensor, chunk_size: int, initial_states: Optional[Tensor] = None,
                               seq_idx: Optional[Tensor] = None, dt_limit=(0.0, float("inf")),
                               return_final_states: bool = False, activation: Optional[str] = "silu",
                               rmsnorm_weight: Optional[Tensor] = None, rmsnorm_eps: float = 1e-6,
                               outproj_weight: Optional[Tensor] = None, outproj_bias: Optional[Tensor] = None,
                               headdim: Optional[int] = None, ngroups: int = 1, norm_before_gate: bool = True):
    """:func:`mamba_split_conv1d_scan_combined` of ``A = -exp(A_log)`` (``A_log (H,)`` as ``Mamba2`` keeps it),
    the exponential taken in the SSD's kernels (:func:`.ssd.chunk_scan_from_log`) by a call that keeps nothing for
    a backward: ``Mamba2``'s inference forward and prefill make three PyTorch launches a layer fewer. Where a
    gradient is asked for, under ``torch.compile``, or with ``SSM_TRITON_A_LOG=0``, the public function with ``A``
    computed in PyTorch."""
    if isinstance(dt_limit, list):
        dt_limit = tuple(dt_limit)
    args = (zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A_log, D, chunk_size, initial_states, seq_idx, dt_limit,
            return_final_states, activation, rmsnorm_weight, rmsnorm_eps, outproj_weight, outproj_bias, headdim,
            ngroups, norm_before_gate)
    if not A_IN_KERNELS or _layout.records_graph(*args):
        return mamba_split_conv1d_scan_combined(*args[:4], -torch.exp(A_log.float()), *args[5:])
    key = _replay.key_of(args, _route(zxbcdt))
    return _SPLIT_LOG_REPLAYS.checked(key, args, lambda: _check_split(*args), _split_conv1d_scan_from_log)


def _split_conv1d_scan_from_log(*args):
    return _split_conv1d_scan(*args, a_log=True)


def _split_conv1d_scan(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states, seq_idx, dt_limit,
                       return_final_states, activation, rmsnorm_weight, rmsnorm_eps, outproj_weight, outproj_bias,
                       headdim, ngroups, norm_before_gate, a_log=False):
    """The function's body for checked arguments (the sizes derived again: plain Python, fixed by the key);
    ``a_log``: ``A`` is ``log(-A)`` and no backward is to come (:func:`split_conv1d_scan_from_log`)."""
    H, P = (D.shape[0], int(headdim)) if D.dim() == 1 else D.shape
    # a training call: one autograd node (split_conv_whole.py)
    if not a_log and _layout.one_node(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, initial_states,
                                      rmsnorm_weight, outproj_weight, outproj_bias) and _layout.lowp(zxbcdt) is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
        lo, hi, silu = _whole.check(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states,
                                    seq_idx, dt_limit, return_final_states, activation, rmsnorm_weight, rmsnorm_eps,
                                    outproj_weight, outproj_bias, headdim, ngroups, deterministic)
        c = _layout.contiguous
        out, final = _whole.whole(c(zxbcdt), c(conv1d_weight), c(conv1d_bias), c(dt_bias), c(A), c(D),
                                  c(initial_states), c(seq_idx), c(rmsnorm_weight), c(outproj_weight), c(outproj_bias),
                                  chunk_size, lo, hi, silu, float(rmsnorm_eps), P, ngroups, norm_before_gate,
                                  deterministic)[:2]
        return (out, final) if return_final_states else out
    dim = H * P
    N = (conv1d_weight.shape[0] - dim) // (2 * ngroups)
    d_mlp = (zxbcdt.shape[-1] - (2 * dim + 2 * ngroups * N + H)) // 2
    bsz, L, _ = zxbcdt.shape
    z0, x0, z, x, B, C, dt = split_conv(zxbcdt, conv1d_weight, conv1d_bias, seq_idx, activation, dim, ngroups, N, H,
                                        d_mlp)
    gate_in_scan = rmsnorm_weight is None
    res = (chunk_scan_from_log if a_log else mamba_chunk_scan_combined)(
        x.reshape(bsz, L, H, P), dt, A, B.reshape(bsz, L, ngroups, N), C.reshape(bsz, L, ngroups, N), chunk_size,
        D=D, z=z.reshape(bsz, L, H, P) if gate_in_scan else None, dt_bias=dt_bias, initial_states=initial_states,
        seq_idx=seq_idx, dt_softplus=True, dt_limit=dt_limit, return_final_states=return_final_states)
    y, final = res if return_final_states else (res, None)
    y = y.reshape(bsz, L, dim)
    if not gate_in_scan:
        y = rmsnorm_fn(y, rmsnorm_weight, None, z=z, eps=rmsnorm_eps, group_size=dim // ngroups,
                       norm_before_gate=norm_before_gate)
    if d_mlp:
        y = torch.cat([F.silu(z0) * x0, y], dim=-1)
    if outproj_weight is not None:
        y = F.linear(y, outproj_weight, outproj_bias)
    return (y, final) if return_final_states else y


def mamba2_block_training(u, in_w, in_b, conv_w, conv1d_bias, dt_bias, A_log, D_param, rmsnorm_weight, rmsnorm_eps,
                          outproj_weight, outproj_bias, chunk_size, seq_idx, dt_limit, headdim, ngroups,
                          norm_before_gate, d_has_hdim):
    """``Mamba2``'s training call (no inference states): this function with in_proj (``u (b, L, d_model)``,
    ``in_w``, ``in_b``) and ``A = -exp(A_log)`` inside its one autograd node (``split_conv_whole.block_whole``);
    ``conv_w (C, 1, W)`` and ``D_param`` as the module holds them (``D_param (H P,)`` with ``d_has_hdim``)."""
    b, L, _ = u.shape
    zx = u.new_empty(()).expand(b, L, in_w.shape[0])   # in_proj's output, for the checks' shapes only
    D = D_param.view(-1, headdim) if d_has_hdim else D_param
    args = (zx, conv_w.squeeze(1), conv1d_bias, dt_bias, A_log, D, chunk_size, None, seq_idx, dt_limit, False, "silu",
            rmsnorm_weight, rmsnorm_eps, outproj_weight, outproj_bias, headdim, ngroups, norm_before_gate)
    deterministic = torch.are_deterministic_algorithms_enabled()
    lo, hi, silu = _whole.check(*args[:-1], deterministic, first=lambda: _check_split(*args))
    c = _layout.contiguous
    return _whole.block_whole(c(u), c(in_w), c(in_b), c(conv_w), c(conv1d_bias), c(dt_bias), c(A_log), c(D_param),
                              c(seq_idx), c(rmsnorm_weight), c(outproj_weight), c(outproj_bias), chunk_size, lo, hi,
                              silu, float(rmsnorm_eps), headdim, ngroups, norm_before_gate, deterministic,
                              d_has_hdim)[0]


def mamba_block_training(u, in_w, in_b, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                         delta_bias_param, out_proj_weight, out_proj_bias, A_log, D_param):
    """``Mamba``'s training call (no inference states, no ``seq_mask``): :func:`mamba_inner_fn` with in_proj
    (``xz = in_w u^T + in_b``), ``A = -exp(A_log)`` and the fp32 ``D`` and ``delta_bias`` inside its one autograd
    node (``inner_whole.block_whole``); ``u (b, L, d_model)``."""
    b, L, _ = u.shape
    deterministic = torch.are_deterministic_algorithms_enabled()
    xz = u.new_empty(()).expand(b, in_w.shape[0], L)   # in_proj's output, for the checks' shapes only

    def first():
        _check_inner(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias,
                     -torch.exp(A_log.float()), None, None, D_param, delta_bias_param, None, None, None, None, None,
                     None, True, 1e-6, False)
    _inner_whole.check(xz, conv1d_weight, conv1d_bias, A_log, D_param, delta_bias_param, True, False, deterministic,
                       first=first, more=(in_w, in_b, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias))
    c = _layout.contiguous
    return _inner_whole.block_whole(c(u), c(in_w), c(in_b), c(conv1d_weight), c(conv1d_bias), c(x_proj_weight),
                                    c(delta_proj_weight), c(delta_bias_param), c(out_proj_weight), c(out_proj_bias),
                                    c(A_log), c(D_param), deterministic)[0]


def mamba_inner_fn(xz: Tensor, conv1d_weight: Tensor, conv1d_bias: Optional[Tensor], x_proj_weight: Tensor,
                   delta_proj_weight: Tensor, out_proj_weight: Tensor, out_proj_bias: Optional[Tensor], A: Tensor,
                   B: Optional[Tensor] = None, C: Optional[Tensor] = None, D: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None, B_proj_bias: Optional[Tensor] = None,
                   C_proj_bias: Optional[Tensor] = None, delta_softplus: bool = True, checkpoint_lvl: int = 1,
                   b_rms_weight: Optional[Tensor] = None, c_rms_weight: Optional[Tensor] = None,
                   dt_rms_weight: Optional[Tensor] = None, b_c_dt_rms_eps: float = 1e-6, *,
                   return_last_state: bool = False, seq_mask: Optional[Tensor] = None):
    """Mamba-1's block after in_proj: conv + silu on ``x``, x_proj to (dt low-rank, B, C), dt projection,
    (RMS norms on B, C, dt), selective scan gated by ``silu(z)``, out_proj.

    ``xz (b, 2 d, L)`` (x then z); ``conv1d_weight (d, 1, W)``; ``x_proj_weight (R + 2 N, d)``;
    ``delta_proj_weight (d, R)``; ``out_proj_weight (d_model, d)``; ``A (d, N)`` real. ``B``/``C`` given
    (fixed or variable, as ``selective_scan_fn`` takes them) replace the projected ones. Returns
    ``(b, L, d_model)``, and the scan's last state ``(b, d, N)`` fp32 too with ``return_last_state``
    (keyword only, beyond mamba_ssm's signature: ``Mamba``'s prefill keeps it). ``seq_mask (b, L)``
    (keyword only): 0 on left padding, 1 on real tokens; the padding's conv inputs and outputs are zeroed,
    so the state is still zero where each row's tokens start and its outputs are those of the row alone.
    ``checkpoint_lvl`` is accepted for compatibility (the scan recomputes its states in the backward
    either way).
    """
    # the pieces and the PyTorch between them (projections included), replayed per signature where no graph is
    # recorded (a replay exists only for a signature that passed the checks below)
    args = (xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A, B, C,
            D, delta_bias, B_proj_bias, C_proj_bias, b_rms_weight, c_rms_weight, dt_rms_weight, seq_mask,
            delta_softplus, b_c_dt_rms_eps, return_last_state)
    key = None if compiling() else _replay.key_of(args)
    return _INNER_REPLAYS.checked(key, args, lambda: _check_inner(*args), _inner)


_INNER_LOG_REPLAYS = _replay.Replays()


def inner_from_log(xz: Tensor, conv1d_weight: Tensor, conv1d_bias: Optional[Tensor], x_proj_weight: Tensor,
                   delta_proj_weight: Tensor, out_proj_weight: Tensor, out_proj_bias: Optional[Tensor], A_log: Tensor,
                   D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = True, *,
                   return_last_state: bool = False, seq_mask: Optional[Tensor] = None):
    """:func:`mamba_inner_fn` (its projected ``B``, ``C``, no norms) of ``A = -exp(A_log)`` (``A_log (d, N)`` as
    ``Mamba`` keeps it), the exponential taken in the scan's kernel (:func:`.selective_scan.scan_from_log`) by a
    call that keeps nothing for a backward: ``Mamba``'s inference forward and prefill make three PyTorch launches a
    layer fewer. Where a gradient is asked for, under ``torch.compile``, or with ``SSM_TRITON_A_LOG=0``, the public
    function with ``A`` computed in PyTorch."""
    args = (xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A_log,
            None, None, D, delta_bias, None, None, None, None, None, seq_mask, delta_softplus, 1e-6, return_last_state)
    if not A_IN_KERNELS or _layout.records_graph(*args):
        return mamba_inner_fn(*args[:7], -torch.exp(A_log.float()), D=D, delta_bias=delta_bias,
                              delta_softplus=delta_softplus, return_last_state=return_last_state, seq_mask=seq_mask)
    return _INNER_LOG_REPLAYS.checked(_replay.key_of(args), args, lambda: _check_inner(*args, a_log=True),
                                      _inner_from_log)


def _inner_from_log(*args):
    return _inner(*args, a_log=True)


def _check_inner(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A,
                 B, C, D, delta_bias, B_proj_bias, C_proj_bias, b_rms_weight, c_rms_weight, dt_rms_weight, seq_mask,
                 delta_softplus, b_c_dt_rms_eps, return_last_state, a_log=False) -> None:
    """:func:`mamba_inner_fn`'s own checks (the pieces check the rest); ``a_log``: ``A`` holds ``A_log``, in any
    floating dtype (:func:`inner_from_log`)."""
    _validate.tensor("xz", xz, ndim=3, dtypes=(torch.float32, torch.bfloat16, torch.float16), shape_doc="(batch, 2 d, L)")
    _validate.tensor("conv1d_weight", conv1d_weight, ndim=3, shape_doc="(d, 1, width)")
    if a_log:
        _validate.tensor("A_log", A, ndim=2, dtypes=IO, shape_doc="(d, N)")
    else:
        _validate.tensor("A", A, ndim=2, dtypes=(torch.float32,), shape_doc="(d, N)")
    d, N = A.shape
    if xz.shape[1] != 2 * d:
        raise ValueError(f"xz must have shape (batch, 2 d, L) with d = {d} (A's rows), got {tuple(xz.shape)}")
    R = delta_proj_weight.shape[1]
    if tuple(x_proj_weight.shape) != (R + 2 * N, d):
        raise ValueError(f"x_proj_weight must have shape (R + 2 N, d) = ({R + 2 * N}, {d}), "
                         f"got {tuple(x_proj_weight.shape)}")
    bsz, _, L = xz.shape
    if seq_mask is not None:
        _validate.seq_mask(seq_mask, bsz, L)


_INNER_REPLAYS = _replay.Replays()


def _inner(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A, B, C,
           D, delta_bias, B_proj_bias, C_proj_bias, b_rms_weight, c_rms_weight, dt_rms_weight, seq_mask, delta_softplus,
           b_c_dt_rms_eps, return_last_state, a_log=False):
    if not a_log and B is None and C is None and seq_mask is None and B_proj_bias is None and C_proj_bias is None \
            and all(w is None for w in (b_rms_weight, c_rms_weight, dt_rms_weight)) and _layout.one_node(
            xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A, D,
            delta_bias) and _layout.lowp(xz) is None:   # Mamba's training call: one autograd node (ops/inner_whole.py)
        deterministic = torch.are_deterministic_algorithms_enabled()
        _inner_whole.check(xz, conv1d_weight, conv1d_bias, A, D, delta_bias, delta_softplus, return_last_state,
                           deterministic)
        c = _layout.contiguous
        out, last = _inner_whole.whole(c(xz), c(conv1d_weight), c(conv1d_bias), c(x_proj_weight),
                                       c(delta_proj_weight), c(out_proj_weight), c(out_proj_bias), c(A), c(D),
                                       c(delta_bias), delta_softplus, deterministic)[:2]
        return (out, last) if return_last_state else out
    N = A.shape[1]
    R = delta_proj_weight.shape[1]
    x, z = xz.chunk(2, dim=1)
    if seq_mask is not None:
        keep = seq_mask[:, None, :].to(x.dtype)
        x = x * keep
    x = causal_conv1d_fn(x, conv1d_weight.squeeze(1), conv1d_bias, activation="silu")
    if seq_mask is not None:
        x = x * keep   # zero inputs on the padding: the state stays zero through it
    # x_proj and dt_proj as W @ x: everything the scan reads comes out (b, ., L) with steps contiguous, where
    # projecting (b, L, d) rows would leave delta, B and C for a transposing copy each (a pass over the tensor)
    x_dbl = torch.matmul(x_proj_weight, x)                                               # (b, R + 2N, L)
    if dt_rms_weight is None:
        delta = torch.matmul(delta_proj_weight, x_dbl[:, :R])                           # (b, d, L)
    else:   # the norm runs over d: (b, L, d) rows
        delta = rmsnorm_fn(F.linear(x_dbl[:, :R].transpose(1, 2), delta_proj_weight), dt_rms_weight, None,
                           eps=b_c_dt_rms_eps).transpose(1, 2)

    def projected(lo, bias, rms_weight):
        M = x_dbl[:, lo:lo + N]                                                         # (b, N, L)
        if bias is not None:
            M = M + bias.to(x_dbl.dtype)[:, None]
        if rms_weight is not None:   # over N: (b, L, N) rows
            M = rmsnorm_fn(M.transpose(1, 2), rms_weight, None, eps=b_c_dt_rms_eps).transpose(1, 2)
        return M

    if B is None:
        B = projected(R, B_proj_bias, b_rms_weight)
    if C is None:
        C = projected(R + N, C_proj_bias, c_rms_weight)
    y = (scan_from_log if a_log else selective_scan_fn)(x, delta, A, B, C, D, z=z, delta_bias=delta_bias,
                                                        delta_softplus=delta_softplus,
                                                        return_last_state=return_last_state)
    y, last = y if return_last_state else (y, None)
    out = torch.matmul(y.transpose(1, 2), out_proj_weight.t())                            # (b, L, d_model)
    if out_proj_bias is not None:
        out = out + out_proj_bias
    return (out, last) if return_last_state else out
