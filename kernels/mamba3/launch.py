"""Launchers for Mamba-3's SISO scan: the prep kernel, the SSD stages, and the backward in mirror order."""
import os
from typing import NamedTuple

import torch

from ..host import cdiv, next_power_of_2
from ..ssd import launch as ssd
from ..ssd.bwd_dt import gate_backward
from ..ssd.chunk_state import MODE_VARLEN
from ..ssd.fused import mamba3_fused_forward
from ..tuning import TunablePlan, run_mode
from .core import ssd_plan, staged_backward
from .prep import (angle_carry_kernel, angle_rows, angle_sums_kernel, block_prefix_kernel, bwd_splits, seq_angles_kernel,
                   seq_tail_kernel, siso_prep_bwd_kernel, siso_prep_kernel, sum_planes)


class SisoSaved(NamedTuple):
    """What the forward keeps for the backward (besides the inputs)."""
    qr: torch.Tensor        # (b, L, H, N) q~, in the tensor cores' dtype
    kr: torch.Tensor        # (b, L, H, N) k~
    dtp: torch.Tensor       # (b, H, Lp) fp32 scale_t
    cum: torch.Tensor       # (2, b, H, Lp) fp32 hi/lo planes of the within-chunk sum of ADT
    diag: torch.Tensor      # (b, H, Lp) fp32 diagonal correction
    qk: torch.Tensor        # (b, H, L) fp32 q'_t . k'_t
    theta_b: torch.Tensor   # (b, H, nblk, S) fp32 the angles entering each block of steps
    hs: torch.Tensor        # (b, H, nc, P, N) the states entering each chunk
    y: torch.Tensor | None  # (b, L, H, P) the pre-gate output when Z is given
    off: torch.Tensor | None = None  # (sequences, H, S) a packed row's running angle before each sequence


def _prefix_block(device) -> int:
    """Blocks per step of the prefix kernel's loop; small in the interpreter, so tests cross its steps."""
    return 2 if run_mode(device).interpreted else 64


# the prep backward's steps per program, a multiple of the forward's: its per-head loads of the per-step terms and
# reductions over steps (the bias sums, the angle's running sum, its gradient's suffix sum) cost a block the same at
# any length. H100, 2026-12-05 (bench/results/h100-2026-12-05f, walk_choice --prep, SISO B8 L4096 H32 bf16, one
# process): 64 steps 0.955 ms of kernel against 1.298 at the forward's 16 (fwd+bwd 5.14-5.21 against 5.50-5.59
# ms), 32 steps 1.473 (slower). "" is 64 on a GPU where the chunk takes it, else the forward's; read per call, so a
# bench can alternate it (it is in the replays' key)
PREP_BWD_STEPS = os.environ.get("SSM_TRITON_PREP_BWD_STEPS", "")
# the prep backward issues each head's small loads (step weights, the output's gradients, angles, biases) while the
# head before it computes, as it does its dq~, dk~ tiles (prep.py's AHEAD; "0" turns it off): its kernel 0.954 ->
# 0.765 ms at SISO's B8 L4096 H32, fwd+bwd 4.92-4.99 against 5.11 (H100, 2026-12-06)
PREP_AHEAD = os.environ.get("SSM_TRITON_PREP_AHEAD", "1")
# (its barrier counts read compiled unaligned, before tests/sm90_compile.py --aligned)
# the prep backward takes a head's four bias column sums in one reduction across the lanes and stores each bias's as
# one row (prep.py's MERGE; "0" turns it off): sm_90, triton 3.6, 64-step blocks, 32 pairs, 8 warps: 37 barriers a
# program against 42 (4 warps, 16 pairs: 25 against 34); H100, 2026-12-06, SISO B8 L4096: its kernel 0.720 ms
# against 0.776, fwd+bwd 4.568-4.621 against 4.606-4.607
PREP_MERGE = os.environ.get("SSM_TRITON_PREP_MERGE", "1")
PREP_BWD_GPU = 64


def steps_per_block(device, chunk_size: int) -> int:
    """Steps per program of the prep kernels (a divisor of the chunk): 16 keeps their tiles in registers
    on an H100/H200 (no spills at N = 128, ``bench/resources.py``); 8 in the interpreter, so that tests
    cross blocks inside a chunk."""
    return min(chunk_size, 8 if run_mode(device).interpreted else 16)


