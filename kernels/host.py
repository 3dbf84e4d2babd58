"""Integer helpers for the launchers' host code.

The same values as ``triton.next_power_of_2`` and ``triton.cdiv``, which Triton 3.5+ wraps as constexpr
functions: about 5 µs a call from Python, and a launch makes a dozen such calls. Kernels keep Triton's.
"""


def next_power_of_2(n: int) -> int:
    """The smallest power of two ≥ ``n`` (0 for ``n`` ≤ 0, as Triton's)."""
    n = int(n)
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def prev_power_of_2(n: int) -> int:
    """The largest power of two ≤ ``n`` (1 for ``n`` ≤ 1)."""
    return 1 << (max(int(n), 1).bit_length() - 1)


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ``a`` and positive ``b``."""
    return (int(a) + int(b) - 1) // int(b)
