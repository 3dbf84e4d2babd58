"""Every config of every autotune space gives the reference result, so whichever the tuner picks is
right. (The property tests run with tuning pinned to the default config; see kernels/tuning.py.)"""
import pytest
import torch

import ssm_triton
from ssm_triton.kernels import tuning

from ssm_triton.kernels import discretize as kd
from ssm_triton.kernels import scan as ks
from ssm_triton.kernels.tuning import H100
from ssm_triton.reference import discretize_np, linear_scan_np
from ssm_triton.tolerance import assert_close
from strategies import normal, uniform


def _np(x):
    return x.detach().to("cpu", torch.float64).numpy()


def _ids(kw):
    return "-".join(f"{k}{v}" for k, v in kw.items())


_SCAN_SPACE = ks.scan_bwd.space((1, 1, None, None, False, False), H100)
# the backward's aligned form on the tiles with the most rows a program and the fewest warps
_SCAN_ALIGNED = [dict(c, ALIGNED=True) for c in _SCAN_SPACE
                 if (c["BLOCK_R"], c["BLOCK_L"], c["num_warps"]) in ((16, 128, 4), (8, 256, 4), (1, 1024, 2))]
# and the backward reading its tiles backwards through tl.gather, on a tile within a warp and one across two
_SCAN_REV = [dict(c, REV_GATHER=True) for c in _SCAN_SPACE
             if (c["BLOCK_R"], c["BLOCK_L"], c["num_warps"]) in ((16, 128, 4), (1, 1024, 2))]


@pytest.mark.parametrize("config", [*_SCAN_SPACE, *_SCAN_ALIGNED, *_SCAN_REV], ids=_ids)
@pytest.mark.parametrize("reverse", [False, True])
def test_every_scan_config(device, config, reverse):
    # a partial last row block and a partial second tile (the carry crosses a tile); kept small, as the
    # 4096-step tiles ran 80 s a case through the interpreter with 7 rows and three tiles
    R, L = config["BLOCK_R"] + 1, config["BLOCK_L"] + 5
    a = uniform((R, L), 0.5, 1.0, 0, device, torch.float32)
    b = normal((R, L), 1, device, torch.float32)
    h0 = normal((R,), 2, device, torch.float32)
    fwd = {k: v for k, v in config.items() if k not in ("ALIGNED", "REV_GATHER")}   # the backward's forms
    h = ks.scan_forward(a, b, h0, reverse, config=fwd)
    assert_close(h, linear_scan_np(_np(a), _np(b), _np(h0), reverse), torch.float32, "h")

    g = normal((R, L), 3, device, torch.float32)
    da, db, dh0 = ks.scan_backward(g, a, h, h0, reverse, config=config)
    leaves = [t.double().cpu().requires_grad_() for t in (a, b, h0)]
    from ssm_triton.reference import linear_scan_torch
    want = torch.autograd.grad(linear_scan_torch(*leaves, reverse), leaves, g.double().cpu())
    for name, got, w in zip(("da", "db", "dh0"), (da, db, dh0), want):
        assert_close(got, w, torch.float32, name)


@pytest.mark.parametrize("config", kd.discretize_fwd.space((1, 1, 1, 16, "", "", "", "zoh"), H100), ids=_ids)
def test_every_discretize_config(device, config):
    bsz, D, L, N = 2, 3, 2 * config["BLOCK_L"] + 3, 13
    dt = uniform((bsz, D, L), 0.001, 1.0, 0, device, torch.float32)
    A = uniform((D, N), -8.0, 0.0, 1, device, torch.float32)
    B = normal((bsz, N, L), 2, device, torch.float32)
    for method in kd.METHODS:
        abar, bbar = kd.discretize_forward(dt, A, B, method, torch.float32, config=config)
        ref_a, ref_b = discretize_np(_np(dt), _np(A), _np(B), method)
        assert_close(abar, ref_a, torch.float32, f"Abar {method}")
        assert_close(bbar, ref_b, torch.float32, f"Bbar {method}")


# ---- per-problem spaces (kernels/tuning.TunableKernel, TunablePlan): every GPU candidate, pinned ----

def _pinned(name, config):
    tuning.pin(name, **config)


