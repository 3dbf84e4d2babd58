"""``selective_scan_fn``: Mamba-1's selective scan, drop-in for mamba_ssm's function of that name."""
from typing import Optional

import torch
from torch import Tensor

from .. import _runtime, _validate
from ..kernels import selective_scan as _k
from . import _plans
from ._layout import records_graph
from ._spec import OpSpec, build

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_STATE = 256


def _c(x):
    return x.contiguous() if x is not None else None


def _steps_contiguous(M):
    """B or C as the forward kernel reads them: a time-varying one with any strides and the steps
    contiguous (a slice of a projection's channels, as mamba_inner_fn's x_proj leaves them); a fixed
    ``(dim, N)`` one, whose kernel path assumes unit state stride, and anything else contiguous."""
    return M if M.dim() > 2 and M.stride(-1) == 1 else M.contiguous()


def _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, deterministic, store_ckpt=True):
    out, last, ckpt, _ = _k.selective_scan_forward(_c(u), _c(delta), _c(A), _steps_contiguous(B), _steps_contiguous(C),
                                                   _c(D), _c(z), _c(delta_bias), delta_softplus, _c(initial_state),
                                                   store_ckpt=store_ckpt)
    return out, last, ckpt


def _fake(u, A, **_):
    f32 = dict(dtype=torch.float32, device=u.device)
    return (torch.empty_like(u, memory_format=torch.contiguous_format),
            u.new_empty((u.shape[0], u.shape[1], A.shape[1]), **f32), u.new_empty(_k.checkpoint_shape(u, A), **f32))


def _backward(saved, grads):
    u = saved["u"]
    dout = grads["out"] if grads["out"] is not None else torch.zeros_like(u)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    g = _k.selective_scan_backward(_c(dout.to(u.dtype)), _c(grads["last"]), *(_c(saved[n]) for n in names),
                                   saved["delta_softplus"], saved["ckpt"], _k.plan_block_l(u.shape[2]),
                                   deterministic=saved["deterministic"],
                                   bc_dtype=saved["B"].dtype if saved["B"].dtype == saved["C"].dtype else None)
    return dict(zip((*names, "initial_state"), g))


_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
_selective_scan = build(OpSpec(
    "selective_scan", "u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor?, z: Tensor?, "
    "delta_bias: Tensor?, delta_softplus: bool, initial_state: Tensor?, deterministic: bool",
    outputs=("out", "last", "ckpt"), forward=_forward, fake=_fake, grads=_INPUTS, grad_outputs=("out", "last"),
    saves=(*_INPUTS, "ckpt"), backward=_backward,
    inference=lambda **a: _forward(**a, store_ckpt=False)))   # no backward to come: no checkpoints


def _check_bc(name: str, M, bsz: int, dim: int, N: int, L: int) -> int:
    """Validates B or C; returns its group count (0 for the fixed layout)."""
    _validate.tensor(name, M, dtypes=IO_DTYPES, shape_doc="(batch, N, L), (batch, G, N, L) or (dim, N)")
    if M.dim() == 2:
        _validate.shape(name, M, (dim, N), "(dim, N) for the fixed layout")
        return 0
    if M.dim() == 3:
        _validate.shape(name, M, (bsz, N, L), "(batch, N, L) for the variable layout")
        return 1
    if M.dim() == 4:
        G = M.shape[1]
        if G < 1 or dim % G:
            raise ValueError(f"{name} has {G} groups (dim 1 of (batch, G, N, L)), which must divide dim = {dim}")
        _validate.shape(name, M, (bsz, G, N, L), "(batch, G, N, L) for the grouped layout")
        return G
    raise ValueError(f"{name} must be (batch, N, L), (batch, G, N, L) or (dim, N), got shape {tuple(M.shape)}")


def selective_scan_fn(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                      z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                      return_last_state: bool = False, *, initial_state: Optional[Tensor] = None,
                      deterministic: Optional[bool] = None):
    """Mamba-1's selective scan, fused: the ``(batch, dim, L, N)`` states never reach memory.

    Per channel and step: ``dt = softplus(delta + delta_bias)`` (softplus only if ``delta_softplus``),
    ``h_t = exp(dt A) h_{t-1} + dt B_t u_t``, ``y_t = C_t . h_t + D u_t``, ``out_t = y_t * silu(z_t)``.

    Args:
        u, delta: ``(batch, dim, L)``, fp32 / bf16 / fp16.
        A: ``(dim, N)`` real, N <= 256 (fp32 recommended, as in Mamba).
        B, C: ``(batch, N, L)`` variable, ``(batch, G, N, L)`` grouped (G divides dim; channel ``c``
            reads group ``c // (dim // G)``), or ``(dim, N)`` fixed.
        D, delta_bias: optional ``(dim,)``.  z: optional ``(batch, dim, L)`` gate.
        return_last_state: also return the state after the last step, ``(batch, dim, N)`` fp32.
        initial_state: optional ``(batch, dim, N)`` state before the first step (keyword only; beyond
            mamba_ssm's signature), with its gradient.
        deterministic: keyword only. The backward sums the ``B`` / ``C`` gradients over channels with
            fp32 atomics by default (as mamba_ssm does), so they can differ in the last bits from run
            to run; ``True`` writes per-program partials and adds them in a fixed order instead (more
            memory when ``B``/``C`` vary with time). ``None`` follows
            ``torch.are_deterministic_algorithms_enabled()``.

    Returns:
        ``out (batch, dim, L)`` in ``u``'s dtype, or ``(out, last_state)``. Differentiable in every
        tensor argument; the backward recomputes the states from per-tile checkpoints.
    """
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    tensors = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    plain = (delta_softplus, return_last_state, deterministic, _runtime.INTERPRET)
    plan, plan_key = _plans.lookup(_PLANS, tensors, plain)
    if plan:   # made after a call of this very signature passed the checks
        out, last = plan(tensors)
        return (out, last) if return_last_state else out
    # the checks read shapes, dtypes and devices only: once per signature
    key = _validate.signature(tensors, plain)
    if _PASSED.get(key) is None:
        _validate_all(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state,
                      deterministic)
        _PASSED.put(key, True)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, deterministic)
    out, last, _ = _selective_scan(*args)
    _plans.remember(_PLANS, plan_key, lambda: _plan(tensors, delta_softplus))
    return (out, last) if return_last_state else out


