"""Mamba-2's step between its projections in one launch (ops/mamba2_step.py, kernels/mamba2_step.py) against the
float64 step composed of the references, over the block's options, groups, dtypes and batch sizes (several state
row blocks, several norm groups); the calls it serves; the LM's decoding with it against the composed step."""
import contextlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.kernels.arrivals import counters
from ssm_triton.models import MambaConfig, MambaLMHeadModel
from ssm_triton.modules import Mamba2
from ssm_triton.ops import fused_step as fused
from ssm_triton.ops import mamba2_step as mid
from ssm_triton.tolerance import assert_close
from strategies import examples, seeds
from test_fused_step import _states, block, decoding, options, reference_step


def _no_fused_step(mp):
    """Keep the three-launch fused step off these calls (it serves small batches eagerly), as a CUDA graph's
    capture past its rows does, and the one-launch step on (off by default)."""
    mp.setattr(fused, "MAX_EAGER_BATCH", 0)
    mp.setattr(mid, "ENABLED", True)


@given(opts=options, bsz=st.integers(1, 5), headdim=st.sampled_from([4, 8, 12, 20, 40]), seed=seeds())
@examples(8, 60)
def test_block_step_in_one_launch_matches_the_float64_step(device, opts, bsz, headdim, seed):
    """Two tokens through ``Mamba2.step`` (the first call plans, the second runs the plan): output, conv window and
    state against the float64 step; the row counters are left at zero. Head dims past the interpreter's 16-row
    blocks split a head over programs (the norm's partials)."""
    d_inner = 2 * opts["d_model"]
    opts["headdim"] = headdim if d_inner % headdim == 0 and (d_inner // headdim) % opts["ngroups"] == 0 else 8
    dtype = opts["dtype"]
    m = block(device, seed=seed, **opts)
    conv_state, ssm_state = _states(m, bsz, seed + 1, device)
    g = torch.Generator(device=device).manual_seed(seed + 2)
    with pytest.MonkeyPatch.context() as mp:
        _no_fused_step(mp)
        for token in range(2):
            h = torch.randn((bsz, 1, m.d_model), generator=g, device=device).to(dtype)
            want = reference_step(m, h, conv_state, ssm_state)
            with torch.no_grad():
                assert mid.serves(m, m.in_proj(h[:, 0]), conv_state, ssm_state)
                out, _, _ = m.step(h, conv_state, ssm_state)
            assert out.dtype == dtype and out.shape == (bsz, 1, m.d_model)
            assert_close(out, want[0], dtype, f"out {token}")
            assert_close(conv_state, want[1], dtype, f"conv_state {token}")
            assert_close(ssm_state, want[2], dtype, f"ssm_state {token}")
    assert not counters(ssm_state, bsz).any()


def test_serves_only_calls_it_computes(device, monkeypatch):
    assert not mid.ENABLED or mid.os.environ.get("SSM_TRITON_M2_STEP")   # off unless asked for
    monkeypatch.setattr(mid, "ENABLED", True)
    m = block(device, torch.float32, 0, 16, 8, 8, 2, True, False, False, False)
    conv_state, ssm_state = _states(m, 3, 1, device)
    with torch.no_grad():
        zx = m.in_proj(torch.randn(3, 16, device=device))
        assert mid.serves(m, zx, conv_state, ssm_state)
        assert not mid.serves(m, zx[:2], conv_state, ssm_state)                      # states of another batch
        assert not mid.serves(m, zx, conv_state[..., :3], ssm_state)                 # a shorter conv window
        assert not mid.serves(m, zx, conv_state, ssm_state[..., :4])                 # fewer state columns
        assert not mid.serves(m, zx.to(torch.float64), conv_state, ssm_state)        # a dtype the kernel lacks
        handle = m.norm.register_forward_hook(lambda *a: None)                       # a hooked norm is called
        assert not mid.serves(m, zx, conv_state, ssm_state)
        handle.remove()
        m.norm.group_size = 4                                                         # half a head a norm group
        assert not mid.serves(m, zx, conv_state, ssm_state)
        m.norm.group_size = 16
        assert mid.serves(m, zx, conv_state, ssm_state)
    assert not mid.serves(m, m.in_proj(torch.randn(3, 16, device=device)), conv_state, ssm_state)   # autograd
    mlp = Mamba2(16, d_state=8, headdim=8, d_ssm=16, layer_idx=0, device=device)     # gated-MLP columns
    c2, s2 = mlp.allocate_inference_cache(3, 4)
    with torch.no_grad():
        assert not mid.serves(mlp, mlp.in_proj(torch.randn(3, 16, device=device)), c2, s2)


def test_lm_decoding_in_one_launch_equals_the_composed_step(device):
    """The Mamba2 LM's decode steps from the same states, each layer's step between the projections in one launch
    or composed op by op: the same logits, token by token."""
    torch.manual_seed(0)
    cfg = MambaConfig(d_model=32, n_layer=2, vocab_size=50,
                      ssm_cfg={"layer": "Mamba2", "d_state": 16, "headdim": 8, "ngroups": 2, "chunk_size": 16})
    model = MambaLMHeadModel(cfg, device=device).eval()
    decode, logits = decoding(model, 3, device), {}
    for on in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            _no_fused_step(mp)
            mp.setattr(mid, "ENABLED", on)
            logits[on] = decode()
    assert_close(logits[True], logits[False].double(), torch.float32, "logits")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_replayed_decode_steps_in_one_launch_equal_the_composed_ones():
    """Past the fused step's rows a captured decode step takes this launch (its row counters made with the cache,
    replayed with it): several steps from a prefill against a copy decoding eagerly without it (the fused step's
    eager rows), logits and states."""
    import copy

    from test_decode_graph import replayed_against_eager
    from test_lm import build
    dev = torch.device("cuda")
    m = build(dev, "Mamba2", 3).eval()
    ref = copy.deepcopy(m)
    with torch.inference_mode(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(mid, "ENABLED", True)

        @contextlib.contextmanager
        def without():
            mp.setattr(mid, "ENABLED", False)
            yield
            mp.setattr(mid, "ENABLED", True)
        replayed_against_eager(m, ref, fused.MAX_BATCH["Mamba2"] + 2, dev, without)
        assert len(m._decode_graphs.graphs) == 1
