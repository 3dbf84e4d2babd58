"""``mamba_inner_fn`` for a call that records a graph, as one node of the autograd graph.

Composed from the ops, Mamba's training call put ~26 nodes in the graph (the chunk of ``xz``, the conv, three
matmuls with their transposes and reshapes, the slices of B and C, their contiguous copies, the selective scan),
and the autograd engine's cost per node is most of a small fwd+bwd's host time (see ``split_conv_whole.py``).
Here the conv, the projections, the scan and out_proj run in one op and its backward calls theirs in reverse:
the same kernels and matmuls as the composed call. It takes the projected call Mamba makes (B and C from x_proj,
no norms on B, C or dt, no projection biases, no ``seq_mask``); the others compose the ops.
"""
import torch

from .. import _validate
from ..kernels import conv1d as _conv
from ..kernels import selective_scan as _ss
from .conv1d import _check_weight
from .selective_scan import MAX_STATE
from ._spec import OpSpec, build

_INPUTS = ("xz", "conv1d_weight", "conv1d_bias", "x_proj_weight", "delta_proj_weight", "out_proj_weight",
           "out_proj_bias", "A", "D", "delta_bias")
_KEPT = ("xc", "x_dbl", "delta", "y", "ckpt")


def _forward(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A, D,
             delta_bias, delta_softplus, deterministic):
    N = A.shape[1]
    R = delta_proj_weight.shape[1]
    x, z = xz.chunk(2, dim=1)                                                           # (b, d, L) each
    xc = _conv.conv_forward(x, conv1d_weight.squeeze(1), conv1d_bias, None, True)
    # x_proj and dt_proj as W @ x: delta, B and C come out with their steps contiguous (as mamba_inner_fn's)
    x_dbl = torch.matmul(x_proj_weight, xc)                                             # (b, R + 2 N, L)
    delta = torch.matmul(delta_proj_weight, x_dbl[:, :R])                               # (b, d, L)
    y, last, ckpt, _ = _ss.selective_scan_forward(xc, delta, A, x_dbl[:, R:R + N], x_dbl[:, R + N:], D, z.contiguous(),
                                                  delta_bias, delta_softplus, None)
    out = torch.matmul(y.transpose(1, 2), out_proj_weight.t())                          # (b, L, d_model)
    if out_proj_bias is not None:
        out = out + out_proj_bias
    return out, last, xc, x_dbl, delta, y, ckpt