def _grads_match(run_ours, run_ref, leaves, what):
    """Outputs and every gradient of ``run_ours(leaves)`` against ``run_ref`` on float64 copies."""
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ours_leaves = [t.detach().requires_grad_() for t in leaves]
    out, want = run_ours(*ours_leaves), run_ref(*ref_leaves)
    assert_close(out, want, torch.float32, f"{what} out")
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, ours_leaves, g)
    ref = torch.autograd.grad(want, ref_leaves, g.double())
    for i, (a, b) in enumerate(zip(got, ref)):
        assert_close(a, b, torch.float32, f"{what} grad {i}")


def test_every_selective_scan_config(device, monkeypatch):
    from ssm_triton.kernels import selective_scan as kss
    from ssm_triton.reference import selective_scan_ref
    # eight channels: every channel block of the GPU spaces; their 128-step checkpoints, chunks of 128 to 512
    bsz, dim, L, N = 1, 8, 160, 3
    u, delta, z = normal((bsz, dim, L), 0, device, torch.float32), normal((bsz, dim, L), 1, device, torch.float32) * 0.3, normal((bsz, dim, L), 2, device, torch.float32)
    A = -uniform((dim, N), 0.1, 2.0, 3, device, torch.float32)
    B, C = normal((bsz, N, L), 4, device, torch.float32), normal((bsz, N, L), 5, device, torch.float32)
    ckpt_l = kss.plan_block_l(L, H100)
    problem = kss.ScanProblem(bsz, dim, L, N, 1, dim, ckpt_l, False, False, False, torch.float32)
    fwd = kss.selective_scan_fwd.space(problem, H100)
    monkeypatch.setattr(kss, "GATHER_FREE_TUNED", True)   # every candidate, the gather-free ones too
    monkeypatch.setattr(kss, "REV_GATHER_TUNED", True)    # and those reading the adjoint's chunk backwards
    monkeypatch.setattr(kss.selective_scan_bwd, "_spaces", {})
    bwd = kss.selective_scan_bwd.space(problem, H100)
    assert any(c.get("NO_GATHER") for c in bwd) and any(c.get("BLOCK_D") == 8 for c in bwd)
    assert any(c.get("REV_GATHER") for c in bwd)
    assert len(fwd) > 1 and len(bwd) > 1
    run = lambda *t: ssm_triton.selective_scan_fn(*t, z=z, delta_softplus=True)  # noqa: E731
    ref = lambda *t: selective_scan_ref(*t, z=z.double(), delta_softplus=True)  # noqa: E731
    # the GPU checkpoint interval, so that the forward's GPU chunks are multiples of it
    monkeypatch.setattr(kss, "plan_block_l", lambda L, mode=None: ckpt_l)
    for name, space in (("selective_scan_fwd", fwd), ("selective_scan_bwd", bwd)):
        for config in space:
            _pinned(name, config)
            try:
                _grads_match(run, ref, [u, delta, A, B, C], f"{name} {config}")
            finally:
                tuning.unpin(name)


