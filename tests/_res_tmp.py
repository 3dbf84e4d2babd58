import sys; sys.argv=['x','--resources']
import triton.language as tl
import sm90_compile as m
w, bp, bn = int(sys.argv_extra[0]) if False else 0, 0, 0
import os
w = int(os.environ["W"]); bp = int(os.environ["BP"]); bn = int(os.environ.get("BN", 128))
for name, k, ptrs, flags in m.ssd_cases():
    if name != "ssd walk bwd" or flags["DOT"] != tl.bfloat16 or not flags["HAS_D"]: continue
    flags = dict(flags, BLOCK_P=bp, BLOCK_N=bn)
    c = m.compile_kernel(k, ptrs, flags, num_warps=w)
    print(name, w, bp, bn, m.resources(c), flush=True)
    break
