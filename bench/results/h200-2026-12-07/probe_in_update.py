"""The 130M Mamba2 block's decode step at batch 1 (d_model 768, d_state 128, headdim 64, bf16), 24 steps in a row of
one block (a model's 24 layers, each launch depending on the last), per step: eager and replayed from a CUDA graph,
with ``fused.IN_UPDATE`` as given. Usage: ``python probe_in_update.py MODE [rows] [NAME=VALUE ...]``: the words
after the rows pin the in_update launch's tiles (``BLOCK_O=32 BLOCK_OO=16 num_warps=8``) instead of tuning them
(SSM_TRITON_IN_UPDATE_SLEEP is read when the kernels are imported)."""
import sys

import torch

from ssm_triton import Mamba2
from ssm_triton.kernels import tuning
from ssm_triton.ops import fused_step as fused

mode = int(sys.argv[1])
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1
pins = dict((w.split("=")[0], int(w.split("=")[1])) for w in sys.argv[3:])
if pins:
    tuning.pin("mamba2_in_update", **pins)
fused.IN_UPDATE = mode
torch.manual_seed(0)
m = Mamba2(d_model=768, d_state=128, headdim=64, expand=2, device="cuda", dtype=torch.bfloat16)
conv_state, ssm_state = m.allocate_inference_cache(rows, 4)
h = torch.randn((rows, 1, 768), device="cuda", dtype=torch.bfloat16)


def steps():
    x = h
    for _ in range(24):
        x = fused.step(m, x, conv_state, ssm_state)[0]
    return x


with torch.no_grad():
    for _ in range(3):
        steps()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(50):
        steps()
    b.record()
    torch.cuda.synchronize()
    eager = a.elapsed_time(b) / 50 / 24 * 1e3
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        steps()
        with torch.cuda.graph(g):
            steps()
    torch.cuda.current_stream().wait_stream(s)
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    a.record()
    for _ in range(200):
        g.replay()
    b.record()
    torch.cuda.synchronize()
    replay = a.elapsed_time(b) / 200 / 24 * 1e3
print(f"IN_UPDATE={mode} rows={rows} {pins or 'tuned'}: {eager:.2f} us a step eager, {replay:.2f} us replayed")
