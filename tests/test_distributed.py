"""Context parallelism over torch.distributed: W spawned processes (gloo on CPU) each hold a slice of one
sequence; their outputs, final states and every gradient equal the one-device result's slices (shared
parameters' gradients summed over the ranks), and bad use raises the same clear error on every rank.

A hypothesis example is a list of problems, run by one spawn of W processes (a spawn costs seconds of
imports), each worker checking every problem."""
import os
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st

import ssm_triton
from ssm_triton.tolerance import scaled_error
from strategies import examples, seeds

EXAMPLES = examples(3, 10)


def _backend_or_skip(world):
    if ssm_triton.INTERPRET:
        return "gloo"
    if torch.cuda.device_count() < world:
        pytest.skip(f"{world} ranks need {world} GPUs with NCCL here (this machine has {torch.cuda.device_count()}); "
                    "the CPU run covers the same code with gloo")
    return "nccl"


def _spawn(fn, world, tmp_path, *args):
    backend = _backend_or_skip(world)
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), backend, fn, args), nprocs=world, join=True)


def _worker(rank, world, store, backend, fn, args):
    os.environ.setdefault("TRITON_INTERPRET", "1" if backend == "gloo" else "0")
    device = torch.device("cpu") if backend == "gloo" else torch.device("cuda", rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        fn(rank, world, device, *args)
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        dist.destroy_process_group()


def _close(name, got, want, tol=1e-4):
    err = scaled_error(got, want)
    assert err <= tol, f"rank {dist.get_rank()}: {name}: scaled error {err:.2e} > {tol:.0e}"


def _summed(t):
    t = t.clone()
    dist.all_reduce(t)
    return t


# ---- linear scan ----

def _linear_scan_problems(rank, world, device, problems):
    for lead, Lr, with_h0, seed in problems:
        g = torch.Generator().manual_seed(seed)
        L = Lr * world
        a = (torch.rand(*lead, L, generator=g) * 0.6 + 0.5).to(device).requires_grad_()
        b = torch.randn(*lead, L, generator=g).to(device).requires_grad_()
        h0 = torch.randn(*lead, generator=g).to(device).requires_grad_() if with_h0 else None
        dh = torch.randn(*lead, L, generator=g).to(device)
        want = ssm_triton.linear_scan(a, b, h0=h0)
        want_grads = torch.autograd.grad(want, [t for t in (a, b, h0) if t is not None], dh)
        sl = slice(rank * Lr, (rank + 1) * Lr)
        a_r, b_r = a.detach()[..., sl].clone().requires_grad_(), b.detach()[..., sl].clone().requires_grad_()
        h0_r = h0.detach().clone().requires_grad_() if with_h0 else None
        got = ssm_triton.distributed.cp_linear_scan(a_r, b_r, h0=h0_r)
        _close("h", got, want[..., sl])
        got_grads = torch.autograd.grad(got, [t for t in (a_r, b_r, h0_r) if t is not None], dh[..., sl])
        _close("grad a", got_grads[0], want_grads[0][..., sl])
        _close("grad b", got_grads[1], want_grads[1][..., sl])
        if with_h0:
            _close("grad h0 (summed over ranks)", _summed(got_grads[2]), want_grads[2])


linear_problem = st.tuples(st.sampled_from([(2,), (1, 3)]), st.integers(1, 40), st.booleans(), seeds())


@EXAMPLES
@given(world=st.sampled_from([2, 4]), problems=st.lists(linear_problem, min_size=3, max_size=3))
def test_cp_linear_scan_equals_one_device(tmp_path_factory, world, problems):
    _spawn(_linear_scan_problems, world, tmp_path_factory.mktemp("cp"), problems)


# ---- SSD ----

def _ssd_problems(rank, world, device, problems):
    for Lr, H, G, P, N, options, with_h0, seed in problems:
        g = torch.Generator().manual_seed(seed)
        L = Lr * world
        r = lambda *s, scale=1.0: (torch.randn(*s, generator=g) * scale).to(device)  # noqa: E731
        full = {"x": r(1, L, H, P), "dt": r(1, L, H, scale=0.5) - 1.0, "B": r(1, L, G, N), "C": r(1, L, G, N)}
        shared = {"A": -torch.rand(H, generator=g).to(device) - 0.2}
        kw = {"dt_softplus": True}
        if options:
            full["z"] = r(1, L, H, P)
            shared.update(D=r(H), dt_bias=r(H, scale=0.3))
            kw["dt_limit"] = (0.05, 0.25)  # binds often: softplus(dt + bias) is about 0.3
        if with_h0:
            shared["initial_states"] = r(1, H, P, N)
        for t in (*full.values(), *shared.values()):
            t.requires_grad_()
        dout, dfinal = r(1, L, H, P), r(1, H, P, N)
        out, final = ssm_triton.mamba_chunk_scan_combined(**full, **shared, chunk_size=16, return_final_states=True,
                                                          **kw)
        leaves = list(full.values()) + list(shared.values())
        want = torch.autograd.grad((out * dout).sum() + (final * dfinal).sum(), leaves)
        sl = slice(rank * Lr, (rank + 1) * Lr)
        mine = {k: v.detach()[:, sl].clone().requires_grad_() for k, v in full.items()}
        mine_shared = {k: v.detach().clone().requires_grad_() for k, v in shared.items()}
        got_out, got_final = ssm_triton.distributed.cp_mamba_chunk_scan_combined(
            **mine, **mine_shared, chunk_size=16, return_final_states=True, **kw)
        _close("out", got_out, out[:, sl])
        _close("final states", got_final, final)
        # the final states enter the loss once: on the last rank
        loss = (got_out * dout[:, sl]).sum() + ((got_final * dfinal).sum() if rank == world - 1 else 0.0)
        got = torch.autograd.grad(loss, list(mine.values()) + list(mine_shared.values()))
        for (name, w), gr in zip(list(full.items()) + list(shared.items()), got):
            if name in full:
                _close(f"grad {name}", gr, want[list(full).index(name)][:, sl], 1e-3)
            else:
                _close(f"grad {name} (summed over ranks)", _summed(gr), want[len(full) + list(shared).index(name)], 1e-3)


ssd_problem = st.tuples(st.integers(1, 24), st.sampled_from([2, 4]), st.sampled_from([1, 2]), st.integers(1, 6),
                        st.integers(1, 6), st.booleans(), st.booleans(), seeds())


@EXAMPLES
@given(world=st.sampled_from([2, 4]), problems=st.lists(ssd_problem, min_size=3, max_size=3))
def test_cp_ssd_equals_one_device(tmp_path_factory, world, problems):
    _spawn(_ssd_problems, world, tmp_path_factory.mktemp("cp"), problems)


# ---- bad use ----

def _bad_use(rank, world, device):
    x = torch.randn(1, 5 + rank, 2, 4, device=device)       # rank 1 holds a longer slice
    dt, B = torch.randn(1, 5 + rank, 2, device=device), torch.randn(1, 5 + rank, 1, 4, device=device)
    with pytest.raises(ValueError, match="equal, contiguous slice") as e:
        ssm_triton.distributed.cp_mamba_chunk_scan_combined(x, dt, -torch.ones(2, device=device), B, B, 16)
    assert "rank 0 has" in str(e.value) or "rank 1 has" in str(e.value)
    a = torch.rand(3, 4, device=device, requires_grad=rank == 0)  # grad flags differ
    with pytest.raises(ValueError, match="requires_grad"):
        ssm_triton.distributed.cp_linear_scan(a, torch.rand(3, 4, device=device))


def test_bad_use_raises_the_same_error_on_every_rank(tmp_path):
    _spawn(_bad_use, 2, tmp_path)


def test_without_a_process_group_the_error_says_so():
    with pytest.raises(RuntimeError, match="init_process_group"):
        ssm_triton.distributed.cp_linear_scan(torch.rand(2, 3), torch.rand(2, 3))
