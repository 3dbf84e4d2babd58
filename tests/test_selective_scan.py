"""The fused selective-scan forward kernel (kernels/selective_scan.py, not yet public) against the
float64 reference: outputs and last state over layouts, options, dtypes and lengths."""
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import BIG
from ssm_triton.kernels.selective_scan import selective_scan_forward
from ssm_triton.reference import selective_scan_np
from ssm_triton.tolerance import assert_close
from strategies import seeds
from test_selective_scan_reference import LAYOUTS, make_problem, np64

IO_DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@given(bsz=st.integers(1, 2), groups=st.integers(1, 2), per_group=st.integers(1, 5 if not BIG else 64),
       L=st.one_of(st.just(1), st.integers(2, 45 if not BIG else 3000)), N=st.integers(1, 8 if not BIG else 32),
       layout=st.sampled_from(LAYOUTS), with_options=st.booleans(), dtype=st.sampled_from(IO_DTYPES),
       block_l=st.sampled_from([None, 4, 16]), seed=seeds())
def test_forward_matches_reference(device, bsz, groups, per_group, L, N, layout, with_options, dtype, block_l, seed):
    args, extra = make_problem(bsz, groups, per_group, L, N, layout, seed, device, with_options)
    u, delta, A, B, C = args
    # u, delta, z, B, C in the I/O dtype; A, D, delta_bias and the initial state fp32, as Mamba keeps them
    u, delta, B, C = (x.to(dtype) for x in (u, delta, B, C))
    A = A.float()
    opt = {k: (v.to(dtype) if k == "z" else v.float()) if isinstance(v, torch.Tensor) else v for k, v in extra.items()}
    out, last, _, _ = selective_scan_forward(u, delta, A, B, C, opt.get("D"), opt.get("z"), opt.get("delta_bias"),
                                             opt.get("delta_softplus", False), opt.get("initial_state"), block_l=block_l)
    want_out, want_last = selective_scan_np(*map(np64, (u, delta, A, B, C)), **{k: np64(v) for k, v in opt.items()})
    assert out.dtype == dtype and out.shape == u.shape and last.shape == (bsz, groups * per_group, N)
    assert_close(out, want_out, dtype, "out")
    assert_close(last, want_last, torch.float32, "last_state")
