"""``python -m ssm_triton check``: every kernel against its float64 reference on a small default problem.

Runs on whatever is present (compiled kernels on CUDA, the interpreter on CPU), prints
``op | device | dtype | max error | tolerance | ok | worst output`` and reports failure through the exit code.
"""
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from . import _runtime
from .kernels import tuning
from .ops.discretize import discretize
from .ops.scan import linear_scan
from .ops.selective_scan import selective_scan_fn
from .ops.ssd import mamba_chunk_scan_combined
from .ops.conv1d import causal_conv1d_fn, causal_conv1d_update
from .ops.norm import rmsnorm_fn
from .ops.state_update import selective_state_update
from .ops.mamba3 import mamba3_mimo_step, mamba3_siso_combined, mamba3_siso_step
from .ops.mamba3_mimo import mamba3_mimo
from .reference import (causal_conv1d_torch, causal_conv1d_update_torch, discretize_np, discretize_torch, linear_scan_np, linear_scan_torch, selective_scan_np,
                        mamba3_mimo_loop, mamba3_mimo_step_ref, mamba3_siso_loop, rmsnorm_torch, selective_scan_ref, selective_state_update_np, ssd_np, ssd_quadratic_torch)
from .tolerance import scaled_error, tolerance

# A case builds its inputs on a device in a dtype and returns [(what, kernel result, reference)].
Comparison = list[tuple[str, torch.Tensor, object]]


@dataclass(frozen=True)
class Case:
    op: str
    run: Callable[[torch.device, torch.dtype], Comparison]
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16)
    computed_operands: bool = False   # tensor-core operands rounded inside the kernels (tolerance.COMPUTED_OPERANDS)


@dataclass(frozen=True)
class Row:
    op: str
    device: str
    dtype: str
    max_error: float
    tolerance: float
    worst: str = ""   # the output that scored it (its name in the case: "out", "dB", ...)

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tolerance  # False for NaN too


