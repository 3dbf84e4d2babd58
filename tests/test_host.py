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


def test_memoized_space_follows_the_mode(monkeypatch):
    args = (4096, 64, 1, 64, 128)
    spaces = {}
    for mode in (True, False, True):
        monkeypatch.setattr(kss, "interpreting", lambda mode=mode: mode)
        spaces.setdefault(mode, []).append(kss.forward_space(*args))
    interpreted, compiled = spaces[True][0], spaces[False][0]
    assert spaces[True][1] == interpreted                    # cached per mode, not the last one built
    assert len(interpreted) == 1 and len(compiled) > 1       # the GPU space has the runners-up
    assert compiled[0].kwargs["BLOCK_L"] != interpreted[0].kwargs["BLOCK_L"]
