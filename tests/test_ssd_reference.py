"""The SSD references held against each other and against independent routes: the float64 loop, the
quadratic attention form, Mamba-1's selective-scan reference (SSD is its special case with one
scalar decay per head), and a packed batch against its sequences run one by one."""
import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.reference import selective_scan_np, ssd_np, ssd_quadratic_torch
from builders import make_ssd_problem as make_problem, ssd_np64 as np64
from strategies import seeds


def sizes():
    return {"bsz": st.integers(1, 2), "L": st.integers(1, 24), "groups": st.integers(1, 2),
            "heads_per_group": st.integers(1, 2), "P": st.integers(1, 4), "N": st.integers(1, 5),
            "seed": seeds(), "options": st.booleans()}


@given(**sizes(), data=st.data())
def test_quadratic_form_equals_the_loop(bsz, L, groups, heads_per_group, P, N, seed, options, data):
    t = make_problem(bsz, L, groups, heads_per_group, P, N, seed, options)
    # packed sequences: a non-decreasing sequence id per step
    steps = data.draw(st.lists(st.booleans(), min_size=L, max_size=L))
    seq_idx = torch.tensor(np.cumsum([0] + steps[1:]), dtype=torch.int32).expand(bsz, L).contiguous()
    got_y, got_h = ssd_quadratic_torch(**t, seq_idx=seq_idx)
    want_y, want_h = ssd_np(**np64(t), seq_idx=seq_idx.numpy())
    np.testing.assert_allclose(got_y.numpy(), want_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_h.numpy(), want_h, rtol=1e-10, atol=1e-10)


@given(**sizes())
def test_ssd_is_the_selective_scan_with_one_decay_per_head(bsz, L, groups, heads_per_group, P, N, seed, options):
    t = make_problem(bsz, L, groups, heads_per_group, P, N, seed, options)
    t.pop("dt_limit", None)  # Mamba-1 has no clamp
    H = groups * heads_per_group
    per_channel = lambda v: v.repeat_interleave(P, dim=-1)            # head h -> channels h*P .. h*P+P-1
    D = t.get("D")
    scan = selective_scan_np(
        u=t["x"].reshape(bsz, L, H * P).transpose(1, 2), delta=per_channel(t["dt"]).transpose(1, 2),
        A=per_channel(t["A"])[:, None].expand(H * P, N), B=t["B"].permute(0, 2, 3, 1), C=t["C"].permute(0, 2, 3, 1),
        D=None if D is None else (per_channel(D) if D.dim() == 1 else D.reshape(-1)),
        z=None if "z" not in t else t["z"].reshape(bsz, L, H * P).transpose(1, 2),
        delta_bias=None if "dt_bias" not in t else per_channel(t["dt_bias"]), delta_softplus=t.get("dt_softplus", False),
        initial_state=None if "initial_states" not in t else t["initial_states"].reshape(bsz, H * P, N))
    y, h = ssd_np(**np64(t))
    np.testing.assert_allclose(scan[0].transpose(0, 2, 1).reshape(bsz, L, H, P), y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(scan[1].reshape(bsz, H, P, N), h, rtol=1e-10, atol=1e-10)


@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=4), seed=seeds(), options=st.booleans())
def test_packed_row_equals_each_sequence_alone(lengths, seed, options):
    L = sum(lengths)
    t = make_problem(1, L, 1, 2, 3, 4, seed, options)
    t.pop("initial_states", None)   # an initial state belongs to the row's first sequence only
    cu = np.concatenate([[0], np.cumsum(lengths)])
    seq_idx = np.repeat(np.arange(len(lengths)), lengths)[None]
    y, _, varlen = ssd_np(**np64(t), seq_idx=seq_idx, cu_seqlens=cu)
    for s in range(len(lengths)):
        part = {k: (v[:, cu[s]:cu[s + 1]] if k in ("x", "dt", "B", "C", "z") else v) for k, v in np64(t).items()}
        y_s, h_s = ssd_np(**part)
        np.testing.assert_allclose(y[:, cu[s]:cu[s + 1]], y_s, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(varlen[s], h_s[0], rtol=1e-12, atol=1e-12)


def test_quadratic_form_gradients_pass_gradcheck():
    t = make_problem(1, 5, 1, 2, 2, 3, 7, True)
    names = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"]
    flags = {k: v for k, v in t.items() if k not in names}
    flags["dt_limit"] = (0.0, math.inf)  # the clamp's kinks would trip finite differences
    leaves = [t[k].clone().requires_grad_() for k in names]
    fn = lambda *xs: ssd_quadratic_torch(**dict(zip(names, xs)), **flags)
    assert torch.autograd.gradcheck(fn, leaves)
