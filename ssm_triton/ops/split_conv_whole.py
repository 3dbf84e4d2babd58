"""``mamba_split_conv1d_scan_combined`` for a call that records a graph, as one node of the autograd graph.

Composed from the ops, the block's training call put ~19 nodes in the graph (the split, the conv, the
transposes, the reshapes and contiguous copies of x, B, C and z, the SSD, the norm, the projection's matmul and
transpose), each visited by the autograd engine in the backward and each handing tensors to the next. The engine's
own cost per node is what a small fwd+bwd spends most of its host time on (an op that launches nothing took
137-154 us of fwd+bwd with 2 inputs on the H200's host, 2026-12-05). Here the pieces' forwards run in one op
(:data:`whole`: the conv, the SSD, the gated norm, the gated-MLP part and the projection) and its backward calls
their backwards in reverse: the same kernels, the same plans, so the same numbers as the composed call; mamba_ssm's
own function is one node too. :data:`block_whole` adds the Mamba2 block's in_proj and ``A = -exp(A_log)``. Calls
that record no graph keep the composed path (its replays and one-launch plans).
"""
import torch
import torch.nn.functional as F

from .. import _validate
from ..kernels import conv1d as _conv
from ..kernels import norm as _norm
from ..kernels.ssd import launch as _ssd
from . import ssd as _ssd_op
from .conv1d import _check_weight
from ._layout import step_strided
from ._linear import linear_backward
from ._spec import OpSpec, build

_INPUTS = ("zxbcdt", "conv1d_weight", "conv1d_bias", "dt_bias", "A", "D", "initial_states", "rmsnorm_weight",
           "outproj_weight", "outproj_bias")
# what the backward reads besides the inputs: the conv's output (x, B and C are its column slices, which the SSD's
# kernels read in place: no copies), the SSD's kept tensors, the SSD's output and the norm's rstd (with a norm), the
# projection's input (with a projection)
_KEPT = ("xbc", "dtp", "cum", "hs", "ypre", "yssd", "rstd", "ycat")


def sizes(zxbcdt, conv1d_weight, D, headdim, ngroups) -> tuple:
    """``(H, P, N, d_mlp)`` of a checked call."""
    H, P = (D.shape[0], int(headdim)) if D.dim() == 1 else D.shape
    N = (conv1d_weight.shape[0] - H * P) // (2 * ngroups)
    return H, P, N, (zxbcdt.shape[-1] - (2 * H * P + 2 * ngroups * N + H)) // 2


def _parts(zxbcdt, H, P, N, G, d_mlp):
    """``(z0, x0, z, xBC, dt)``: views of the projection's columns."""
    return torch.split(zxbcdt, [d_mlp, d_mlp, H * P, H * P + 2 * G * N, H], dim=-1)


def _ssd_inputs(xbc, H, P, N, G):
    """``x (b, L, H, P)``, ``B, C (b, L, G, N)``: views of the conv's output ``xbc (b, L, H P + 2 G N)`` with its
    step stride, as the SSD's kernels read them."""
    bsz, L, _ = xbc.shape
    x, B, C = torch.split(xbc, [H * P, G * N, G * N], dim=-1)
    return (step_strided(x.view(bsz, L, H, P)), step_strided(B.view(bsz, L, G, N)),
            step_strided(C.view(bsz, L, G, N)))


