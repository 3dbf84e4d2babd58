"""The ``Mamba3`` block's MIMO training call as one node of the autograd graph.

As the SISO block's (``mamba3_block.py``, whose PyTorch around the scan it shares): composed, the call put ~30
nodes in the graph around the MIMO op's one; here in_proj, the step sizes, B's and C's norms, the MIMO scan
(``mamba3_mimo._whole``'s forward and backward), the per-rank output norm gated by ``z * mimo_z`` with ``mimo_o``'s
sum over the ranks (``is_outproj_norm``) and out_proj run in one op, their backwards in reverse.
"""
import torch
import torch.nn.functional as F

from ..kernels import norm as _norm
from . import mamba3_mimo as _mimo
from ._layout import own
from ._linear import linear_backward
from ._spec import OpSpec, build
from .mamba3_block import _split, _steps, bc_norm, glue_backward, unpack

_INPUTS = ("u", "in_w", "dt_bias", "B_bias", "C_bias", "B_norm_w", "C_norm_w", "D", "mimo_x", "mimo_z", "mimo_o",
           "norm_w", "out_w")
# the projection, the scan's operands, the norms' rstd, what the MIMO op keeps, and with the output norm the ranks'
# outputs, its rstd and result; out_proj's input
_KEPT = ("proj", "Q", "K", "V", "ADTt", "DTt", "Trap", "Angles", "Zs", "rq", "rk", *_mimo._WHOLE_KEPT, "yr", "rstd",
         "yn", "yfin")


def _gate(z, mimo_z):
    """The ranks' gates of the output norm, ``z * mimo_z`` as ``(b, L, R, H P)`` fp32."""
    return (z.float().unsqueeze(-3) * mimo_z.transpose(0, 1)).flatten(-2)


def _forward(u, in_w, dt_bias, B_bias, C_bias, B_norm_w, C_norm_w, D, mimo_x, mimo_z, mimo_o, norm_w, out_w, H, P, N,
             G, R, S, A_floor, bc_eps, norm_eps, chunk_size, deterministic):
    b, L, _ = u.shape
    proj = F.linear(u, in_w)
    z, x, B, C, dd_dt, dd_A, trap, angles = _split(proj, H, P, N, G * R, S)
    DT, A = _steps(dd_dt, dd_A, dt_bias, A_floor)
    Q, rq = bc_norm(C, C_norm_w, bc_eps, (b, L, R, G, N))
    K, rk = bc_norm(B, B_norm_w, bc_eps, (b, L, R, G, N))
    norm = norm_w is not None
    z4 = z.reshape(b, L, H, P)
    V = own(x.reshape(b, L, H, P))
    ADTt, DTt, Trap = (A * DT).transpose(1, 2).contiguous(), DT.transpose(1, 2).contiguous(), own(trap.transpose(1, 2))
    Angles = own(angles.float()[:, :, None].expand(b, L, H, S))
    Zs = None if norm else own(z4)
    made = _mimo._whole_forward(Q, K, V, ADTt, DTt, Trap, C_bias, B_bias, mimo_x, None if norm else mimo_z,
                                None if norm else mimo_o, Angles, D, Zs, chunk_size, deterministic)
    empty = lambda: u.new_empty(0)  # noqa: E731
    yr, rstd, yn = empty(), empty(), empty()
    if norm:   # each rank's output normalised, gated by z * mimo_z, then summed through mimo_o
        yr = made[0]                                                                     # (b, L, R, H, P)
        yn, rstd = _norm.rmsnorm_forward(yr.float().reshape(-1, H * P), norm_w, None,
                                         _gate(z4, mimo_z).reshape(-1, H * P), norm_eps, P, gate_first=False)
        yfin = torch.einsum("...rhp,hrp->...hp", yn.view(b, L, R, H, P), mimo_o).flatten(-2).to(z.dtype)
    else:
        yfin = made[0].flatten(-2).to(z.dtype)
    out = F.linear(yfin, out_w)
    return (out, proj, Q, K, V, ADTt, DTt, Trap, Angles, Zs if Zs is not None else empty(), rq, rk, *made[1:], yr,
            rstd, yn, yfin)


