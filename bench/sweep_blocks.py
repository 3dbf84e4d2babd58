"""Launch shapes of the decode step and the gated RMSNorm on the GPU: ``python -m ssm_triton.bench.sweep_blocks``.

Decode step at the issue's headline (b=64, H=64, P=64, N=128, fp32 state, Mamba-2's stride-0 dt / A / D /
dt_bias): every (BLOCK_P, warps) pair, as a share of a device copy of the state measured alongside.
RMSNorm (16384 x 4096 bf16, gate after the norm): forward and backward under each warp count.
The size rules in ``kernels/state_update.py`` and ``kernels/norm.py`` were chosen from this output.
"""
import torch
import triton.testing

from ssm_triton.kernels import norm as norm_k
from ssm_triton.kernels import state_update as su_k


def ms(fn):
    return triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")


def decode_step():
    b, H, P, N = 64, 64, 64, 128
    dev = "cuda"
    state = torch.randn(b, H, P, N, device=dev)
    g = lambda *s: torch.randn(*s, device=dev).bfloat16()  # noqa: E731
    args = dict(x=g(b, H, P), dt=g(b, H)[..., None].expand(b, H, P),
                A=(-torch.rand(H, device=dev) - 0.1)[:, None, None].expand(H, P, N), B=g(b, 1, N), C=g(b, 1, N),
                D=torch.randn(H, device=dev)[:, None].expand(H, P), z=g(b, H, P),
                dt_bias=torch.randn(H, device=dev)[:, None].expand(H, P), dt_softplus=True, state_batch_indices=None)
    dst = torch.empty_like(state)
    copy = ms(lambda: dst.copy_(state))
    print(f"decode step b={b} H={H} P={P} N={N}: copy of the state {copy * 1e3:.1f} us (read + write, "
          f"{2 * state.numel() * 4 / copy / 1e6:.0f} GB/s)")
    print("BLOCK_P warps      us   share of copy")
    default = ms(lambda: su_k.state_update(state, **args))
    print(f"default       {default * 1e3:7.1f}   {copy / default:6.1%}")
    for block_p in (8, 16, 32, 64):
        for warps in (1, 2, 4):
            if block_p * N // (32 * warps) < 4:
                continue  # fewer than 4 elements a thread
            t = ms(lambda: su_k.state_update(state, **args, config=dict(BLOCK_P=block_p, num_warps=warps)))
            print(f"{block_p:7d} {warps:5d} {t * 1e3:7.1f}   {copy / t:6.1%}")


def rmsnorm():
    R, D = 16384, 4096
    x, z, dy = (torch.randn(R, D, device="cuda").bfloat16() for _ in range(3))
    w = torch.randn(D, device="cuda")
    copy = ms(lambda: x.clone())
    print(f"\nrmsnorm {R}x{D} bf16, gate after: clone of x {copy * 1e3:.1f} us")
    for warps in (None, 4, 8, 16):
        fwd = ms(lambda: norm_k.rmsnorm_forward(x, w, None, z, 1e-5, D, False, config=dict(num_warps=warps)))
        _, rstd = norm_k.rmsnorm_forward(x, w, None, z, 1e-5, D, False)
        bwd = ms(lambda: norm_k.rmsnorm_backward(dy, x, w, None, z, rstd, 1e-5, D, False, config=dict(num_warps=warps)))
        # forward moves 3 tensors (1.5 clones), backward 5 (2.5 clones)
        print(f"warps {warps or 'rule':>4}: fwd {fwd * 1e3:6.1f} us ({1.5 * copy / fwd:.0%} of copy), "
              f"bwd {bwd * 1e3:6.1f} us ({2.5 * copy / bwd:.0%} of copy)")


if __name__ == "__main__":
    decode_step()
    rmsnorm()
