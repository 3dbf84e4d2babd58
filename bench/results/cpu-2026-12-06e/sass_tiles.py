"""The selective scan backward's state loop at the tuner's other tiles, with and without REV_GATHER (run as
sass_selective_bwd.py, with tests/ and this folder on PYTHONPATH)."""
import sys
sys.path.insert(0, __import__("os").path.dirname(__file__))
import sass_selective_bwd as S
import sm90_compile as m
import triton
orig = m.compile_kernel
for warps, bd in ((2, 1), (1, 2), (2, 2), (4, 8)):
    for rg in (False, True):
        m.compile_kernel = lambda k, p, f, num_warps=1, num_stages=1, aligned=True: orig(k, p, {**f, "BLOCK_D": bd}, num_warps=warps, num_stages=1, aligned=True)
        c, out = S.sass(False, rg)
        kinds, _ = S.state_loop(out)
        sh = sum(v for k, v in kinds.items() if k.startswith("SHFL"))
        print(triton.__version__, f"warps={warps} BLOCK_D={bd} REV_GATHER={rg}", m.resources(c), sum(kinds.values()), "instr", sh, "shfl",
              {k: v for k, v in kinds.items() if k.startswith(("BAR", "STS", "LDS"))})