def _fake(u, in_w, mimo_o, norm_w, out_w, H, P, N, G, R, S, chunk_size, **_):
    b, L, _ = u.shape
    f32 = dict(dtype=torch.float32)
    V = u.new_empty((b, L, H, P))
    Q = u.new_empty((b, L, R, G, N))
    Angles = u.new_empty((b, L, H, S), **f32)
    norm = norm_w is not None
    made = _mimo._whole_fake(Q=Q, V=V, MIMO_Out=None if norm else mimo_o, Angles=Angles, chunk_size=chunk_size)
    rows = (b * L * R, H * P)
    return (u.new_empty((b, L, out_w.shape[0])), u.new_empty((b, L, in_w.shape[0])), Q, torch.empty_like(Q),
            torch.empty_like(V), *(u.new_empty((b, H, L), **f32) for _ in range(2)), u.new_empty((b, H, L)), Angles,
            u.new_empty(0) if norm else torch.empty_like(V), *(u.new_empty((b * L * R * G, 1), **f32) for _ in range(2)),
            *made[1:], made[0] if norm else u.new_empty(0), u.new_empty((rows[0], H), **f32) if norm else u.new_empty(0),
            u.new_empty(rows, **f32) if norm else u.new_empty(0), u.new_empty((b, L, H * P)))


def _backward(saved, grads):
    g = saved.get
    dout, out_w, proj, (H, P, N, G, R, S), b, L = unpack(saved, grads, "H P N G R S")
    if dout is None:
        return {}
    parts = _split(proj, H, P, N, G * R, S)
    z4 = parts[0].reshape(b, L, H, P)
    d = {}
    dy, d["out_w"], _ = linear_backward(dout, g("yfin"), out_w, False)
    dy = dy.view(b, L, H, P)
    norm = g("norm_w") is not None
    if norm:   # mimo_o's sum over the ranks, then the ranks' gated norm, backwards
        yn, mimo_o, mimo_z = g("yn").view(b, L, R, H, P), g("mimo_o"), g("mimo_z")
        dyf = dy.float()
        d["mimo_o"] = torch.einsum("blhp,blrhp->hrp", dyf, yn)
        dyn = dyf.unsqueeze(2) * mimo_o.float().transpose(0, 1)                          # (b, L, R, H, P)
        yr = g("yr")
        dyr, d["norm_w"], _, dzr = _norm.rmsnorm_backward(
            dyn.reshape(-1, H * P), yr.float().reshape(-1, H * P), g("norm_w"), None,
            _gate(z4, mimo_z).reshape(-1, H * P), g("rstd"), g("norm_eps"), P, gate_first=False)
        dzr = dzr.view(b, L, R, H, P)
        d["mimo_z"] = torch.einsum("blrhp,blhp->hrp", dzr, z4.float())
        dz = (dzr * mimo_z.float().transpose(0, 1)).sum(2)
        dy = dyr.view(yr.shape).to(yr.dtype)
    # the MIMO op's backward, its kept tensors under its own names
    inputs = dict(Q=g("Q"), K=g("K"), V=g("V"), ADT=g("ADTt"), DT=g("DTt"), Trap=g("Trap"), Q_bias=g("C_bias"),
                  K_bias=g("B_bias"), MIMO_V=g("mimo_x"), MIMO_Z=None if norm else g("mimo_z"),
                  MIMO_Out=None if norm else g("mimo_o"), Angles=g("Angles"), D=g("D"),
                  Z=None if norm else g("Zs"), chunk_size=g("chunk_size"), deterministic=g("deterministic"))
    dm = _mimo._whole_backward(dict(inputs, **{n: g(n) for n in _mimo._WHOLE_KEPT}), dict(out=dy.contiguous()))
    if not norm:
        dz = dm["Z"]
        d.update(mimo_z=dm["MIMO_Z"], mimo_o=dm["MIMO_Out"])
    d.update(glue_backward(saved, parts, dm["Q"], dm["K"], dm["ADT"], dm["DT"], dm["Trap"], dm["Angles"], dm["V"], dz))
    d.update(B_bias=dm["K_bias"], C_bias=dm["Q_bias"], D=dm["D"], mimo_x=dm["MIMO_V"])
    return d


whole = build(OpSpec(
    "mamba3_mimo_block_whole", "u: Tensor, in_w: Tensor, dt_bias: Tensor, B_bias: Tensor, C_bias: Tensor, "
    "B_norm_w: Tensor, C_norm_w: Tensor, D: Tensor, mimo_x: Tensor, mimo_z: Tensor, mimo_o: Tensor, norm_w: Tensor?, "
    "out_w: Tensor, H: int, P: int, N: int, G: int, R: int, S: int, A_floor: float, bc_eps: float, norm_eps: float, "
    "chunk_size: int, deterministic: bool",
    outputs=("out", *_KEPT), forward=_forward, fake=_fake, grads=_INPUTS, grad_outputs=("out",),
    saves=(*_INPUTS, *_KEPT), backward=_backward, switches=_mimo._mimo_route))
