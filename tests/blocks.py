"""Runs a block or a model the way generation does: a prefill of the first tokens through
``forward(u, inference_params)``, then one token per call, so tests can hold the pieces against one
full forward."""
import torch

import ssm_triton
import ssm_triton.tolerance


def prefill_then_decode(m, u, prefill):
    """``u (b, L, d)``; ``prefill`` tokens through the chunked path (0: start from empty states), the
    rest one at a time. Returns the outputs concatenated along time, (b, L, d)."""
    bsz, L = u.shape[:2]
    params = ssm_triton.InferenceParams(max_seqlen=L, max_batch_size=bsz)
    outs = []
    with torch.no_grad():
        if prefill:
            outs.append(m(u[:, :prefill], inference_params=params))
        else:  # an offset > 0 sends even the first token down the step path, from zero states
            params.key_value_memory_dict[m.layer_idx] = m.allocate_inference_cache(bsz, L)
        params.seqlen_offset = max(prefill, 1)
        for t in range(prefill, L):
            outs.append(m(u[:, t:t + 1], inference_params=params))
            params.seqlen_offset += 1
    return torch.cat(outs, 1)


def float64_params(m):
    """The module's parameters as float64 CPU leaves that collect gradients, by state-dict name."""
    return {k: v.detach().double().cpu().requires_grad_() for k, v in m.named_parameters()}


def assert_grads_match(m, u, reference_forward, seed):
    """The module's parameter and input gradients under a random cotangent against float64 autograd of
    ``reference_forward(params, u)`` (the block composed from the references)."""
    u = u.detach().requires_grad_()
    out = m(u)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out.backward(g.to(out.device, out.dtype))
    p, u64 = float64_params(m), u.detach().double().cpu().requires_grad_()
    reference_forward(p, u64).backward(g)
    tol = ssm_triton.tolerance.tolerance(torch.float32) * 10  # through three matmuls and the scan
    for name, want in [("input", u64.grad)] + [(k, v.grad) for k, v in p.items()]:
        got = u.grad if name == "input" else dict(m.named_parameters())[name].grad
        err = ssm_triton.tolerance.scaled_error(got, want)
        assert err <= tol, f"grad of {name}: scaled error {err:.3e} exceeds {tol:.1e}"


def assert_forward_matches(m, u, reference_forward):
    """The module's forward against ``reference_forward(params, u)`` in float64."""
    with torch.no_grad():
        want = reference_forward(float64_params(m), u.double().cpu())
    torch.testing.assert_close(m(u).double().cpu(), want, rtol=1e-4, atol=1e-5)


def assert_one_node_unless_hooked(m, u, submodule):
    """``m(u)``'s training call is one autograd node over the leaves; with a forward hook on ``submodule`` it goes
    through the modules instead, and the hook runs."""
    out = m(u)   # kept alive: the node goes with its last output, and its Python object then answers no more
    parents = [type(f).__name__ for f, _ in out.grad_fn.next_functions if f is not None]
    assert parents and set(parents) == {"AccumulateGrad"}, parents
    calls = []
    submodule.register_forward_hook(lambda *_: calls.append(1))
    m(u).sum().backward()
    assert calls == [1]


def perturbed(m, scale: float = 0.1):
    """``m`` with every parameter moved off its initial value (biases at zero, norms at one), so that every term of
    a gradient is exercised."""
    with torch.no_grad():
        for prm in m.parameters():
            prm.add_(scale * torch.randn_like(prm))
    return m
