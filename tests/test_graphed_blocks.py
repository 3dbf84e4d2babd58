"""The blocks' training calls replayed from CUDA graphs with ``torch.cuda.make_graphed_callables``: a small
training step is host-bound (a block's fwd+bwd at b1 L512 d768 issued ~2.5 ms of host work on the H100 machine's
host, 2026-12-05), and a captured forward and backward replay in one launch each. The graphed block's outputs and
every gradient (input and parameters) must equal the eager block's, call after call on fresh inputs."""
import copy

import pytest
import torch

import ssm_triton
from ssm_triton.tolerance import assert_close

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def _block(kind: str, dtype):
    torch.manual_seed(0)
    kw = dict(device="cuda", dtype=dtype)
    if kind == "Mamba":
        return ssm_triton.Mamba(64, d_state=16, layer_idx=0, **kw)
    if kind == "Mamba2":
        return ssm_triton.Mamba2(64, d_state=32, headdim=16, chunk_size=32, layer_idx=0, **kw)
    if kind == "Mamba3":
        return ssm_triton.Mamba3(64, d_state=32, headdim=16, chunk_size=16, layer_idx=0, **kw)
    return ssm_triton.Mamba3(64, d_state=32, headdim=16, chunk_size=16, is_mimo=True, mimo_rank=2, layer_idx=0,
                             **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["Mamba", "Mamba2", "Mamba3", "Mamba3 MIMO"])
def test_graphed_training_calls_equal_the_eager_ones(kind, dtype):
    eager = _block(kind, dtype)
    with torch.no_grad():   # every parameter off its initial value, so every gradient term is exercised
        for p in eager.parameters():
            p.add_(0.1 * torch.randn_like(p))
    graphed_block = copy.deepcopy(eager)
    L = 40   # not a multiple of the chunk lengths
    sample = torch.randn(2, L, 64, device="cuda", dtype=dtype, requires_grad=True)
    graphed = torch.cuda.make_graphed_callables(graphed_block, (sample,))
    for call in range(3):
        u = torch.randn(2, L, 64, device="cuda", dtype=dtype, generator=torch.Generator("cuda").manual_seed(call))
        g = torch.randn(2, L, 64, device="cuda", dtype=dtype, generator=torch.Generator("cuda").manual_seed(9 + call))
        leaves = [u.clone().requires_grad_(), u.clone().requires_grad_()]
        outs = [eager(leaves[0]), graphed(leaves[1])]
        want_params, got_params = list(eager.parameters()), list(graphed_block.parameters())
        want = torch.autograd.grad(outs[0], [leaves[0], *want_params], g)
        got = torch.autograd.grad(outs[1], [leaves[1], *got_params], g)
        assert_close(outs[1], outs[0].double(), dtype, f"{kind} output, call {call}")
        names = ["u"] + [n for n, _ in eager.named_parameters()]
        for name, a, b in zip(names, got, want):
            # the same kernels on the same inputs: equal up to the order of atomic sums
            assert_close(a, b.double(), dtype, f"{kind} d{name}, call {call}")