def test_every_decode_conv_norm_config(device):
    from ssm_triton.kernels import conv1d as kc, norm as kn, state_update as kst
    from ssm_triton.reference import causal_conv1d_torch, causal_conv1d_update_torch, rmsnorm_torch
    from ssm_triton.reference import selective_state_update_np
    # decode step: state (b, H, P, N) updated in place
    bsz, H, P, N = 1, 2, 40, 16
    state0 = normal((bsz, H, P, N), 0, device, torch.float32)
    x, dt = normal((bsz, H, P), 1, device, torch.float32), uniform((bsz, H, P), 0.01, 1.0, 2, device, torch.float32)
    A = -uniform((H, P, N), 0.1, 2.0, 3, device, torch.float32)
    Bm, Cm = normal((bsz, 1, N), 4, device, torch.float32), normal((bsz, 1, N), 5, device, torch.float32)
    want_out, want_state = selective_state_update_np(*(_np(t) for t in (state0, x, dt, A, Bm, Cm)))
    for config in kst.state_update_kernel.space((bsz * H, P, N, None, None, False, False, False, False, bsz, H), H100):
        _pinned("state_update", config)
        try:
            state = state0.clone()
            out = ssm_triton.selective_state_update(state, x, dt, A, Bm, Cm)
            assert_close(out, want_out, torch.float32, f"state_update {config} out")
            assert_close(state, want_state, torch.float32, f"state_update {config} state")
        finally:
            tuning.unpin("state_update")
    # conv1d, forward and backward, and the rolling update
    dim, L, W = 20, 40, 4
    xc, w, b = normal((2, dim, L), 6, device, torch.float32), normal((dim, W), 7, device, torch.float32), normal((dim,), 8, device, torch.float32)
    conv = lambda xx, ww, bb: ssm_triton.causal_conv1d_fn(xx, ww, bb, activation="silu")  # noqa: E731
    conv_ref = lambda xx, ww, bb: causal_conv1d_torch(xx, ww, bb, activation="silu")  # noqa: E731
    conv_problem = (2, dim, L, W, torch.float32)
    for kernel in (kc.conv1d_fwd, kc.conv1d_bwd_pre, kc.conv1d_bwd_dx):
        for config in kernel.space(conv_problem, H100):
            _pinned(kernel.name, config)
            try:
                _grads_match(conv, conv_ref, [xc, w, b], f"{kernel.name} {config}")
            finally:
                tuning.unpin(kernel.name)
    cs0, xs = normal((2, dim, W - 1), 9, device, torch.float32), normal((2, dim, 1), 10, device, torch.float32)
    want, want_state = causal_conv1d_update_torch(xs.double(), cs0.double(), w.double(), b.double(), activation="silu")
    for config in kc.conv1d_update.space((2, dim, 1, W - 1, torch.float32, torch.float32), H100):
        _pinned("conv1d_update", config)
        try:
            cs = cs0.clone()
            assert_close(ssm_triton.causal_conv1d_update(xs, cs, w, b, activation="silu"), want, torch.float32,
                         f"conv1d_update {config}")
            assert_close(cs, want_state, torch.float32, f"conv1d_update {config} state")
        finally:
            tuning.unpin("conv1d_update")
    # gated RMSNorm, forward and backward
    R, D = 37, 96
    xn, zn, wn = normal((R, D), 11, device, torch.float32), normal((R, D), 12, device, torch.float32), normal((D,), 13, device, torch.float32)
    norm = lambda xx, zz, ww: ssm_triton.rmsnorm_fn(xx, ww, z=zz, group_size=48)  # noqa: E731
    norm_ref = lambda xx, zz, ww: rmsnorm_torch(xx, ww, z=zz, group_size=48)  # noqa: E731
    for kernel in (kn.rmsnorm_fwd, kn.rmsnorm_bwd):
        space = kernel.space((R, D, 48, torch.float32, True), H100)
        assert len(space) > 1
        for config in space:
            _pinned(kernel.name, config)
            try:
                _grads_match(norm, norm_ref, [xn, zn, wn], f"{kernel.name} {config}")
            finally:
                tuning.unpin(kernel.name)


def test_every_ssd_plan(device):
    from ssm_triton.kernels.ssd import launch as kl
    from ssm_triton.reference import ssd_quadratic_torch
    bsz, L, H, P, G, N, Q = 1, 80, 2, 16, 1, 16, 64
    x, dt = normal((bsz, L, H, P), 0, device, torch.float32), uniform((bsz, L, H), 0.01, 0.5, 1, device, torch.float32)
    A = -uniform((H,), 0.5, 2.0, 2, device, torch.float32)
    B, C = normal((bsz, L, G, N), 3, device, torch.float32), normal((bsz, L, G, N), 4, device, torch.float32)
    run = lambda *t: ssm_triton.mamba_chunk_scan_combined(*t, chunk_size=Q)  # noqa: E731

    def ref(*t):
        out = ssd_quadratic_torch(*t)
        return out[0] if isinstance(out, tuple) else out
    problem = kl.SSDProblem(bsz, L, H, P, G, N, Q, torch.float32, False, False)
    for choice in (kl.ssd_fwd_plan, kl.ssd_bwd_plan):
        options = choice.space(problem, H100)
        assert len(options) > 1
        for option in options:
            tuning.pin(choice.name, **option)
            try:
                _grads_match(run, ref, [x, dt, A, B, C], f"{choice.name} {option}")
            finally:
                tuning.unpin(choice.name)


