"""The selective-scan references, held against each other and against an independent route:
Mamba's discretization, then the first-order scan over every (channel, state) pair, then the C contraction."""
import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.reference import selective_scan_np, selective_scan_ref
from ssm_triton.tolerance import assert_close
from builders import LAYOUTS, make_scan_problem as make_problem, np64
from strategies import normal, seeds

@given(bsz=st.integers(1, 2), groups=st.integers(1, 2), per_group=st.integers(1, 3), L=st.integers(1, 17),
       N=st.integers(1, 5), layout=st.sampled_from(LAYOUTS), with_options=st.booleans(), seed=seeds())
def test_numpy_and_torch_references_agree(bsz, groups, per_group, L, N, layout, with_options, seed):
    args, extra = make_problem(bsz, groups, per_group, L, N, layout, seed, torch.device("cpu"), with_options)
    out, last = selective_scan_ref(*args, **extra, return_last_state=True)
    want_out, want_last = selective_scan_np(*map(np64, args), **{k: np64(v) for k, v in extra.items()})
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last.numpy(), want_last, rtol=1e-12, atol=1e-12)


@given(L=st.integers(1, 40), N=st.integers(1, 6), with_bias=st.booleans(), seed=seeds())
def test_reference_equals_discretize_then_linear_scan(device, L, N, with_bias, seed):
    # the same recurrence assembled from the library's own kernels, which have their own references
    bsz, d = 2, 3
    (u, delta, A, B, C), _ = make_problem(bsz, 1, d, L, N, "variable", seed, device, False)
    bias = normal((d,), seed + 9, device) if with_bias else None
    dt = torch.nn.functional.softplus(delta + (bias[:, None] if with_bias else 0))
    abar, bbar = ssm_triton.discretize(dt, A, B, method="mamba")        # (b, d, L, N)
    drive = (bbar * u[..., None]).transpose(2, 3)                      # (b, d, N, L)
    h = ssm_triton.linear_scan(abar.transpose(2, 3).contiguous(), drive.contiguous())
    y = (h * C[:, None]).sum(2)                                        # C (b, N, L) -> (b, 1, N, L)
    want = selective_scan_np(*map(np64, (u, delta, A, B, C)), delta_bias=np64(bias), delta_softplus=True)[0]
    assert_close(y, want, torch.float64, "y")
