"""The ``Mamba3`` block's SISO training call as one node of the autograd graph.

Composed, the block's forward put ~36 nodes in the graph (in_proj's matmul, the split, the step sizes' softplus,
clamp and product, B's and C's norms, the transposes, the angles' expand, six contiguous copies, the scan, the
output norm, out_proj), and the autograd engine's cost per node is most of a small fwd+bwd's host time (see
``split_conv_whole.py``). Here all of it runs in one op, and its backward calls the pieces' backwards in reverse
(the norms' and the scan's kernels, the projections' matmuls, the step sizes' few elementwise products written
out): the same kernels as the composed call. ``modules/mamba3.py`` takes it for a call that records a graph
without packed rows or inference states; MIMO and the other calls compose the ops.
"""
import torch
import torch.nn.functional as F

from ..kernels import norm as _norm
from ..kernels.mamba3 import launch as _k
from . import mamba3 as _siso_op
from ._layout import contiguous, own
from ._linear import linear_backward
from ._spec import OpSpec, build

_INPUTS = ("u", "in_w", "dt_bias", "B_bias", "C_bias", "B_norm_w", "C_norm_w", "D", "norm_w", "out_w")
# the projection, the scan's contiguous operands, the norms' rstd, the scan's kept tensors, the scan's output
# (with the output norm) and out_proj's input
_KEPT = ("proj", "Q", "K", "V", "DTt", "Trap", "Angles", "Zs", "rq", "rk", *_siso_op._KEPT[:-1], "ysiso", "rstd",
         "yfin")


def _split(proj, H, P, N, G, S):
    return torch.split(proj, [H * P, H * P, G * N, G * N, H, H, H, S], dim=-1)


def _steps(dd_dt, dd_A, dt_bias, A_floor):
    """``(DT, A)`` fp32 as the block computes them: ``softplus(dd_dt + dt_bias)``, ``min(-softplus(dd_A), -A_floor)``."""
    return F.softplus(dd_dt.float() + dt_bias), torch.clamp(-F.softplus(dd_A.float()), max=-A_floor)


def bc_norm(M, w, eps, shape):
    """B's or C's RMSNorm over their last dim N: ``(normed, viewed as shape, rstd)``."""
    N = shape[-1]
    rows, rstd = _norm.rmsnorm_forward(M.reshape(-1, N), w, None, None, eps, N, gate_first=False)
    return rows.view(shape), rstd


def glue_backward(saved, parts, dQ, dK, dADT, dDT, dTrap, dAngles, dV, dz) -> dict:
    """The block's PyTorch around the scan, backwards: B's and C's norms, the step sizes, the angles' broadcast,
    the split and in_proj. ``parts`` the split of the saved projection; the scan's gradients as it returns them
    (``dADT, dDT, dTrap (b, H, L)``, ``dAngles (b, L, H, S)``, ``dV, dz (b, L, H, P)``). Returns the gradients of
    ``u``, ``in_w``, ``dt_bias`` and the two norms' weights."""
    g = saved.get
    u, in_w = g("u"), g("in_w")
    z, x, B, C, dd_dt, dd_A, trap, angles = parts
    b, L, _ = u.shape
    io, N = u.dtype, dQ.shape[-1]
    d = {}
    # the norms read the scan's fp32 dQ, dK as they are (no cast to the io dtype first) and B, C in place
    dC, d["C_norm_w"], _, _ = _norm.rmsnorm_backward(contiguous(dQ.reshape(-1, N)), C.reshape(-1, N),
                                                      g("C_norm_w"), None, None, g("rq"), g("bc_eps"), N,
                                                      gate_first=False)
    dB, d["B_norm_w"], _, _ = _norm.rmsnorm_backward(contiguous(dK.reshape(-1, N)), B.reshape(-1, N),
                                                      g("B_norm_w"), None, None, g("rk"), g("bc_eps"), N,
                                                      gate_first=False)
    # the step sizes: ADT = A DT, DT = softplus(dd_dt + dt_bias), A = min(-softplus(dd_A), -A_floor)
    DT, A = _steps(dd_dt, dd_A, g("dt_bias"), g("A_floor"))
    dADT, dDT = dADT.transpose(1, 2), dDT.transpose(1, 2)                                # (b, L, H) fp32
    d_ddt = (dDT + dADT * A) * torch.sigmoid(dd_dt.float() + g("dt_bias"))
    ddA = dd_A.float()
    # clamp's gradient passes where its input is at most the bound, as autograd's
    d_ddA = torch.where(-F.softplus(ddA) <= -g("A_floor"), dADT * DT, 0.0) * -torch.sigmoid(ddA)
    dproj = torch.cat([dz.reshape(b, L, -1).to(io), dV.reshape(b, L, -1).to(io), dB.view(b, L, -1), dC.view(b, L, -1),
                       d_ddt.to(io), d_ddA.to(io), dTrap.transpose(1, 2).to(io), dAngles.sum(2).to(io)], dim=-1)
    d["u"], d["in_w"], _ = linear_backward(dproj, u, in_w, False)
    d["dt_bias"] = d_ddt.sum((0, 1))
    return d