def _fake(xz, x_proj_weight, out_proj_weight, A, **_):
    bsz, d2, L = xz.shape
    x = xz.new_empty((bsz, d2 // 2, L))
    f32 = dict(dtype=torch.float32)
    return (xz.new_empty((bsz, L, out_proj_weight.shape[0])), x.new_empty((bsz, d2 // 2, A.shape[1]), **f32),
            torch.empty_like(x), x.new_empty((bsz, x_proj_weight.shape[0], L)), torch.empty_like(x),
            torch.empty_like(x), x.new_empty(_ss.checkpoint_shape(x, A), **f32))


def _backward(saved, grads):
    g = saved.get
    xz, A, dpw, xpw, opw = g("xz"), g("A"), g("delta_proj_weight"), g("x_proj_weight"), g("out_proj_weight")
    xc, x_dbl, y = g("xc"), g("x_dbl"), g("y")
    bsz, d2, L = xz.shape
    N, R = A.shape[1], dpw.shape[1]
    x, z = xz.chunk(2, dim=1)
    dout = grads["out"]
    if dout is None:   # only the last state's gradient came
        dout = xz.new_zeros((bsz, L, opw.shape[0]))
    d = dict(out_proj_weight=torch.matmul(y, dout).sum(0).t(),                          # (d_model, d)
             out_proj_bias=dout.sum((0, 1)) if g("out_proj_bias") is not None else None)
    dy = torch.matmul(opw.t(), dout.transpose(1, 2))                                    # (b, d, L) contiguous
    dlast = grads["last"]
    du, ddelta, d["A"], dB, dC, d["D"], dz, d["delta_bias"], _ = _ss.selective_scan_backward(
        dy, dlast.contiguous() if dlast is not None else None, xc, g("delta"), A, x_dbl[:, R:R + N].contiguous(),
        x_dbl[:, R + N:].contiguous(), g("D"), z.contiguous(), g("delta_bias"), g("delta_softplus"), g("ckpt"),
        _ss.plan_block_l(L), deterministic=g("deterministic"), bc_dtype=x_dbl.dtype)
    ddelta = ddelta.to(x_dbl.dtype)
    d["delta_proj_weight"] = torch.matmul(ddelta, x_dbl[:, :R].transpose(1, 2)).sum(0)  # (d, R)
    io = x_dbl.dtype
    d_dbl = torch.cat([torch.matmul(dpw.t(), ddelta), dB.to(io), dC.to(io)], dim=1)     # (b, R + 2 N, L)
    d["x_proj_weight"] = torch.matmul(d_dbl, xc.transpose(1, 2)).sum(0)                 # (R + 2 N, d)
    dxc = torch.matmul(xpw.t(), d_dbl).add_(du)
    dx, dw, d["conv1d_bias"] = _conv.conv_backward(dxc, x, g("conv1d_weight").squeeze(1), g("conv1d_bias"), None, True)
    d.update(xz=torch.cat([dx, dz.to(dx.dtype)], dim=1), conv1d_weight=dw.unsqueeze(1))
    return d


whole = build(OpSpec(
    "mamba_inner_whole", "xz: Tensor, conv1d_weight: Tensor, conv1d_bias: Tensor?, x_proj_weight: Tensor, "
    "delta_proj_weight: Tensor, out_proj_weight: Tensor, out_proj_bias: Tensor?, A: Tensor, D: Tensor?, "
    "delta_bias: Tensor?, delta_softplus: bool, deterministic: bool",
    outputs=("out", "last", *_KEPT), forward=_forward, fake=_fake, grads=_INPUTS, grad_outputs=("out", "last"),
    saves=(*_INPUTS, *_KEPT), backward=_backward))


# ---- the Mamba block's training call: in_proj (W u^T) and A = -exp(A_log) inside the node too ----

_BLOCK_INPUTS = ("u", "in_w", "in_b", "conv1d_weight", "conv1d_bias", "x_proj_weight", "delta_proj_weight",
                 "delta_bias_param", "out_proj_weight", "out_proj_bias", "A_log", "D_param")


def _block_forward(u, in_w, in_b, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, delta_bias_param,
                   out_proj_weight, out_proj_bias, A_log, D_param, deterministic):
    # (b, 2 d, L) with steps contiguous, as the conv and the scan read x and z (modules/mamba.py)
    xz = torch.matmul(in_w, u.transpose(1, 2))
    if in_b is not None:
        xz = xz + in_b[:, None]
    A = -torch.exp(A_log.float())   # kept: the backward's dA_log = dA A reads it without two more launches
    return (*_forward(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias,
                      A, D_param.float(), delta_bias_param.float(), True, deterministic), xz, A)


def _block_fake(u, in_w, x_proj_weight, out_proj_weight, A_log, **_):
    xz = u.new_empty((u.shape[0], in_w.shape[0], u.shape[1]))
    return (*_fake(xz, x_proj_weight, out_proj_weight, A_log.float()), xz, torch.empty_like(A_log, dtype=torch.float32))


def _block_backward(saved, grads):
    g = saved.get
    u, in_w = g("u"), g("in_w")
    A = g("A")   # kept by the forward, under the name _backward reads
    d = _backward(dict(saved, D=g("D_param").float(), delta_bias=g("delta_bias_param").float(),
                       delta_softplus=True), grads)
    dxz = d.pop("xz")
    d.update(u=torch.matmul(dxz.transpose(1, 2), in_w), in_w=torch.matmul(dxz, u).sum(0),
             in_b=dxz.sum((0, 2)) if g("in_b") is not None else None, A_log=d.pop("A") * A, D_param=d.pop("D"),
             delta_bias_param=d.pop("delta_bias"))
    return d


block_whole = build(OpSpec(
    "mamba_block_whole", "u: Tensor, in_w: Tensor, in_b: Tensor?, conv1d_weight: Tensor, conv1d_bias: Tensor?, "
    "x_proj_weight: Tensor, delta_proj_weight: Tensor, delta_bias_param: Tensor, out_proj_weight: Tensor, "
    "out_proj_bias: Tensor?, A_log: Tensor, D_param: Tensor, deterministic: bool",
    outputs=("out", "last", *_KEPT, "xz", "A"), forward=_block_forward, fake=_block_fake, grads=_BLOCK_INPUTS,
    grad_outputs=("out", "last"), saves=(*_BLOCK_INPUTS, *_KEPT, "xz", "A"), backward=_block_backward))


_PASSED = _validate.Passed()


def check(xz, conv1d_weight, conv1d_bias, A, D, delta_bias, delta_softplus, return_last_state, deterministic,
          first=None, more=()) -> None:
    """The pieces' checks for a call that takes :data:`whole` beyond ``mamba_inner_fn``'s own (the composed call
    makes them inside the conv and the scan, with the same messages), remembered per signature. ``first``: the
    function's own checks, run before these where the signature is new (``xz`` may then stand in for shapes only),
    ``more`` the tensors only they read (part of the signature)."""
    key = _validate.signature((xz, conv1d_weight, conv1d_bias, A, D, delta_bias, *more),
                              (delta_softplus, return_last_state, deterministic))
    if _PASSED.get(key) is not None:
        return
    if first is not None:
        first()
    d, N = A.shape
    _check_weight(conv1d_weight.squeeze(1), conv1d_bias, d)
    if not 1 <= N <= MAX_STATE:
        raise ValueError(f"A must have a state size N = A.shape[1] between 1 and {MAX_STATE}, got {N}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _validate.tensor(name, t, ndim=1, dtypes=(torch.float32, torch.bfloat16, torch.float16), shape_doc="(dim,)")
            _validate.shape(name, t, (d,), "(dim,)")
    for name, v in (("delta_softplus", delta_softplus), ("return_last_state", return_last_state),
                    ("deterministic", deterministic)):
        _validate.flag(name, v)
    _validate.devices(("xz", "conv1d_weight", "conv1d_bias", "A", "D", "delta_bias"),
                      (xz, conv1d_weight, conv1d_bias, A, D, delta_bias))
    _PASSED.put(key, True)

