"""Integer helpers for the launchers' host code (and the step stride a kernel takes for a tensor).

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


def pow2_divisor(n: int) -> int:
    """The largest power of two, at most 16, dividing ``n`` (16 for 0: a broadcast stride); ``hints.py``."""
    n = int(n)
    return min(16, n & -n) if n else 16


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ``a`` and positive ``b``."""
    return (int(a) + int(b) - 1) // int(b)


def fills_waves(programs: int, sm_count: int, fill: float) -> bool:
    """Whether ``programs``, one an SM at a time, keep at least ``fill`` of the SMs busy over the waves they take."""
    return programs >= fill * cdiv(programs, sm_count) * sm_count


def step_stride(t) -> int:
    """The step stride of ``t (b, L, heads, width)`` for kernels that address ``(b L + t) stride + head width + i``:
    everything past the step dimension contiguous and the batch stride ``L`` steps (a column slice of a wider
    contiguous buffer qualifies). Anything else is a caller's mistake: the ops hand these kernels such layouts only."""
    b, L, heads, width = t.shape
    if not ((width == 1 or t.stride(3) == 1) and (heads == 1 or t.stride(2) == width)
            and (b == 1 or t.stride(0) == L * t.stride(1))):
        raise ValueError(f"internal: a tensor of shape {tuple(t.shape)} and strides {t.stride()} reached a kernel that "
                         "takes one step stride")
    return t.stride(1)
