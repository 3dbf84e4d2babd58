"""``Mamba2``: Mamba-2's block on ssm_triton's kernels, with mamba_ssm's constructor, parameter names,
shapes and initialisation, so that a mamba_ssm ``Mamba2`` state dict loads unchanged.

in_proj -> (z, xBC, dt) -> causal depthwise conv1d + silu on xBC -> SSD chunked scan (x, B, C, dt, A, D)
-> gated RMSNorm with z -> out_proj. Decoding runs the same block one token at a time on a conv state
``(batch, conv_dim, d_conv)`` and an SSM state ``(batch, H, headdim, d_state)``.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import in_update
from ..kernels.arrivals import counters
from ..ops import fused_step as fused
from ..ops import mamba2_step as mid_step
from ..ops import _layout
from ..ops.combined import mamba2_block_training, split_conv1d_scan_from_log
from ..ops.conv1d import causal_conv1d_update
from ..ops import norm_defer
from ..ops.norm_defer import split_conv1d_scan_deferred
from ..ops.state_update import state_update_from_log
from .inference import dt_bias_init, fill_conv_state, plain, states_or_step
from .norm import RMSNorm


class Mamba2(nn.Module):
    """Mamba-2 mixer. ``forward(u (batch, L, d_model), inference_params=None) -> (batch, L, d_model)``.

    ``inference_params`` (as in mamba_ssm: ``key_value_memory_dict`` and ``seqlen_offset``) makes the
    call fill this layer's states (prefill, offset 0) or advance them one token per call (offset > 0).
    """

    def __init__(self, d_model, d_state=128, d_conv=4, conv_init=None, expand=2, headdim=64, d_ssm=None, ngroups=1,
                 A_init_range=(1, 16), D_has_hdim=False, rmsnorm=True, norm_before_gate=False, dt_min=0.001,
                 dt_max=0.1, dt_init_floor=1e-4, dt_limit=(0.0, float("inf")), bias=False, conv_bias=True,
                 chunk_size=256, use_mem_eff_path=True, layer_idx=None, device=None, dtype=None):
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand, self.headdim = d_model, d_state, d_conv, expand, headdim
        self.d_inner = expand * d_model
        self.d_ssm = self.d_inner if d_ssm is None else d_ssm
        if self.d_ssm % headdim:
            raise ValueError(f"d_ssm = {self.d_ssm} must be a multiple of headdim = {headdim}")
        self.ngroups, self.nheads = ngroups, self.d_ssm // headdim
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.dt_limit, self.chunk_size, self.layer_idx = tuple(dt_limit), chunk_size, layer_idx
        self.use_mem_eff_path = use_mem_eff_path  # accepted for signature compatibility; one path here
        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias, **factory)
        self.conv_dim = self.d_ssm + 2 * ngroups * d_state
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1,
                                bias=conv_bias, **factory)
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        self.dt_bias = nn.Parameter(dt_bias_init(self.nheads, dt_min, dt_max, dt_init_floor, **factory))
        self.dt_bias._no_weight_decay = True
        lo, hi = A_init_range
        A = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(lo, hi)
        self.A_log = nn.Parameter(torch.log(A).to(dtype=dtype))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_ssm if D_has_hdim else self.nheads, device=device))
        self.D._no_weight_decay = True
        if rmsnorm:
            self.norm = RMSNorm(self.d_ssm, 1e-5, norm_before_gate, self.d_ssm // ngroups, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    # -- pieces shared by the full forward and the step --

    def _split(self, zxbcdt):
        d_mlp = (zxbcdt.shape[-1] - 2 * self.d_ssm - 2 * self.ngroups * self.d_state - self.nheads) // 2
        return torch.split(zxbcdt, [d_mlp, d_mlp, self.d_ssm, self.conv_dim, self.nheads], dim=-1)

    def _finish(self, y, z, z0, x0):
        """y (..., d_ssm) -> gated norm -> the gated MLP part, if any, in front -> out_proj."""
        y = self.norm(y, z) if self.rmsnorm else y
        if z0.shape[-1] > 0:
            y = torch.cat([F.silu(z0) * x0, y], dim=-1)
        return self.out_proj(y)

    def _defers(self) -> bool:
        """Whether the block's gated norm can be deferred past out_proj (``ops/norm_defer.py``): one group, the gate
        first, no out_proj bias."""
        return self.rmsnorm and self.ngroups == 1 and not self.norm_before_gate and self.out_proj.bias is None

    def _D(self):
        return self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D

    def forward(self, u, inference_params=None, seq_mask=None, defer_norm=False):
        """The whole block after in_proj is ``mamba_split_conv1d_scan_combined`` (one copy of split -> conv
        -> SSD -> gated norm -> out_proj); a prefill also fills this layer's states. ``seq_mask (b, L)``: 0 on
        left padding, 1 on real tokens: the padding becomes a sequence of its own (``seq_idx``), so each
        row's tokens start from a zero state and a conv window that does not reach into it. ``defer_norm``: an
        inference call may return ``ops.norm_defer.Deferred`` (out_proj's output with the gated norm's per-step
        scale still to apply, which the LM's next add+norm takes) where that route fits the block."""
        conv_state, ssm_state, decoded = states_or_step(self, inference_params, u,
                                                        **({"defer_norm": True} if defer_norm else {}))
        if decoded is not None:
            return decoded
        seq_idx = seq_mask.to(torch.int32).contiguous() if seq_mask is not None else None
        if conv_state is None and plain(self.in_proj, self.out_proj, self.norm if self.rmsnorm else None):
            params = (self.in_proj.weight, self.in_proj.bias, self.conv1d.weight, self.conv1d.bias, self.dt_bias,
                      self.A_log, self.D, self.norm.weight if self.rmsnorm else None, self.out_proj.weight,
                      self.out_proj.bias)
            if _layout.one_node(u, *params):   # a training call: one autograd node (ops/split_conv_whole.py)
                # under autocast the projections' operands cast as autocast would, the op run with it off
                low = _layout.lowp(u)
                uc, in_w, in_b, out_w, out_b = _layout.cast(low, u, *params[:2], *params[8:])
                with _layout.autocast_off(u):
                    return mamba2_block_training(
                        uc, in_w, in_b, *params[2:8], self.norm.eps if self.rmsnorm else 1e-6, out_w, out_b,
                        self.chunk_size, seq_idx, self.dt_limit, self.headdim, self.ngroups, self.norm_before_gate,
                        self.D_has_hdim)
        zxbcdt = self.in_proj(u)
        if conv_state is not None:
            xBC = self._split(zxbcdt)[3].transpose(1, 2)
            fill_conv_state(conv_state, xBC, seq_mask)
        if defer_norm and self._defers():
            out = split_conv1d_scan_deferred(
                zxbcdt, self.conv1d.weight.squeeze(1), self.conv1d.bias, self.dt_bias, self.A_log, self._D(),
                self.chunk_size, seq_idx, self.dt_limit, ssm_state is not None, self.norm.weight, self.norm.eps,
                self.out_proj.weight, self.headdim, self.ngroups)
            if out is not None:
                if ssm_state is not None:
                    out, final = out
                    ssm_state.copy_(final)
                return out
        # A_log as the module keeps it: without a backward to come the SSD's kernels take -exp(A_log) themselves
        out = split_conv1d_scan_from_log(
            zxbcdt, self.conv1d.weight.squeeze(1), self.conv1d.bias, self.dt_bias, self.A_log,
            self._D(), self.chunk_size, seq_idx=seq_idx, dt_limit=self.dt_limit, return_final_states=ssm_state is not None,
            rmsnorm_weight=self.norm.weight if self.rmsnorm else None, rmsnorm_eps=self.norm.eps if self.rmsnorm else 1e-6,
            outproj_weight=self.out_proj.weight, outproj_bias=self.out_proj.bias, headdim=self.headdim,
            ngroups=self.ngroups, norm_before_gate=self.norm_before_gate)
        if ssm_state is not None:
            out, final = out
            ssm_state.copy_(final)
        return out

    def step(self, hidden_states, conv_state, ssm_state, defer_norm=False):
        """One token: ``hidden_states (batch, 1, d_model)``; updates both states in place and returns
        ``(out (batch, 1, d_model), conv_state, ssm_state)`` (``defer_norm``: the composed route's ``out`` may be an
        ``ops.norm_defer.Deferred``, as the forward's). Decoding is not differentiable: call it
        under ``torch.no_grad()`` (or ``torch.inference_mode()``). Where it serves (``ops/fused_step.py``)
        the step runs in three launches instead of five (up to 4 rows with ``SSM_TRITON_M2_IN_UPDATE=1`` / ``2``:
        two / one, ``kernels/in_update.py``); else, with ``SSM_TRITON_M2_STEP=1`` and where ``ops/mamba2_step.py``
        serves, as in_proj, one launch and out_proj."""
        done = fused.step(self, hidden_states, conv_state, ssm_state)
        if done is not None:
            return done[0], conv_state, ssm_state
        if hidden_states.shape[1] != 1:
            raise ValueError(f"step decodes one token at a time: hidden_states must be (batch, 1, d_model), "
                             f"got {tuple(hidden_states.shape)}")
        zxbcdt = fused.conv_in_projection(self, hidden_states, conv_state, ssm_state)   # in_proj and the conv windows
        if zxbcdt is not None:
            z0, x0, z, xBC, dt = self._split(zxbcdt)
        else:
            zxbcdt = self.in_proj(hidden_states[:, 0])
            if mid_step.serves(self, zxbcdt, conv_state, ssm_state):   # conv, update and norm in one launch
                return (self.out_proj(mid_step.step(self, zxbcdt, conv_state, ssm_state))[:, None], conv_state,
                        ssm_state)
            z0, x0, z, xBC, dt = self._split(zxbcdt)
            xBC = causal_conv1d_update(xBC, conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu")
        x, B, C = torch.split(xBC, [self.d_ssm, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        bsz, H, P, N = x.shape[0], self.nheads, self.headdim, self.d_state
        D = self.D.view(H, P) if self.D_has_hdim else self.D[:, None].expand(H, P)
        # A_log as the module keeps it (the kernel takes -exp(A_log)): no launches for A a token
        if defer_norm and norm_defer.DEFER_STEP and self._defers() and z0.shape[-1] == 0 \
                and not _layout.records_graph(hidden_states, self.out_proj.weight):
            gw, ss = norm_defer.state_update_deferred(
                ssm_state, x.reshape(bsz, H, P), dt[..., None].expand(bsz, H, P),
                self.A_log[:, None, None].expand(H, P, N), B.reshape(bsz, self.ngroups, N),
                C.reshape(bsz, self.ngroups, N), D, z.reshape(bsz, H, P), self.dt_bias[:, None].expand(H, P),
                self.norm.weight)
            raw = F.linear(gw.reshape(bsz, self.d_ssm), self.out_proj.weight)
            return norm_defer.Deferred(raw[:, None], ss[:, None], self.d_ssm, float(self.norm.eps)), conv_state, ssm_state
        y = state_update_from_log(
            ssm_state, x.reshape(bsz, H, P), dt[..., None].expand(bsz, H, P), self.A_log[:, None, None].expand(H, P, N),
            B.reshape(bsz, self.ngroups, N), C.reshape(bsz, self.ngroups, N), D=D,
            z=None if self.rmsnorm else z.reshape(bsz, H, P), dt_bias=self.dt_bias[:, None].expand(H, P),
            dt_softplus=True)
        return self._finish(y.reshape(bsz, self.d_ssm), z, z0, x0)[:, None], conv_state, ssm_state

    def allocate_inference_cache(self, batch_size, max_seqlen, dtype=None, **kwargs):
        """``(conv_state (batch, conv_dim, d_conv), ssm_state (batch, H, headdim, d_state))``, zeros."""
        device = self.out_proj.weight.device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = self.in_proj.weight.dtype if dtype is None else dtype
        conv_state = torch.zeros(batch_size, self.conv_dim, self.d_conv, device=device, dtype=conv_dtype)
        ssm_state = torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device, dtype=ssm_dtype)
        # the counters of the steps that count arrivals, made now: a set first made inside a CUDA graph's capture is
        # zeroed by every replay (a fill launch a layer)
        if mid_step.ENABLED:   # the one-launch step's, one a row
            counters(ssm_state, batch_size)
        if fused._in_update(self, batch_size):   # the state update inside the input launch's, three a row
            counters(ssm_state, in_update.COUNTERS)
        return conv_state, ssm_state
