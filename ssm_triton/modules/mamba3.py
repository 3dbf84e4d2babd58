"""``Mamba3``: Mamba-3's block on ssm_triton's kernels, with mamba_ssm's constructor, parameter names, shapes
and initialisation (``mamba_ssm.modules.mamba3.Mamba3``), so that its state dicts load unchanged.

in_proj -> [z, x, B, C, dd_dt, dd_A, trap, angles] -> RMSNorm on B and C -> ``mamba3_siso_combined`` (Q = C,
K = B, V = x, ``A = min(-softplus(dd_A), -A_floor)``, ``DT = softplus(dd_dt + dt_bias)``, ADT = A DT, the angle
rates shared by the heads) -> optional gated RMSNorm -> out_proj. No conv1d and no A_log. Decoding runs the step
kernel of ``mamba3_siso_step`` (the step sizes and the norms inside it) on four states per layer: angle
``(b, H, S)``, ssm ``(b, H, headdim, d_state)``, k ``(b, R, H, d_state)``, v ``(b, H, headdim)`` (R = 1 for SISO).

``is_mimo=True`` runs ``mamba3_mimo`` / ``mamba3_mimo_step`` with rank ``mimo_rank`` (B and C per rank, the
``mimo_x``, ``mimo_z``, ``mimo_o`` projections); with ``is_outproj_norm`` the ranks are normalised (gated by
``z * mimo_z``) before ``mimo_o`` sums them, as mamba_ssm does. Packed sequences go through ``cu_seqlens``
(batch 1), each from zero states.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate
from ..ops.mamba3 import (CHUNK_SIZES, MAX_DIM, MAX_RANK, mamba3_mimo_step, mamba3_siso_combined, mamba3_siso_step,
                          mimo_block_step, siso_block_step)
from ..ops import fused_step, mamba3_block, mamba3_mimo_block, mamba3_steps
from ..ops import _layout
from ..ops import mamba3 as mamba3_op
from ..ops.mamba3_mimo import CHUNK_SIZES as MIMO_CHUNK_SIZES
from ..ops.mamba3_mimo import mamba3_mimo
from .inference import cached_states, dt_bias_init, plain
from .norm import RMSNorm


class Mamba3(nn.Module):
    """Mamba-3 mixer. ``forward(u (batch, L, d_model), seq_idx=None, cu_seqlens=None, inference_params=None)
    -> (batch, L, d_model)``; with ``inference_params`` a prefill (offset 0) fills this layer's states and
    later calls (offset > 0) decode one token each."""

    def __init__(self, d_model, d_state=128, expand=2, headdim=64, ngroups=1, rope_fraction=0.5, dt_min=0.001,
                 dt_max=0.1, dt_init_floor=1e-4, A_floor=1e-4, is_outproj_norm=False, is_mimo=False, mimo_rank=4,
                 chunk_size=64, dropout=0.0, layer_idx=None, n_layer=None, device=None, dtype=None, **kwargs):
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        if rope_fraction not in (0.5, 1.0):
            raise ValueError(f"rope_fraction must be 0.5 or 1.0, got {rope_fraction!r}")
        self.d_model, self.d_state, self.expand, self.headdim = d_model, d_state, expand, headdim
        self.chunk_size, self.layer_idx, self.A_floor = chunk_size, layer_idx, A_floor
        self.is_outproj_norm, self.is_mimo = is_outproj_norm, bool(is_mimo)
        self.mimo_rank = R = int(mimo_rank) if is_mimo else 1
        self.d_inner = int(expand * d_model)
        if self.d_inner % headdim:
            raise ValueError(f"d_inner = expand * d_model = {self.d_inner} must be a multiple of headdim = {headdim}")
        self.nheads = self.d_inner // headdim
        self.num_bc_heads = ngroups
        self.rotary_dim_divisor = int(2 / rope_fraction)
        self.split_tensor_size = int(d_state * rope_fraction) // 2 * 2
        self.num_rope_angles = self.split_tensor_size // 2
        if self.num_rope_angles < 1:
            raise ValueError(f"d_state = {d_state} with rope_fraction {rope_fraction} leaves no angle to rotate by")
        d_in_proj = 2 * self.d_inner + 2 * d_state * ngroups * R + 3 * self.nheads + self.num_rope_angles
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=False, **factory)
        self.dt_bias = nn.Parameter(dt_bias_init(self.nheads, dt_min, dt_max, dt_init_floor, device=device))
        self.dt_bias._no_weight_decay = True
        self.B_bias = nn.Parameter(torch.ones(self.nheads, R, d_state, device=device))
        self.C_bias = nn.Parameter(torch.ones(self.nheads, R, d_state, device=device))
        self.B_norm = RMSNorm(d_state, eps=1e-5, **factory)
        self.C_norm = RMSNorm(d_state, eps=1e-5, **factory)
        self.D = nn.Parameter(torch.ones(self.nheads, device=device))
        self.D._no_weight_decay = True
        if self.is_mimo:   # mamba_ssm's initialisation: x and out averaged over the ranks, z passed through
            ones = torch.ones(self.nheads, R, headdim, device=device)
            self.mimo_x = nn.Parameter(ones / R)
            self.mimo_z = nn.Parameter(ones.clone())
            self.mimo_o = nn.Parameter(ones / R)
        if is_outproj_norm:
            self.norm = RMSNorm(self.d_inner, eps=1e-5, norm_before_gate=True, group_size=headdim, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False, **factory)

    def split_sizes(self) -> list:
        """in_proj's output columns: ``[z, x, B, C, dd_dt, dd_A, trap, angles]``."""
        bc = self.d_state * self.num_bc_heads * self.mimo_rank
        return [self.d_inner, self.d_inner, bc, bc, self.nheads, self.nheads, self.nheads, self.num_rope_angles]

    def _split(self, u):
        return torch.split(self.in_proj(u), self.split_sizes(), dim=-1)

    def _steps(self, dd_dt, dd_A):
        """``(DT, ADT)`` in fp32, shaped like ``dd_dt``."""
        A = torch.clamp(-F.softplus(dd_A.float()), max=-self.A_floor)
        DT = F.softplus(dd_dt.float() + self.dt_bias)
        return DT, A * DT

    def _step_rows(self, proj, dd_dt, dd_A, trap, seq_mask):
        """``(DT, ADT, Trap)`` as the scans read them, ``(b, H, L)``: zero steps on the padding where ``seq_mask``
        (b, L) is 0. A call with no backward to come takes one launch (``ops/mamba3_steps.py``;
        ``SSM_TRITON_M3_STEPS_KERNEL=0`` turns it off); else PyTorch, views of the ``(b, L, H)`` products."""
        H = self.nheads
        if mamba3_steps.serves(proj, self.dt_bias):
            at = sum(self.split_sizes()[:4])
            return mamba3_steps.block_steps(proj, at, at + H, at + 2 * H, H, self.dt_bias, self.A_floor, seq_mask)
        DT, ADT = self._steps(dd_dt, dd_A)
        if seq_mask is not None:   # a zero step neither decays, adds, turns the angle nor weighs its input
            keep = seq_mask.to(DT.dtype)[..., None]
            DT, ADT = DT * keep, ADT * keep
        return DT.transpose(1, 2), ADT.transpose(1, 2), trap.transpose(1, 2)

    def _finish(self, y, z):
        """``y (..., H, P)`` (MIMO with is_outproj_norm: the ranks' ``(..., R, H, P)``) -> optional gated norm ->
        out_proj."""
        if self.is_mimo and self.is_outproj_norm:   # each rank normalised, gated by z * mimo_z, then mimo_o
            zr = (z.float().unsqueeze(-3) * self.mimo_z.transpose(0, 1)).flatten(-2)
            y = self.norm(y.float().flatten(-2), zr).unflatten(-1, (self.nheads, self.headdim))
            # the ranks summed in fp32 (a bf16 block's mimo_o is bf16)
            return self.out_proj(torch.einsum("...rhp,hrp->...hp", y, self.mimo_o.float()).flatten(-2).to(z.dtype))
        y = y.flatten(-2)
        if self.is_outproj_norm:
            y = self.norm(y, z.flatten(-2))
        return self.out_proj(y.to(z.dtype))

    def forward(self, u, seq_idx=None, cu_seqlens=None, inference_params=None, seq_mask=None):
        """``u (batch, L, d_model) -> (batch, L, d_model)``. ``cu_seqlens``: sequences packed along L (batch 1).
        ``seq_mask (batch, L)``: 0 on LEFT padding, 1 on real tokens; the padding's step sizes and inputs are zeroed,
        so the state, the running angle and the trapezoid's previous input are still zero where each row's tokens
        start, and its outputs there are those of the row alone. ``inference_params``: fill this layer's states
        (offset 0) or advance them one token (offset > 0)."""
        if seq_idx is not None:
            raise NotImplementedError("Mamba3: seq_idx is not supported; pack sequences with cu_seqlens, or pass "
                                      "seq_mask for left-padded rows")
        if seq_mask is not None:
            if cu_seqlens is not None:
                raise ValueError("Mamba3: seq_mask (left-padded rows) and cu_seqlens (packed sequences) exclude each "
                                 "other")
            _validate.seq_mask(seq_mask, u.shape[0], u.shape[1])
        states = None
        if inference_params is not None:
            # a packed prefill keeps one state per sequence, as mamba_ssm's does
            states = cached_states(self, inference_params, u.shape[0] if cu_seqlens is None else cu_seqlens.shape[0] - 1)
            if inference_params.seqlen_offset > 0:
                return self.step(u, *states)[0]
        b, L, _ = u.shape
        H, P, N, G = self.nheads, self.headdim, self.d_state, self.num_bc_heads
        if cu_seqlens is None and states is None and seq_mask is None and self._whole_fits():
            params = self._whole_params()
            # a training call: one autograd node (ops/mamba3_block.py, ops/mamba3_mimo_block.py)
            low = _layout.lowp(u)
            # under autocast the projections' operands cast as autocast would, the op run with it off (MIMO's output
            # norm, whose sum over the ranks autocast also casts, composes the ops)
            if _layout.one_node(u, *params) and (low is None or not (self.is_mimo and self.is_outproj_norm)):
                sizes = (H, P, N, G, self.mimo_rank) if self.is_mimo else (H, P, N, G)
                op = mamba3_mimo_block.whole if self.is_mimo else mamba3_block.whole
                uc, in_w, out_w = _layout.cast(low, u, params[0], params[-1])
                with _layout.autocast_off(u):
                    return op(uc, in_w, *params[1:-1], out_w, *sizes, self.num_rope_angles, float(self.A_floor),
                              float(self.C_norm.eps), float(self.norm.eps) if self.is_outproj_norm else 0.0,
                              self.chunk_size, torch.are_deterministic_algorithms_enabled())[0]
        proj = self.in_proj(u)
        z, x, B, C, dd_dt, dd_A, trap, angles = torch.split(proj, self.split_sizes(), dim=-1)
        DT, ADT, trap = self._step_rows(proj, dd_dt, dd_A, trap, seq_mask)
        if seq_mask is not None:   # no input on the padding (nor a previous input for the trapezoid where a row starts)
            x = x * seq_mask.to(x.dtype)[..., None]
        z = z.reshape(b, L, H, P)
        if self.is_mimo:
            return self._forward_mimo(b, L, x, B, C, DT, ADT, trap, angles, z, cu_seqlens, states)
        y = mamba3_siso_combined(
            Q=self.C_norm(C.reshape(b, L, G, N)), K=self.B_norm(B.reshape(b, L, G, N)), V=x.reshape(b, L, H, P),
            ADT=ADT, DT=DT, Trap=trap, Q_bias=self.C_bias.squeeze(1), K_bias=self.B_bias.squeeze(1),
            Angles=self._angles(angles, b, L), D=self.D,
            Z=None if self.is_outproj_norm else z, chunk_size=self.chunk_size, return_final_states=states is not None,
            cu_seqlens=cu_seqlens)
        if states is not None:
            y, *finals = y
            for cache, final in zip(states, finals):
                cache.copy_(final.view(cache.shape))
        return self._finish(y, z)

    def _angles(self, angles, b: int, L: int):
        """in_proj's angle rates ``(b, L, S)``, shared by the heads, as the scans take them ``(b, L, H, S)``: a view
        where no backward is to come (the scans' kernels read the projection's columns, its dtype, with head stride
        0: no cast, no copy); else fp32, as the composed route's gradients are computed."""
        if mamba3_op.IN_PLACE and not _layout.records_graph(angles, self.dt_bias):
            return angles[:, :, None].expand(b, L, self.nheads, self.num_rope_angles)
        return angles.float()[:, :, None].expand(b, L, self.nheads, self.num_rope_angles)

    def _whole_fits(self) -> bool:
        """Whether a training call may take the one-node op (``ops/mamba3_block.py``, ``ops/mamba3_mimo_block.py``):
        sizes and settings the scan's checks pass (the composed call raises their errors otherwise), no in_proj
        bias, one eps for B's and C's norms, plain submodules without hooks."""
        chunks = MIMO_CHUNK_SIZES if self.is_mimo else CHUNK_SIZES
        return (self.chunk_size in chunks and self.d_state <= MAX_DIM and self.headdim <= MAX_DIM
                and (not self.is_mimo or (self.d_state % 2 == 0 and self.mimo_rank <= MAX_RANK))
                and self.nheads % self.num_bc_heads == 0 and self.in_proj.bias is None
                and self.B_norm.eps == self.C_norm.eps
                and plain(self.in_proj, self.out_proj, self.B_norm, self.C_norm,
                          self.norm if self.is_outproj_norm else None))

    def _whole_params(self) -> tuple:
        """The parameters the one-node op takes, in its order (B's and C's norms share one eps)."""
        c = _layout.contiguous
        mimo = (c(self.mimo_x), c(self.mimo_z), c(self.mimo_o)) if self.is_mimo else ()
        return (self.in_proj.weight, self.dt_bias, c(self.B_bias), c(self.C_bias), self.B_norm.weight,
                self.C_norm.weight, self.D, *mimo, self.norm.weight if self.is_outproj_norm else None,
                self.out_proj.weight)

    def _forward_mimo(self, b, L, x, B, C, DT, ADT, trap, angles, z, cu_seqlens, states):
        H, P, N, G, R = self.nheads, self.headdim, self.d_state, self.num_bc_heads, self.mimo_rank
        norm = self.is_outproj_norm
        y = mamba3_mimo(
            Q=self.C_norm(C.reshape(b, L, R, G, N)), K=self.B_norm(B.reshape(b, L, R, G, N)), V=x.reshape(b, L, H, P),
            ADT=ADT, DT=DT, Trap=trap, Q_bias=self.C_bias,
            K_bias=self.B_bias, MIMO_V=self.mimo_x, MIMO_Z=None if norm else self.mimo_z,
            MIMO_Out=None if norm else self.mimo_o, Angles=self._angles(angles, b, L),
            D=self.D, Z=None if norm else z, chunk_size=self.chunk_size, return_state=states is not None,
            cu_seqlens=cu_seqlens)
        if states is not None:
            y, finals = y
            for cache, final in zip(states, finals):
                cache.copy_(final.view(cache.shape))
        return self._finish(y, z)

    def step(self, u, angle_state, ssm_state, k_state, v_state, **kwargs):
        """One token: ``u (batch, 1, d_model)`` or ``(batch, d_model)``; updates the four states in place and
        returns ``(out shaped like u, angle_state, ssm_state, k_state, v_state)``. Not differentiable.

        Three launches (with ``is_outproj_norm`` also the output norm, and for MIMO the ranks' gates and sum in
        PyTorch): in_proj, one step kernel reading its row where it lies
        (the step sizes, B's and C's norms and biases, the rotation and the update inside it), out_proj; the
        composed step (``_steps``, the norms, the public step op) where a norm is hooked or the two norms'
        epsilons differ, or with ``SSM_TRITON_FUSED_STEP=0`` (``ops/fused_step.ENABLED``)."""
        squeeze = u.dim() == 3
        if squeeze and u.shape[1] != 1:
            raise ValueError(f"step decodes one token at a time: u must be (batch, 1, d_model), got {tuple(u.shape)}")
        u2 = u[:, 0] if squeeze else u
        parts = self._split(u2)
        y = self.step_from_projection(parts, (angle_state, ssm_state, k_state, v_state))
        out = self._finish(y, parts[0].reshape(u2.shape[0], self.nheads, self.headdim))
        return (out[:, None] if squeeze else out), angle_state, ssm_state, k_state, v_state

    def fused_step_serves(self) -> bool:
        """Whether :meth:`step_from_projection` takes the one step kernel (else the composed step)."""
        return fused_step.ENABLED and self.B_norm.eps == self.C_norm.eps and plain(self.B_norm, self.C_norm)

    def step_from_projection(self, parts, states):
        """The step between the projections: ``parts`` in_proj's output ``(batch, d_in_proj)`` split as
        :meth:`_split` splits it (views serve), ``states`` the four inference states (updated in place) -> ``y``
        before the output norm and out_proj, ``(batch, H, P)`` (MIMO with ``is_outproj_norm``: the ranks'
        ``(batch, R, H, P)``)."""
        z, x, B, C, dd_dt, dd_A, trap, angles = parts
        b = x.shape[0]
        H, P, N, G, R = self.nheads, self.headdim, self.d_state, self.num_bc_heads, self.mimo_rank
        z = z.reshape(b, H, P)
        norm = self.is_outproj_norm
        angle_state, ssm_state, k_state, v_state = states
        states = (angle_state, ssm_state, k_state if self.is_mimo else k_state.view(b, H, N), v_state)
        if self.fused_step_serves():
            block = dict(dt_bias=self.dt_bias, A_floor=float(self.A_floor), Q_norm=self.C_norm.weight,
                         K_norm=self.B_norm.weight, eps=float(self.C_norm.eps))
            shared = angles[:, None].expand(b, H, self.num_rope_angles)   # one row of angles for every head
            if self.is_mimo:
                y = mimo_block_step(C.reshape(b, R, G, N), B.reshape(b, R, G, N), x.reshape(b, H, P), dd_A, dd_dt, trap,
                                    self.C_bias, self.B_bias, self.mimo_x, self.mimo_z, None if norm else self.mimo_o,
                                    shared, self.D, None if norm else z, states, **block)
            else:
                y = siso_block_step(C.reshape(b, G, N), B.reshape(b, G, N), x.reshape(b, H, P), dd_A, dd_dt, trap,
                                    self.C_bias.squeeze(1), self.B_bias.squeeze(1), shared, self.D,
                                    None if norm else z, states, **block)
        else:
            y = self._composed_step(b, z, x, B, C, dd_dt, dd_A, trap, angles, states)
        return y

    def _composed_step(self, b, z, x, B, C, dd_dt, dd_A, trap, angles, states):
        """The step through the modules and the public step ops (a launch each, and the step sizes' PyTorch
        ones)."""
        H, P, N, G, R = self.nheads, self.headdim, self.d_state, self.num_bc_heads, self.mimo_rank
        DT, ADT = self._steps(dd_dt, dd_A)
        norm = self.is_outproj_norm
        shared = angles.float()[:, None].expand(b, H, self.num_rope_angles)
        if self.is_mimo:
            return mamba3_mimo_step(
                Q=self.C_norm(C.reshape(b, R, G, N)), K=self.B_norm(B.reshape(b, R, G, N)), V=x.reshape(b, H, P),
                ADT=ADT, DT=DT, Trap=trap, Q_bias=self.C_bias, K_bias=self.B_bias, MIMO_V=self.mimo_x,
                MIMO_Z=self.mimo_z, MIMO_Out=None if norm else self.mimo_o, Angles=shared, D=self.D,
                Z=None if norm else z, Input_States=states, inplace=True)[0]
        return mamba3_siso_step(
            Q=self.C_norm(C.reshape(b, G, N)), K=self.B_norm(B.reshape(b, G, N)), V=x.reshape(b, H, P), ADT=ADT,
            DT=DT, Trap=trap, Q_bias=self.C_bias.squeeze(1), K_bias=self.B_bias.squeeze(1), Angles=shared, D=self.D,
            Z=None if norm else z, Input_States=states, inplace=True)[0]

    def allocate_inference_cache(self, batch_size, max_seqlen, device=None, dtype=None, **kwargs):
        """``(angle (batch, H, S) fp32, ssm (batch, H, headdim, d_state) fp32, k (batch, R, H, d_state),
        v (batch, H, headdim))``, zeros (R = mimo_rank, 1 for SISO); k and v in ``dtype`` (default: in_proj's)."""
        device = self.in_proj.weight.device if device is None else device
        dtype = self.in_proj.weight.dtype if dtype is None else dtype
        f32 = dict(device=device, dtype=torch.float32)
        return (torch.zeros(batch_size, self.nheads, self.num_rope_angles, **f32),
                torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, **f32),
                torch.zeros(batch_size, self.mimo_rank, self.nheads, self.d_state, device=device, dtype=dtype),
                torch.zeros(batch_size, self.nheads, self.headdim, device=device, dtype=dtype))
