"""``Mamba``: Mamba-1's block on ssm_triton's kernels, with mamba_ssm's constructor, parameter names,
shapes and initialisation, so that a mamba_ssm ``Mamba`` state dict loads unchanged.

in_proj -> (x, z) -> causal depthwise conv1d + silu on x -> x_proj -> (dt low-rank, B, C) -> dt_proj
-> selective scan (A = -exp(A_log), D, softplus(dt + dt_proj.bias), gate silu(z)) -> out_proj.
Decoding runs the same block one token at a time on a conv state ``(batch, d_inner, d_conv)`` and an
SSM state ``(batch, d_inner, d_state)``.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import fused_step as fused
from ..ops import _layout
from ..ops.combined import inner_from_log, mamba_block_training
from ..ops.conv1d import causal_conv1d_update
from ..ops.state_update import state_update_from_log
from .inference import dt_bias_init, fill_conv_state, states_or_step


class Mamba(nn.Module):
    """Mamba-1 mixer. ``forward(hidden_states (batch, L, d_model), inference_params=None) -> (batch, L, d_model)``.

    Parameters (mamba_ssm's names): ``in_proj (2 d_inner, d_model)``, ``conv1d (d_inner, 1, d_conv)``,
    ``x_proj (dt_rank + 2 d_state, d_inner)``, ``dt_proj (d_inner, dt_rank)`` with its bias, ``A_log
    (d_inner, d_state)`` (S4D-real: ``A[:, n] = -(n + 1)``), ``D (d_inner,)``, ``out_proj (d_model, d_inner)``.
    ``use_fast_path`` is accepted for signature compatibility; there is one path.
    """

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001, dt_max=0.1,
                 dt_init="random", dt_scale=1.0, dt_init_floor=1e-4, conv_bias=True, bias=False, use_fast_path=True,
                 layer_idx=None, device=None, dtype=None):
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path, self.layer_idx = use_fast_path, layer_idx
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1,
                                bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        # the low-rank dt projection starts with the variance of its input kept
        std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias_init(self.d_inner, dt_min, dt_max, dt_init_floor, **factory))
        self.dt_proj.bias._no_reinit = True
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))  # fp32 whatever the module's dtype, as mamba_ssm keeps it
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _dt_B_C(self, x):
        """x (..., d_inner) -> dt before its bias (..., d_inner), B and C (..., d_state)."""
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(self, hidden_states, inference_params=None, seq_mask=None):
        """The whole block after in_proj is ``mamba_inner_fn`` (one copy of conv -> x_proj -> dt_proj ->
        selective scan -> out_proj); a prefill also fills this layer's states. ``seq_mask (b, L)``: 0 on
        left padding, 1 on real tokens (each row then computes as if alone)."""
        conv_state, ssm_state, decoded = states_or_step(self, inference_params, hidden_states)
        if decoded is not None:
            return decoded
        low = _layout.lowp(hidden_states)
        if conv_state is None and seq_mask is None and self.dt_proj.bias is not None and (
                low is None or self.in_proj.bias is None) and _layout.one_node(hidden_states, *self.parameters()):
            # a training call: one autograd node (ops/inner_whole.py); under autocast the matmuls' operands cast as
            # autocast would (out_proj's bias is added after, as the composed call adds it), the op run with it off
            u, in_w, x_w, dt_w, out_w = _layout.cast(low, hidden_states, self.in_proj.weight, self.x_proj.weight,
                                                     self.dt_proj.weight, self.out_proj.weight)
            with _layout.autocast_off(u):
                return mamba_block_training(u, in_w, self.in_proj.bias, self.conv1d.weight, self.conv1d.bias, x_w,
                                            dt_w, self.dt_proj.bias, out_w, self.out_proj.bias, self.A_log, self.D)
        # (b, 2 d_inner, L) with steps contiguous, as the conv and the scan read x and z: W @ u^T in one
        # batched product, where in_proj(u).transpose(1, 2) would leave them for copies
        xz = torch.matmul(self.in_proj.weight, hidden_states.transpose(1, 2))
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias[:, None]
        if conv_state is not None:
            x = xz[:, :self.d_inner]
            fill_conv_state(conv_state, x, seq_mask)
        # A_log as the module keeps it: without a backward to come the scan's kernel takes -exp(A_log) itself
        out = inner_from_log(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
                    self.out_proj.weight, self.out_proj.bias, self.A_log,
                    # D and the bias as the module keeps them: the scan reads them in fp32, so a bf16 module's
                    # prefill launches no casts for them (nor its graphs replay them)
                    D=self.D, delta_bias=self.dt_proj.bias, delta_softplus=True,
                    return_last_state=ssm_state is not None, seq_mask=seq_mask)
        if ssm_state is not None:
            out, last = out
            ssm_state.copy_(last)
        return out

    def step(self, hidden_states, conv_state, ssm_state):
        """One token: ``hidden_states (batch, 1, d_model)``; updates both states in place and returns
        ``(out (batch, 1, d_model), conv_state, ssm_state)``. Decoding is not differentiable: call it
        under ``torch.no_grad()`` (or ``torch.inference_mode()``). Where it serves (``ops/fused_step.py``)
        the step runs in five launches instead of six."""
        done = fused.step(self, hidden_states, conv_state, ssm_state)
        if done is not None:
            return done[0], conv_state, ssm_state
        if hidden_states.dim() != 3 or hidden_states.shape[1] != 1:
            raise ValueError(f"step decodes one token at a time: hidden_states must be (batch, 1, d_model), "
                             f"got {tuple(hidden_states.shape)}")
        x, z = self.in_proj(hidden_states[:, 0]).chunk(2, dim=-1)
        x = causal_conv1d_update(x, conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu")
        dt, B, C = self._dt_B_C(x)
        # A_log, D and the bias as the module keeps them (the kernel takes -exp(A_log) and reads in fp32): no
        # launches for them a token
        y = state_update_from_log(ssm_state, x, dt, self.A_log, B, C, D=self.D, z=z, dt_bias=self.dt_proj.bias,
                                  dt_softplus=True)
        return self.out_proj(y)[:, None], conv_state, ssm_state

    def allocate_inference_cache(self, batch_size, max_seqlen, dtype=None, **kwargs):
        """``(conv_state (batch, d_inner, d_conv), ssm_state (batch, d_inner, d_state))``, zeros."""
        device = self.out_proj.weight.device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = self.dt_proj.weight.dtype if dtype is None else dtype
        return (torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=conv_dtype),
                torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=ssm_dtype))
