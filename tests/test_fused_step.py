"""The fused decode steps (ops/fused_step.py, kernels/fused_step.py) of Mamba-2 and Mamba-1 against float64
steps composed of the references, over the blocks' options, groups, dtypes and batch sizes; the LM's
decoding with them against the composed steps; every launch config; which calls they serve."""
import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.kernels import fused_step as km
from ssm_triton.kernels import in_update
from ssm_triton.kernels import tuning
from ssm_triton.kernels.arrivals import counters
from ssm_triton.kernels.tuning import H100
from ssm_triton.models import MambaConfig, MambaLMHeadModel
from ssm_triton.modules import InferenceParams, Mamba, Mamba2
from ssm_triton.ops import fused_step as fused
from ssm_triton.reference import causal_conv1d_update_torch, rmsnorm_torch, selective_state_update_np
from ssm_triton.tolerance import assert_close
from strategies import examples, seeds


def _f64(t):
    return None if t is None else t.detach().to("cpu", torch.float64)


def _block_input(h, residual, norm):
    u = _f64(h[:, 0])
    res = None
    if norm is not None:
        res = u + _f64(residual[:, 0]) if residual is not None else u
        u = rmsnorm_torch(res, _f64(norm.weight), eps=norm.eps)
    return u, res


def reference_mamba_step(m, h, conv_state, ssm_state, residual=None, norm=None):
    """Mamba-1's step in float64, as :func:`reference_step`."""
    u, res = _block_input(h, residual, norm)
    x, z = F.linear(u, _f64(m.in_proj.weight), _f64(m.in_proj.bias)).chunk(2, dim=-1)
    x, conv_new = causal_conv1d_update_torch(x, _f64(conv_state), _f64(m.conv1d.weight.squeeze(1)),
                                             _f64(m.conv1d.bias), "silu")
    dt, B, C = torch.split(F.linear(x, _f64(m.x_proj.weight)), [m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = F.linear(dt, _f64(m.dt_proj.weight))
    y, ssm_new = selective_state_update_np(
        _f64(ssm_state).numpy(), x.numpy(), dt.numpy(), (-torch.exp(_f64(m.A_log))).numpy(), B.numpy(), C.numpy(),
        _f64(m.D).numpy(), z.numpy(), _f64(m.dt_proj.bias).numpy(), True)
    out = F.linear(torch.from_numpy(y), _f64(m.out_proj.weight), _f64(m.out_proj.bias))
    return out[:, None], conv_new, torch.from_numpy(ssm_new), None if res is None else res[:, None]


def reference_step(m, h, conv_state, ssm_state, residual=None, norm=None, residual_in_fp32=False):
    """One token through the Mamba-2 block in float64, from the references: ``(out, conv_state', ssm_state',
    residual')`` (the states returned, not updated)."""
    u, res = _block_input(h, residual, norm)
    zx = F.linear(u, _f64(m.in_proj.weight), _f64(m.in_proj.bias))
    H, P, N, G, d = m.nheads, m.headdim, m.d_state, m.ngroups, m.d_ssm
    z, xBC, dt = torch.split(zx, [d, m.conv_dim, H], dim=-1)
    xBC, conv_new = causal_conv1d_update_torch(xBC, _f64(conv_state), _f64(m.conv1d.weight.squeeze(1)),
                                               _f64(m.conv1d.bias), "silu")
    x, B, C = torch.split(xBC, [d, G * N, G * N], dim=-1)
    A = -torch.exp(_f64(m.A_log))
    D = _f64(m.D).view(H, P) if m.D_has_hdim else _f64(m.D)[:, None].expand(H, P)
    y, ssm_new = selective_state_update_np(
        _f64(ssm_state).numpy(), x.reshape(-1, H, P).numpy(), dt[..., None].expand(-1, H, P).numpy(),
        A[:, None, None].expand(H, P, N).numpy(), B.reshape(-1, G, N).numpy(), C.reshape(-1, G, N).numpy(),
        D.numpy(), None if m.rmsnorm else z.reshape(-1, H, P).numpy(),
        _f64(m.dt_bias)[:, None].expand(H, P).numpy(), True)
    y = torch.from_numpy(y).reshape(-1, d)
    if m.rmsnorm:
        y = rmsnorm_torch(y, _f64(m.norm.weight), z=z, eps=m.norm.eps, group_size=d // G,
                          norm_before_gate=m.norm_before_gate)
    out = F.linear(y, _f64(m.out_proj.weight), _f64(m.out_proj.bias))
    return out[:, None], conv_new, torch.from_numpy(ssm_new), None if res is None else res[:, None]


def block(device, dtype, seed, d_model, headdim, d_state, ngroups, rmsnorm, norm_before_gate, D_has_hdim, bias):
    torch.manual_seed(seed)
    m = Mamba2(d_model, d_state=d_state, headdim=headdim, ngroups=ngroups, rmsnorm=rmsnorm,
               norm_before_gate=norm_before_gate, D_has_hdim=D_has_hdim, bias=bias, layer_idx=0, device=device,
               dtype=dtype)
    with torch.no_grad():   # away from the initialisation's ones and zeros, so every term counts
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


options = st.fixed_dictionaries({
    "dtype": st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    "d_model": st.sampled_from([16, 24, 40]), "headdim": st.sampled_from([4, 8, 12]),
    "d_state": st.sampled_from([8, 16, 20]), "ngroups": st.sampled_from([1, 2]),
    "rmsnorm": st.booleans(), "norm_before_gate": st.booleans(), "D_has_hdim": st.booleans(),
    "bias": st.booleans()})


def _states(m, bsz, seed, device):
    g = torch.Generator(device=device).manual_seed(seed)
    conv_state, ssm_state = m.allocate_inference_cache(bsz, 4)
    conv_state.copy_(torch.randn(conv_state.shape, generator=g, device=device))
    ssm_state.copy_(torch.randn(ssm_state.shape, generator=g, device=device))
    return conv_state, ssm_state


@given(opts=options, bsz=st.integers(1, 3), norm=st.sampled_from(["none", "first", "residual"]),
       residual_in_fp32=st.booleans(), seed=seeds())
@examples(6, 60)
def test_fused_step_matches_the_float64_step(device, opts, bsz, norm, residual_in_fp32, seed):
    _check_mamba2_step(device, opts, bsz, norm, residual_in_fp32, seed)


@given(opts=options, bsz=st.integers(1, 4), norm=st.sampled_from(["none", "first", "residual"]),
       residual_in_fp32=st.booleans(), mode=st.sampled_from([1, 2]), seed=seeds())
@examples(6, 60)
def test_fused_step_with_the_update_in_the_input_launch(device, opts, bsz, norm, residual_in_fp32, mode, seed):
    """``fused.IN_UPDATE``: the programs of x's columns update their channels' state rows once B, C and dt are
    stored (kernels/in_update.py; mode 1: two launches a step; 2: one, the out step's programs waiting on every
    y); the same float64 step, counters left at zero."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "IN_UPDATE", mode)
        ssm_state = _check_mamba2_step(device, opts, bsz, norm, residual_in_fp32, seed)
    assert (counters(ssm_state, in_update.COUNTERS) == 0).all()


@given(opts=options, bsz=st.integers(5, 7), seed=seeds())
@examples(6, 40)
def test_composed_step_with_the_conv_windows_in_the_projection(device, opts, bsz, seed):
    """``fused.CONV_IN_PROJ``: past the fused step's rows, the block's composed step takes in_proj and the conv
    windows from one launch (``conv_in_projection``); two tokens against the float64 step, the route taken."""
    m, conv_state, ssm_state, g = _drawn_block(device, opts, bsz, seed)
    dtype = opts["dtype"]
    taken = []
    real = fused.conv_in_projection
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "CONV_IN_PROJ", True)
        mp.setattr(fused, "MAX_EAGER_BATCH", 4)   # as a captured step past the fused step's rows: the composed step
        mp.setattr(fused, "conv_in_projection", lambda *a: taken.append(real(*a)) or taken[-1])
        for token in range(2):
            h = torch.randn((bsz, 1, m.d_model), generator=g, device=device).to(dtype)
            want = reference_step(m, h, conv_state, ssm_state)
            with torch.no_grad():
                out, _, _ = m.step(h, conv_state, ssm_state)
            assert_close(out, want[0], dtype, f"out {token}")
            assert_close(conv_state, want[1], dtype, f"conv_state {token}")
            assert_close(ssm_state, want[2], dtype, f"ssm_state {token}")
    assert len(taken) == 2 and all(t is not None for t in taken)


@pytest.mark.parametrize("mode", [1, 2])
def test_steps_in_the_input_launch_chained(device, mode, monkeypatch):
    """A block stepped on its own, token after token with nothing read between (on a GPU each launch may start while
    the previous step's still runs: programmatic dependent launch), against the float64 steps in turn."""
    monkeypatch.setattr(fused, "IN_UPDATE", mode)
    m = block(device, torch.bfloat16, 5, 32, 8, 16, 2, True, False, False, False)
    conv_state, ssm_state = _states(m, 2, 6, device)
    g = torch.Generator(device=device).manual_seed(7)
    hs = [torch.randn((2, 1, 32), generator=g, device=device).to(torch.bfloat16) for _ in range(4)]
    conv_want, ssm_want = conv_state.clone(), ssm_state.clone()
    with torch.no_grad():
        outs = [fused.step(m, h, conv_state, ssm_state)[0] for h in hs]
    for t, h in enumerate(hs):
        out, conv_want, ssm_want, _ = reference_step(m, h, conv_want, ssm_want)
        assert_close(outs[t], out, torch.bfloat16, f"out {t}")
    assert_close(conv_state, conv_want, torch.bfloat16, "conv_state")
    assert_close(ssm_state, ssm_want, torch.bfloat16, "ssm_state")


def _drawn_block(device, opts, bsz, seed):
    """A Mamba-2 block of the drawn options (headdim 8 where the drawn one does not divide), states for ``bsz`` rows
    and a generator for the inputs: ``(block, conv_state, ssm_state, generator)``."""
    if (opts["d_model"] * 2) % opts["headdim"] or (opts["d_model"] * 2 // opts["headdim"]) % opts["ngroups"]:
        opts["headdim"] = 8
    m = block(device, seed=seed, **opts)
    conv_state, ssm_state = _states(m, bsz, seed + 1, device)
    return m, conv_state, ssm_state, torch.Generator(device=device).manual_seed(seed + 2)


def _check_mamba2_step(device, opts, bsz, norm, residual_in_fp32, seed):
    """Two tokens through a fresh Mamba-2 block's fused step against the float64 step; returns the state."""
    m, conv_state, ssm_state, g = _drawn_block(device, opts, bsz, seed)
    dtype = opts["dtype"]
    h = torch.randn((bsz, 1, m.d_model), generator=g, device=device).to(dtype)
    residual = torch.randn((bsz, 1, m.d_model), generator=g, device=device) if norm == "residual" else None
    pre = None
    if norm != "none":
        pre = torch.nn.Module()
        pre.weight = torch.nn.Parameter(1 + 0.3 * torch.randn(m.d_model, generator=g, device=device).to(dtype))
        pre.eps = 1e-5
        if residual is not None and not residual_in_fp32:
            residual = residual.to(dtype)
    for token in range(2):   # the first call builds the block's plan, the second runs it
        want = reference_step(m, h, conv_state, ssm_state, residual, pre, residual_in_fp32)
        with torch.no_grad():
            assert fused.serves(m, h, conv_state, ssm_state)
            out, res_out = fused.step(m, h, conv_state, ssm_state, residual, pre, residual_in_fp32)
        assert out.dtype == dtype and out.shape == (bsz, 1, m.d_model)
        assert_close(out, want[0], dtype, f"out {token}")
        assert_close(conv_state, want[1], dtype, f"conv_state {token}")
        assert_close(ssm_state, want[2], dtype, f"ssm_state {token}")
        if pre is None:
            assert res_out is None
        else:
            keep = torch.float32 if residual_in_fp32 else (residual.dtype if residual is not None else dtype)
            assert res_out.dtype == keep and res_out.shape == (bsz, 1, m.d_model)
            assert_close(res_out, want[3], keep, f"residual {token}")
        h = torch.randn((bsz, 1, m.d_model), generator=g, device=device).to(dtype)
    return ssm_state


@given(dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), d_model=st.sampled_from([16, 24]),
       d_state=st.sampled_from([4, 16, 10]), dt_rank=st.sampled_from(["auto", 3]), bias=st.booleans(),
       bsz=st.integers(1, 3), norm=st.sampled_from(["none", "first", "residual"]), seed=seeds())
@examples(4, 40)
def test_fused_mamba1_step_matches_the_float64_step(device, dtype, d_model, d_state, dt_rank, bias, bsz, norm, seed):
    _check_mamba1_step(device, dtype, d_model, d_state, dt_rank, bias, bsz, norm, seed)


@given(dtype=st.sampled_from([torch.float32, torch.bfloat16]), d_model=st.sampled_from([16, 24]),
       d_state=st.sampled_from([4, 10]), dt_rank=st.sampled_from([1, 3, 20]), bias=st.booleans(),
       bsz=st.integers(1, 3), norm=st.sampled_from(["none", "residual"]), dt_in_update=st.booleans(), seed=seeds())
@examples(4, 40)
def test_fused_mamba1_step_with_dt_proj_in_the_update(device, dtype, d_model, d_state, dt_rank, bias, bsz, norm,
                                                      dt_in_update, seed):
    """``fused.DT_IN_UPDATE`` (the default): dt_proj computed by the state update's programs from x_proj's low-rank
    rows (ranks past the kernel's 16-wide blocks included), four launches; or off, dt_proj its own launch (five);
    the same float64 step."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "DT_IN_UPDATE", dt_in_update)
        _check_mamba1_step(device, dtype, d_model, d_state, dt_rank, bias, bsz, norm, seed)


def _check_mamba1_step(device, dtype, d_model, d_state, dt_rank, bias, bsz, norm, seed):
    """Two tokens through a fresh Mamba-1 block's fused step against the float64 step."""
    torch.manual_seed(seed)
    m = Mamba(d_model, d_state=d_state, dt_rank=dt_rank, bias=bias, layer_idx=0, device=device, dtype=dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    conv_state, ssm_state = _states(m, bsz, seed + 1, device)
    g = torch.Generator(device=device).manual_seed(seed + 2)
    h = torch.randn((bsz, 1, d_model), generator=g, device=device).to(dtype)
    residual = torch.randn((bsz, 1, d_model), generator=g, device=device) if norm == "residual" else None
    pre = None
    if norm != "none":
        pre = torch.nn.Module()
        pre.weight = torch.nn.Parameter(1 + 0.3 * torch.randn(d_model, generator=g, device=device).to(dtype))
        pre.eps = 1e-5
    for token in range(2):   # the first call builds the block's plan, the second runs it
        want = reference_mamba_step(m, h, conv_state, ssm_state, residual, pre)
        with torch.no_grad():
            assert fused.serves(m, h, conv_state, ssm_state)
            out, res_out = fused.step(m, h, conv_state, ssm_state, residual, pre, True)
        assert out.dtype == dtype and out.shape == (bsz, 1, d_model)
        assert_close(out, want[0], dtype, f"out {token}")
        assert_close(conv_state, want[1], dtype, f"conv_state {token}")
        assert_close(ssm_state, want[2], dtype, f"ssm_state {token}")
        if pre is not None:
            assert_close(res_out, want[3], torch.float32, f"residual {token}")
        h = torch.randn((bsz, 1, d_model), generator=g, device=device).to(dtype)


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2", "Mamba2 in_update", "Mamba2 in_update 2"])
def test_lm_decoding_with_the_fused_step_equals_the_composed_step(device, layer, monkeypatch):
    """The LM's decode steps from the same states (as a prefill leaves them), every layer's step fused
    (pre-norm and residual included) or composed op by op: the same logits, token by token."""
    torch.manual_seed(0)
    monkeypatch.setattr(fused, "IN_UPDATE", 2 if layer.endswith("2") else int(layer.endswith("in_update")))
    layer = layer.split()[0]
    ssm_cfg = {"layer": layer, "d_state": 16}
    if layer == "Mamba2":
        ssm_cfg.update(headdim=8, ngroups=2, chunk_size=16)
    cfg = MambaConfig(d_model=32, n_layer=2, vocab_size=50, ssm_cfg=ssm_cfg)
    model = MambaLMHeadModel(cfg, device=device).eval()
    decode, logits = decoding(model, 2, device), {}
    for on in (True, False):
        monkeypatch.setattr(fused, "ENABLED", on)
        logits[on] = decode()
    assert_close(logits[True], logits[False].double(), torch.float32, "logits")


def decoding(model, bsz, device, tokens=3):
    """``decode() -> logits (bsz, tokens, vocab)``: the LM's decode steps from one set of random states (as a prefill
    of 5 tokens leaves them, each call on its own copy) over the same random tokens, so that calls under different
    switches can be compared."""
    steps = torch.randint(0, model.config.vocab_size, (bsz, tokens), device=device)
    cache = model.allocate_inference_cache(bsz, 8)
    for conv_state, ssm_state in cache.values():
        conv_state.normal_()
        ssm_state.normal_()

    def decode():
        params = InferenceParams(max_seqlen=8, max_batch_size=bsz, seqlen_offset=5)
        params.key_value_memory_dict = {i: (c.clone(), s.clone()) for i, (c, s) in cache.items()}
        seen = []
        with torch.inference_mode():
            for t in range(tokens):
                seen.append(model(steps[:, t:t + 1], inference_params=params).logits)
                params.seqlen_offset += 1
        return torch.cat(seen, 1)
    return decode


def test_serves_only_calls_it_computes(device):
    m = block(device, torch.float32, 0, 16, 8, 8, 1, True, False, False, False)
    conv_state, ssm_state = _states(m, 2, 1, device)
    h = torch.randn(2, 1, 16, device=device)
    with torch.no_grad():
        assert fused.serves(m, h, conv_state, ssm_state)
        assert not fused.serves(m, h.to(torch.bfloat16), conv_state, ssm_state)     # dtype unlike the weights
        assert not fused.serves(m, h[:1], conv_state, ssm_state)                    # states of another batch
        assert not fused.serves(m, torch.randn(2, 2, 16, device=device), conv_state, ssm_state)   # two tokens
        assert not fused.serves(m, h, conv_state[..., :3], ssm_state)               # a shorter conv window
    assert not fused.serves(m, h, conv_state, ssm_state)   # gradients would be recorded
    with torch.no_grad(), pytest.raises(ValueError, match="one token"):   # the composed step reports it
        m.step(torch.randn(2, 2, 16, device=device), conv_state, ssm_state)


def test_a_planned_step_follows_its_block(device):
    """The block's plan is rebuilt, or passed by, whenever what it was built from changes: a parameter's
    storage (``.data`` swapped, as ``module.to`` does), a parameter or submodule replaced, a tuning pin,
    non-contiguous states, another batch. Each step is held to the float64 step of the block as it is then."""
    m = block(device, torch.float32, 5, 16, 8, 8, 1, True, False, False, True)
    conv_state, ssm_state = _states(m, 2, 6, device)
    g = torch.Generator(device=device).manual_seed(7)

    def check(what, conv_state=conv_state, ssm_state=ssm_state, bsz=2):
        h = torch.randn((bsz, 1, 16), generator=g, device=device)
        want = reference_step(m, h, conv_state, ssm_state)
        with torch.no_grad():
            out, _ = fused.step(m, h, conv_state, ssm_state)
        assert_close(out, want[0], torch.float32, f"{what}: out")
        assert_close(conv_state, want[1], torch.float32, f"{what}: conv_state")
        assert_close(ssm_state, want[2], torch.float32, f"{what}: ssm_state")

    check("first")
    plan = fused.plans_of(m)[(2, True, False)]
    check("planned")
    assert fused.plans_of(m)[(2, True, False)] is plan
    twin = copy.deepcopy(m)   # a copy carries no plan, and steps as the original does
    assert fused.plans_of(twin) == {}
    c2, s2 = conv_state.clone(), ssm_state.clone()
    h = torch.randn((2, 1, 16), generator=g, device=device)
    with torch.no_grad():
        out_twin, _ = fused.step(twin, h, c2, s2)
        out, _ = fused.step(m, h, conv_state, ssm_state)
    assert torch.equal(out_twin, out) and torch.equal(c2, conv_state) and torch.equal(s2, ssm_state)
    with torch.no_grad():
        m.in_proj.weight.data = m.in_proj.weight.data * 1.5   # new storage
    check("in_proj's storage swapped")
    assert fused.plans_of(m)[(2, True, False)] is not plan
    m.D = torch.nn.Parameter(m.D.detach() - 1.0)
    check("D replaced")
    old = m.out_proj
    m.out_proj = torch.nn.Linear(old.in_features, old.out_features, bias=True, device=device)
    check("out_proj replaced")
    with torch.no_grad():
        m.norm.weight.mul_(2.0)   # in place: the plan reads the same storage
    check("the norm's weight updated in place")
    m.norm.eps = 0.25
    check("the gate's norm epsilon changed")
    tuning.pin("mamba2_out_step", BLOCK_O=16)
    try:
        check("pinned")
    finally:
        tuning.unpin("mamba2_out_step")
    wide = torch.zeros((2, m.conv_dim, 2 * m.d_conv), device=device)
    wide[..., ::2] = conv_state
    check("a conv state read through strides", conv_state=wide[..., ::2])
    c1, s1 = _states(m, 1, 8, device)
    check("another batch", c1, s1, bsz=1)
    rows = fused.MAX_BATCH["Mamba2"] + 2   # eager calls take the fused step past the captured steps' limit
    c6, s6 = _states(m, rows, 9, device)
    check("more rows than a captured step takes", c6, s6, bsz=rows)
    assert (rows, True, False) in fused.plans_of(m)
    with torch.no_grad():   # the captured steps' limit
        assert not fused.serves(m, torch.zeros(rows, 1, 16, device=device), c6, s6)


def _every(kernel, problem):
    return kernel.space(problem, H100)


@pytest.mark.parametrize("config", _every(km.in_step_kernel, (3, 120, 40, torch.float32, True, True, 4, False))
                         + _every(km.in_step_kernel, (8, 120, 40, torch.float32, True, True, 4, False)),
                         ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_every_in_step_config(device, config, dtype):
    """Every tuning candidate of both kernels on one block (rows, columns and the reduction cross tiles), in
    each dtype."""
    got, want = _pinned_step(device, dtype, False, {"mamba2_in_step": config, "mamba2_out_step": config})
    for name, g, w in zip(("out", "conv_state", "ssm_state", "residual"), got, want):
        assert_close(g, w, dtype, f"{config} {name}")


def _pinned_step(device, dtype, D_has_hdim, pins):
    """One step of a block of 2 groups (d_model 40, headdim 8, pre-norm and residual) with the kernels' choices
    pinned (``name -> launch keywords``): ``((out, conv_state, ssm_state, residual), the float64 step's)``."""
    m = block(device, dtype, 3, 40, 8, 8, 2, True, False, D_has_hdim, True)
    conv_state, ssm_state = _states(m, 3, 4, device)
    h = torch.randn(3, 1, 40, device=device, dtype=dtype)
    pre = torch.nn.Module()
    pre.weight, pre.eps = torch.nn.Parameter(torch.rand(40, device=device) + 0.5), 1e-5
    residual = torch.randn(3, 1, 40, device=device)
    want = reference_step(m, h, conv_state, ssm_state, residual, pre, True)
    for name, config in pins.items():
        tuning.pin(name, **config)
    try:
        with torch.no_grad():
            out, res = fused.mamba2_step(m, h, conv_state, ssm_state, residual, pre, True)
    finally:
        for name in pins:
            tuning.unpin(name)
    return (out, conv_state, ssm_state, res), want


_IN_UPDATE_SPACE = [(1, kw) for kw in _every(in_update.in_update_kernel, (
    3, 202, 40, 80, 8, 8, torch.float32, torch.float32, True, True, 4, False, None, False))] + [
    (2, kw) for kw in _every(in_update.in_update_kernel, (
        3, 202, 40, 80, 8, 8, torch.float32, torch.float32, True, True, 4, False, (40, True, True, True), False))]


@pytest.mark.parametrize("mode, config, dtype", [(mode, kw, (torch.float32, torch.bfloat16)[i % 2])
                                                 for i, (mode, kw) in enumerate(_IN_UPDATE_SPACE)],
                         ids=lambda v: "-".join(f"{k}{x}" for k, x in v.items()) if isinstance(v, dict) else str(v))
def test_every_in_update_config(device, mode, config, dtype, monkeypatch):
    """Every tuning candidate of the state update inside the input launch, without and with the out step in it
    (column blocks of 2 to 8 of a head's 8 channels, the out step's of 2 to 8 of 40) on one block of 2 groups, the
    dtypes in turn (the property test's blocks cut heads)."""
    monkeypatch.setattr(fused, "IN_UPDATE", mode)
    got, want = _pinned_step(device, dtype, True, {"mamba2_in_update": config})
    for name, g, w in zip(("out", "conv_state", "ssm_state", "residual"), got, want):
        assert_close(g, w, dtype, f"{config} {name}")
    assert (counters(got[2], in_update.COUNTERS) == 0).all()


def test_a_captures_warm_up_steps_as_the_capture_will(device):
    """Inside ``graph_cache.as_captured`` (a CUDA graph capture's warm-up) a Mamba2 step past the replayed fused
    steps' rows takes the composed step, as the capture will, so its kernels are compiled and tuned at those rows;
    outside, an eager step of those rows takes the fused step (and keeps a plan, which the warm-up must not use)."""
    from ssm_triton.models.graph_cache import as_captured
    rows = fused.MAX_BATCH["Mamba2"] + 2
    m = block(device, torch.float32, 5, 32, 8, 16, 2, True, False, False, False)
    conv_state, ssm_state = _states(m, rows, 4, device)
    h = torch.randn((rows, 1, 32), generator=torch.Generator(device=device).manual_seed(5), device=device)
    states = (conv_state.clone(), ssm_state.clone())
    with torch.no_grad():
        eager = fused.step(m, h, conv_state, ssm_state)
        with as_captured():
            assert fused.WARMING
            assert fused.step(m, h, *(t.clone() for t in states)) is None   # the composed step's turn
            warm = m.step(h, *states)[0]
        assert not fused.WARMING
    assert eager is not None
    assert_close(warm, eager[0].double(), torch.float32, "out")