def bwd_steps(bt: int, chunk_size: int, interpreted: bool) -> int:
    """The prep backward's steps per program: :data:`PREP_BWD_STEPS` where it is a multiple of the forward's ``bt``
    dividing the chunk, else the largest such below it, or ``bt``. Unset: :data:`PREP_BWD_GPU` compiled where it
    fits the chunk, else ``bt`` (32 steps were measured slower than 16), and ``bt`` interpreted."""
    if not PREP_BWD_STEPS:
        fits = not interpreted and chunk_size % PREP_BWD_GPU == 0 and PREP_BWD_GPU % bt == 0
        return PREP_BWD_GPU if fits else bt
    want = int(PREP_BWD_STEPS)
    while want > bt and (chunk_size % want or want % bt):
        want //= 2
    return max(want, bt)


def _tiles(N, S):
    """``(BLOCK_S, BLOCK_R)``: the rotated pairs and the columns past them, as powers of two."""
    return max(2, next_power_of_2(S)), max(2, next_power_of_2(N - 2 * S))


class Sizes(NamedTuple):
    b: int
    L: int
    H: int
    P: int
    HQK: int
    N: int
    S: int
    p: object          # the SSD stages' plan
    nc: int            # chunks
    Lp: int            # the padded length, nc * chunk_size
    dev: torch.device
    bt: int            # steps per prep program
    nblk: int          # prep programs per row: Lp // bt
    block_s: int       # the rotated pairs' tile width
    block_r: int       # the unrotated columns' tile width


