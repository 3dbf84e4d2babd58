"""The LM's prefill from CUDA graphs (ssm_triton/models/prefill.py): right padding to a bucket leaves every
real position's hidden state as it was (the layers are causal), the buckets, which calls may replay, and on
a GPU the replayed forward against the eager one."""
import copy
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.models import prefill
from ssm_triton.tolerance import assert_close
from strategies import examples, seeds
from test_lm import VOCAB, build


@given(L=st.integers(1, 1 << 16))
def test_buckets_cover_the_length_and_waste_little(L):
    b = prefill.bucket(L)
    assert b >= L and prefill.bucket(b) == b
    if L <= 1024:
        assert b & (b - 1) == 0 and b < 2 * L + 1
    else:
        assert b % 1024 == 0 and b - L < 1024


@examples(4)
@given(layer=st.sampled_from(["Mamba1", "Mamba2"]), L=st.integers(1, 20), pad=st.integers(1, 20), seed=seeds())
def test_right_padding_leaves_the_real_positions_alone(device, layer, L, pad, seed):
    """What the captured graphs rely on: the backbone over the padded row, sliced, equals the backbone
    over the row (through the one-launch SSD forward, the conv1d, the norms)."""
    m = build(device, layer, seed % 1000).eval()
    ids = torch.randint(0, VOCAB, (2, L), generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        want = m.backbone(ids)
        got = prefill.padded_backbone(m.backbone, ids, L + pad)
    assert got.shape == want.shape
    assert_close(got, want.double(), torch.float32, "hidden states")


def test_only_plain_inference_calls_replay(device):
    ids = torch.zeros(1, 5, dtype=torch.long, device=device)
    with torch.no_grad():
        assert prefill.replayable(ids, None, None, {}) == ids.is_cuda
        assert not prefill.replayable(ids, object(), None, {})
        assert not prefill.replayable(ids, None, torch.ones_like(ids), {})
        assert not prefill.replayable(ids, None, None, {"extra": 1})
    assert not prefill.replayable(ids, None, None, {})   # grad enabled: a graph may be recorded


def test_a_model_with_graphs_copies_and_pickles(device):
    m = build(device, "Mamba2", 0)
    m.cuda_graph_prefill = True
    assert isinstance(copy.deepcopy(m)._prefill_graphs, prefill.PrefillGraphs)
    assert pickle.loads(pickle.dumps(m._prefill_graphs)).graphs == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_replayed_prefill_equals_the_eager_forward(layer):
    """Logits of every position and of the last ones; lengths sharing a bucket share a graph; moving the
    weights drops the graphs."""
    dev = torch.device("cuda")
    m = build(dev, layer, 1).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for L, last in ((37, 0), (40, 1), (33, 3), (100, 0)):
            ids = torch.randint(0, VOCAB, (2, L), generator=gen).to(dev)
            m.cuda_graph_prefill = False
            want = m(ids, num_last_tokens=last).logits
            m.cuda_graph_prefill = True
            for _ in range(2):   # captured, then replayed
                got = m(ids, num_last_tokens=last).logits
                assert got.shape == want.shape
                assert_close(got, want.double(), torch.float32, f"logits L={L}")
        assert set(k[1] for k in m._prefill_graphs.graphs) == {64, 128}
        m.to(torch.float64).to(torch.float32)
        m(ids)
        assert len(m._prefill_graphs.graphs) == 1


def test_a_replaced_weight_anywhere_means_a_new_capture(device, monkeypatch):
    """A graph reads the tensors it was captured with: replacing any layer's parameter (not only the
    embedding's) must drop the graphs, while changing values in place must not. The capture is stood in
    for by a plain call (CUDA graphs need a GPU)."""
    captures = []

    class Captured:
        def __init__(self, backbone, bsz, length, dev):
            captures.append((bsz, length))
            self.backbone = backbone

        def __call__(self, ids):
            return self.backbone(ids)

    monkeypatch.setattr(prefill, "_Graph", Captured)
    m = build(device, "Mamba2", 0).eval()
    graphs = prefill.PrefillGraphs()
    ids = torch.zeros(1, 5, dtype=torch.long, device=device)
    with torch.no_grad():
        graphs(m.backbone, ids)
        graphs(m.backbone, ids)
        assert len(captures) == 1
        m.backbone.layers[-1].mixer.out_proj.weight.mul_(2.0)        # in place: the graph sees it
        graphs(m.backbone, ids)
        assert len(captures) == 1
        layer = m.backbone.layers[len(m.backbone.layers) // 2].mixer
        layer.in_proj.weight = torch.nn.Parameter(layer.in_proj.weight.clone())
        graphs(m.backbone, ids)
        assert len(captures) == 2
        m.backbone.layers[0] = copy.deepcopy(m.backbone.layers[0])             # a whole layer replaced
        graphs(m.backbone, ids)
        assert len(captures) == 3
        graphs(m.backbone, ids)
        assert len(captures) == 3


@pytest.mark.parametrize("preset", ["", "1"])
def test_a_captures_warm_up_takes_the_captured_route(device, preset):
    """``graph_cache.as_captured`` (a capture's warm-up): an SSD inference call that eagerly takes the one-launch
    kernel takes the stages inside it, as a capture does, so the stages' tiles are tuned before the capture (the
    route switch restored after; a user's ``SSM_TRITON_SSD_FUSED=1`` kept); the same numbers either way."""
    import ssm_triton
    from ssm_triton.kernels.ssd import launch
    from ssm_triton.models.graph_cache import as_captured
    from builders import make_ssd_problem
    from test_ssd_fused import counting
    # fp16: on a GPU the size rule leaves fp32 dots (TF32) to the stages; the interpreter's fp16 dots are exact
    t = {k: (v.half() if k in ("x", "dt", "B", "C", "z") else v.float()) if isinstance(v, torch.Tensor) else v
         for k, v in make_ssd_problem(1, 24, 1, 2, 4, 8, 3, True, device).items()}
    before, launch.FUSED = launch.FUSED, preset
    try:
        with torch.no_grad():
            with counting() as eager:
                want = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)
            with as_captured(), counting() as warm:
                assert launch.FUSED == (preset or "0")
                got = ssm_triton.mamba_chunk_scan_combined(**t, chunk_size=16)
            assert launch.FUSED == preset
    finally:
        launch.FUSED = before
    assert eager == [1]                              # the size rule takes the one-launch kernel eagerly here
    assert warm == ([1] if preset == "1" else [])    # the warm-up: the stages, unless the user asked for the kernel
    assert_close(got, want.double(), torch.float16, "out")
