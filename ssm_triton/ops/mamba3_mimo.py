"""``mamba3_mimo``: Mamba-3's multi-input multi-output scan, drop-in for mamba_ssm's
``mamba_ssm.ops.tilelang.mamba3.mamba3_mimo``.

The ranks become steps: rank ``r`` of step ``t`` sits at pseudo-step ``t R + r``, the decay acts only at
``r = 0``, and every pseudo-step of step ``t`` carries ``scale_t = gamma_t + e_{t+1}``, so the SSD's chunked
stages (``kernels/mamba3/core.py``) give every term between different steps. Within one step the ranks all
meet through ``gamma_t`` (an ``R x R`` block, not causal in ``r``), while the pseudo-time scan gave the pairs
``r' <= r`` weight ``scale_t``: an ``R x R`` correction per step. The rotations going in and that correction,
the skip, gate and output projection coming out are kernels of their own (``kernels/mamba3/mimo.py``; the
rotations and the stages are one op, so that the stages' fp32 gradients of ``q~, k~`` reach the rotations'
backward without a cast to the stages' operand dtype; the output terms another), and so is the running angle
of unpacked rows (SISO's block sums, then one launch writing the angles) and the ranks' inputs ``V * MIMO_V``
(one pass each way), and so are the per-step weights ``gamma, e_next, scale`` (``kernels/mamba3/weights.py``);
a packed row's running angle stays in PyTorch. The common call (unpacked rows, no input or final states) runs
all of these as one op, one node of the autograd graph (``_whole``); the others compose the ops.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
import triton.language as tl
from torch import Tensor

from .. import _validate
from ..kernels import replay as _replay
from ..kernels.host import next_power_of_2
from ..kernels.mamba3 import core as _k
from ..kernels.mamba3 import mimo as _mk
from ..kernels.mamba3 import mimo_out as _mo
from ..kernels.mamba3 import weights as _wk
from ..kernels.mamba3.launch import _first_e
from ..kernels.ssd.launch import seq_idx_from_cu_seqlens
from ._spec import OpSpec, build, compiling
from .mamba3_packed import packed_final_states
from .ssd import _route
from .mamba3 import IO_DTYPES, MAX_DIM, _check, check_input_states, check_mimo_qk, check_packed

CHUNK_SIZES = (4, 8, 16, 32, 64)


_IO = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _out_switches() -> tuple:
    """What picks the MIMO kernels' launches and buffers beyond their arguments: the rank tensors' dtype switch
    (``mimo.RANKS``), the output backward's merged sums (``mimo_out.OUT_MERGE``) and step blocks a program
    (``mimo_out.OUT_ITERS``) and its loads ahead (``mimo_out.OUT_AHEAD``), and the prep kernels' merged sums and
    trig (``mimo.PREP_MERGE``, ``mimo.PREP_TRIG``), the prep backward's ranks in a program
    (``mimo_prep_bwd.PREP_BWD_RANKS``). The ``_out`` op's key and, through :func:`_mimo_route`, every
    MIMO key hold it."""
    return (_mk.RANKS, _mo.OUT_MERGE, _mo.OUT_ITERS, _mo.OUT_AHEAD, _mk.PREP_MERGE, _mk.PREP_TRIG,
            _mk._ranked.PREP_BWD_RANKS)


def _mimo_route(x) -> tuple:
    """The SSD's route switches and ``x``'s precision key (``ops/ssd._route``) and the MIMO kernels' switches
    (:func:`_out_switches`, the prep kernels' among them): what picks a call's launches and buffers beyond its
    arguments (the op and replay keys)."""
    return (*_route(x), *_out_switches())


def _forward(x, k, q, scale, a, h0, seq, cu, chunk_size, deterministic, io):
    R = x.shape[1] // scale.shape[2]
    y, final, varlen, (dtp, cum, hs) = _k.core_forward(x, k, q, scale, a, h0, chunk_size, _IO[io], seq, cu, R)
    # an absent output is a fresh empty tensor: outputs may not alias one another
    return y, final, varlen if varlen is not None else x.new_empty(0, dtype=torch.float32), dtp, cum, hs


def _backward(saved, grads):
    dv = grads["varlen"]
    # the compiled route hands absent or unused outputs' gradients in as zeros: only a real one is refused
    if dv is not None and dv.numel() > 0 and bool(dv.any()):
        raise NotImplementedError("mamba3_mimo: with cu_seqlens, gradients through the final ssm states are not "
                                  "supported yet (the angle, k and x states' are)")
    dx, dk, dq, dscale, da, dh0 = _k.core_backward(
        grads["y"], grads["final"] if saved["seq"] is None else None, saved["x"], saved["k"], saved["q"],
        (saved["dtp"], saved["cum"], saved["hs"]), saved["chunk_size"], saved["deterministic"], _IO[saved["io"]],
        saved["seq"], saved["x"].shape[1] // saved["scale"].shape[2])
    return dict(x=dx, k=dk, q=dq, scale=dscale, a=da, h0=dh0 if saved["h0"] is not None else None)


def _dot(io: str):
    """The stages' operand dtype, as core_plan picks it (fp32 inputs: TF32's rounding is not mirrored)."""
    return {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}.get(_IO[io], tl.float32)


def _prep_forward(Q, K, Q_bias, K_bias, theta, H, io):
    return _mk.prep_forward(Q, K, Q_bias, K_bias, theta, H, _dot(io))


def _rank_steps(t: Tensor) -> Tensor:
    """``(b, L, R, H, n)`` -> the stages' ``(b, L R, H, n)`` (a view of a contiguous tensor)."""
    b, L, R, H, n = t.shape
    return t.reshape(b, L * R, H, n)