@pytest.mark.parametrize("text", ["8,64,4,2", "64,48,4,2", "64,64,4", "64,64,4,0", "64,x,4,2"])
def test_tile_knobs_refuse_bad_values(monkeypatch, text):
    """A tile knob's value that a GPU's ``tl.dot`` cannot take (a side under 16 or not a power of two), the wrong
    count or a non-int is refused, naming the variable; a good one is read as given."""
    from ssm_triton.kernels.ssd import launch as kl
    monkeypatch.setenv("SSM_TRITON_SCAN_TILES", text)
    with pytest.raises(ValueError, match="SSM_TRITON_SCAN_TILES"):
        kl.tiles_env("SSM_TRITON_SCAN_TILES", 4, 2)
    monkeypatch.setenv("SSM_TRITON_SCAN_TILES", "64,32,4,1")
    assert kl.tiles_env("SSM_TRITON_SCAN_TILES", 4, 2) == (64, 32, 4, 1)


def test_few_rows_plan_takes_the_split_chunk_scan():
    """The GPU rule's plans: few (row, head) pairs take the chunk scan at 32-step slices in one stage with the split
    decay, launched longest first, and 32-channel chunk states (its other stages keep 64-step tiles in two); many
    pairs and Mamba-3's plan keep the scan and states as the plan's."""
    from ssm_triton.kernels.mamba3 import core
    from ssm_triton.kernels.ssd import launch as kl
    small = torch.empty(1, 2048, 24, 64, device="meta", dtype=torch.bfloat16)
    p = kl.make_plan(small, 128, 256, mode=H100)
    assert (p.scan_block_k, p.scan_stages, p.scan_split, p.scan_longest_first, p.state_outer_p, p.block_k,
            p.stages) == (32, 1, True, True, 32, 64, 2)
    big = torch.empty(8, 4096, 64, 64, device="meta", dtype=torch.bfloat16)
    q = kl.make_plan(big, 128, 256, mode=H100)
    assert (q.scan_block_k, q.scan_stages, q.scan_split, q.scan_longest_first, q.state_outer_p) == (None, None, False,
                                                                                                   False, None)
    m = core.ssd_plan(small, 128, 256, mode=H100)
    assert not m.scan_split and not m.scan_longest_first and m.scan_block_k is None and m.state_outer_p is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the interpreter tunes nothing: autotuning runs on a GPU")
def test_tuned_launches_equal_the_rule(device, monkeypatch, tmp_path):
    """With autotuning on, the tuner's timed runs leave no trace: an in-place decode step or conv update
    is applied once (the state is restored between timed runs), the selective scan's atomically
    accumulated dB / dC are re-zeroed, and the result equals the size rule's launch."""
    monkeypatch.setenv("SSM_TRITON_TUNE_CACHE", str(tmp_path))
    monkeypatch.setenv("SSM_TRITON_AUTOTUNE", "1")
    # decode step and conv update, in place
    bsz, H, P, N = 4, 8, 64, 128
    state0 = normal((bsz, H, P, N), 0, device, torch.float32)
    x, dt = normal((bsz, H, P), 1, device, torch.float32), uniform((bsz, H, P), 0.01, 1.0, 2, device, torch.float32)
    A = -uniform((H, P, N), 0.1, 2.0, 3, device, torch.float32)
    Bm, Cm = normal((bsz, 1, N), 4, device, torch.float32), normal((bsz, 1, N), 5, device, torch.float32)
    xc, w = normal((4, 512, 1), 6, device, torch.float32), normal((512, 4), 7, device, torch.float32)
    cs0 = normal((4, 512, 3), 8, device, torch.float32)

    def in_place():
        state, cs = state0.clone(), cs0.clone()
        out = ssm_triton.selective_state_update(state, x, dt, A, Bm, Cm)
        return out, state, ssm_triton.causal_conv1d_update(xc, cs, w, activation="silu"), cs

    # the selective scan's backward (atomics into dB / dC) and the SSD plans
    b, d, L, Ns = 2, 256, 1000, 16
    u, delta = normal((b, d, L), 9, device, torch.float32), normal((b, d, L), 10, device, torch.float32) * 0.3
    As = -uniform((d, Ns), 0.1, 2.0, 11, device, torch.float32)
    Bs, Cs = normal((b, Ns, L), 12, device, torch.float32), normal((b, Ns, L), 13, device, torch.float32)

    def scan_grads():
        leaves = [t.detach().requires_grad_() for t in (u, delta, As, Bs, Cs)]
        out = ssm_triton.selective_scan_fn(*leaves, delta_softplus=True)
        return [out, *torch.autograd.grad(out.square().sum(), leaves)]

    monkeypatch.setattr(tuning, "autotuning", lambda: False)
    tuning.forget()
    want = [*in_place(), *scan_grads()]
    monkeypatch.setattr(tuning, "autotuning", lambda: True)
    tuning.forget()
    got = [*in_place(), *scan_grads()]   # tunes every kernel on the way
    assert {"state_update", "conv1d_update", "selective_scan_fwd", "selective_scan_bwd"} <= set(tuning.tunable_names())
    assert any(k.startswith("selective_scan_bwd|") for k in tuning._chosen)
    tuning.forget()
    for i, (g, w_) in enumerate(zip(got, want)):
        assert_close(g, w_.double(), torch.float32, f"result {i}")
    assert list(tmp_path.glob("tuned-*.json")), "the choices were written to the cache"


