"""Every public op is a torch.library custom op: torch.compile(fullgraph=True) traces through it,
forward and backward, and gives the eager result."""
import pytest
import torch

import ssm_triton
from strategies import normal, uniform


def _scan_model(a, b, h0):
    return ssm_triton.linear_scan(a, b, h0, reverse=False).sum(-1) + ssm_triton.linear_scan(a, b, reverse=True)[..., 0]


def _discretize_model(delta, A, B):
    abar, bbar = ssm_triton.discretize(delta, A, B, "zoh")
    return (abar * bbar).sum()


def _selective_scan_model(u, delta, A, B, C, D, z, bias, h0):
    out, last = ssm_triton.selective_scan_fn(u, delta, A, B, C, D, z, bias, delta_softplus=True,
                                             return_last_state=True, initial_state=h0)
    return out.sum(-1) + last.sum(-1)


def _ssd_model(x, dt, A, B, C, D, z, bias, h0):
    out, final = ssm_triton.mamba_chunk_scan_combined(x, dt, A, B, C, 16, D=D, z=z, dt_bias=bias, initial_states=h0,
                                                      dt_softplus=True, return_final_states=True)
    return out.sum((-1, -2)) + final.sum((-1, -2))[:, None, :].sum(-1, keepdim=True)


def _mamba3_model(Q, K, V, adt, DT, Trap, qb, kb, Angles, D, Z, a0, h0, k0, v0):
    out, *finals = ssm_triton.mamba3_siso_combined(Q, K, V, -adt.abs() * DT, DT, Trap, qb, kb, Angles, D=D, Z=Z,
                                                   Input_States=(a0, h0, k0, v0), chunk_size=16,
                                                   return_final_states=True)
    return out.sum((-1, -2)).sum(-1) + sum(torch.cos(f).sum() if i == 0 else f.sum() for i, f in enumerate(finals))


def _mamba3_packed_model(Q, K, V, adt, DT, Trap, qb, kb, Angles):
    cu = torch.tensor([0, 7, 19], device=V.device)
    out, angle, ssm, k, v = ssm_triton.mamba3_siso_combined(Q, K, V, -adt.abs() * DT, DT, Trap, qb, kb, Angles,
                                                            chunk_size=16, return_final_states=True, cu_seqlens=cu)
    return out.sum((-1, -2)).sum(-1) + torch.cos(angle).sum() + k.sum() + v.sum() + ssm.sum()


def _mimo_model(Q, K, V, adt, DT, Trap, qb, kb, mv, mz, mo, Angles, D, Z, a0, h0, k0, x0):
    out, finals = ssm_triton.mamba3_mimo(Q, K, V, -adt.abs() * DT, DT, Trap, qb, kb, mv, mz, mo, Angles, D=D, Z=Z,
                                         chunk_size=4, return_state=True, Input_States=(a0, h0, k0, x0))
    return out.sum((-1, -2)).sum(-1) + sum(torch.cos(f).sum() if i == 0 else f.sum() for i, f in enumerate(finals))


def _mimo_packed_model(Q, K, V, adt, DT, Trap, qb, kb, mv, Angles):
    cu = torch.tensor([0, 4, 9], device=V.device)
    out, (angle, ssm, k, x) = ssm_triton.mamba3_mimo(Q, K, V, -adt.abs() * DT, DT, Trap, qb, kb, mv, None, None,
                                                     Angles, chunk_size=4, return_state=True, cu_seqlens=cu)
    return out.sum((-1, -2)).sum((-1, -2)) + torch.cos(angle).sum() + k.sum() + x.sum() + ssm.sum()