def _inputs(device, dtype, *shapes_and_kinds, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for shape, kind in shapes_and_kinds:
        x = torch.rand(shape, generator=g, dtype=torch.float64) if kind == "unit" else torch.randn(shape, generator=g, dtype=torch.float64)
        out.append(x.to(device=device, dtype=dtype))
    return out


def _np(x):
    return x.detach().to("cpu", torch.float64).numpy()


def _scan_forward(device, dtype) -> Comparison:
    a, b, h0 = _inputs(device, dtype, ((3, 4, 100), "unit"), ((3, 4, 100), "normal"), ((3, 4), "normal"))
    out = []
    for reverse in (False, True):
        h = linear_scan(a, b, h0, reverse=reverse)
        out.append((f"h reverse={reverse}", h, linear_scan_np(_np(a), _np(b), _np(h0), reverse)))
    return out


def _scan_backward(device, dtype) -> Comparison:
    a, b, h0, g = _inputs(device, dtype, ((2, 3, 50), "unit"), ((2, 3, 50), "normal"), ((2, 3), "normal"), ((2, 3, 50), "normal"))
    leaves = [t.requires_grad_() for t in (a, b, h0)]
    got = torch.autograd.grad(linear_scan(*leaves), leaves, g)
    ref_leaves = [t.detach().double().cpu().requires_grad_() for t in leaves]
    want = torch.autograd.grad(linear_scan_torch(*ref_leaves), ref_leaves, g.double().cpu())
    return [(n, x, w) for n, x, w in zip(("da", "db", "dh0"), got, want)]


def _discretize_inputs(device, dtype):
    delta, A, B = _inputs(device, dtype, ((2, 4, 40), "unit"), ((4, 16), "unit"), ((2, 16, 40), "normal"))
    return delta * 0.5 + 1e-3, -(A.float() * 8), B  # A is fp32, as in Mamba


def _discretize_forward(method):
    def run(device, dtype) -> Comparison:
        delta, A, B = _discretize_inputs(device, dtype)
        abar, bbar = discretize(delta, A, B, method)
        ref_a, ref_b = discretize_np(_np(delta), _np(A), _np(B), method)
        return [("Abar", abar, ref_a), ("Bbar", bbar, ref_b)]
    return run


def _discretize_backward(method):
    def run(device, dtype) -> Comparison:
        delta, A, B = _discretize_inputs(device, dtype)
        leaves = [t.requires_grad_() for t in (delta, A, B)]
        abar, bbar = discretize(*leaves, method)
        ga, gb = _inputs(device, abar.dtype, (abar.shape, "normal"), (bbar.shape, "normal"), seed=1)
        got = torch.autograd.grad((abar * ga).sum() + (bbar * gb).sum(), leaves)
        ref_leaves = [t.detach().double().cpu().requires_grad_() for t in leaves]
        ra, rb = discretize_torch(*ref_leaves, method)
        want = torch.autograd.grad((ra * ga.double().cpu()).sum() + (rb * gb.double().cpu()).sum(), ref_leaves)
        return [(n, x, w) for n, x, w in zip(("ddelta", "dA", "dB"), got, want)]
    return run


def _selective_scan_inputs(device, dtype):
    """Mamba-like: grouped B and C, D, z, delta_bias, softplus; A, D, bias fp32; 2 tiles' worth of steps."""
    u, delta, z, B, C = _inputs(device, dtype, ((2, 8, 70), "normal"), ((2, 8, 70), "normal"), ((2, 8, 70), "normal"),
                                ((2, 2, 16, 70), "normal"), ((2, 2, 16, 70), "normal"))
    A, D, bias = _inputs(device, torch.float32, ((8, 16), "unit"), ((8,), "normal"), ((8,), "normal"), seed=1)
    return dict(u=u, delta=delta, A=-(A * 4 + 0.1), B=B, C=C, D=D, z=z, delta_bias=bias, delta_softplus=True)


def _selective_scan_forward(device, dtype) -> Comparison:
    x = _selective_scan_inputs(device, dtype)
    out, last = selective_scan_fn(**x, return_last_state=True)
    want_out, want_last = selective_scan_np(**{k: (_np(v) if isinstance(v, torch.Tensor) else v) for k, v in x.items()})
    return [("out", out, want_out), ("last_state", last, want_last)]


def _selective_scan_backward(device, dtype) -> Comparison:
    x = _selective_scan_inputs(device, dtype)
    leaves = {k: v.requires_grad_() for k, v in x.items() if isinstance(v, torch.Tensor)}
    out = selective_scan_fn(**leaves, delta_softplus=True)
    (g,) = _inputs(device, dtype, (out.shape, "normal"), seed=2)
    got = torch.autograd.grad(out, list(leaves.values()), g)
    ref_leaves = {k: v.detach().double().cpu().requires_grad_() for k, v in leaves.items()}
    want = torch.autograd.grad(selective_scan_ref(**ref_leaves, delta_softplus=True), list(ref_leaves.values()),
                               g.double().cpu())
    return [(f"d{k}", x_, w) for k, x_, w in zip(leaves, got, want)]


def _ssd_inputs(device, dtype):
    """Mamba-2-like: 2 groups of 2 heads, D per head, z, dt_bias, softplus, a clamp, an initial state, two
    sequences packed in the second row; 40 steps in chunks of 16 (a partial last chunk)."""
    x, z, B, C = _inputs(device, dtype, ((2, 40, 4, 8), "normal"), ((2, 40, 4, 8), "normal"),
                         ((2, 40, 2, 16), "normal"), ((2, 40, 2, 16), "normal"))
    dt, A, D, bias, h0 = _inputs(device, torch.float32, ((2, 40, 4), "normal"), ((4,), "unit"), ((4,), "normal"),
                                 ((4,), "normal"), ((2, 4, 8, 16), "normal"), seed=1)
    seq = torch.tensor([[0] * 40, [0] * 25 + [1] * 15], dtype=torch.int32, device=device)
    return dict(x=x, dt=dt, A=-(A * 2 + 0.1), B=B, C=C, D=D, z=z, dt_bias=bias, initial_states=h0, seq_idx=seq,
                dt_softplus=True, dt_limit=(0.001, 5.0))


def _ssd_forward(device, dtype) -> Comparison:
    x = _ssd_inputs(device, dtype)
    out, final = mamba_chunk_scan_combined(**x, chunk_size=16, return_final_states=True)
    want_out, want_final = ssd_np(**{k: (_np(v) if isinstance(v, torch.Tensor) else v) for k, v in x.items()})
    return [("out", out, want_out), ("final_states", final.to(dtype), want_final)]


def _ssd_backward(device, dtype) -> Comparison:
    x = _ssd_inputs(device, dtype)
    leaves = {k: v.requires_grad_() for k, v in x.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    flags = {k: v for k, v in x.items() if k not in leaves}
    out = mamba_chunk_scan_combined(**leaves, **flags, chunk_size=16)
    (g,) = _inputs(device, dtype, (out.shape, "normal"), seed=2)
    got = torch.autograd.grad(out, list(leaves.values()), g)
    ref_leaves = {k: v.detach().double().cpu().requires_grad_() for k, v in leaves.items()}
    ref_flags = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in flags.items()}
    want = torch.autograd.grad(ssd_quadratic_torch(**ref_leaves, **ref_flags)[0], list(ref_leaves.values()),
                               g.double().cpu())
    # gradients are stored in each input's dtype; the budget is the I/O dtype's
    return [(f"d{k}", x_.to(dtype), w) for k, x_, w in zip(leaves, got, want)]


def _state_update(device, dtype) -> Comparison:
    """Mamba-2's decode step: 2 of a 5-row cache, 4 heads in 2 groups, stride-0 dt / A / D / dt_bias."""
    x, z, B, C = _inputs(device, dtype, ((2, 4, 8), "normal"), ((2, 4, 8), "normal"), ((2, 2, 16), "normal"),
                         ((2, 2, 16), "normal"))
    state, dt, A, D, bias = _inputs(device, torch.float32, ((5, 4, 8, 16), "normal"), ((2, 4), "normal"),
                                    ((4,), "unit"), ((4,), "normal"), ((4,), "normal"), seed=1)
    args = dict(x=x, dt=dt[..., None].expand(2, 4, 8), A=-(A[:, None, None] + 0.1).expand(4, 8, 16), B=B, C=C,
                D=D[:, None].expand(4, 8), z=z, dt_bias=bias[:, None].expand(4, 8), dt_softplus=True,
                state_batch_indices=torch.tensor([3, 1], device=device))
    want_out, want_state = selective_state_update_np(_np(state), **{
        k: (_np(v) if isinstance(v, torch.Tensor) and v.is_floating_point() else v.cpu().numpy() if isinstance(v, torch.Tensor) else v)
        for k, v in args.items()})
    out = selective_state_update(state, **args)
    return [("out", out, want_out), ("state", state, want_state)]


def _rmsnorm(before: bool):
    def run(device, dtype) -> Comparison:
        x, z, w, b, g = _inputs(device, dtype, ((3, 5, 64), "normal"), ((3, 5, 64), "normal"), ((64,), "normal"),
                                ((64,), "normal"), ((3, 5, 64), "normal"))
        leaves = [t.requires_grad_() for t in (x, w, b, z)]
        y = rmsnorm_fn(x, w, b, z=z, group_size=16, norm_before_gate=before)
        got = torch.autograd.grad(y, leaves, g)
        ref = [t.detach().double().cpu().requires_grad_() for t in leaves]
        want_y = rmsnorm_torch(ref[0], ref[1], ref[2], z=ref[3], group_size=16, norm_before_gate=before)
        want = torch.autograd.grad(want_y, ref, g.double().cpu())
        return [("y", y, want_y)] + [(f"d{n}", a, c) for n, a, c in zip(("x", "weight", "bias", "z"), got, want)]
    return run


def _conv1d(device, dtype) -> Comparison:
    """Width 4, bias, silu, two sequences packed in the second row; then 3 update steps on a 5-long state."""
    x, w, b, g = _inputs(device, dtype, ((2, 6, 30), "normal"), ((6, 4), "normal"), ((6,), "normal"),
                         ((2, 6, 30), "normal"))
    seq = torch.tensor([[0] * 30, [0] * 11 + [1] * 19], dtype=torch.int32, device=device)
    leaves = [t.requires_grad_() for t in (x, w, b)]
    y = causal_conv1d_fn(*leaves, seq_idx=seq, activation="silu")
    got = torch.autograd.grad(y, leaves, g)
    ref = [t.detach().double().cpu().requires_grad_() for t in leaves]
    want_y = causal_conv1d_torch(*ref, seq_idx=seq.cpu(), activation="silu")
    want = torch.autograd.grad(want_y, ref, g.double().cpu())
    state, xs = _inputs(device, dtype, ((2, 6, 5), "normal"), ((2, 6, 3), "normal"), seed=3)
    want_u, want_state = causal_conv1d_update_torch(*(t.detach().double().cpu() for t in (xs, state, w, b)), "silu")
    with torch.no_grad():
        out_u = causal_conv1d_update(xs, state, w, b, "silu")
    return ([("out", y, want_y)] + [(f"d{n}", a, c) for n, a, c in zip(("x", "weight", "bias"), got, want)]
            + [("update out", out_u, want_u), ("conv_state", state, want_state)])


def _mamba3_inputs(device, dtype):
    """4 heads reading 2 Q/K heads, N 12 (a rotated half, 3 pairs), P 8, D, Z, input states; 40 steps in
    chunks of 16."""
    Q, K, V, Z = _inputs(device, dtype, ((2, 40, 2, 12), "normal"), ((2, 40, 2, 12), "normal"),
                         ((2, 40, 4, 8), "normal"), ((2, 40, 4, 8), "normal"))
    dt, a, trap, qb, kb, ang, D, s0, s1, s2, s3 = _inputs(
        device, torch.float32, ((2, 4, 40), "unit"), ((2, 4, 40), "unit"), ((2, 4, 40), "normal"), ((4, 12), "normal"),
        ((4, 12), "normal"), ((2, 40, 4, 3), "normal"), ((4,), "normal"), ((2, 4, 3), "unit"), ((2, 4, 8, 12), "normal"),
        ((2, 4, 12), "normal"), ((2, 4, 8), "normal"), seed=1)
    dt = dt * 0.5 + 0.01
    return dict(Q=Q, K=K, V=V, ADT=-(a + 0.1) * dt, DT=dt, Trap=trap, Q_bias=qb * 0.3, K_bias=kb * 0.3, Angles=ang,
                D=D, Z=Z), (s0 * 6, s1 * 0.5, s2, s3)


def _mamba3_forward_backward(device, dtype) -> Comparison:
    x, states = _mamba3_inputs(device, dtype)
    leaves = {k: v.requires_grad_() for k, v in x.items()}
    out, *finals = mamba3_siso_combined(**leaves, Input_States=states, chunk_size=16, return_final_states=True)
    (g,) = _inputs(device, dtype, (out.shape, "normal"), seed=2)
    got = torch.autograd.grad(out, list(leaves.values()), g)
    ref = {k: v.detach().double().cpu().requires_grad_() for k, v in leaves.items()}
    want_out, want_states = mamba3_siso_loop(**ref, Input_States=tuple(s.double().cpu() for s in states))
    want = torch.autograd.grad(want_out, list(ref.values()), g.double().cpu())
    return ([("out", out, want_out), ("final ssm", finals[1].to(dtype), want_states[1]),
             ("final k", finals[2].to(dtype), want_states[2])]
            + [(f"d{k}", a.to(dtype), w) for k, a, w in zip(leaves, got, want)])


def _mamba3_step(device, dtype) -> Comparison:
    x, states = _mamba3_inputs(device, dtype)
    token = {k: (v[:, 0] if k in ("Q", "K", "V", "Z", "Angles") else v[:, :, 0] if k in ("ADT", "DT", "Trap") else v)
             for k, v in x.items()}
    held = tuple(s.clone() for s in states)
    out, _ = mamba3_siso_step(**token, Input_States=held, inplace=True)
    one = {k: (v[:, :1] if k in ("Q", "K", "V", "Z", "Angles") else v[..., :1] if k in ("ADT", "DT", "Trap") else v)
           for k, v in x.items()}
    want_out, want_states = mamba3_siso_loop(**{k: v.double().cpu() for k, v in one.items()},
                                             Input_States=tuple(s.double().cpu() for s in states))
    return [("out", out, want_out[:, 0]), ("ssm", held[1], want_states[1]), ("k", held[2], want_states[2])]


def _mamba3_mimo_step(device, dtype) -> Comparison:
    """Rank 3, 4 heads on 2 Q/K heads, N 12 (2 turned pairs), P 8, D, Z, the ranks summed by MIMO_Out."""
    Q, K = _inputs(device, dtype, ((2, 3, 2, 12), "normal"), ((2, 3, 2, 12), "normal"))
    x, z = _inputs(device, dtype, ((2, 4, 8), "normal"), ((2, 4, 8), "normal"), seed=3)
    dt, a, trap, qb, kb, mv, mz, mo, ang, D, s0, s1, s2, s3 = _inputs(
        device, torch.float32, ((2, 4), "unit"), ((2, 4), "unit"), ((2, 4), "normal"), ((4, 3, 12), "normal"),
        ((4, 3, 12), "normal"), ((4, 3, 8), "normal"), ((4, 3, 8), "normal"), ((4, 3, 8), "normal"), ((2, 4, 2), "normal"),
        ((4,), "normal"), ((2, 4, 2), "unit"), ((2, 4, 8, 12), "normal"), ((2, 3, 4, 12), "normal"), ((2, 4, 8), "normal"),
        seed=1)
    states = (s0 * 6, s1 * 0.5, s2, s3.to(dtype))
    args = (Q, K, x, -(a + 0.1) * (dt * 0.5 + 0.01), dt * 0.5 + 0.01, trap, qb * 0.3, kb * 0.3, mv, mz, mo, ang)
    held = tuple(s.clone() for s in states)
    out, _ = mamba3_mimo_step(*args, D=D, Z=z, Input_States=held, inplace=True)
    rep = lambda t: t.double().cpu().repeat_interleave(2, 2)  # noqa: E731  (each Q/K head serves two heads)
    c = lambda t: t.double().cpu()  # noqa: E731
    x_, adt, dt_, trap_, qb_, kb_, mv_, mz_, mo_, ang_ = (c(t) for t in args[2:])
    want, want_states = mamba3_mimo_step_ref(tuple(c(s) for s in states), rep(Q), rep(K), x_, adt, dt_, trap_, ang_,
                                             qb_, kb_, mv_, mz_, mo_, D=c(D), z=c(z))
    return [("out", out, want), ("ssm", held[1], want_states[1]), ("k", held[2], want_states[2])]


def _mamba3_mimo(device, dtype) -> Comparison:
    """Rank 3, 4 heads on 2 Q/K heads, N 12 (2 turned pairs), P 8, D, Z, input states; 21 steps in chunks of 4."""
    Q, K, x, z = _inputs(device, dtype, ((2, 21, 3, 2, 12), "normal"), ((2, 21, 3, 2, 12), "normal"),
                         ((2, 21, 4, 8), "normal"), ((2, 21, 4, 8), "normal"))
    dt, a, trap, qb, kb, mv, mz, mo, ang, D, s0, s1, s2, s3 = _inputs(
        device, torch.float32, ((2, 4, 21), "unit"), ((2, 4, 21), "unit"), ((2, 4, 21), "normal"), ((4, 3, 12), "normal"),
        ((4, 3, 12), "normal"), ((4, 3, 8), "normal"), ((4, 3, 8), "normal"), ((4, 3, 8), "normal"),
        ((2, 21, 4, 2), "normal"), ((4,), "normal"), ((2, 4, 2), "unit"), ((2, 4, 8, 12), "normal"),
        ((2, 3, 4, 12), "normal"), ((2, 4, 8), "normal"), seed=1)
    dt = dt * 0.5 + 0.01
    leaves = dict(Q=Q, K=K, V=x, ADT=-(a + 0.1) * dt, DT=dt, Trap=trap, Q_bias=qb * 0.3, K_bias=kb * 0.3, MIMO_V=mv,
                  MIMO_Z=mz, MIMO_Out=mo * 0.5, Angles=ang, D=D, Z=z)
    leaves = {k: v.detach().requires_grad_() for k, v in leaves.items()}
    states = (s0 * 6, s1 * 0.5, s2, s3)
    out, finals = mamba3_mimo(**leaves, chunk_size=4, return_state=True, Input_States=states)
    (g,) = _inputs(device, dtype, (out.shape, "normal"), seed=2)
    got = torch.autograd.grad(out, list(leaves.values()), g)
    ref = {k: v.detach().double().cpu().requires_grad_() for k, v in leaves.items()}
    want_out, want_states = mamba3_mimo_loop(**ref, Input_States=tuple(s.double().cpu() for s in states))
    want = torch.autograd.grad(want_out, list(ref.values()), g.double().cpu())
    return ([("out", out, want_out), ("final ssm", finals[1].to(dtype), want_states[1]),
             ("final k", finals[2].to(dtype), want_states[2])]
            + [(f"d{k}", a.to(dtype), w) for k, a, w in zip(leaves, got, want)])


def default_cases() -> list[Case]:
    cases = [Case("linear_scan fwd", _scan_forward), Case("linear_scan bwd", _scan_backward)]
    for method in ("zoh", "mamba", "bilinear"):
        cases.append(Case(f"discretize[{method}] fwd", _discretize_forward(method)))
        cases.append(Case(f"discretize[{method}] bwd", _discretize_backward(method)))
    cases.append(Case("selective_scan fwd", _selective_scan_forward))
    cases.append(Case("selective_scan bwd", _selective_scan_backward))
    cases.append(Case("ssd fwd", _ssd_forward))
    cases.append(Case("ssd bwd", _ssd_backward))
    cases.append(Case("selective_state_update", _state_update))
    cases.append(Case("rmsnorm gated (norm, gate)", _rmsnorm(True)))
    cases.append(Case("rmsnorm gated (gate, norm)", _rmsnorm(False)))
    cases.append(Case("causal_conv1d fwd/bwd/update", _conv1d))
    cases.append(Case("mamba3_siso fwd/bwd", _mamba3_forward_backward, computed_operands=True))
    cases.append(Case("mamba3_siso_step", _mamba3_step))
    cases.append(Case("mamba3_mimo fwd/bwd", _mamba3_mimo, computed_operands=True))
    cases.append(Case("mamba3_mimo_step", _mamba3_mimo_step))
    return cases


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu (triton interpreter)"


def iter_checks(cases: Iterable[Case], device: torch.device, outputs: list | None = None) -> Iterator[Row]:
    """One row per (case, dtype), as each is done: the worst scaled error over the case's outputs, and
    the budget, which is the tolerance of the dtype each output is stored in. ``outputs``: a list that
    receives ``(name, error, budget)`` of every output of the row before it is yielded."""
    for case in cases:
        for dtype in case.dtypes:
            errors, tols, names = [], [], []
            for name, actual, expected in case.run(device, dtype):
                errors.append(scaled_error(actual, expected))
                tols.append(tolerance(actual.dtype, case.computed_operands))
                names.append(name)
            worst = max(range(len(errors)), key=lambda i: errors[i] / tols[i])
            if outputs is not None:
                outputs[:] = list(zip(names, errors, tols))
            yield Row(case.op, device_name(device), str(dtype).replace("torch.", ""), errors[worst], tols[worst],
                      names[worst])


def run_checks(cases: Iterable[Case], device: torch.device) -> list[Row]:
    return list(iter_checks(cases, device))


HEADER = ("op", "device", "dtype", "max error", "tolerance", "ok", "worst output")


def _cells(r: Row) -> tuple:
    return (r.op, r.device, r.dtype, f"{r.max_error:.2e}", f"{r.tolerance:.1e}", "ok" if r.ok else "FAIL", r.worst)


def _line(cells, widths) -> str:
    return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths))


