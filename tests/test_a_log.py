"""The scans and the block functions given ``A_log`` (``A = -exp(A_log)`` taken inside the kernels: no PyTorch
launches for ``A`` in an inference call): the SSD on both forward routes and Mamba-1's selective scan whole or split in
time, against the float64 references of ``A``; the block functions against the public ones; with a gradient asked
for, the public ops' gradients; the blocks' inference forwards launch nothing for ``A``."""
from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.kernels import selective_scan as kss
from ssm_triton.ops.combined import inner_from_log, split_conv1d_scan_from_log
from ssm_triton.ops.selective_scan import scan_from_log
from ssm_triton.ops.ssd import chunk_scan_from_log
from ssm_triton.reference import selective_scan_np, ssd_np
from ssm_triton.tolerance import assert_close, scaled_error
from builders import LAYOUTS, make_scan_problem, make_ssd_problem, np64
from strategies import examples, normal, seeds
from test_ssd_fused import as_np, counting, route, split


def problem(device, bsz, L, groups, P, N, seed, options, dtype):
    """An SSD problem in ``dtype`` (its per-head parameters and states in fp32) and its ``A_log (H,)`` fp32."""
    t = make_ssd_problem(bsz, L, groups, 2, P, N, seed, options, device)
    t = {k: (v.to(dtype) if k in ("x", "z", "B", "C", "dt") else v.float()) if isinstance(v, torch.Tensor) else v
         for k, v in t.items()}
    return t, torch.log(-t.pop("A"))


@examples(6)
@given(bsz=st.integers(1, 2), L=st.integers(1, 70), groups=st.integers(1, 2), P=st.integers(1, 9),
       N=st.one_of(st.integers(1, 9), st.just(16)), seed=seeds(), options=st.booleans(),
       fused=st.sampled_from(["1", "0"]), segments=st.sampled_from([1, 3]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), log_dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_chunk_scan_from_log_matches_the_reference(device, bsz, L, groups, P, N, seed, options, fused, segments, dtype,
                                                   log_dtype):
    """Outputs and final states against the float64 loop of ``A = -exp(A_log)`` (A_log in fp32 or the model's bf16),
    on the one-launch forward (whole rows or segments) and on the stages; the second call of a signature through
    its op plan (one launch route) or the stages again."""
    t, A_log = problem(device, bsz, L, groups, P, N, seed, options, dtype)
    A_log = A_log.to(log_dtype)
    want = as_np(dict(t, A=-torch.exp(A_log.double())))
    want_out, want_final = ssd_np(**want)
    with torch.no_grad(), route(fused), split(segments):
        for k in range(2):
            with counting() as calls:
                out, final = chunk_scan_from_log(**t, A_log=A_log, chunk_size=16, return_final_states=True)
            assert (len(calls) > 0) == (fused == "1")
            assert out.dtype == dtype and out.shape == t["x"].shape and final.dtype == torch.float32
            assert_close(out, want_out, dtype, f"out, call {k}")
            assert_close(final, want_final, dtype, f"final_states, call {k}")
        only = chunk_scan_from_log(**t, A_log=A_log, chunk_size=16)
    assert torch.equal(only, out)


def test_chunk_scan_from_log_with_a_gradient_is_the_public_op(device):
    """A call that asks for gradients takes the public op with ``A`` computed in PyTorch: ``A_log``'s gradient is
    ``A``'s times ``A``."""
    t, A_log = problem(device, 1, 20, 1, 4, 8, 3, True, torch.float32)
    A_log.requires_grad_()
    x = t.pop("x").requires_grad_()
    out = chunk_scan_from_log(x, A_log=A_log, chunk_size=16, **t)
    A = (-torch.exp(A_log.detach())).requires_grad_()
    want = ssm_triton.mamba_chunk_scan_combined(x.detach(), A=A, chunk_size=16, **t)
    g = normal(out.shape, 9, device)
    (out * g).sum().backward()
    (want * g).sum().backward()
    assert torch.equal(out.detach(), want)
    assert scaled_error(A_log.grad, A.grad * A.detach()) < 1e-6


@examples(4)
@given(L=st.integers(1, 40), G=st.sampled_from([1, 2]), norm=st.booleans(), outproj=st.booleans(),
       final=st.booleans(), fused=st.sampled_from(["1", "0"]), seed=seeds())
def test_split_conv1d_scan_from_log_matches_the_public_function(device, L, G, norm, outproj, final, fused, seed):
    """``Mamba2``'s inference route equals :func:`mamba_split_conv1d_scan_combined` of ``-exp(A_log)`` (each a
    second time from its replay)."""
    H, P, N, W = 4, 8, 8, 4
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, torch.float32, scale)  # noqa: E731
    t = dict(zxbcdt=r((2, L, 2 * H * P + 2 * G * N + H), 0), conv1d_weight=r((H * P + 2 * G * N, W), 1, 0.5),
             conv1d_bias=r((H * P + 2 * G * N,), 2, 0.1), dt_bias=r((H,), 3, 0.3), D=r((H,), 5),
             chunk_size=16, return_final_states=final, headdim=P, ngroups=G)
    if norm:
        t.update(rmsnorm_weight=r((H * P,), 6), norm_before_gate=False)
    if outproj:
        t.update(outproj_weight=r((12, H * P), 7, 0.2))
    A_log = r((H,), 4, 0.5)
    with torch.no_grad(), route(fused):
        want = ssm_triton.mamba_split_conv1d_scan_combined(**t, A=-torch.exp(A_log))
        for k in range(2):
            got = split_conv1d_scan_from_log(**t, A_log=A_log)
            for a, b in zip(got if final else [got], want if final else [want]):
                assert scaled_error(a, b) < 1e-5, f"call {k}"


