"""The launchers' host helpers: the same integers as Triton's, and spaces cached per mode."""
import triton
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.kernels import selective_scan as kss
from ssm_triton.kernels.host import cdiv, next_power_of_2


@given(st.integers(min_value=0, max_value=1 << 40))
def test_next_power_of_2_is_tritons(n):
    assert next_power_of_2(n) == triton.next_power_of_2(n)


@given(st.integers(min_value=0, max_value=1 << 40), st.integers(min_value=1, max_value=1 << 20))
def test_cdiv_is_tritons(a, b):
    assert cdiv(a, b) == triton.cdiv(a, b)


def test_spaces_follow_the_mode():
    """A rule takes the mode as an argument: the interpreted space is the rule alone, with small tiles;
    the GPU space has the runners-up; each is cached per (problem, mode), not the last one built."""
    from ssm_triton.kernels.tuning import H100, INTERPRETED
    problem = kss.ScanProblem(1, 64, 4096, 16, 1, 64, 128, False, False, True, None)
    interpreted = kss.selective_scan_fwd.space(problem, INTERPRETED)
    compiled = kss.selective_scan_fwd.space(problem, H100)
    assert kss.selective_scan_fwd.space(problem, INTERPRETED) is interpreted
    assert len(interpreted) == 1 and len(compiled) > 1
    assert compiled[0]["BLOCK_L"] != interpreted[0]["BLOCK_L"]