def _forward(u, in_w, dt_bias, B_bias, C_bias, B_norm_w, C_norm_w, D, norm_w, out_w, H, P, N, G, S, A_floor, bc_eps,
             norm_eps, chunk_size, deterministic):
    b, L, _ = u.shape
    proj = F.linear(u, in_w)
    z, x, B, C, dd_dt, dd_A, trap, angles = _split(proj, H, P, N, G, S)
    DT, A = _steps(dd_dt, dd_A, dt_bias, A_floor)
    Q, rq = bc_norm(C, C_norm_w, bc_eps, (b, L, G, N))
    K, rk = bc_norm(B, B_norm_w, bc_eps, (b, L, G, N))
    norm = norm_w is not None
    V = own(x.reshape(b, L, H, P))
    DTt, Trap = DT.transpose(1, 2).contiguous(), own(trap.transpose(1, 2))
    Angles = own(angles.float()[:, :, None].expand(b, L, H, S))
    Zs = None if norm else own(z.reshape(b, L, H, P))
    y, _, kept = _k.siso_forward(Q, K, V, (A * DT).transpose(1, 2).contiguous(), DTt, Trap, C_bias.squeeze(1),
                                 B_bias.squeeze(1), Angles, D, Zs, None, chunk_size, True, finals=False)
    empty = lambda: u.new_empty(0)  # noqa: E731
    yfin, rstd = y.view(b, L, H * P), empty()
    if norm:
        rows, rstd = _norm.rmsnorm_forward(yfin.view(-1, H * P), norm_w, None, z.reshape(-1, H * P), norm_eps, P,
                                           gate_first=False)
        yfin = rows.view(b, L, H * P)
    out = F.linear(yfin.to(z.dtype), out_w)
    return (out, proj, Q, K, V, DTt, Trap, Angles, Zs if Zs is not None else empty(), rq, rk,
            *(t if t is not None else empty() for t in kept[:9]), y if norm else empty(), rstd, yfin)


def _fake(u, in_w, D, norm_w, out_w, H, P, N, G, S, chunk_size, **_):
    b, L, _ = u.shape
    f32 = dict(dtype=torch.float32)
    V = u.new_empty((b, L, H, P))
    Q = u.new_empty((b, L, G, N))
    Angles = u.new_empty((b, L, H, S), **f32)
    norm = norm_w is not None
    siso = _siso_op._fake(Q=Q, V=V, Angles=Angles, Z=None if norm else V, cu_seqlens=None, chunk_size=chunk_size,
                          finals=False)
    return (u.new_empty((b, L, out_w.shape[0])), u.new_empty((b, L, in_w.shape[0])), Q, torch.empty_like(Q),
            torch.empty_like(V), u.new_empty((b, H, L), **f32), u.new_empty((b, H, L)), Angles,
            u.new_empty(0) if norm else torch.empty_like(V), u.new_empty((b * L * G, 1), **f32),
            u.new_empty((b * L * G, 1), **f32), *siso[5:14], torch.empty_like(V) if norm else u.new_empty(0),
            u.new_empty((b * L, H), **f32) if norm else u.new_empty(0), u.new_empty((b, L, H * P)))


def unpack(saved, grads, sizes: str):
    """A block op's backward's start: ``(out's gradient, out_proj's weight, the projection, the sizes named in
    sizes (space-separated), b, L)``."""
    g = saved.get
    b, L, _ = g("u").shape
    return grads["out"], g("out_w"), g("proj"), tuple(g(n) for n in sizes.split()), b, L


def _backward(saved, grads):
    g = saved.get
    dout, out_w, proj, (H, P, N, G, S), b, L = unpack(saved, grads, "H P N G S")
    if dout is None:
        return {}
    io = proj.dtype
    z, x, B, C, dd_dt, dd_A, trap, angles = _split(proj, H, P, N, G, S)
    d = {}
    dy, d["out_w"], _ = linear_backward(dout, g("yfin").to(io), out_w, False)
    norm = g("norm_w") is not None
    dz = None
    if norm:
        dys, d["norm_w"], _, dz = _norm.rmsnorm_backward(
            dy.reshape(-1, H * P).to(io).contiguous(), g("ysiso").view(-1, H * P), g("norm_w"), None,
            z.reshape(-1, H * P), g("rstd"), g("norm_eps"), P, gate_first=False)
        dy = dys.view(b, L, H, P)
    else:
        dy = dy.reshape(b, L, H, P).to(io).contiguous()
    Zs = g("Zs")
    ypre = g("y")   # the scan's output before its gate (with Z)
    kept = _k.SisoSaved(*(g(n) for n in _siso_op._KEPT[:-2]), ypre if ypre.numel() else None, None)
    s = _k.siso_backward(dy, (None,) * 4, kept, g("Q"), g("K"), g("V"), g("DTt"), g("Trap"), g("C_bias").squeeze(1),
                         g("B_bias").squeeze(1), g("Angles"), g("D"), None if norm else Zs, None, g("chunk_size"),
                         deterministic=g("deterministic"))
    if not norm:
        dz = s["Z"]
    d.update(glue_backward(saved, (z, x, B, C, dd_dt, dd_A, trap, angles), s["Q"], s["K"], s["ADT"], s["DT"],
                           s["Trap"], s["Angles"], s["V"], dz))
    d.update(B_bias=s["K_bias"].unsqueeze(1), C_bias=s["Q_bias"].unsqueeze(1), D=s["D"])
    return d


whole = build(OpSpec(
    "mamba3_block_whole", "u: Tensor, in_w: Tensor, dt_bias: Tensor, B_bias: Tensor, C_bias: Tensor, "
    "B_norm_w: Tensor, C_norm_w: Tensor, D: Tensor, norm_w: Tensor?, out_w: Tensor, H: int, P: int, N: int, G: int, "
    "S: int, A_floor: float, bc_eps: float, norm_eps: float, chunk_size: int, deterministic: bool",
    outputs=("out", *_KEPT), forward=_forward, fake=_fake, grads=_INPUTS, grad_outputs=("out",),
    saves=(*_INPUTS, *_KEPT), backward=_backward, switches=_siso_op._route))
