"""Mamba-3 SISO references held together (issue 19's groundwork, before any kernel): the chunked form
equals the step-by-step loop (outputs, final states, gradients) for any chunk size, with and without
input states; the step equals the loop token by token; with lam = 1, no rotation and no biases it is
Mamba-2's SSD reference."""
import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.reference import ssd_np
from ssm_triton.reference.mamba3 import (mamba3_mimo_chunked, mamba3_mimo_loop, mamba3_siso_chunked, mamba3_siso_loop,
                                         mamba3_siso_step_ref, rotate)
from strategies import examples, normal, seeds, uniform

CPU = torch.device("cpu")
FEW = examples(10)


def make(b, L, H, Hqk, P, N, S, seed, options):
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, CPU, scale=scale)  # noqa: E731
    t = dict(Q=r((b, L, Hqk, N), 0), K=r((b, L, Hqk, N), 1), V=r((b, L, H, P), 2),
             ADT=-uniform((b, H, L), 0.0, 1.5, seed + 3, CPU), DT=uniform((b, H, L), 0.01, 1.0, seed + 4, CPU),
             Trap=r((b, H, L), 5, 2.0), Q_bias=r((H, N), 6, 0.3), K_bias=r((H, N), 7, 0.3), Angles=r((b, L, H, S), 8))
    if options:
        t.update(D=r((H,), 9), Z=r((b, L, H, P), 10),
                 Input_States=(uniform((b, H, S), 0.0, 2 * math.pi, seed + 11, CPU), r((b, H, P, N), 12),
                               r((b, H, N), 13), r((b, H, P), 14)))
    return t


def sizes():
    return dict(b=st.integers(1, 2), L=st.integers(1, 23), heads=st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 2)]),
                P=st.integers(1, 4), N=st.sampled_from([2, 3, 4, 6]), seed=seeds(), options=st.booleans())


def assert_states_close(got, want):
    angle_g, angle_w = got[0], want[0]
    # angles are kept mod 2 pi: compare where they point
    np.testing.assert_allclose(torch.cos(angle_g), torch.cos(angle_w), atol=1e-9)
    np.testing.assert_allclose(torch.sin(angle_g), torch.sin(angle_w), atol=1e-9)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g.detach(), w.detach(), rtol=1e-9, atol=1e-9)


@FEW
@given(**sizes(), chunk=st.sampled_from([1, 4, 7, 16, 64]), data=st.data())
def test_chunked_form_equals_the_loop(b, L, heads, P, N, seed, options, chunk, data):
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2))
    t = make(b, L, H, Hqk, P, N, S, seed, options)
    want, want_states = mamba3_siso_loop(**t)
    got, got_states = mamba3_siso_chunked(**t, chunk_size=chunk)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert_states_close(got_states, want_states)


@examples(4)
@given(L=st.integers(2, 12), chunk=st.sampled_from([3, 5]), seed=seeds())
def test_chunked_gradients_equal_the_loops(L, chunk, seed):
    """Every input's gradient, input states included, through both routes (the chunked form is what the
    kernels' backward will follow)."""
    t = make(2, L, 2, 1, 3, 4, 2, seed, True)
    leaves = {k: v.clone().requires_grad_() for k, v in t.items() if k != "Input_States"}
    states = tuple(s.clone().requires_grad_() for s in t["Input_States"])
    flat = list(leaves.values()) + list(states)
    cot = normal((2, L, 2, 3), seed + 20, CPU)

    def grads(fn, **kw):
        out, (angle, ssm, k, v) = fn(**leaves, Input_States=states, **kw)
        loss = (out * cot).sum() + ssm.square().sum() + k.sum() + v.sum() + torch.sin(angle).sum()
        return torch.autograd.grad(loss, flat)
    for g, w in zip(grads(mamba3_siso_chunked, chunk_size=chunk), grads(mamba3_siso_loop)):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-9)