def format_table(rows: list[Row]) -> str:
    body = [_cells(r) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(HEADER, *body)]
    return "\n".join([_line(HEADER, widths), "-+-".join("-" * w for w in widths), *(_line(b, widths) for b in body)])


def main(cases: Iterable[Case] | None = None, device: torch.device | None = None, only: str | None = None,
         outputs: bool = False) -> int:
    """Prints the table a row at a time (a slow first compile shows progress) and a summary line. Runs
    every kernel with its size rule: tuning is not what is checked here (``tests/test_configs.py`` runs
    every candidate), unless ``SSM_TRITON_AUTOTUNE`` is set. ``only``: the cases whose op name contains it;
    ``outputs``: each row followed by every output's error and budget."""
    if "SSM_TRITON_AUTOTUNE" not in os.environ:
        os.environ["SSM_TRITON_AUTOTUNE"] = "0"
        tuning.forget()
    device = device or _runtime.default_device()
    cases = default_cases() if cases is None else list(cases)
    if only:
        cases = [c for c in cases if only in c.op]
        if not cases:
            print(f"check: no op name contains {only!r}")
            return 2
    widths = (34, len(device_name(device)), 8, 9, 9, 4, 12)
    print(_line(HEADER, widths))
    print("-+-".join("-" * w for w in widths), flush=True)
    rows, each = [], [] if outputs else None
    for row in iter_checks(cases, device, each):
        rows.append(row)
        print(_line(_cells(row), widths), flush=True)
        for name, error, budget in each or ():
            print(f"    {name:28s} {error:.2e} of {budget:.1e}{'' if error <= budget else '  FAIL'}", flush=True)
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