CASES = {
    "mamba3_mimo_packed": (_mimo_packed_model, lambda d: tuple(x.float() for x in (
        normal((1, 9, 2, 1, 6), 70, d), normal((1, 9, 2, 1, 6), 71, d), normal((1, 9, 2, 3), 72, d),
        normal((1, 2, 9), 73, d), uniform((1, 2, 9), 0.05, 0.5, 74, d), normal((1, 2, 9), 75, d),
        normal((2, 2, 6), 76, d), normal((2, 2, 6), 77, d), normal((2, 2, 3), 78, d), normal((1, 9, 2, 2), 79, d)))),
    "mamba3_siso_packed": (_mamba3_packed_model, lambda d: tuple(x.float() for x in (
        normal((1, 19, 1, 6), 60, d), normal((1, 19, 1, 6), 61, d), normal((1, 19, 2, 3), 62, d),
        normal((1, 2, 19), 63, d), uniform((1, 2, 19), 0.05, 0.5, 64, d), normal((1, 2, 19), 65, d),
        normal((2, 6), 66, d), normal((2, 6), 67, d), normal((1, 19, 2, 2), 68, d)))),
    "mamba3_mimo": (_mimo_model, lambda d: tuple(x.float() for x in (
        normal((2, 9, 2, 1, 6), 40, d), normal((2, 9, 2, 1, 6), 41, d), normal((2, 9, 2, 3), 42, d),
        normal((2, 2, 9), 43, d), uniform((2, 2, 9), 0.05, 0.5, 44, d), normal((2, 2, 9), 45, d),
        normal((2, 2, 6), 46, d), normal((2, 2, 6), 47, d), normal((2, 2, 3), 48, d), normal((2, 2, 3), 49, d),
        normal((2, 2, 3), 50, d), normal((2, 9, 2, 2), 51, d), normal((2,), 52, d), normal((2, 9, 2, 3), 53, d),
        normal((2, 2, 2), 54, d), normal((2, 2, 3, 6), 55, d), normal((2, 2, 2, 6), 56, d), normal((2, 2, 3), 57, d)))),
    "mamba3_siso": (_mamba3_model, lambda d: tuple(x.float() for x in (
        normal((2, 19, 1, 6), 24, d), normal((2, 19, 1, 6), 25, d), normal((2, 19, 2, 3), 26, d), normal((2, 2, 19), 27, d),
        uniform((2, 2, 19), 0.05, 0.5, 28, d), normal((2, 2, 19), 29, d), normal((2, 6), 30, d), normal((2, 6), 31, d),
        normal((2, 19, 2, 2), 32, d), normal((2,), 33, d), normal((2, 19, 2, 3), 34, d), normal((2, 2, 2), 35, d),
        normal((2, 2, 3, 6), 36, d), normal((2, 2, 6), 37, d), normal((2, 2, 3), 38, d)))),
    "linear_scan": (_scan_model, lambda d: (uniform((2, 3, 21), 0, 1, 0, d), normal((2, 3, 21), 1, d), normal((2, 3), 2, d))),
    "selective_scan": (_selective_scan_model, lambda d: tuple(x.float() for x in (
        normal((2, 4, 11), 6, d), normal((2, 4, 11), 7, d), -uniform((4, 3), 0.5, 2, 8, d), normal((2, 2, 3, 11), 9, d),
        normal((2, 2, 3, 11), 10, d), normal((4,), 11, d), normal((2, 4, 11), 12, d), normal((4,), 13, d),
        normal((2, 4, 3), 14, d)))),
    "ssd": (_ssd_model, lambda d: tuple(x.float() for x in (
        normal((2, 19, 4, 3), 15, d), normal((2, 19, 4), 16, d), -uniform((4,), 0.5, 2, 17, d), normal((2, 19, 2, 5), 18, d),
        normal((2, 19, 2, 5), 19, d), normal((4,), 20, d), normal((2, 19, 4, 3), 21, d), normal((4,), 22, d),
        normal((2, 4, 3, 5), 23, d)))),
    "discretize": (_discretize_model, lambda d: (uniform((2, 3, 9), 0.01, 1, 3, d), uniform((3, 4), -2, -0.1, 4, d), normal((2, 4, 9), 5, d))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fullgraph_compile_forward_and_backward(device, name):
    fn, make = CASES[name]
    torch._dynamo.reset()
    eager_in = [t.requires_grad_() for t in make(device)]
    comp_in = [t.detach().clone().requires_grad_() for t in eager_in]
    want = fn(*eager_in)
    want_grads = torch.autograd.grad(want.sum(), eager_in)
    traced = []

    def recording_backend(gm, example_inputs):
        traced.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    got = torch.compile(fn, fullgraph=True, backend=recording_backend)(*comp_in)
    assert any(t.startswith("ssm_triton.") for t in traced), traced  # the custom op, not the eager route
    got_grads = torch.autograd.grad(got.sum(), comp_in)
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


MODULES = {
    "Mamba": lambda d: ssm_triton.Mamba(d_model=16, d_state=4, layer_idx=0, device=d),
    "Mamba2": lambda d: ssm_triton.Mamba2(d_model=16, d_state=8, headdim=8, ngroups=2, chunk_size=16, layer_idx=0, device=d),
    "Mamba3": lambda d: ssm_triton.Mamba3(d_model=16, d_state=8, headdim=8, chunk_size=16, layer_idx=0, device=d),
    "Mamba3-MIMO": lambda d: ssm_triton.Mamba3(d_model=16, d_state=8, headdim=8, chunk_size=8, is_mimo=True, mimo_rank=2,
                                               layer_idx=0, device=d),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_blocks_compile_fullgraph_forward_and_backward(device, name):
    """Each block under torch.compile(fullgraph=True): the same output and parameter and input gradients as
    eager (the custom ops' fakes must match what the kernels return, strides included)."""
    torch.manual_seed(0)
    m = MODULES[name](device)
    u = torch.randn(2, 9, 16, device=device)
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    leaves = [u.clone().requires_grad_(), *m.parameters()]
    got = compiled(leaves[0])
    got_grads = torch.autograd.grad(got.square().sum(), leaves)
    eager_u = u.clone().requires_grad_()
    want = m(eager_u)
    want_grads = torch.autograd.grad(want.square().sum(), [eager_u, *m.parameters()])
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("name", ["Mamba3", "Mamba3-MIMO"])
def test_mamba3_step_compiles_fullgraph(device, name):
    """The Mamba3 block's one-launch step under torch.compile(fullgraph=True): the step op (its logits, norm
    weights and plain floats in the schema) updates the caller's states in place; two tokens give eager's
    outputs and states."""
    torch.manual_seed(0)
    m = MODULES[name](device)
    with torch.no_grad():   # off the initial values, so that the norms' weights and the biases count
        for p in (m.B_bias, m.C_bias, m.B_norm.weight, m.C_norm.weight):
            p.add_(0.3 * torch.randn_like(p))
    traced = []

    def recording_backend(gm, example_inputs):
        traced.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    torch._dynamo.reset()
    step = torch.compile(lambda u, *s: m.step(u, *s)[0], fullgraph=True, backend=recording_backend)
    held, eager = m.allocate_inference_cache(2, 4), m.allocate_inference_cache(2, 4)
    with torch.no_grad():
        for _ in range(2):
            u = torch.randn(2, 1, 16, device=device)
            torch.testing.assert_close(step(u, *held), m.step(u, *eager)[0])
    for got, want in zip(held, eager):
        torch.testing.assert_close(got, want)
    assert any(t.startswith("ssm_triton.mamba3") for t in traced), traced


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2", "Mamba3"])
def test_language_model_compiles_fullgraph(device, layer):
    from ssm_triton.models import MambaConfig, MambaLMHeadModel

    torch.manual_seed(0)
    ssm = {"layer": layer, "d_state": 8, **({} if layer == "Mamba1" else {"headdim": 8, "chunk_size": 16})}
    model = MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=32, ssm_cfg=ssm), device=device)
    ids = torch.randint(0, 32, (1, 7), device=device)
    torch._dynamo.reset()
    got = torch.compile(model, fullgraph=True, backend="aot_eager")(ids).logits
    torch.testing.assert_close(got, model(ids).logits)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="reduce-overhead captures CUDA graphs: GPU only")
@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2", "Mamba3"])
def test_language_model_compiles_with_cuda_graphs(layer):
    """The default inductor backend with mode="reduce-overhead" (CUDA graphs): repeated calls equal eager."""
    from ssm_triton.models import MambaConfig, MambaLMHeadModel

    torch.manual_seed(0)
    ssm = {"layer": layer, "d_state": 16, **({} if layer == "Mamba1" else {"headdim": 16, "chunk_size": 64})}
    model = MambaLMHeadModel(MambaConfig(d_model=64, n_layer=2, vocab_size=64, ssm_cfg=ssm), device="cuda")
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, mode="reduce-overhead")
    with torch.no_grad():
        for seed in range(3):
            ids = torch.randint(0, 64, (2, 100), device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
            torch.testing.assert_close(compiled(ids).logits.clone(), model(ids).logits, rtol=1e-4, atol=1e-4)