_PASSED = _validate.Passed()
# calls that record no graph: the forward of each input signature as one bound launch (ops/_plans.py)
_PLANS = _plans.Plans()


def _plan(tensors, delta_softplus, a_log=False):
    """The forward's op plan where the inputs need no copy on the way to the kernel (as ``_forward`` would
    leave them), else None; ``a_log``: ``A`` is ``log(-A)``."""
    u, delta, A, B, C, D, z, delta_bias, initial_state = tensors
    if any(t is not None and not t.is_contiguous() for t in (u, delta, A, D, z, delta_bias, initial_state)):
        return None
    if _steps_contiguous(B) is not B or _steps_contiguous(C) is not C:
        return None
    return _k.forward_plan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, a_log)


def _validate_all(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state,
                  deterministic):
    _validate.tensor("u", u, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, dim, L)")
    bsz, dim, L = u.shape
    _validate.tensor("delta", delta, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, dim, L)")
    _validate.shape("delta", delta, u.shape, "(batch, dim, L) as u")
    _validate.tensor("A", A, ndim=2, dtypes=IO_DTYPES, shape_doc="(dim, N)")
    if A.shape[0] != dim:
        raise ValueError(f"A must have shape (dim, N) with dim = u.shape[1] = {dim}, got {tuple(A.shape)}")
    N = A.shape[1]
    if not 1 <= N <= MAX_STATE:
        raise ValueError(f"A must have a state size N = A.shape[1] between 1 and {MAX_STATE}, got {N}")
    # a variable B or C counts as one group; when both vary, they must split the channels alike
    groups = {g for g in (_check_bc("B", B, bsz, dim, N, L), _check_bc("C", C, bsz, dim, N, L)) if g > 0}
    if len(groups) > 1:
        raise ValueError(f"B and C must have the same number of groups when both vary with time, got {sorted(groups)}")
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None:
            _validate.tensor(name, x, ndim=1, dtypes=IO_DTYPES, shape_doc="(dim,)")
            _validate.shape(name, x, (dim,), "(dim,)")
    if z is not None:
        _validate.tensor("z", z, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, dim, L)")
        _validate.shape("z", z, u.shape, "(batch, dim, L) as u")
    if initial_state is not None:
        _validate.tensor("initial_state", initial_state, ndim=3, dtypes=IO_DTYPES, shape_doc="(batch, dim, N)")
        _validate.shape("initial_state", initial_state, (bsz, dim, N), "(batch, dim, N)")
    _validate.flag("delta_softplus", delta_softplus)
    _validate.flag("return_last_state", return_last_state)
    _validate.flag("deterministic", deterministic)
    _validate.devices(("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"),
                      (u, delta, A, B, C, D, z, delta_bias, initial_state))


_LOG_PLANS = _plans.Plans()


def scan_from_log(u: Tensor, delta: Tensor, A_log: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                  z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                  return_last_state: bool = False):
    """:func:`selective_scan_fn` of ``A = -exp(A_log)`` (``A_log (dim, N)``, as ``Mamba`` keeps it), the exponential
    taken inside the forward kernel: a call that keeps nothing for a backward makes no PyTorch launches for ``A``
    (a cast, an ``exp`` and a negation: three kernels a layer of an LM's prefill). Where a gradient is asked for, or
    under ``torch.compile``, it is the public op with ``A`` computed in PyTorch. Returns as the public op."""
    tensors = (u, delta, A_log, B, C, D, z, delta_bias, None)
    if records_graph(*tensors):
        return selective_scan_fn(u, delta, -torch.exp(A_log.float()), B, C, D, z, delta_bias, delta_softplus,
                                 return_last_state)
    plain = (delta_softplus, return_last_state, False, _runtime.INTERPRET)
    plan, plan_key = _plans.lookup(_LOG_PLANS, tensors, plain)
    if plan:
        out, last = plan(tensors)
        return (out, last) if return_last_state else out
    key = _validate.signature(tensors, plain)
    if _PASSED.get(key) is None:
        _validate_all(u, delta, A_log, B, C, D, z, delta_bias, delta_softplus, return_last_state, None, False)
        _PASSED.put(key, True)
    out, last, _, _ = _k.selective_scan_forward(_c(u), _c(delta), _c(A_log), _steps_contiguous(B),
                                                _steps_contiguous(C), _c(D), _c(z), _c(delta_bias), delta_softplus,
                                                None, store_ckpt=False, a_log=True)
    _plans.remember(_LOG_PLANS, plan_key, lambda: _plan(tensors, delta_softplus, True))
    return (out, last) if return_last_state else out
