"""Every config of every autotune space gives the reference result, so whichever the tuner picks is
right. (The property tests run with tuning pinned to the default config; see kernels/tuning.py.)"""
import pytest
import torch

from ssm_triton.kernels import discretize as kd
from ssm_triton.kernels import scan as ks
from ssm_triton.kernels.tuning import discretize_configs, scan_configs
from ssm_triton.reference import discretize_np, linear_scan_np
from ssm_triton.tolerance import assert_close
from strategies import normal, uniform


def _np(x):
    return x.detach().to("cpu", torch.float64).numpy()


@pytest.mark.parametrize("config", scan_configs(everything=True), ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_every_scan_config(device, config, reverse):
    R, L = 7, 3 * config.kwargs["BLOCK_L"] + 5  # rows over, a partial last tile
    a = uniform((R, L), 0.5, 1.0, 0, device, torch.float32)
    b = normal((R, L), 1, device, torch.float32)
    h0 = normal((R,), 2, device, torch.float32)
    h = ks.scan_forward(a, b, h0, reverse, config=config)
    assert_close(h, linear_scan_np(_np(a), _np(b), _np(h0), reverse), torch.float32, "h")

    g = normal((R, L), 3, device, torch.float32)
    da, db, dh0 = ks.scan_backward(g, a, h, h0, reverse, config=config)
    leaves = [t.double().cpu().requires_grad_() for t in (a, b, h0)]
    from ssm_triton.reference import linear_scan_torch
    want = torch.autograd.grad(linear_scan_torch(*leaves, reverse), leaves, g.double().cpu())
    for name, got, w in zip(("da", "db", "dh0"), (da, db, dh0), want):
        assert_close(got, w, torch.float32, name)


@pytest.mark.parametrize("config", discretize_configs(everything=True), ids=str)
def test_every_discretize_config(device, config):
    bsz, D, L, N = 2, 3, 2 * config.kwargs["BLOCK_L"] + 3, 13
    dt = uniform((bsz, D, L), 0.001, 1.0, 0, device, torch.float32)
    A = uniform((D, N), -8.0, 0.0, 1, device, torch.float32)
    B = normal((bsz, N, L), 2, device, torch.float32)
    for method in kd.METHODS:
        abar, bbar = kd.discretize_forward(dt, A, B, method, torch.float32, config=config)
        ref_a, ref_b = discretize_np(_np(dt), _np(A), _np(B), method)
        assert_close(abar, ref_a, torch.float32, f"Abar {method}")
        assert_close(bbar, ref_b, torch.float32, f"Bbar {method}")