def _forward(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, initial_states, seq_idx, rmsnorm_weight,
             outproj_weight, outproj_bias, chunk_size, lo, hi, silu, eps, headdim, ngroups, norm_before_gate,
             deterministic):
    bsz, L, _ = zxbcdt.shape
    G = ngroups
    H, P, N, d_mlp = sizes(zxbcdt, conv1d_weight, D, headdim, G)
    dim = H * P
    z0, x0, z, xBC, dt = _parts(zxbcdt, H, P, N, G, d_mlp)
    # the conv reads the columns in place and writes (b, L, channels) contiguous (channel-last, kernels/conv1d.like)
    xbc = _conv.conv_forward(xBC.transpose(1, 2), conv1d_weight, conv1d_bias, seq_idx, silu).transpose(1, 2)
    xs, Bs, Cs = _ssd_inputs(xbc, H, P, N, G)
    norm = rmsnorm_weight is not None
    zs = None if norm else z.reshape(bsz, L, H, P).contiguous()   # without a norm z gates inside the scan
    # dt is a column slice of the projection, read in place (its step stride) like x, B and C
    y, final, _, kept = _ssd.ssd_forward(xs, step_strided(dt), A, Bs, Cs, chunk_size, D, zs, dt_bias, initial_states,
                                         seq_idx, None, True, (lo, hi), for_backward=True)
    empty = lambda: zxbcdt.new_empty(0)  # noqa: E731
    rstd = empty()
    yn = y.view(bsz, L, dim)
    if norm:
        rows, rstd = _norm.rmsnorm_forward(yn.view(-1, dim), rmsnorm_weight, None, z.reshape(-1, dim), eps,
                                           dim // G, gate_first=not norm_before_gate)
        yn = rows.view(bsz, L, dim)
    ycat = torch.cat([F.silu(z0) * x0, yn], dim=-1) if d_mlp else yn
    out = F.linear(ycat, outproj_weight, outproj_bias) if outproj_weight is not None else ycat
    return (out, final, xbc, kept.dtp, kept.cum, kept.hs, kept.y if kept.y is not None else empty(),
            y if norm else empty(), rstd, ycat if outproj_weight is not None else empty())


def _fake(zxbcdt, conv1d_weight, D, rmsnorm_weight, outproj_weight, chunk_size, headdim, ngroups, **_):
    bsz, L, _ = zxbcdt.shape
    G = ngroups
    H, P, N, d_mlp = sizes(zxbcdt, conv1d_weight, D, headdim, G)
    x = zxbcdt.new_empty((bsz, L, H, P))
    B = x.new_empty((bsz, L, G, N))
    d_in = d_mlp + H * P
    out = zxbcdt.new_empty((bsz, L, outproj_weight.shape[0] if outproj_weight is not None else d_in))
    norm = rmsnorm_weight is not None
    # the SSD's final state and kept tensors (dtp, cum, hs, the pre-gate y where z gates the scan) as its op makes them
    _, final, _, dtp, cum, hs, ypre = _ssd_op._fake(x=x, B=B, z=None if norm else x, cu_seqlens=None,
                                                    chunk_size=chunk_size, want_varlen=False)
    return (out, final, zxbcdt.new_empty((bsz, L, H * P + 2 * G * N)), dtp, cum, hs, ypre,
            torch.empty_like(x) if norm else x.new_empty(0),
            x.new_empty((bsz * L, G), dtype=torch.float32) if norm else x.new_empty(0),
            x.new_empty((bsz, L, d_in)) if outproj_weight is not None else x.new_empty(0))


def _silu_grad(g, z0, x0):
    """``d(silu(z0) x0)``: ``(dz0, dx0)`` in the inputs' dtype, taken in fp32."""
    zf, xf, gf = z0.float(), x0.float(), g.float()
    s = torch.sigmoid(zf)
    return (gf * xf * s * (1 + zf * (1 - s))).to(z0.dtype), (gf * zf * s).to(x0.dtype)


def _backward(saved, grads):
    g = saved.get
    zxbcdt, w = g("zxbcdt"), g("conv1d_weight")
    bsz, L, _ = zxbcdt.shape
    G = g("ngroups")
    H, P, N, d_mlp = sizes(zxbcdt, w, g("D"), g("headdim"), G)
    dim = H * P
    z0, x0, z, xBC, dt = _parts(zxbcdt, H, P, N, G, d_mlp)
    ow, norm = g("outproj_weight"), g("rmsnorm_weight") is not None
    dout = grads["out"]
    if dout is None:   # only the final state's gradient came
        dout = zxbcdt.new_zeros((bsz, L, ow.shape[0] if ow is not None else d_mlp + dim))
    d = {}
    # zxbcdt's gradient, one buffer: the norm's dz, the step sizes' and the conv's dx are written into their columns
    # by their kernels (no concatenation of the pieces after)
    dzx = torch.empty(zxbcdt.shape, device=zxbcdt.device, dtype=zxbcdt.dtype)
    dz0_at, dx0_at, dz_at, dxBC_at, ddt_at = _parts(dzx, H, P, N, G, d_mlp)
    dy = dout
    if ow is not None:
        dy, d["outproj_weight"], d["outproj_bias"] = linear_backward(dout, g("ycat"), ow,
                                                                     g("outproj_bias") is not None)
    if d_mlp:
        dz0, dx0 = _silu_grad(dy[..., :d_mlp], z0, x0)
        dz0_at.copy_(dz0)
        dx0_at.copy_(dx0)
        dy = dy[..., d_mlp:]
    if norm:
        dys, d["rmsnorm_weight"], _, _ = _norm.rmsnorm_backward(
            dy.reshape(-1, dim).to(zxbcdt.dtype).contiguous(), g("yssd").view(-1, dim), g("rmsnorm_weight"), None,
            z.reshape(-1, dim), g("rstd"), g("eps"), dim // G, gate_first=not g("norm_before_gate"),
            dz_out=dz_at.view(-1, dim))
        dy = dys.view(bsz, L, H, P)
    else:
        dy = dy.reshape(bsz, L, H, P).to(zxbcdt.dtype).contiguous()
    ypre = g("ypre")
    dfinal = grads["final"]
    xs, Bs, Cs = _ssd_inputs(g("xbc"), H, P, N, G)
    # the conv's output gradient, one buffer: dx (and dB, where the pair kernel writes it whole) from the SSD's kernels
    io = zxbcdt.dtype
    dconv = torch.empty((bsz, L, dim + 2 * G * N), device=zxbcdt.device, dtype=io)
    dx_at, dB_at, dC_at = _ssd_inputs(dconv, H, P, N, G)
    dx, ddt, dA, dB, dC, dD, dzs, ddt_bias, dh0 = _ssd.ssd_backward(
        dy, dfinal.contiguous() if dfinal is not None else None,
        _ssd.Saved(g("dtp"), g("cum"), g("hs"), ypre if ypre.numel() else None), xs, step_strided(dt), g("A"), Bs,
        Cs, g("chunk_size"), g("D"), None if norm else z.reshape(bsz, L, H, P).contiguous(),
        g("dt_bias"), g("initial_states"), g("seq_idx"), True, (g("lo"), g("hi")), deterministic=g("deterministic"),
        ddt_out=step_strided(ddt_at), dx_out=dx_at, db_out=dB_at)   # column slices: views, never copies
    if not norm:
        dz_at.copy_(dzs.view(bsz, L, dim))
    if dB.data_ptr() != dB_at.data_ptr():   # summed from per-head-block partials (or fp32): copied in, cast
        dB_at.copy_(dB)
    dC_at.copy_(dC)
    _, d["conv1d_weight"], d["conv1d_bias"] = _conv.conv_backward(
        dconv.transpose(1, 2), xBC.transpose(1, 2), w, g("conv1d_bias"), g("seq_idx"), g("silu"),
        dx_out=dxBC_at.transpose(1, 2))
    d.update(zxbcdt=dzx, dt_bias=ddt_bias, A=dA, D=dD, initial_states=dh0)
    return d


whole = build(OpSpec(
    "split_conv1d_scan_whole", "zxbcdt: Tensor, conv1d_weight: Tensor, conv1d_bias: Tensor?, dt_bias: Tensor, "
    "A: Tensor, D: Tensor, initial_states: Tensor?, seq_idx: Tensor?, rmsnorm_weight: Tensor?, outproj_weight: Tensor?, "
    "outproj_bias: Tensor?, chunk_size: int, lo: float, hi: float, silu: bool, eps: float, headdim: int, "
    "ngroups: int, norm_before_gate: bool, deterministic: bool",
    outputs=("out", "final", *_KEPT), forward=_forward, fake=_fake, grads=_INPUTS, grad_outputs=("out", "final"),
    saves=(*_INPUTS, "seq_idx", *_KEPT), backward=_backward, switches=_ssd_op._route))


# ---- the Mamba2 block's training call: in_proj and A = -exp(A_log) inside the node too ----

_BLOCK_INPUTS = ("u", "in_w", "in_b", "conv_w", "conv1d_bias", "dt_bias", "A_log", "D_param", "rmsnorm_weight",
                 "outproj_weight", "outproj_bias")


def _block_views(conv_w, D_param, headdim, d_has_hdim):
    """The function's ``conv1d_weight (C, W)`` and ``D`` as views of the module's parameters."""
    return conv_w.squeeze(1), D_param.view(-1, headdim) if d_has_hdim else D_param


def _block_forward(u, in_w, in_b, conv_w, conv1d_bias, dt_bias, A_log, D_param, seq_idx, rmsnorm_weight,
                   outproj_weight, outproj_bias, chunk_size, lo, hi, silu, eps, headdim, ngroups, norm_before_gate,
                   deterministic, d_has_hdim):
    zxbcdt = F.linear(u, in_w, in_b)
    w, D = _block_views(conv_w, D_param, headdim, d_has_hdim)
    # A kept: the backward's dA_log = dA A reads it without two more launches
    A = -torch.exp(A_log.float())
    return (*_forward(zxbcdt, w, conv1d_bias, dt_bias, A, D, None, seq_idx, rmsnorm_weight, outproj_weight,
                      outproj_bias, chunk_size, lo, hi, silu, eps, headdim, ngroups, norm_before_gate, deterministic),
            zxbcdt, A)


def _block_fake(u, in_w, conv_w, A_log, D_param, rmsnorm_weight, outproj_weight, chunk_size, headdim, ngroups,
                d_has_hdim, **_):
    zxbcdt = u.new_empty((*u.shape[:2], in_w.shape[0]))
    w, D = _block_views(conv_w, D_param, headdim, d_has_hdim)
    return (*_fake(zxbcdt, w, D, rmsnorm_weight, outproj_weight, chunk_size, headdim, ngroups), torch.empty_like(zxbcdt),
            torch.empty_like(A_log, dtype=torch.float32))


def _block_backward(saved, grads):
    g = saved.get
    u, in_w = g("u"), g("in_w")
    w, D = _block_views(g("conv_w"), g("D_param"), g("headdim"), g("d_has_hdim"))
    A = g("A")
    d = _backward(dict(saved, conv1d_weight=w, D=D, initial_states=None), grads)
    d["u"], d["in_w"], d["in_b"] = linear_backward(d.pop("zxbcdt"), u, in_w, g("in_b") is not None)
    d.update(conv_w=d.pop("conv1d_weight").unsqueeze(1), A_log=d.pop("A") * A,
             D_param=d.pop("D").reshape(g("D_param").shape))
    return d


block_whole = build(OpSpec(
    "mamba2_block_whole", "u: Tensor, in_w: Tensor, in_b: Tensor?, conv_w: Tensor, conv1d_bias: Tensor?, "
    "dt_bias: Tensor, A_log: Tensor, D_param: Tensor, seq_idx: Tensor?, rmsnorm_weight: Tensor?, "
    "outproj_weight: Tensor?, outproj_bias: Tensor?, chunk_size: int, lo: float, hi: float, silu: bool, eps: float, "
    "headdim: int, ngroups: int, norm_before_gate: bool, deterministic: bool, d_has_hdim: bool",
    outputs=("out", "final", *_KEPT, "zxbcdt", "A"), forward=_block_forward, fake=_block_fake, grads=_BLOCK_INPUTS,
    grad_outputs=("out", "final"), saves=(*_BLOCK_INPUTS, "seq_idx", *_KEPT, "zxbcdt", "A"), backward=_block_backward,
    switches=_ssd_op._route))


_PASSED = _validate.Passed()


def check(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states, seq_idx, dt_limit,
          return_final_states, activation, rmsnorm_weight, rmsnorm_eps, outproj_weight, outproj_bias, headdim,
          ngroups, deterministic, first=None) -> tuple:
    """The pieces' checks for a call that takes :data:`whole` (the composed call makes them inside each piece, with
    the same messages), remembered per signature; returns ``(lo, hi, silu)``. ``first``: the function's own checks,
    run before these where the signature is new (``zxbcdt`` may then stand in for shapes only)."""
    key = _validate.signature((zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, initial_states, seq_idx,
                               rmsnorm_weight, outproj_weight, outproj_bias),
                              (chunk_size, dt_limit, return_final_states, activation, rmsnorm_eps, headdim, ngroups,
                               deterministic))
    found = _PASSED.get(key)
    if found is not None:
        return found
    from .conv1d import _silu
    if first is not None:
        first()
    bsz, L, _ = zxbcdt.shape
    G = ngroups
    H, P, N, d_mlp = sizes(zxbcdt, conv1d_weight, D, headdim, G)
    dim = H * P
    silu = _silu(activation)
    _check_weight(conv1d_weight, conv1d_bias, dim + 2 * G * N)
    if seq_idx is not None:
        _validate.tensor("seq_idx", seq_idx, ndim=2, dtypes=(torch.int32,), shape_doc="(batch, L)")
        _validate.shape("seq_idx", seq_idx, (bsz, L), "(batch, L)")
    _, _, z, xBC, dt = _parts(zxbcdt, H, P, N, G, d_mlp)
    x, B, C = torch.split(xBC, [dim, G * N, G * N], dim=-1)
    lo, hi = _ssd_op._validate_all(x.reshape(bsz, L, H, P), dt, A, B.reshape(bsz, L, G, N), C.reshape(bsz, L, G, N),
                                   chunk_size, D, None if rmsnorm_weight is not None else z.reshape(bsz, L, H, P),
                                   dt_bias, initial_states, seq_idx, None, True, dt_limit, return_final_states,
                                   False, deterministic)
    if rmsnorm_weight is not None:
        _validate.tensor("rmsnorm_weight", rmsnorm_weight, ndim=1, dtypes=_ssd_op.IO_DTYPES, shape_doc="(H P,)")
        _validate.shape("rmsnorm_weight", rmsnorm_weight, (dim,), "(H P,)")
        if not isinstance(rmsnorm_eps, (int, float)) or isinstance(rmsnorm_eps, bool) or not rmsnorm_eps > 0:
            raise ValueError(f"rmsnorm_eps must be a positive number, got {rmsnorm_eps!r}")
    if outproj_weight is not None:
        _validate.tensor("outproj_weight", outproj_weight, ndim=2, dtypes=(zxbcdt.dtype,),
                         shape_doc="(d_out, d_mlp + H P) in zxbcdt's dtype")
        if outproj_weight.shape[1] != d_mlp + dim:
            raise ValueError(f"outproj_weight must have shape (d_out, d_mlp + H P) = (d_out, {d_mlp + dim}), got "
                             f"{tuple(outproj_weight.shape)}")
        if outproj_bias is not None:
            _validate.tensor("outproj_bias", outproj_bias, ndim=1, dtypes=(zxbcdt.dtype,), shape_doc="(d_out,)")
            _validate.shape("outproj_bias", outproj_bias, (outproj_weight.shape[0],), "(d_out,)")
    _validate.devices(("zxbcdt", "conv1d_weight", "conv1d_bias", "rmsnorm_weight", "outproj_weight", "outproj_bias"),
                      (zxbcdt, conv1d_weight, conv1d_bias, rmsnorm_weight, outproj_weight, outproj_bias))
    found = (lo, hi, silu)
    _PASSED.put(key, found)
    return found
