"""The benchmarks' byte counts (bench/counts.py) against the tensors they actually read and write.

For every workload of the kernel ops at the ``--quick`` shapes: the inputs the benchmark builds (a
stride-0 broadcast counted by the values it holds, an in-place state counted once more as written)
plus the outputs our op actually returns must equal the count; fwd+bwd must be 3 × inputs + 2 × outputs.
"""
import pytest
import torch

from ssm_triton.bench import counts
from ssm_triton.bench.registry import REGISTRY

KERNEL_OPS = ("linear_scan", "discretize", "selective_scan", "ssd", "state_update", "conv1d", "gated_rmsnorm", "mamba3",
              "mamba3_mimo")
IN_PLACE = {"state_update": "state"}


def _stored_bytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


def _outputs(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for t in result if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("op", KERNEL_OPS)
def test_counted_bytes_are_the_tensors_moved(op, device):
    workloads = REGISTRY[op](device, True, set())
    assert workloads
    measured = {}
    for w in workloads:
        key = (w.shape, w.dtype)
        if key not in measured:
            x = w.make_inputs()
            inputs = {k: v for k, v in x.items() if k != "g" and isinstance(v, torch.Tensor)}
            read = sum(_stored_bytes(v) for v in inputs.values())
            written = sum(t.numel() * t.element_size() for t in _outputs(w.impls["ssm_triton"](x, "fwd")()))
            if op in IN_PLACE:
                written += _stored_bytes(inputs[IN_PLACE[op]])
            measured[key] = (read, written)
        read, written = measured[key]
        expected = read + written if w.direction == "fwd" else 3 * read + 2 * written
        assert w.bytes == expected, (op, w.shape, w.dtype, w.direction, w.bytes, expected)
        assert w.flops > 0


def test_io_rule_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        counts.io_bytes(1, 1, "bwd")
