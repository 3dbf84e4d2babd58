"""Small ``@triton.jit`` helpers shared by the SSD stages."""
import triton
import triton.language as tl

from ..tuning import interpreting

TF32 = "tf32"   # the DOT value for fp32 inputs multiplied on TF32 tensor cores (torch's "high" precision)
# Triton's interpreter multiplies bf16 operands wrongly in tl.dot (triton issue 11584): there the products
# a tensor core takes are emulated instead (below)
INTERPRETED = tl.constexpr(interpreting())


@triton.jit
def _nearest(x, DOT: tl.constexpr):
    """``x`` rounded to ``DOT``'s mantissa (bf16: 7 bits, fp16: 10), to nearest, ties to even, as fp32 values:
    what a GPU's conversion gives in the normal range. The interpreter's own conversion truncates (and ignores
    ``fp_downcast_rounding``), a bias toward zero no GPU has."""
    SHIFT: tl.constexpr = 16 if DOT == tl.bfloat16 else 13
    KEEP: tl.constexpr = 0xFFFF0000 if DOT == tl.bfloat16 else 0xFFFFE000
    bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
    half = (1 << (SHIFT - 1)) - 1 + ((bits >> SHIFT) & 1)
    return ((bits + half) & KEEP).to(tl.float32, bitcast=True)


@triton.jit
def mm(a, b, DOT: tl.constexpr):
    """``a @ b`` on tensor cores in ``DOT`` (bf16/fp16); exactly in fp32 (IEEE) when ``DOT`` is fp32 (fp32
    inputs under torch's "highest" matmul precision); on TF32 tensor cores with fp32 accumulation when
    ``DOT`` is ``"tf32"``. In the interpreter a bf16/fp16 product is emulated as the tensor cores compute it:
    operands rounded to ``DOT``, exact products, fp32 sums (so CPU tests see the GPU's rounding)."""
    if DOT == "tf32":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="tf32")
    elif DOT == tl.float32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    elif INTERPRETED:
        return tl.dot(_nearest(a, DOT), _nearest(b, DOT), input_precision="ieee")
    else:
        return tl.dot(a.to(DOT), b.to(DOT))


@triton.jit
def add2(a0, b0, a1, b1):
    """Sums of two tiles at once: ``tl.reduce``'s combine for a pair of operands (one pass across the lanes)."""
    return a0 + a1, b0 + b1


@triton.jit
def add3(a0, b0, c0, a1, b1, c1):
    return a0 + a1, b0 + b1, c0 + c1


@triton.jit
def add4(a0, b0, c0, d0, a1, b1, c1, d1):
    return a0 + a1, b0 + b1, c0 + c1, d0 + d1


@triton.jit
def as_dot(a, DOT: tl.constexpr):
    """``a`` as :func:`mm` takes it into the tensor cores, so that a tile used by two products is cast (and copied
    to shared memory) once: :func:`mm`'s own cast is then a no-op."""
    if DOT == "tf32" or DOT == tl.float32:
        return a.to(tl.float32)
    elif INTERPRETED:
        return _nearest(a, DOT)
    else:
        return a.to(DOT)


@triton.jit
def cum_at(CUM, lo_off, row, idx):
    """``cum`` at steps ``idx`` as ``(hi, lo)``: its fp64 within-chunk sum split into two fp32 parts, so
    that differences of two large sums (hundreds of nats of decay inside a chunk) keep fp32 accuracy.
    ``idx`` stays inside the padded row (``n_chunks * Q`` steps), so no mask is needed."""
    return tl.load(CUM + row + idx), tl.load(CUM + lo_off + row + idx)


@triton.jit
def row_block(H, G, Q: tl.constexpr, BLOCK_M: tl.constexpr):
    """A (block of ``BLOCK_M`` steps, batch row x head) program's first step, chunk (``BLOCK_M`` divides
    ``Q``: a program stays inside one chunk), ``bh``, batch row, head and group."""
    r0 = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    h = bh % H
    return r0, r0 // Q, bh, bh // H, h, h // (H // G)


@triton.jit
def row_block_longest_first(H, G, nc, Q: tl.constexpr, BLOCK_M: tl.constexpr):
    """:func:`row_block` for a causal stage whose programs' work grows with their block's place in the chunk: the
    GPU starts blocks in launch order (axis 0 fastest), so every chunk's last step block (the most ``BLOCK_K``
    slices) of every (batch row, head) comes first, then the blocks before them: the short ones fill the tail of
    the last wave instead of the long ones. The grid's axis 0 holds ``nc * (Q // BLOCK_M)`` blocks (a partial last
    chunk's blocks past ``L`` find no step to store)."""
    per: tl.constexpr = Q // BLOCK_M
    n0 = nc * per
    n1 = tl.num_programs(1)
    lin = tl.program_id(1) * n0 + tl.program_id(0)
    level = lin // (nc * n1)
    rem = lin % (nc * n1)
    bh = rem % n1
    c = rem // n1
    h = bh % H
    return c * Q + (per - 1 - level) * BLOCK_M, c, bh, bh // H, h, h // (H // G)


@triton.jit
def chunk_bounds(c, L, Q: tl.constexpr):
    """First step of chunk ``c``, its last real step, and the step before it (the chunk's own first
    step for chunk 0: the sequence an initial state belongs to)."""
    start = c * Q
    end = tl.minimum(start + Q, L) - 1
    prev = tl.maximum(start - 1, 0)
    return start, end, prev