def _turned_core_forward(Q, K, Q_bias, K_bias, theta, x, scale, a, h0, seq, cu, H, chunk_size, deterministic, io):
    qr, kr, sc, scc = _prep_forward(Q, K, Q_bias, K_bias, theta, H, io)
    return (*_forward(x, _rank_steps(kr), _rank_steps(qr), scale, a, h0, seq, cu, chunk_size, deterministic, io),
            qr, kr, sc, scc)


def _turned_core_inference(Q, K, Q_bias, K_bias, theta, x, scale, a, h0, seq, cu, H, chunk_size, deterministic, io):
    """The op's outputs for a call that keeps nothing for a backward: the stages may run in the SSD's one-launch
    forward (``core_forward(inference=True)``); what only a backward reads comes back empty."""
    qr, kr, sc, scc = _prep_forward(Q, K, Q_bias, K_bias, theta, H, io)
    R = x.shape[1] // scale.shape[2]
    y, final, varlen, _ = _k.core_forward(x, _rank_steps(kr), _rank_steps(qr), scale, a, h0, chunk_size, _IO[io], seq,
                                          cu, R, inference=True)
    empty = lambda: x.new_empty(0, dtype=torch.float32)  # noqa: E731
    return (y, final, varlen if varlen is not None else empty(), empty(), empty(), empty(), qr, kr, sc, scc)


