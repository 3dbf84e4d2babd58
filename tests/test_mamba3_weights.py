"""Mamba-3 MIMO's per-step weights kernel (``kernels/mamba3/weights.py``) against the float64 formula through
PyTorch's autograd: ``gamma``, ``e_next``, ``scale`` and the gradients of ``DT`` and ``Trap`` from any subset of
the three, packed rows included."""
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from ssm_triton.kernels.mamba3 import weights
from ssm_triton.kernels.ssd.launch import seq_idx_from_cu_seqlens
from ssm_triton.tolerance import assert_close
from strategies import examples, normal, seeds, uniform


def reference(DT, Trap, seq):
    """float64 ``(gamma, e_next, scale)``: a step's ``e`` goes to the step before it, within one sequence."""
    dt, lam = DT.double(), torch.sigmoid(Trap.double())
    gamma = lam * dt
    e_next = F.pad((dt * (1.0 - lam))[..., 1:], (0, 1))
    if seq is not None:
        e_next = e_next * F.pad(seq[:, 1:] == seq[:, :-1], (0, 1))[:, None]
    return gamma, e_next, gamma + e_next


@examples(12, 60)
@given(b=st.integers(1, 2), H=st.integers(1, 3), L=st.integers(1, 13), packed=st.booleans(), seed=seeds(),
       dtypes=st.sampled_from([(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                               (torch.float32, torch.float16)]),
       present=st.tuples(st.booleans(), st.booleans(), st.booleans()), data=st.data())
def test_weights_and_their_gradients_match_the_formula(device, b, H, L, packed, seed, dtypes, present, data):
    if packed:
        b = 1
        cuts = sorted(data.draw(st.sets(st.integers(1, max(L - 1, 1)), max_size=3), label="cuts")) if L > 1 else []
        cu = torch.tensor([0, *cuts, L], dtype=torch.int32, device=device)
        seq = seq_idx_from_cu_seqlens(cu, L)
    else:
        seq = None
    DT = uniform((b, H, L), 0.01, 0.9, seed, device, dtypes[0])
    Trap = normal((b, H, L), seed + 1, device, dtypes[1], 2.0)
    grads = [normal((b, H, L), seed + 2 + i, device, torch.float32) if p else None for i, p in enumerate(present)]

    got = weights.step_weights(DT, Trap, seq)
    dt64, trap64 = (t.detach().double().requires_grad_() for t in (DT, Trap))
    want = reference(dt64, trap64, seq)
    for name, g, w in zip(("gamma", "e_next", "scale"), got, want):
        assert g.dtype == torch.float32 and g.shape == (b, H, L), name
        assert_close(g, w, torch.float32, name=name)

    ddt, dtrap = weights.step_weights_backward(*grads, DT, Trap, seq)
    assert ddt.dtype == DT.dtype and dtrap.dtype == Trap.dtype
    pairs = [(w, g) for w, g in zip(want, grads) if g is not None]
    if pairs:
        w_ddt, w_dtrap = torch.autograd.grad([w for w, _ in pairs], (dt64, trap64), [g.double() for _, g in pairs])
    else:
        w_ddt, w_dtrap = torch.zeros_like(dt64), torch.zeros_like(trap64)
    assert_close(ddt, w_ddt, DT.dtype, name="dDT")
    assert_close(dtrap, w_dtrap, Trap.dtype, name="dTrap")