def test_tuning_cache_round_trips_and_ignores_stale_choices(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "_cache_path", lambda: tmp_path / "tuned.json")
    monkeypatch.setattr(tuning, "_disk", None)
    choice = {"BLOCK_D": 2, "EVEN": True, "num_warps": 1, "num_stages": 1}
    tuning._save_disk("selective_scan_fwd|(1,)", choice)
    monkeypatch.setattr(tuning, "_disk", None)  # a new process reads the file
    assert tuning._from_disk("selective_scan_fwd|(1,)", [{"BLOCK_D": 1}, dict(choice)]) == choice
    # a space that no longer holds the cached choice ignores it
    assert tuning._from_disk("selective_scan_fwd|(1,)", [{"BLOCK_D": 1, "EVEN": True, "num_warps": 1, "num_stages": 1}]) is None
    assert tuning._from_disk("selective_scan_fwd|(2,)", [choice]) is None


def test_a_choice_is_tuned_again_when_its_candidates_change(tmp_path, monkeypatch):
    """A switch that adds candidates must not be answered from a cache written without them (the disk cache
    kept a choice as long as it was still allowed)."""
    monkeypatch.setattr(tuning, "_cache_path", lambda: tmp_path / "tuned.json")
    monkeypatch.setattr(tuning, "_disk", None)
    monkeypatch.setattr(tuning, "autotuning", lambda: True)
    monkeypatch.setattr(tuning, "run_mode", lambda device=None: tuning.H100)
    monkeypatch.setattr(tuning.triton.testing, "do_bench", lambda fn, **kw: (fn(), 1.0)[1])   # no GPU to time on
    extra = []
    name = "test_space_fingerprint"
    plan = tuning.TunablePlan(name, rule=lambda p, m: dict(a=1), key=lambda p: (p,),
                              alternatives=lambda p, m: [dict(a=2), *extra])
    try:
        ran = []

        def run(option):
            ran.append(option["a"])
            return option

        assert plan.pick(7, run) in ({"a": 1}, {"a": 2})
        assert set(ran) == {1, 2}
        first = plan.entry(7)
        tuning.forget()
        monkeypatch.setattr(tuning, "_disk", None)   # a new process reads the file
        ran.clear()
        plan.pick(7, run)
        assert ran == [], "the same candidates: the cached choice is taken"
        extra.append(dict(a=3))
        tuning.forget()
        monkeypatch.setattr(tuning, "_disk", None)
        assert plan.entry(7) != first
        plan.pick(7, run)
        assert set(ran) == {1, 2, 3}, "a new candidate: tuned again, the new one timed"
    finally:
        tuning._REGISTRY.pop(name, None)


def test_pin_refuses_an_unknown_kernel_name():
    with pytest.raises(ValueError, match="pin: name must be one of .*selective_scan_fwd.*got 'selective_scan'"):
        tuning.pin("selective_scan", BLOCK_D=2)
