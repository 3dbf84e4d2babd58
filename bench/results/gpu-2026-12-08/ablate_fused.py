"""Where a chunk of the one-launch SSD forward spends its time (issue 17's small forward: b1 L2048 0.090 ms against
0.06 asked; the whole row walks a chunk in ~5.9 us on the H200, 12-04h). Rewrites a COPY of ``kernels/ssd/fused.py``
(the path given) so that ``SSM_PROBE_ABL`` (a bit mask, read when the kernels are imported) drops parts of each
chunk's work; the outputs are then wrong, the timing says what the part cost. Never applied to the repository.

  1   the in-chunk pairs: ``C B^T`` under the decay and its product with ``dt x`` (y starts from zeros)
  2   the entering state's part of the output, ``C h^T exp(cum)``
  4   the state's update product, ``B^T (w x)`` (the state only decays)
  8   the decay sums in fp32 instead of fp64 (``tl.cumsum`` of fp64 moves two words a shuffle)
  16  the decay tile's exponentials (the causal mask alone)
"""
import sys

path = sys.argv[1]
src = open(path).read()


def sub(old, new):
    global src
    assert src.count(old) == 1, old
    src = src.replace(old, new)


sub("from .cumsum import raw_step, softplus_clamp, store_cum\n",
    "from .cumsum import raw_step, softplus_clamp, store_cum\n"
    "ABL = tl.constexpr(int(os.environ.get('SSM_PROBE_ABL', '0')))\n")
sub("""            a = (dt * a_h).to(tl.float64)
""", """            if ABL & 8:
                a = dt * a_h
            else:
                a = (dt * a_h).to(tl.float64)
""")
sub("""            diff = (c_hi[:, None] - c_hi[None, :]) + (c_lo[:, None] - c_lo[None, :])
            decay = tl.where(causal, tl.exp(tl.where(causal, diff, 0.0)), 0.0)
            if STATE_T:
                w = mm(c_c, b_t, DOT) * decay * dt[None, :]
            else:
                w = mm(c_c, tl.trans(b_c), DOT) * decay * dt[None, :]
            y = mm(w, x_c, DOT)
""", """            if ABL & 1:
                y = tl.zeros([Q, BLOCK_P], dtype=tl.float32)
            else:
                diff = (c_hi[:, None] - c_hi[None, :]) + (c_lo[:, None] - c_lo[None, :])
                if ABL & 16:
                    decay = tl.where(causal, 1.0, 0.0) + diff * 0.0
                else:
                    decay = tl.where(causal, tl.exp(tl.where(causal, diff, 0.0)), 0.0)
                if STATE_T:
                    w = mm(c_c, b_t, DOT) * decay * dt[None, :]
                else:
                    w = mm(c_c, tl.trans(b_c), DOT) * decay * dt[None, :]
                y = mm(w, x_c, DOT)
""")
sub("""                y += mm(c_c, tl.trans(state), DOT) * tl.exp(c_hi)[:, None]
""", """                if not (ABL & 2):
                    y += mm(c_c, tl.trans(state), DOT) * tl.exp(c_hi)[:, None]
""")
sub("""            state = state * tl.exp(total.to(tl.float32)) + mm(tl.trans(xw), b_c, DOT)
""", """            if ABL & 4:
                state = state * tl.exp(total.to(tl.float32)) + tl.sum(xw, axis=0)[:, None] * 0.0
            else:
                state = state * tl.exp(total.to(tl.float32)) + mm(tl.trans(xw), b_c, DOT)
""")
open(path, "w").write(src)
print("ablation switches written into", path)
