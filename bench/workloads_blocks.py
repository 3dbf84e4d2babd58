"""Benchmarks of the block pieces around the scans: the causal depthwise conv1d and the gated RMSNorm,
at the sizes a Mamba-2 block of d_model 2048 feeds them (b=8, L=2048)."""
import torch

from . import counts
from .peers import load_past_package_init
from .workloads import Workload, keyword_impl


def _leaves(tensors, grad_shape, dtype, device):
    for v in tensors.values():
        v.requires_grad_()
    tensors["g"] = torch.randn(grad_shape, device=device).to(dtype)
    return tensors


def conv1d_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """Depthwise causal conv over Mamba-2's x, B, C channels (4096 + 2*128), width 4, silu; the peer is
    PyTorch's cuDNN depthwise conv (the causal-conv1d package is a CUDA build, not carried)."""
    from ssm_triton import causal_conv1d_fn

    b, d, L, W = (2, 16, 40, 4) if quick else (8, 4352, 2048, 4)
    io = torch.float32 if quick else torch.bfloat16

    def make():
        return _leaves({"x": torch.randn(b, d, L, device=device).to(io), "weight": torch.randn(d, W, device=device).to(io),
                        "bias": torch.randn(d, device=device).to(io)}, (b, d, L), io, device)

    def torch_conv(x, weight, bias, activation):
        y = torch.nn.functional.conv1d(x, weight[:, None], bias, padding=W - 1, groups=d)[..., :L]
        return torch.nn.functional.silu(y)

    es = torch.tensor([], dtype=io).element_size()
    out = []
    for direction in ("fwd", "fwd+bwd"):
        nbytes, flops = counts.conv1d(b, d, L, W, es, direction)
        impls = {"ssm_triton": keyword_impl(causal_conv1d_fn, activation="silu"),
                 "torch_cudnn": keyword_impl(torch_conv, activation="silu")}
        out.append(Workload("conv1d", (b, d, L, W), io, direction, nbytes, flops, make, impls))
    return out


def norm_workloads(device, quick: bool, notes: set) -> list[Workload]:
    """Mamba-2's gated RMSNorm, norm after the gate, one group of all 4096 features, over b*L = 16384
    rows; the peer is mamba_ssm's Triton ``rmsnorm_fn`` (layernorm_gated)."""
    from ssm_triton import rmsnorm_fn

    rows, D = (64, 32) if quick else (16384, 4096)
    io = torch.float32 if quick else torch.bfloat16

    def make():
        return _leaves({"x": torch.randn(rows, D, device=device).to(io), "z": torch.randn(rows, D, device=device).to(io),
                        "weight": torch.randn(D, device=device)}, (rows, D), io, device)

    kwargs = {"bias": None, "eps": 1e-5, "norm_before_gate": False}
    impls = {"ssm_triton": keyword_impl(rmsnorm_fn, **kwargs)}
    mod, why = load_past_package_init("mamba_ssm.ops.triton.layernorm_gated")
    if mod is None:
        notes.add(f"mamba_ssm skipped: {why}")
    else:
        impls["mamba_ssm"] = keyword_impl(mod.rmsnorm_fn, **kwargs)
    es = torch.tensor([], dtype=io).element_size()
    out = []
    for direction in ("fwd", "fwd+bwd"):
        nbytes, flops = counts.gated_rmsnorm(rows, D, es, direction)
        out.append(Workload("gated_rmsnorm", (rows, D), io, direction, nbytes, flops, make, dict(impls)))
    return out