@examples(6)
@given(L=st.integers(1, 60), N=st.integers(1, 6), layout=st.sampled_from(LAYOUTS), with_options=st.booleans(),
       seg=st.sampled_from([0, 8, 16]), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       log_dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=seeds())
def test_scan_from_log_matches_the_reference(device, L, N, layout, with_options, seg, dtype, log_dtype, seed):
    """Mamba-1's scan of ``A = -exp(A_log)`` against the float64 loop: output and last state, time whole or split
    into segments (the summary kernel reads ``A_log`` too), twice a signature (the second through its op plan where
    the forward is one launch)."""
    seg = min(seg, 8 * ((L - 1) // 8))
    from ssm_triton.ops import selective_scan as ops
    ops._LOG_PLANS = type(ops._LOG_PLANS)()   # this example's segments, not a plan an earlier one made
    (u, delta, A, B, C), extra = make_scan_problem(1, 2, 2, L, N, layout, seed, device, with_options)
    extra.pop("initial_state", None)
    t = dict(u=u.to(dtype), delta=delta.to(dtype), B=B.to(dtype), C=C.to(dtype),
             **{k: (v.to(dtype) if k == "z" else v.float()) if isinstance(v, torch.Tensor) else v
                for k, v in extra.items()})
    A_log = torch.log(-A).to(log_dtype)
    want_out, want_last = selective_scan_np(**{k: np64(v) for k, v in t.items()}, A=np64(-torch.exp(A_log.double())))
    with torch.no_grad(), mock.patch.object(kss, "plan_segment_l", lambda *a: seg), \
            mock.patch.object(kss, "plan_block_l", lambda L, mode=None: 8):
        for k in range(2):
            out, last = scan_from_log(**t, A_log=A_log, return_last_state=True)
            assert out.dtype == dtype and last.dtype == torch.float32
            assert_close(out, want_out, dtype, f"out, call {k}")
            assert_close(last, want_last, torch.float32, f"last_state, call {k}")


@examples(4)
@given(L=st.integers(1, 30), mask=st.booleans(), last=st.booleans(), seed=seeds())
def test_inner_from_log_matches_the_public_function(device, L, mask, last, seed):
    """``Mamba``'s inference route equals :func:`mamba_inner_fn` of ``-exp(A_log)`` (each a second time from its
    replay), with and without a left-padding mask and the last state."""
    d, N, R, W, dm = 8, 4, 2, 4, 6
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, device, torch.float32, scale)  # noqa: E731
    t = dict(xz=r((2, 2 * d, L), 0), conv1d_weight=r((d, 1, W), 1, 0.5), conv1d_bias=r((d,), 2, 0.1),
             x_proj_weight=r((R + 2 * N, d), 3, 0.4), delta_proj_weight=r((d, R), 4, 0.4),
             out_proj_weight=r((dm, d), 5, 0.3), out_proj_bias=None, D=r((d,), 6), delta_bias=r((d,), 7, 0.3),
             delta_softplus=True, return_last_state=last)
    if mask:
        t["seq_mask"] = (torch.arange(L, device=device)[None] >= torch.tensor([[0], [L // 2]], device=device)).int()
    A_log = r((d, N), 8, 0.5)
    with torch.no_grad():
        want = ssm_triton.mamba_inner_fn(**t, A=-torch.exp(A_log))
        for k in range(2):
            got = inner_from_log(**t, A_log=A_log)
            for a, b in zip(got if last else [got], want if last else [want]):
                assert scaled_error(a, b) < 1e-5, f"call {k}"


def test_inner_from_log_with_a_gradient_is_the_public_function(device):
    """Asked for gradients, ``A_log``'s is the public function's ``A`` gradient times ``A``."""
    d, N, R, W, L = 8, 4, 2, 4, 12
    r = lambda shape, k, scale=1.0: normal(shape, 40 + k, device, torch.float32, scale)  # noqa: E731
    t = dict(xz=r((1, 2 * d, L), 0), conv1d_weight=r((d, 1, W), 1, 0.5), conv1d_bias=r((d,), 2, 0.1),
             x_proj_weight=r((R + 2 * N, d), 3, 0.4), delta_proj_weight=r((d, R), 4, 0.4),
             out_proj_weight=r((6, d), 5, 0.3), out_proj_bias=None, D=r((d,), 6), delta_bias=r((d,), 7, 0.3))
    A_log = r((d, N), 8, 0.5).requires_grad_()
    A = (-torch.exp(A_log.detach())).requires_grad_()
    out = inner_from_log(**t, A_log=A_log)
    want = ssm_triton.mamba_inner_fn(**t, A=A)
    out.sum().backward()
    want.sum().backward()
    assert torch.equal(out.detach(), want.detach())
    assert scaled_error(A_log.grad, A.grad * A.detach()) < 1e-6


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("kind", ["Mamba", "Mamba2"])
def test_block_forward_takes_a_log(device, grad, kind):
    """The block's inference forward (A_log into the kernels) equals its forward with a gradient asked for (the
    training route, ``A`` in PyTorch), and launches nothing for ``A``."""
    torch.manual_seed(0)
    block = (ssm_triton.Mamba2(d_model=16, d_state=8, headdim=8, chunk_size=16, device=device) if kind == "Mamba2"
             else ssm_triton.Mamba(d_model=16, d_state=4, device=device))
    u = normal((2, 24, 16), 1, device, torch.float32)
    with torch.no_grad():
        want = block(u)
    if grad:
        got = block(u.clone().requires_grad_())
        got.sum().backward()
        assert block.A_log.grad is not None and torch.isfinite(block.A_log.grad).all()
        assert scaled_error(got.detach(), want) < 1e-5
    else:
        from torch.utils._python_dispatch import TorchDispatchMode

        seen = []

        class Ops(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                seen.append(func.overloadpacket.__name__)
                return func(*args, **(kwargs or {}))

        with torch.no_grad(), Ops():
            got = block(u)
        assert "exp" not in seen and "neg" not in seen
        assert torch.equal(got, want)