def _turned_core_fake(Q, theta, x, H, cu, chunk_size, io, **_):
    b, L, R, _, N = Q.shape
    P = x.shape[3]
    T = L * R
    nc = -(-T // chunk_size)
    f32 = dict(dtype=torch.float32, device=x.device)
    turned = dict(dtype=_mk.TORCH_DTYPE[_dot(io)], device=Q.device)
    return (x.new_empty(x.shape, **f32), x.new_empty((b, H, P, N), **f32),
            x.new_empty((cu.shape[0] - 1, H, P, N), **f32) if cu is not None else x.new_empty(0, **f32),
            x.new_empty((b, H, nc * chunk_size), **f32), x.new_empty((2, b, H, nc * chunk_size), **f32),
            x.new_empty((b, H, nc, P, N), dtype=_k.core_plan(x, N, chunk_size, _IO[io]).torch_dot),
            Q.new_empty((b, L, R, H, N), **turned), Q.new_empty((b, L, R, H, N), **turned),
            Q.new_empty((b, L, H, R, R), **f32), Q.new_empty((b, L, H, R, R), **f32))


def _turned_core_backward(saved, grads):
    """The stages' backward hands its fp32 gradients of q~, k~ straight to the prep backward: as two ops, autograd
    cast them to q~, k~'s bf16 between (the two largest of five bf16 copy kernels that took 1.73 ms of the 39.7 ms
    fwd+bwd at B8 L4096 R4 H32 on the H200, 2026-12-04), and the prep backward read them back."""
    qr, kr = saved["qr"], saved["kr"]
    core = dict(saved, k=_rank_steps(kr), q=_rank_steps(qr))
    d = _backward(core, grads)
    dq, dk = d["q"].view(qr.shape), d["k"].view(kr.shape)
    # q~, k~ also reach the outputs apart from the stages (a packed row's input states, the final k state)
    if grads["qr"] is not None:
        dq.add_(grads["qr"])
    if grads["kr"] is not None:
        dk.add_(grads["kr"])
    z = lambda g, like: g.contiguous() if g is not None else torch.zeros_like(like)  # noqa: E731
    dQ, dK, dqb, dkb, dth = _mk.prep_backward(dq, dk, z(grads["sc"], saved["sc"]), z(grads["scc"], saved["scc"]),
                                              saved["Q"], saved["K"], saved["Q_bias"], saved["K_bias"],
                                              saved["theta"])
    return dict(Q=dQ, K=dK, Q_bias=dqb, K_bias=dkb, theta=dth, x=d["x"], scale=d["scale"], a=d["a"], h0=d["h0"])


# the prep (q~, k~ (b, L, R, H, N) in the stages' operand dtype, the in-step scores (b, L, H, R, R)) and the stages
# over the rank-steps, one op
_turned_core = build(OpSpec(
    "mamba3_mimo_turned_core",
    "Q: Tensor, K: Tensor, Q_bias: Tensor, K_bias: Tensor, theta: Tensor, x: Tensor, scale: Tensor, a: Tensor, "
    "h0: Tensor?, seq: Tensor?, cu: Tensor?, H: int, chunk_size: int, deterministic: bool, io: str",
    outputs=("y", "final", "varlen", "dtp", "cum", "hs", "qr", "kr", "sc", "scc"),
    forward=_turned_core_forward, fake=_turned_core_fake, inference=_turned_core_inference,
    grads=("Q", "K", "Q_bias", "K_bias", "theta", "x", "scale", "a", "h0"),
    grad_outputs=("y", "final", "varlen", "qr", "kr", "sc", "scc"),
    saves=("Q", "K", "Q_bias", "K_bias", "theta", "x", "scale", "a", "h0", "seq", "dtp", "cum", "hs", "qr", "kr", "sc",
           "scc", "chunk_size", "deterministic", "io"),
    # x is the ranks' rows (fp32 for fp32 V): _route(x) holds the fp32 matmul setting the core's products follow
    backward=_turned_core_backward, switches=_mimo_route))

_OUT_INPUTS = ("y", "sc", "scc", "gamma", "e_next", "V", "MIMO_V", "D", "Z", "MIMO_Z", "MIMO_Out")


def _out_backward(saved, grads):
    dout = grads["out"]
    args = [saved[n] for n in _OUT_INPUTS]
    dout = dout.contiguous() if dout is not None else torch.zeros(
        (*saved["y"].shape[:2], *saved["y"].shape[3:]) if saved["MIMO_Out"] is not None else saved["y"].shape,
        device=saved["y"].device, dtype=saved["V"].dtype)
    dy, dsc, dscc, dg, de, dv, dz, dmv, dmz, dmo, dd = _mo.out_backward(dout, *args)
    return dict(y=dy, sc=dsc, scc=dscc, gamma=dg, e_next=de, V=dv, MIMO_V=dmv, D=dd, Z=dz, MIMO_Z=dmz, MIMO_Out=dmo)


def _out_fake(y, V, MIMO_Out, **_):
    b, L, R, H, P = y.shape
    return (V.new_empty((b, L, H, P) if MIMO_Out is not None else (b, L, R, H, P)),)


# the in-step block, skip, gate and output projection: out (b, L, H, P) (or the ranks' (b, L, R, H, P))
_out = build(OpSpec(
    "mamba3_mimo_out", "y: Tensor, sc: Tensor, scc: Tensor, gamma: Tensor, e_next: Tensor, V: Tensor, MIMO_V: Tensor, "
    "D: Tensor?, Z: Tensor?, MIMO_Z: Tensor?, MIMO_Out: Tensor?", outputs=("out",),
    forward=lambda **a: (_mo.out_forward(*(a[n] for n in _OUT_INPUTS)),), fake=_out_fake, grads=_OUT_INPUTS,
    grad_outputs=("out",), saves=_OUT_INPUTS, backward=_out_backward,
    switches=lambda y: _out_switches()))


def _weights_backward(saved, grads):
    if all(grads[n] is None for n in ("gamma", "e_next", "scale")):
        return dict(DT=None, Trap=None)
    ddt, dtrap = _wk.step_weights_backward(grads["gamma"], grads["e_next"], grads["scale"], saved["DT"], saved["Trap"],
                                           saved["seq"])
    return dict(DT=ddt, Trap=dtrap)


def _weights_fake(DT, **_):
    return tuple(DT.new_empty(DT.shape, dtype=torch.float32) for _ in range(3))


# the per-step weights gamma, e_next, scale (b, H, L) fp32 from DT and Trap, one launch each way
# (kernels/mamba3/weights.py); seq: a packed row's sequence index (1, L), where a sequence's last step has no next one
_weights = build(OpSpec(
    "mamba3_mimo_weights", "DT: Tensor, Trap: Tensor, seq: Tensor?", outputs=("gamma", "e_next", "scale"),
    forward=lambda DT, Trap, seq: _wk.step_weights(DT, Trap, seq), fake=_weights_fake, grads=("DT", "Trap"),
    grad_outputs=("gamma", "e_next", "scale"), saves=("DT", "Trap", "seq"), backward=_weights_backward))


def _angles_backward(saved, grads):
    """Through ``theta_t = angle0 + sum_{s <= t} pi tanh(Angles_s) DT_s`` (mod 2 pi, slope 1): each increment
    takes the gradients of every later angle (kernels; a PyTorch cumsum over L took 1.55 ms on the H200)."""
    dth = grads["theta"]
    if dth is None:
        return dict(Angles=None, DT=None, angle0=None)
    d_angles, d_dt, d_angle0 = _mk.running_angle_backward(dth, saved["Angles"], saved["DT"])
    return dict(Angles=d_angles, DT=d_dt, angle0=d_angle0 if saved["angle0"] is not None else None)


# the running angle of unpacked rows, theta (b, L, H, S) fp32 in [0, 2 pi), in three launches
_angles = build(OpSpec(
    "mamba3_mimo_angles", "Angles: Tensor, DT: Tensor, angle0: Tensor?", outputs=("theta",),
    forward=lambda Angles, DT, angle0: (_mk.running_angle(Angles, DT, angle0),),
    fake=lambda Angles, **_: (Angles.new_empty(Angles.shape, dtype=torch.float32),),
    grads=("Angles", "DT", "angle0"), grad_outputs=("theta",), saves=("Angles", "DT", "angle0"),
    backward=_angles_backward))


def _ranks_backward(saved, grads):
    dx = grads["x"]
    if dx is None:
        return dict(V=None, MIMO_V=None)
    dv, dmv = _mk.rank_inputs_backward(dx, saved["V"], saved["MIMO_V"])
    return dict(V=dv, MIMO_V=dmv)


# the ranks' inputs x (b, L, R, H, P) = V * MIMO_V[h, r] (bf16 or fp16 for such V, else fp32: mimo.rank_dtype), one
# pass each way
_ranks = build(OpSpec(
    "mamba3_mimo_ranks", "V: Tensor, MIMO_V: Tensor", outputs=("x",),
    forward=lambda V, MIMO_V: (_mk.rank_inputs(V, MIMO_V),),
    fake=lambda V, MIMO_V: (V.new_empty((*V.shape[:2], MIMO_V.shape[1], *V.shape[2:]),
                                        dtype=_mk.rank_dtype(V.dtype)),),
    grads=("V", "MIMO_V"), grad_outputs=("x",), saves=("V", "MIMO_V"), backward=_ranks_backward,
    switches=lambda V: (_mk.RANKS,)))


# ---- the common call as one autograd node ----
# Unpacked rows, no input states, no final states asked, some pairs turned: the weights, the running angle, the
# ranks' inputs, the rotations with the stages and the output terms run as one op, whose backward calls theirs in
# reverse. As five ops the autograd engine handed ~20 tensors between them and visited five nodes: its own cost per
# node and per edge is what a small fwd+bwd spends most of its host time on (a Function that launches nothing took
# 137-154 us of fwd+bwd with 2 inputs and 243-404 us with 7 on the H200's host, 2026-12-05).

_WHOLE_INPUTS = ("Q", "K", "V", "ADT", "DT", "Trap", "Q_bias", "K_bias", "MIMO_V", "MIMO_Z", "MIMO_Out", "Angles", "D",
                 "Z")
_WHOLE_KEPT = ("theta", "x", "scale", "gamma", "e_next", "dtp", "cum", "hs", "qr", "kr", "sc", "scc", "y")


def _pseudo_chunk(chunk_size: int, R: int) -> int:
    """The stages' chunk over rank-steps: ``chunk_size R`` pseudo-steps, 16 to 256."""
    return min(256, max(16, next_power_of_2(chunk_size * R)))


def _whole_forward(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, chunk_size,
                   deterministic, inference=False):
    b, L, R, Hqk, N = Q.shape
    H, P = V.shape[2], V.shape[3]
    f = torch.float32
    io = str(V.dtype).replace("torch.", "")
    gamma, e_next, scale = _wk.step_weights(DT, Trap)
    theta = _mk.running_angle(Angles, DT, None)
    x = _rank_steps(_mk.rank_inputs(V, MIMO_V))
    core = _turned_core_inference if inference else _turned_core_forward
    y_ps, _, _, dtp, cum, hs, qr, kr, sc, scc = core(
        Q, K, Q_bias.to(f).contiguous(), K_bias.to(f).contiguous(), theta, x, scale, ADT.to(f), None, None, None, H,
        _pseudo_chunk(chunk_size, R), deterministic, io)
    y = y_ps.view(b, L, R, H, P)
    out = _mo.out_forward(y, sc, scc, gamma, e_next, V, MIMO_V, D, Z, MIMO_Z if Z is not None else None, MIMO_Out)
    return out, theta, x, scale, gamma, e_next, dtp, cum, hs, qr, kr, sc, scc, y


def _whole_fake(Q, V, MIMO_Out, Angles, chunk_size, **_):
    b, L, R, _, N = Q.shape
    H, P = V.shape[2], V.shape[3]
    f32 = dict(dtype=torch.float32, device=V.device)
    theta = V.new_empty((b, L, H, Angles.shape[3]), **f32)
    x = V.new_empty((b, L * R, H, P), dtype=_mk.rank_dtype(V.dtype))
    io = str(V.dtype).replace("torch.", "")
    core = _turned_core_fake(Q, theta, x, H, None, _pseudo_chunk(chunk_size, R), io)
    out = V.new_empty((b, L, H, P) if MIMO_Out is not None else (b, L, R, H, P))
    return (out, theta, x, *(V.new_empty((b, H, L), **f32) for _ in range(3)), *core[3:],
            V.new_empty((b, L, R, H, P), **f32))


def _whole_backward(saved, grads):
    dout = grads["out"]
    if dout is None:
        return {}
    g = saved.get
    Q, V, Z = g("Q"), g("V"), g("Z")
    b, L, R, H, P = g("y").shape
    f = torch.float32
    dy, dsc, dscc, dg, de, dv_out, dz, dmv_out, dmz, dmo, dd = _mo.out_backward(
        dout.contiguous(), g("y"), g("sc"), g("scc"), g("gamma"), g("e_next"), V, g("MIMO_V"), g("D"), Z,
        g("MIMO_Z") if Z is not None else None, g("MIMO_Out"))
    core = dict(Q=Q, K=g("K"), Q_bias=g("Q_bias").to(f).contiguous(), K_bias=g("K_bias").to(f).contiguous(),
                theta=g("theta"), x=g("x"), scale=g("scale"), a=g("ADT").to(f), h0=None, seq=None, dtp=g("dtp"),
                cum=g("cum"), hs=g("hs"), qr=g("qr"), kr=g("kr"), sc=g("sc"), scc=g("scc"),
                chunk_size=_pseudo_chunk(g("chunk_size"), R), deterministic=g("deterministic"),
                io=str(V.dtype).replace("torch.", ""))
    d = _turned_core_backward(core, dict(y=dy.view(b, L * R, H, P), final=None, varlen=None, qr=None, kr=None,
                                         sc=dsc, scc=dscc))
    dv_ranks, dmv_ranks = _mk.rank_inputs_backward(d["x"].view(b, L, R, H, P), V, g("MIMO_V"))
    d_angles, ddt_angle, _ = _mk.running_angle_backward(d["theta"], g("Angles"), g("DT"))
    ddt_weights, dtrap = _wk.step_weights_backward(dg, de, d["scale"], g("DT"), g("Trap"))
    return dict(Q=d["Q"], K=d["K"], V=dv_out.add_(dv_ranks), ADT=d["a"], DT=ddt_angle.add_(ddt_weights), Trap=dtrap,
                Q_bias=d["Q_bias"], K_bias=d["K_bias"], MIMO_V=dmv_out.add_(dmv_ranks), MIMO_Z=dmz, MIMO_Out=dmo,
                Angles=d_angles, D=dd, Z=dz)


_whole = build(OpSpec(
    "mamba3_mimo_whole", "Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor, "
    "K_bias: Tensor, MIMO_V: Tensor, MIMO_Z: Tensor?, MIMO_Out: Tensor?, Angles: Tensor, D: Tensor?, Z: Tensor?, "
    "chunk_size: int, deterministic: bool", outputs=("out", *_WHOLE_KEPT), forward=_whole_forward, fake=_whole_fake,
    grads=_WHOLE_INPUTS, grad_outputs=("out",), saves=(*_WHOLE_INPUTS, *_WHOLE_KEPT, "chunk_size", "deterministic"),
    backward=_whole_backward, inference=lambda **a: _whole_forward(**a, inference=True), switches=_mimo_route))


def _restart(x: Tensor, cu: Tensor, seq: Tensor, dim: int) -> Tensor:
    """A running sum ``x`` along ``dim`` (length L) of a packed row, restarted at each sequence's first step."""
    before = torch.index_select(F.pad(x.movedim(dim, -1), (1, 0)), -1, cu[:-1].long())   # (..., sequences)
    return x - torch.index_select(before, -1, seq[0].long()).movedim(-1, dim)


def _running_angle(inc: Tensor, angle0: Optional[Tensor], cu: Optional[Tensor], seq: Optional[Tensor]) -> Tensor:
    """``theta (b, L, H, S)`` fp32 in ``[0, 2 pi)``: the running sum of ``inc (b, L, H, S)`` over L, from ``angle0
    (b, H, S)`` (or, for a packed row, from each sequence's start and its own ``angle0 (sequences, H, S)``).

    Sums within blocks of steps in fp32 (small magnitudes), the blocks' totals reduced mod 2 pi and summed in fp64
    (a tensor the block's length times smaller): the SISO kernels' scheme. One fp64 cumsum over
    the whole ``(b, L, H, S)`` tensor took 1.6 ms of the 14.2 ms rank-4 forward on the H200 and 3.2 ms of its
    backward (``bench/results/h200-2026-12-03c``)."""
    b, L, H, S = inc.shape
    blk = _mk.angle_block(inc.device)
    nb = -(-L // blk)
    x = F.pad(inc, (0, 0, 0, 0, 0, nb * blk - L)).view(b, nb, blk, H, S)
    within = torch.cumsum(x, dim=2)
    total = torch.remainder(within[:, :, -1], 2 * math.pi).double()                    # (b, nb, H, S)
    enter = torch.remainder(torch.cumsum(total, dim=1) - total, 2 * math.pi).to(inc.dtype)
    theta = (within + enter[:, :, None]).view(b, nb * blk, H, S)[:, :L]
    if seq is not None:   # each sequence from its own start (and its own input angle): differences mod 2 pi
        theta = _restart(theta, cu, seq, dim=1)
        if angle0 is not None:
            theta = theta + angle0.to(inc.dtype)[seq[0].long()][None]
    elif angle0 is not None:
        theta = theta + angle0.to(inc.dtype)[:, None]
    return torch.remainder(theta, 2 * math.pi)


# steps per block of the packed input states' term: bounds the gathered (steps, H, P, N) states in memory
_INIT_BLOCK = 256


def _packed_initial_states(y, varlen, h0, qr, ADT, cu, seq, ends):
    """Each packed sequence's input state ``h0 (sequences, H, P, N)`` decayed into its steps' outputs
    (``exp(sum of ADT since its start) h0 q~``) and into its final state."""
    decay = torch.exp(_restart(torch.cumsum(ADT[0].double(), dim=-1), cu, seq, dim=-1)).to(y.dtype)   # (H, L)
    L = y.shape[1]
    ids = seq[0].long()
    parts = []
    for t0 in range(0, L, _INIT_BLOCK):
        t1 = min(L, t0 + _INIT_BLOCK)
        hq = torch.einsum("lhpn,lrhn->lrhp", h0[ids[t0:t1]], qr[0, t0:t1].float())
        parts.append(hq * decay[:, t0:t1].transpose(0, 1)[:, None, :, None])
    y = y + torch.cat(parts, 0)[None]
    return y, varlen + decay[:, ends].transpose(0, 1)[..., None, None] * h0


def _validate_all(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, chunk_size,
                  rotary_dim_divisor, Input_States, cu_seqlens):
    _validate.tensor("V", V, ndim=4, dtypes=IO_DTYPES, shape_doc="(batch, L, H, P)")
    b, L, H, P = V.shape
    if min(b, L, H, P) < 1 or P > MAX_DIM:
        raise ValueError(f"V (batch, L, H, P) must have every size at least 1 and P <= {MAX_DIM}, got {tuple(V.shape)}")
    R, Hqk, N = check_mimo_qk(Q, K, (b, L), "batch, L", H)
    _validate.same_dtype(("V", "Q", "K"), (V, Q, K))
    for name, t in (("ADT", ADT), ("DT", DT), ("Trap", Trap)):
        _check(name, t, (b, H, L), "(batch, H, L)")
    for name, t in (("Q_bias", Q_bias), ("K_bias", K_bias)):
        _check(name, t, (H, R, N), "(H, R, N)")
    for name, t in (("MIMO_V", MIMO_V), ("MIMO_Z", MIMO_Z), ("MIMO_Out", MIMO_Out)):
        if t is None and (name == "MIMO_V" or (name == "MIMO_Z" and Z is not None)):
            raise ValueError(f"{name} (H, R, P) is required" + (" when Z is given" if name == "MIMO_Z" else ""))
        if t is not None:
            _check(name, t, (H, R, P), "(H, R, P)")
    _validate.tensor("Angles", Angles, ndim=4, dtypes=IO_DTYPES, shape_doc="(batch, L, H, S)")
    S = Angles.shape[3]
    if 2 * S > N:
        raise ValueError(f"Angles has S = {S} rotated pairs (dim 3 of (batch, L, H, S)); 2 S must be at most N = {N}")
    if rotary_dim_divisor is not None and S != N // rotary_dim_divisor:
        raise ValueError(f"Angles has S = {S} angles per head; rotary_dim_divisor = {rotary_dim_divisor} means "
                         f"N / {rotary_dim_divisor} = {N // rotary_dim_divisor}")
    _check("Angles", Angles, (b, L, H, S), "(batch, L, H, S)", IO_DTYPES)
    if D is not None:
        _check("D", D, (H,), "(H,)")
    if Z is not None:
        _check("Z", Z, (b, L, H, P), "(batch, L, H, P) as V", IO_DTYPES)
    if Input_States is not None:
        check_input_states(Input_States, b, cu_seqlens, H, P, N, S, R)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size must be one of {CHUNK_SIZES}, got {chunk_size!r}")
    cu = check_packed("mamba3_mimo", cu_seqlens, b, L, Input_States, states_per_sequence=True)
    _validate.devices(("V", "Q", "K", "ADT", "DT", "Trap", "Q_bias", "K_bias", "MIMO_V", "MIMO_Z", "MIMO_Out",
                       "Angles", "D", "Z", "Input_States", "cu_seqlens"),
                      (V, Q, K, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z,
                       Input_States[1] if Input_States is not None else None, cu))


def mamba3_mimo(Q: Tensor, K: Tensor, V: Tensor, ADT: Tensor, DT: Tensor, Trap: Tensor, Q_bias: Tensor,
                K_bias: Tensor, MIMO_V: Tensor, MIMO_Z: Optional[Tensor], MIMO_Out: Optional[Tensor], Angles: Tensor,
                D: Optional[Tensor] = None, Z: Optional[Tensor] = None, chunk_size: int = 16,
                rotary_dim_divisor: Optional[int] = None, dtype: Optional[torch.dtype] = None,
                return_state: bool = False, cu_seqlens: Optional[Tensor] = None, *,
                Input_States: Optional[tuple] = None, deterministic: Optional[bool] = None):
    """Mamba-3's MIMO scan of rank R (see ``ssm_triton.reference.mamba3_mimo_loop``), forward and backward.

    Per batch row, head ``h`` and step ``t``, with ``lam = sigmoid(Trap)``, ``v_{t,r} = V_t * MIMO_V[h, r]``
    and ``theta_t = theta_{t-1} + pi tanh(Angles_t) DT_t``::

        q~_{t,r} = Rot(theta_t) (Q_{t,r} + Q_bias[h, r]),  k~_{t,r} likewise from K
        H_t = exp(ADT_t) H_{t-1} + (1 - lam_t) DT_t exp(ADT_t) sum_r v_{t-1,r} k~_{t-1,r}^T
              + lam_t DT_t sum_r v_{t,r} k~_{t,r}^T
        y_{t,r} = (H_t q~_{t,r} + D[h] v_{t,r}) * silu(Z_t * MIMO_Z[h, r]);  out_t = sum_r MIMO_Out[h, r] * y_{t,r}

    ``Rot`` turns the half-split pairs ``(n, N/2 + n)``, ``n < S``; angles are summed in fp32 within blocks of 64
    steps and in fp64 across them, and reduced mod 2 pi.

    Args:
        Q, K: ``(batch, L, R, Hqk, N)``, Hqk dividing H; N even, <= 256; R <= 16.
        V: ``(batch, L, H, P)``, P <= 256, Q's dtype (fp32, bf16 or fp16). ADT, DT, Trap: ``(batch, H, L)``.
        Q_bias, K_bias: ``(H, R, N)``. MIMO_V, MIMO_Z, MIMO_Out: ``(H, R, P)``; MIMO_Z may be None without Z,
            MIMO_Out None returns the ranks' outputs apart. Angles: ``(batch, L, H, S)``, ``2 S <= N``.
        D: optional ``(H,)``. Z: optional ``(batch, L, H, P)``.
        chunk_size: steps per chunk, 4 to 64 (the result does not depend on it beyond rounding); the SSD stages
            run ``chunk_size * R`` pseudo-steps per chunk (at least 16, at most 256).
        rotary_dim_divisor: optional check that ``S = N / rotary_dim_divisor`` (mamba_ssm's argument).
        dtype: accepted for mamba_ssm's signature; the tensor cores take V's dtype.
        return_state: also return ``(angle (batch, H, S), ssm (batch, H, P, N), k~ (batch, R, H, N),
            x (batch, H, P))`` after the last step, as :func:`mamba3_mimo_step` and ``Input_States`` take them.
        cu_seqlens: ``(num_sequences + 1,)`` int boundaries of sequences packed along L of a batch-1 row: each
            starts from its own Input_States (one per sequence) or zeros, the final states come one per
            sequence, and gradients flow from the outputs and every final state (the final ssm states are then
            rebuilt in PyTorch, O(L R H P N) more work).
        Input_States: keyword only, the states before the first step (zeros when None); mamba_ssm's op lacks it.
        deterministic: keyword only, as for :func:`mamba3_siso_combined`.

    Returns:
        ``out (batch, L, H, P)`` (``(batch, L, R, H, P)`` without MIMO_Out) in V's dtype, or ``(out, states)``
        with ``return_state``. Differentiable in every tensor input, the input states included, and from the
        final states (unlike mamba_ssm's, whose final state is a side output).
    """
    del dtype
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    tensors = (Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z)
    four = isinstance(Input_States, (tuple, list)) and len(Input_States) == 4
    states = tuple(Input_States) if four else (None,) * 4
    # the PyTorch around the kernels (rank weights, running angle, the in-step block) and the launches, replayed
    # per signature where no graph is recorded (kernels/replay.py); the arguments are keyed once, first, and a hit
    # skips the checks: a replay is made only after a call of its key passed them. cu_seqlens is checked by value
    # on every call, so its calls never take a shortcut.
    args = (*tensors, *states, cu_seqlens, chunk_size, return_state, deterministic)
    valid = four or Input_States is None
    # _mimo_route(V): the SSD's route switches, V's precision key and the rank tensors' dtype switch
    key = None if compiling() or not valid else _replay.key_of(args, (rotary_dim_divisor, *_mimo_route(V)))

    def check():   # the checks, remembered per signature (packed rows' offsets are checked on every call)
        passed_key = None if cu_seqlens is not None or not valid else _validate.signature(
            (*tensors, *states), (chunk_size, rotary_dim_divisor, return_state, deterministic, Input_States is None))
        if _PASSED.get(passed_key) is None:
            _validate.flag("deterministic", deterministic)
            _validate.flag("return_state", return_state)
            _validate_all(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, chunk_size,
                          rotary_dim_divisor, Input_States, cu_seqlens)
            _PASSED.put(passed_key, True)
    # traced (key None): the body itself, the graph is the replay
    return _BODY_REPLAYS.checked(key, args, check, _body, shortcut=cu_seqlens is None)


_PASSED = _validate.Passed()
_BODY_REPLAYS = _replay.Replays()


def _body(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z, angle0, ssm0, k0, x0,
          cu_seqlens, chunk_size, return_state, deterministic):
    b, L, R, Hqk, N = Q.shape
    H, P = V.shape[2], V.shape[3]
    c = lambda t: t.contiguous() if t is not None else None               # noqa: E731
    if cu_seqlens is None and ssm0 is None and angle0 is None and not return_state and Angles.shape[-1] > 0:
        return _whole(c(Q), c(K), c(V), ADT, DT, Trap, Q_bias, K_bias, c(MIMO_V), MIMO_Z, c(MIMO_Out), Angles, c(D),
                      c(Z), chunk_size, deterministic)[0]
    f = torch.float32
    seq = cu = ends = None
    if cu_seqlens is not None:   # a packed row: a sequence's last step has no next one
        cu = cu_seqlens.to(device=V.device, dtype=torch.int32).contiguous()
        seq = seq_idx_from_cu_seqlens(cu, L)                              # (1, L)
        ends = (cu[1:].long() - 1).clamp(0, L - 1)
    gamma, e_next, scale = _weights(DT, Trap, seq)                         # (b, H, L) fp32

    if seq is None and Angles.shape[-1] > 0:
        theta = _angles(Angles, DT, angle0)[0]
    else:   # packed rows restart at each sequence (and no pairs turn: nothing to sum)
        theta = _running_angle(math.pi * torch.tanh(Angles.to(f)) * DT.to(f).transpose(1, 2)[..., None], angle0, cu,
                               seq)

    io = str(V.dtype).replace("torch.", "")
    v = _ranks(V, MIMO_V)[0]                                               # (b, L, R, H, P), rank_dtype

    h0 = None
    if ssm0 is not None:   # the first step's trapezoid reads the previous token's ranks (per packed sequence)
        mv = MIMO_V.to(f).transpose(0, 1)                                  # (R, H, P)
        # e = DT (1 - lam) at each sequence's first step, (rows, H)
        e_first = _first_e(DT, Trap) if seq is None else _first_e(*(t[0][:, cu[:-1].long()].T[..., None]
                                                                     for t in (DT, Trap)))
        h0 = ssm0.to(f) + e_first[..., None, None] * torch.einsum("brhp,brhn->bhpn", x0.to(f)[:, None] * mv, k0.to(f))
    pseudo_chunk = _pseudo_chunk(chunk_size, R)
    # a packed row's input states are not the scan's (it starts each sequence from zero): added below
    # the scale and decay per step: the core spreads them over the ranks' pseudo-steps
    # q~, k~ and the in-step scores from Q, K, their biases and the angle, then the stages over the rank-steps;
    # v contiguous: with L = 1 broadcasting against the transposed (R, H, .) weights can leave ranks and heads
    # swapped in memory, and a reshape of that is a strided view
    y_ps, final, varlen, _, _, _, qr, kr, sc, scc = _turned_core(
        c(Q), c(K), c(Q_bias.to(f)), c(K_bias.to(f)), theta.contiguous(), _rank_steps(v).contiguous(), scale, ADT.to(f),
        h0 if seq is None else None, seq.repeat_interleave(R, dim=1) if seq is not None else None,
        cu * R if cu is not None else None, H, pseudo_chunk, deterministic, io)
    y = y_ps.reshape(b, L, R, H, P)   # reshape: its backward takes gradients of any layout (AOT autograd)

    if seq is not None and return_state and torch.is_grad_enabled() and any(
            t is not None and t.requires_grad
            for t in (Q, K, V, ADT, DT, Trap, Q_bias, K_bias, MIMO_V, MIMO_Z, MIMO_Out, Angles, D, Z)):
        # the core's backward takes no gradient from a packed row's final ssm states: build them in PyTorch
        varlen = packed_final_states(v[0], kr[0].float(), scale[0].transpose(0, 1), ADT[0].to(f).transpose(0, 1), cu)
    # within a step: gamma_t for every rank pair, where the scan gave r' <= r the weight scale_t
    if seq is not None and h0 is not None:
        y, varlen = _packed_initial_states(y, varlen, h0, qr, ADT, cu, seq, ends)

    out = _out(y.contiguous(), sc, scc, gamma.contiguous(), e_next.contiguous(), c(V), c(MIMO_V), c(D), c(Z),
               c(MIMO_Z) if Z is not None else None, c(MIMO_Out))[0]
    if not return_state:
        return out
    if seq is not None:   # one state per packed sequence
        return out, (theta[0, ends], varlen, kr[0, ends].float(), V[0, ends])
    # k~ of the last step as the stages took it (rounded to their operand dtype), in fp32
    return out, (theta[:, -1], final, kr[:, -1].float(), V[:, -1].clone())