def _sizes(Q, V, Angles, chunk_size, tiles) -> Sizes:
    b, L, H, P = V.shape
    N, S = Q.shape[3], Angles.shape[3]
    nc = cdiv(L, chunk_size)
    bt = steps_per_block(V.device, chunk_size)
    return Sizes(b, L, H, P, Q.shape[2], N, S, ssd_plan(V, N, chunk_size, **(tiles or {})), nc, nc * chunk_size,
                 V.device, bt, nc * chunk_size // bt, *_tiles(N, S))


def _ssd_problem(Q, V, chunk_size, Z, cu_seqlens) -> ssd.SSDProblem:
    """The SSD stages see one group per head (each head has its own k~, q~)."""
    b, L, H, P = V.shape
    return ssd.SSDProblem(b, L, H, P, H, Q.shape[3], chunk_size, V.dtype, Z is not None, cu_seqlens is not None)


# the SSD stages' tile plans, tuned end to end over the SSD's own alternatives (Mamba-3 runs them with G = H)
siso_fwd_plan = TunablePlan("mamba3_fwd", rule=lambda p, mode: {}, alternatives=ssd._forward_options, key=ssd._plan_key)
siso_bwd_plan = TunablePlan("mamba3_bwd", rule=lambda p, mode: {}, alternatives=ssd._backward_options, key=ssd._plan_key)


def _prep_problem(Q, V, Angles, chunk_size, bt, seq) -> tuple:
    """What the prep kernels' tuning reads: ``(b, L, H, HQK, N, S, chunk, steps per program, dtype, packed)``."""
    b, L, H, _ = V.shape
    return (b, L, H, Q.shape[2], Q.shape[3], Angles.shape[3], chunk_size, bt, V.dtype, seq is not None)


def _first_e(DT, Trap):
    """``e_0 = DT_0 (1 - lam_0)`` per (b, H): the weight of the state's ``v k~^T`` in the first step."""
    return DT[:, :, 0].float() * (1.0 - torch.sigmoid(Trap[:, :, 0].float()))


def packed(cu_seqlens, L):
    """``(seq_idx (1, L) int32, cu int32, the sequences' last steps)`` of a packed row, or Nones."""
    if cu_seqlens is None:
        return None, None, None
    cu = cu_seqlens.to(torch.int32).contiguous()
    return ssd.seq_idx_from_cu_seqlens(cu, L).contiguous(), cu, (cu[1:].long() - 1).clamp(0, L - 1)


def siso_forward(Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, states, chunk_size, for_backward,
                 cu_seqlens=None, tiles=None, finals=True):
    """Returns ``(out (b, L, H, P), (angle (b, H, S), ssm (b, H, P, N), k (b, H, N), v (b, H, P)), SisoSaved)``;
    final states in fp32 (``v`` in V's dtype), one per sequence of a packed row (``cu_seqlens``, batch 1; no
    input states then). ``states``: the input states or None. ``tiles``: the SSD stages' plan fields (default:
    tuned). ``finals`` False: the final k and v (copies, a launch each) come back empty."""
    if tiles is None:
        tiles = siso_fwd_plan.pick(_ssd_problem(Q, V, chunk_size, Z, cu_seqlens), lambda t: siso_forward(
            Q, K, V, ADT, DT, Trap, Q_bias, K_bias, Angles, D, Z, states, chunk_size, for_backward, cu_seqlens, t,
            finals))
    b, L, H, P, HQK, N, S, p, nc, Lp, dev, bt, nblk, block_s, block_r = _sizes(Q, V, Angles, chunk_size, tiles)
    f32 = dict(device=dev, dtype=torch.float32)
    qr = torch.empty((b, L, H, N), device=dev, dtype=p.torch_dot)
    kr = torch.empty_like(qr)
    dtp = torch.empty((b, H, Lp), **f32)
    cum = torch.empty((2, b, H, Lp), **f32)
    diag = torch.empty((b, H, Lp), **f32)
    qk = torch.empty((b, H, L), **f32)
    theta_b = torch.empty((b, H, nblk, S), **f32)
    theta_f = torch.empty((b, H, S), **f32)
    grid = (nblk, b * H)
    Angles, sal, sah = angle_rows(Angles)
    angle_sums_kernel(grid, ANG=Angles, DT=DT, SUMS=theta_b, L=L, H=H, S=S, nblk=nblk, SAL=sal, SAH=sah, BLOCK_T=bt,
                      BLOCK_S=block_s)
    block_prefix_kernel((b * H,), SUMS=theta_b, INIT=states[0] if states is not None else None, OUT=theta_b,
                        LAST=theta_f, nblk=nblk, S=S, REVERSE=False, BLOCK_C=_prefix_block(dev), BLOCK_S=block_s)
    seq, cu, ends = packed(cu_seqlens, L)
    off = None
    if seq is not None:   # each sequence's angles start from zero: its offset, and its own final angle
        n_seq = cu.shape[0] - 1
        off = torch.empty((n_seq, H, S), **f32)
        theta_f = torch.empty((n_seq, H, S), **f32)
        seq_angles_kernel((n_seq, H), ANG=Angles, DT=DT, THETA_B=theta_b, CU=cu, OFF=off, FINAL=theta_f, L=L, H=H, S=S,
                          nblk=nblk, SAL=sal, SAH=sah, BLOCK_T=bt, BLOCK_S=block_s)
    siso_prep_kernel.launch(_prep_problem(Q, V, Angles, chunk_size, bt, seq), None,
                            Q=Q, K=K, QB=Q_bias, KB=K_bias, ANG=Angles, DT=DT, TRAP=Trap, ADT=ADT, THETA_B=theta_b,
                            SEQ=seq, OFF=off, QR=qr, KR=kr, DTP=dtp, CUM=cum, DIAG=diag, QK=qk, L=L, H=H, HQK=HQK, N=N,
                            S=S, Lp=Lp, nblk=nblk, lo_off=cum[0].numel(), SAL=sal, SAH=sah, CHUNK=chunk_size, BLOCK_T=bt,
                            BLOCK_S=block_s, BLOCK_R=block_r)
    h0 = None
    if states is not None:
        _, ssm0, k0, v0 = states
        h0 = ssm0.float() + _first_e(DT, Trap)[..., None, None] * v0.float()[..., :, None] * k0.float()[..., None, :]
    # a call that keeps nothing for a backward takes the SSD's one-launch forward (or its segments) where the SSD's
    # own rule would: the stages' four launches and their chunk states in memory become one or two launches
    if not for_backward and seq is None and ssd.fused_dot(V, None, False) is not None:
        out, final = mamba3_fused_forward(V, kr, qr, dtp, ADT, diag, D, Z, h0, p.dot)
        hs = y = None
    elif for_backward and seq is None and ssd.fused_training_dot(V, None, False, chunk_size) is not None:
        # the same one-launch forward keeping what the backward reads (the SSD's FUSED_TRAIN): the entering states
        # and the output before the gate; the step rows are the prep's
        out, final, (hs, y) = mamba3_fused_forward(V, kr, qr, dtp, ADT, diag, D, Z, h0, p.dot,
                                                   keep=(chunk_size, p.torch_dot))
    else:
        hs, final = ssd.own_state_passing(V, kr, dtp, cum, seq, h0, L, p)
        cb = ssd.bmm(kr, qr, p)
        out, y = ssd.chunk_scan(V, kr, qr, cb, dtp, cum, hs, D, Z, seq, p, store_y=for_backward and Z is not None,
                                diag=diag)
    # copies, not views: the op's outputs may not alias its inputs or each other
    if seq is not None:
        final = ssd.chunk_state(V, kr, dtp, cum, seq, MODE_VARLEN, p, hprev=hs, cu=cu)
    if not finals:
        last = (V.new_empty(0, dtype=torch.float32), V.new_empty(0))
    elif seq is None:
        last = (kr[:, L - 1].to(torch.float32, copy=True), V[:, L - 1].clone())
    else:
        last = (kr[0, ends].float(), V[0, ends])
    return out, (theta_f, final, *last), SisoSaved(qr, kr, dtp, cum, diag, qk, theta_b, hs, y, off)


def siso_backward(dout, dstates, saved: SisoSaved, Q, K, V, DT, Trap, Q_bias, K_bias, Angles, D, Z, states,
                  chunk_size, deterministic=False, cu_seqlens=None, tiles=None):
    """Gradients of :func:`siso_forward`: ``dout (b, L, H, P)`` or None, ``dstates`` the final states'
    gradients (each None when unused). Returns a dict by input name (fp32 except ``V, Z``, which keep their
    dtype through the op layer's casts, and ``Q, K``, in theirs). ``tiles`` as for the forward; deterministic runs take the
    rule's plan, as the SSD's backward does."""
    if tiles is None and not deterministic:
        tiles = siso_bwd_plan.pick(_ssd_problem(Q, V, chunk_size, Z, cu_seqlens), lambda t: siso_backward(
            dout, dstates, saved, Q, K, V, DT, Trap, Q_bias, K_bias, Angles, D, Z, states, chunk_size, deterministic,
            cu_seqlens, t))
    b, L, H, P, HQK, N, S, p, nc, Lp, dev, fwd_bt, _, block_s, block_r = _sizes(Q, V, Angles, chunk_size, tiles)
    bt = bwd_steps(fwd_bt, chunk_size, run_mode(dev).interpreted)   # the backward's blocks of steps
    nblk = Lp // bt
    dtheta_f, dssm_f, dk_f, dv_f = dstates
    seq, cu, ends = packed(cu_seqlens, L)
    if seq is not None:
        # a packed row's final ssm states take their gradient through ops/mamba3_packed.final_ssm (the op
        # layer rebuilds them whenever one can flow), so this output's is None, or zeros from the compiled
        # route: ignored without looking (a host sync each backward, which is what looking cost)
        dssm_f = None
    if dout is None:
        dout = torch.zeros_like(V)
    dz = dD = None
    if Z is not None:
        dy, dz, dD = gate_backward(dout, saved.y, Z, V, D)
    else:
        dy = dout.to(V.dtype).contiguous()
    dfinal = dssm_f.float().contiguous() if dssm_f is not None else None
    if ssd.walks(b, H, P, N, L, seq, p, dev):   # one launch walking each (row, head)'s chunks in reverse
        g = ssd.walk_backward(V, saved.kr, saved.qr, dy, saved.dtp, saved.cum, saved.hs, dfinal, D, saved.diag, p,
                              dd=Z is None)
    else:
        g = staged_backward(dy, dfinal, V, saved.kr, saved.qr, saved.dtp, saved.cum, saved.hs, seq, p, deterministic,
                            D=D, diag=saved.diag, dd=Z is None)
    dV, dkr, dqr, dh0, xv, ddiag, dadt, dd = g.dx, g.dk, g.dq, g.dh0, g.dscale, g.ddiag, g.da, g.dD
    last = ends if seq is not None else L - 1   # the final k and v are the last steps' (of each sequence)
    # (an empty final k or v, not asked for, has none: the compiled route may hand it in as an empty zeros)
    if dk_f is not None and dk_f.numel():
        dkr[:, last] += dk_f.float()
    if dv_f is not None and dv_f.numel():
        dV[:, last] += dv_f.to(dV.dtype)

    de0 = d_ssm0 = d_k0 = d_v0 = None
    if states is not None:
        _, _, k0, v0 = states
        e0 = _first_e(DT, Trap)
        d_ssm0 = dh0
        de0 = torch.einsum("bhpn,bhp,bhn->bh", dh0, v0.float(), k0.float()).contiguous()
        d_k0 = torch.einsum("bhpn,bhp->bhn", dh0, v0.float()) * e0[..., None]
        d_v0 = torch.einsum("bhpn,bhn->bhp", dh0, k0.float()) * e0[..., None]

    f32 = dict(device=dev, dtype=torch.float32)
    # room for the most planes of dQ, dK the tuner may choose (it writes its choice's first SPLIT of them)
    split = bwd_splits(H, HQK)[-1]
    planes = torch.empty((2, split, b, L, HQK, N), **f32)   # dQ's planes, then dK's
    dang = torch.empty((b, L, H, S), **f32)
    ddt = torch.empty((b, H, L), **f32)
    dtrap = torch.empty_like(ddt)
    dth_sums = torch.empty((b, H, nblk, S), **f32)
    dtheta0 = torch.empty((b, H, S), **f32)
    grid = (nblk, b * H)
    bias_parts = torch.empty((2, nblk, b, H, N), **f32)   # Q_bias's block partials, then K_bias's: one sum
    kw = siso_prep_bwd_kernel.launch(
        _prep_problem(Q, V, Angles, chunk_size, bt, seq), None, Q=Q, K=K, QB=Q_bias, KB=K_bias, ANG=Angles, DT=DT,
        TRAP=Trap, QK=saved.qk, THETA_B=saved.theta_b, SEQ=seq, OFF=saved.off, DQR=dqr, DKR=dkr, XV=xv,
        DDIAG=ddiag, DE0=de0, DQ=planes[0], DK=planes[1], QB_PART=bias_parts[0], KB_PART=bias_parts[1], SUF=dang,
        DDT=ddt, DTRAP=dtrap, DTH_SUMS=dth_sums, L=L, H=H, HQK=HQK, N=N, S=S, Lp=Lp, nblk=nblk,
        nblk_theta=saved.theta_b.shape[2], BLOCK_T=bt, THETA_EVERY=bt // fwd_bt, AHEAD=PREP_AHEAD != "0",
        MERGE=PREP_MERGE != "0")
    dq, dk = sum_planes(planes, kw["SPLIT"], Q.dtype)
    # what the later blocks (and the final angle) send back through each block's angles; a packed row's
    # sequences each stop at their end and take their own final angle's gradient
    dthf = dtheta_f.float().contiguous() if dtheta_f is not None else None
    block_prefix_kernel((b * H,), SUMS=dth_sums, INIT=dthf if seq is None else None, OUT=dth_sums, LAST=dtheta0,
                        nblk=nblk, S=S, REVERSE=True, BLOCK_C=_prefix_block(dev), BLOCK_S=block_s)
    tail = None
    if seq is not None:
        n_seq = cu.shape[0] - 1
        tail = torch.empty((n_seq, H, S), **f32)
        seq_tail_kernel((n_seq, H), SUF=dang, CARRY=dth_sums, CU=cu, TAIL=tail, L=L, H=H, S=S, nblk=nblk, BLOCK_T=bt,
                        BLOCK_S=block_s)
        dthf = dthf if dthf is not None else torch.zeros_like(tail)
    angle_carry_kernel(grid, ANG=Angles, DT=DT, CARRY=dth_sums, SEQ=seq, TAIL=tail, DTHF=dthf, DANG=dang, DDT=ddt,
                       L=L, H=H, S=S, nblk=nblk, SAL=H * S, SAH=S, BLOCK_T=bt, BLOCK_S=block_s)
    if D is not None and Z is None:
        dD = dd
    d_bias = bias_parts.sum((1, 2))
    return dict(
        Q=dq, K=dk, V=dV, ADT=dadt, DT=ddt, Trap=dtrap, Q_bias=d_bias[0], K_bias=d_bias[1],
        Angles=dang, D=dD, Z=dz,
        angle_state=dtheta0 if states is not None else None, ssm_state=d_ssm0, k_state=d_k0, v_state=d_v0)