@FEW
@given(**sizes())
def test_the_step_continues_a_prefix_token_by_token(b, L, heads, P, N, seed, options):
    """Running a prefix, then steps on its final states, equals running the whole row."""
    H, Hqk = heads
    t = make(b, L, H, Hqk, P, N, N // 2, seed, options)
    want, want_states = mamba3_siso_loop(**t)
    cut = L // 2
    pre = {k: (v[:, :cut] if k in ("Q", "K", "V", "Z", "Angles") else v[..., :cut] if k in ("ADT", "DT", "Trap")
               else v) for k, v in t.items()}
    if cut:
        _, states = mamba3_siso_chunked(**pre, chunk_size=5)
    else:
        states = t.get("Input_States") or tuple(torch.zeros(s) for s in ((b, H, N // 2), (b, H, P, N), (b, H, N), (b, H, P)))
        states = tuple(s.double() for s in states)
    rep = H // Hqk
    for i in range(cut, L):
        z = t["Z"][:, i] if "Z" in t else None
        y, states = mamba3_siso_step_ref(
            states, t["Q"][:, i].repeat_interleave(rep, 1), t["K"][:, i].repeat_interleave(rep, 1), t["V"][:, i],
            t["ADT"][..., i], t["DT"][..., i], t["Trap"][..., i], t["Angles"][:, i], t["Q_bias"], t["K_bias"],
            t.get("D"), z)
        np.testing.assert_allclose(y, want[:, i], rtol=1e-9, atol=1e-9)
    assert_states_close(states, want_states)


@FEW
@given(b=st.integers(1, 2), L=st.integers(1, 20), H=st.integers(1, 3), P=st.integers(1, 3), N=st.integers(1, 4),
       seed=seeds())
def test_lam_one_without_rotation_or_biases_is_mamba2(b, L, H, P, N, seed):
    """lam = 1 drops the trapezoid's previous-step term: H_t = exp(ADT) H + DT v k^T, Mamba-2's update, with
    ``dt A`` = ADT: the SSD reference with per-head A and B = K, C = Q."""
    t = make(b, L, H, H, P, N, 0, seed, False)
    A = -uniform((H,), 0.1, 2.0, seed + 30, CPU)
    t.update(Trap=torch.full((b, H, L), math.inf, dtype=torch.float64), Q_bias=torch.zeros(H, N, dtype=torch.float64),
             K_bias=torch.zeros(H, N, dtype=torch.float64), ADT=t["DT"] * A[None, :, None])
    got, (_, final, _, _) = mamba3_siso_chunked(**t, chunk_size=8)
    # per head its own group: G = H
    want, want_final = ssd_np(t["V"].numpy(), t["DT"].transpose(1, 2).numpy(), A.numpy(), t["K"].numpy(),
                              t["Q"].numpy())
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(final, want_final, rtol=1e-9, atol=1e-9)


def test_rotation_turns_only_the_first_pairs_and_keeps_lengths():
    x = torch.arange(1.0, 7.0, dtype=torch.float64)[None]
    theta = torch.tensor([[math.pi / 2, math.pi]], dtype=torch.float64)
    got = rotate(x, theta)
    np.testing.assert_allclose(got, [[-2.0, 1.0, -3.0, -4.0, 5.0, 6.0]], atol=1e-12)
    assert torch.allclose(got.norm(), x.norm())


# ---- MIMO ----

def make_mimo(b, L, H, Hqk, R, P, N, S, seed, options, with_out=True):
    r = lambda shape, k, scale=1.0: normal(shape, seed + k, CPU, scale=scale)  # noqa: E731
    t = dict(Q=r((b, L, R, Hqk, N), 0), K=r((b, L, R, Hqk, N), 1), V=r((b, L, H, P), 2),
             ADT=-uniform((b, H, L), 0.0, 1.5, seed + 3, CPU), DT=uniform((b, H, L), 0.01, 1.0, seed + 4, CPU),
             Trap=r((b, H, L), 5, 2.0), Q_bias=r((H, R, N), 6, 0.3), K_bias=r((H, R, N), 7, 0.3),
             MIMO_V=r((H, R, P), 8), MIMO_Z=r((H, R, P), 9), MIMO_Out=r((H, R, P), 10) if with_out else None,
             Angles=r((b, L, H, S), 11))
    if options:
        t.update(D=r((H,), 12), Z=r((b, L, H, P), 13),
                 Input_States=(uniform((b, H, S), 0.0, 2 * math.pi, seed + 14, CPU), r((b, H, P, N), 15),
                               r((b, R, H, N), 16), r((b, H, P), 17)))
    return t


@FEW
@given(b=st.integers(1, 2), L=st.integers(1, 17), heads=st.sampled_from([(1, 1), (2, 1), (2, 2)]),
       R=st.sampled_from([1, 2, 3]), P=st.integers(1, 3), N=st.sampled_from([2, 4, 6]), seed=seeds(),
       options=st.booleans(), with_out=st.booleans(), chunk=st.sampled_from([1, 4, 7]), data=st.data())
def test_mimo_chunked_form_equals_the_loop(b, L, heads, R, P, N, seed, options, with_out, chunk, data):
    H, Hqk = heads
    S = data.draw(st.integers(0, N // 2))
    t = make_mimo(b, L, H, Hqk, R, P, N, S, seed, options, with_out)
    want, want_states = mamba3_mimo_loop(**t)
    got, got_states = mamba3_mimo_chunked(**t, chunk_size=chunk)
    assert got.shape == ((b, L, H, P) if with_out else (b, L, R, H, P))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert_states_close(got_states, want_states)


@examples(3)
@given(L=st.integers(2, 10), chunk=st.sampled_from([3, 4]), seed=seeds())
def test_mimo_chunked_gradients_equal_the_loops(L, chunk, seed):
    t = make_mimo(2, L, 2, 1, 2, 3, 4, 2, seed, True)
    leaves = {k: v.clone().requires_grad_() for k, v in t.items() if k != "Input_States"}
    states = tuple(s.clone().requires_grad_() for s in t["Input_States"])
    flat = list(leaves.values()) + list(states)
    cot = normal((2, L, 2, 3), seed + 20, CPU)

    def grads(fn, **kw):
        out, (angle, ssm, k, x) = fn(**leaves, Input_States=states, **kw)
        loss = (out * cot).sum() + ssm.square().sum() + k.sum() + x.sum() + torch.sin(angle).sum()
        return torch.autograd.grad(loss, flat)
    for g, w in zip(grads(mamba3_mimo_chunked, chunk_size=chunk), grads(mamba3_mimo_loop)):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-9)


@FEW
@given(b=st.integers(1, 2), L=st.integers(1, 12), H=st.integers(1, 2), P=st.integers(1, 3),
       N=st.sampled_from([2, 4, 6]), seed=seeds(), options=st.booleans(), data=st.data())
def test_mimo_of_rank_one_with_unit_projections_is_siso(b, L, H, P, N, seed, options, data):
    """R = 1 and MIMO_V = MIMO_Z = MIMO_Out = 1: the SISO scan, once the half-split pairs (n, N/2 + n) are laid
    out as SISO's interleaved ones (2n, 2n + 1)."""
    S = data.draw(st.integers(0, N // 2))
    t = make_mimo(b, L, H, H, 1, P, N, S, seed, options)
    ones = torch.ones(H, 1, P, dtype=torch.float64)
    t.update(MIMO_V=ones, MIMO_Z=ones, MIMO_Out=ones)
    want, want_states = mamba3_mimo_loop(**t)
    rotated = [n for i in range(S) for n in (i, N // 2 + i)]
    perm = torch.tensor(rotated + [n for n in range(N) if n not in rotated])    # SISO column -> MIMO column
    siso = dict(Q=t["Q"][:, :, 0][..., perm], K=t["K"][:, :, 0][..., perm], V=t["V"], ADT=t["ADT"], DT=t["DT"],
                Trap=t["Trap"], Q_bias=t["Q_bias"][:, 0][..., perm], K_bias=t["K_bias"][:, 0][..., perm],
                Angles=t["Angles"], D=t.get("D"), Z=t.get("Z"))
    if options:
        angle, ssm, k, x = t["Input_States"]
        siso["Input_States"] = (angle, ssm[..., perm], k[:, 0][..., perm], x)
    got, got_states = mamba3_siso_loop(**siso)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert_states_close(got_states, (want_states[0], want_states[1][..., perm], want_states[2][:, 0][..., perm],
                                     want_states[3]))
