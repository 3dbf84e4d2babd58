"""The bytes and FLOPs of every benchmarked op, in one place: ``roofline_frac`` divides by these.

Bytes are the minimal I/O of the call, whatever a kernel happens to move: each input read once and each
output written once, in its own dtype (an in-place state counts once read and once written; a stride-0
broadcast counts the values it holds). A ``fwd+bwd`` adds the backward's own minimal I/O: the inputs
and the output's cotangent read, one gradient per input written; so it is 3 × inputs + 2 × outputs.

FLOPs are the arithmetic the algorithm needs (multiply-adds count two; an ``exp`` counts one), not
what a given kernel does; the backward is counted at about twice the forward, its usual cost.

Each function returns ``(bytes, flops)``. ``tests/test_bench_counts.py`` holds the byte counts to
the sizes of the tensors the benchmarks actually build and the outputs the ops actually return.
"""
FP32 = 4


def io_bytes(inputs: float, outputs: float, direction: str) -> float:
    """Minimal I/O of a call that reads ``inputs`` bytes and writes ``outputs`` bytes."""
    if direction == "fwd":
        return inputs + outputs
    if direction == "fwd+bwd":
        return 3 * inputs + 2 * outputs
    raise ValueError(f"direction must be 'fwd' or 'fwd+bwd', got {direction!r}")


def linear_scan(batch: int, dim: int, L: int, es: int, direction: str):
    """``h_t = a_t h_{t-1} + b_t``: reads a, b and writes h, all (batch, dim, L); a multiply-add per
    step forward; the backward's adjoint scan, ``da = dh_t h_{t-1}`` and ``db`` cost about three more."""
    n = batch * dim * L
    return io_bytes(2 * n * es, n * es, direction), (2 if direction == "fwd" else 5) * n


def discretize(b: int, d: int, L: int, N: int, es: int, direction: str):
    """ZOH: reads delta (b, d, L), A (d, N), B (b, N, L); writes Abar and Bbar, each (b, d, L, N);
    an exp, a product and ``(exp(z) - 1) / A · B`` per element."""
    states = b * d * L * N
    inputs = (b * d * L + d * N + b * N * L) * es
    return io_bytes(inputs, 2 * states * es, direction), (6 if direction == "fwd" else 20) * states


def selective_scan(b: int, d: int, L: int, N: int, es: int, direction: str):
    """Mamba-1: reads u, delta, z (b, d, L) and B, C (b, N, L) in the I/O dtype, A (d, N), D and
    delta_bias (d,) in fp32; writes out (b, d, L). Per (channel, step, state): the exp, the scan's
    multiply-add, the input product and the output's multiply-add."""
    big, small = b * d * L, b * N * L
    inputs = (3 * big + 2 * small) * es + (d * N + 2 * d) * FP32
    return io_bytes(inputs, big * es, direction), (8 if direction == "fwd" else 24) * big * N


def ssd(b: int, L: int, H: int, P: int, G: int, N: int, chunk: int, es: int, direction: str):
    """Mamba-2 SSD: reads x (b, L, H, P) and B, C (b, L, G, N) in the I/O dtype, dt (b, L, H), A, D,
    dt_bias (H,) in fp32; writes out like x. FLOPs of the chunked algorithm, per head: the causal
    pairs of each chunk cost ``L · chunk · (N + P)`` (``C Bᵀ``, then its product with x) and the
    states ``4 L P N`` (chunk states, and the states' contribution to the output)."""
    x = b * L * H * P * es
    inputs = x + 2 * b * L * G * N * es + b * L * H * FP32 + 3 * H * FP32
    flops = b * H * (L * chunk * (N + P) + 4 * L * P * N)
    return io_bytes(inputs, x, direction), flops if direction == "fwd" else 3 * flops


def mamba3_siso(b: int, L: int, H: int, Hqk: int, P: int, N: int, S: int, chunk: int, es: int, direction: str):
    """Mamba-3 SISO: reads Q, K (b, L, Hqk, N) and V, Z (b, L, H, P) in the I/O dtype, ADT, DT, Trap
    (b, H, L) and Angles (b, L, H, S) in fp32, Q_bias, K_bias (H, N) and D (H,) in fp32; writes out like V.
    FLOPs as the SSD's with one key per head (the rotations and biases are a few per element)."""
    v = b * L * H * P * es
    inputs = 2 * v + 2 * b * L * Hqk * N * es + (3 * b * H * L + b * L * H * S + 2 * H * N + H) * FP32
    flops = b * H * (L * chunk * (N + P) + 4 * L * P * N)
    return io_bytes(inputs, v, direction), flops if direction == "fwd" else 3 * flops


def mamba3_mimo(b: int, L: int, R: int, H: int, Hqk: int, P: int, N: int, S: int, chunk: int, es: int,
                direction: str):
    """Mamba-3 MIMO of rank R: reads Q, K (b, L, R, Hqk, N) and V, Z (b, L, H, P) in the I/O dtype, the per-step
    terms as SISO, Q_bias, K_bias (H, R, N) and MIMO_V, MIMO_Z, MIMO_Out (H, R, P) in fp32; writes out like V.
    FLOPs as SISO's over the L R rank-steps (chunks of ``chunk R``), plus the in-step R x R block."""
    v = b * L * H * P * es
    inputs = (2 * v + 2 * b * L * R * Hqk * N * es + (3 * b * H * L + b * L * H * S + 2 * H * R * N + 3 * H * R * P + H)
              * FP32)
    T = L * R
    flops = b * H * (T * chunk * R * (N + P) + 4 * T * P * N + 2 * L * R * R * (N + P))
    return io_bytes(inputs, v, direction), flops if direction == "fwd" else 3 * flops


def state_update(b: int, H: int, P: int, N: int, G: int, es: int):
    """One Mamba-2 decode step: the fp32 state (b, H, P, N) read and written in place; x, z (b, H, P)
    and dt (b, H) read, out (b, H, P) written, B, C (b, G, N) read, all in the I/O dtype; A, D, dt_bias
    one fp32 value per head (stride-0 views). Per state element: exp, decay, input and output terms."""
    state = b * H * P * N * FP32
    inputs = state + (2 * b * H * P + b * H + 2 * b * G * N) * es + 3 * H * FP32
    return io_bytes(inputs, state + b * H * P * es, "fwd"), 5 * b * H * P * N


def conv1d(b: int, d: int, L: int, W: int, es: int, direction: str):
    """Causal depthwise conv: reads x (b, d, L), weight (d, W), bias (d,); writes out like x; a
    multiply-add per tap."""
    n = b * d * L
    return io_bytes((n + d * W + d) * es, n * es, direction), (2 if direction == "fwd" else 6) * n * W


def gated_rmsnorm(rows: int, D: int, es: int, direction: str):
    """Gated RMSNorm: reads x, z (rows, D) in the I/O dtype and weight (D,) in fp32; writes y like x;
    the gate, the square sum, the scale and the weight per element."""
    n = rows * D
    return io_bytes(2 * n * es + D * FP32, n * es, direction), (6 if direction == "fwd" else 16) * n


def model_forward(param_bytes: float, n_params: int, tokens: int, state_bytes: float = 0.0):
    """A whole model's forward over ``tokens`` tokens: every weight read once and the recurrent states
    (decode) read and written; a multiply-add per weight per token. Activations are left out, so the
    fraction is an upper bound's share, and low at small batches by nature."""
    return param_bytes + 2 * state_bytes, 2 * n_params * tokens
