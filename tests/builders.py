"""Problem builders that several test files share (the scans' inputs), and the profile's ``BIG``
(defined in strategies.py) for files that need nothing else from there."""
import contextlib

import torch
import torch.nn.functional as F

from ssm_triton.reference import causal_conv1d_torch, rmsnorm_torch, selective_scan_ref, ssd_quadratic_torch
from strategies import BIG, normal, uniform  # noqa: F401  (BIG: re-exported)


# ---- SSD (Mamba-2) ----

def make_ssd_problem(bsz, L, groups, heads_per_group, P, N, seed, options, device="cpu"):
    H = groups * heads_per_group
    t = {"x": normal((bsz, L, H, P), seed, device), "dt": normal((bsz, L, H), seed + 1, device, scale=0.5),
         "A": -uniform((H,), 0.05, 2.0, seed + 2, device),
         "B": normal((bsz, L, groups, N), seed + 3, device), "C": normal((bsz, L, groups, N), seed + 4, device)}
    if options:
        t.update(D=normal((H, P) if seed % 2 else (H,), seed + 5, device), z=normal((bsz, L, H, P), seed + 6, device),
                 dt_bias=normal((H,), seed + 7, device, scale=0.3), dt_softplus=True, dt_limit=(0.05, 3.0),
                 initial_states=normal((bsz, H, P, N), seed + 8, device))
    else:
        t["dt"] = t["dt"].abs() + 0.01  # no softplus: keep the steps positive, as a model's would be
    return t


def cancelling_grad(g, z, x, per_channel: bool, dtype):
    """``g (b, L, H, P)`` with its component along ``silu(z) x`` taken out per head (per channel when
    ``per_channel``), rounded to ``dtype``: the gradient of ``D`` under it, ``sum dout silu(z) x``, is then
    a sum of large terms that cancel to a small rest, which rounding ``dout silu(z)`` before summing loses."""
    w = (torch.nn.functional.silu(z.double()) * x.double())
    dims = (0, 1) if per_channel else (0, 1, 3)
    coef = (g.double() * w).sum(dims, keepdim=True) / (w * w).sum(dims, keepdim=True).clamp_min(1e-30)
    return (g.double() - coef * w).to(dtype)


def ssd_np64(t):
    """The problem's tensors as NumPy arrays (for the float64 references)."""
    return {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


# ---- selective scan (Mamba-1) ----

LAYOUTS = ["variable", "grouped", "fixed"]


def make_scan_problem(bsz, groups, per_group, L, N, layout, seed, device, with_options):
    d = groups * per_group
    u = normal((bsz, d, L), seed, device)
    # raw steps must be positive; through softplus any real value is a valid step
    delta = uniform((bsz, d, L), -3.0, 1.0, seed + 1, device) if with_options else uniform((bsz, d, L), 1e-3, 1.0, seed + 1, device)
    A = -uniform((d, N), 0.1, 4.0, seed + 2, device)
    shape = {"variable": (bsz, N, L), "grouped": (bsz, groups, N, L), "fixed": (d, N)}[layout]
    B, C = normal(shape, seed + 3, device), normal(shape, seed + 4, device)
    extra = {}
    if with_options:
        extra = dict(D=normal((d,), seed + 5, device), z=normal((bsz, d, L), seed + 6, device),
                     delta_bias=normal((d,), seed + 7, device), delta_softplus=True,
                     initial_state=normal((bsz, d, N), seed + 8, device))
    return (u, delta, A, B, C), extra


def np64(x):
    """A tensor as a float64 NumPy array (anything else unchanged)."""
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else x


# ---- Mamba-1's block function ----

def inner_reference(xz, w, b, x_proj, dt_proj, out_proj, A, D, dt_bias, rms, eps=1e-6, out_b=None, last=False):
    """mamba_ssm's ``mamba_inner_fn`` from the references (differentiable): conv + silu, x_proj, the dt
    projection, the optional RMS norms of B, C and dt (dt's after its projection, as mamba_ssm does;
    ``rms``: weights keyed ``b``, ``c``, ``d``), the selective scan gated by ``silu(z)``, out_proj."""
    R, N = dt_proj.shape[1], A.shape[1]
    x, z = xz.chunk(2, dim=1)
    x = causal_conv1d_torch(x, w[:, 0], b, activation="silu")
    dbl = x.transpose(1, 2) @ x_proj.T
    dt, B, C = dbl[..., :R] @ dt_proj.T, dbl[..., R:R + N], dbl[..., R + N:]
    if rms is not None:
        B, C, dt = (rmsnorm_torch(v, rms[k], eps=eps) for k, v in zip("bcd", (B, C, dt)))
    y, state = selective_scan_ref(x, dt.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D=D, z=z,
                                  delta_bias=dt_bias, delta_softplus=True, return_last_state=True)
    out = y.transpose(1, 2) @ out_proj.T + (out_b if out_b is not None else 0)
    return (out, state) if last else out


# ---- Mamba-3 (SISO and MIMO share the four states: angle, ssm, k, v / x) ----

def mamba3_leaves(t: dict, cast: bool = False) -> dict:
    """Fresh grad-requiring copies of a problem's tensors (fp64 with ``cast``), the input states included."""
    f = (lambda v: v.double()) if cast else (lambda v: v)  # noqa: E731
    out = {k: (f(v).detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
    if "Input_States" in t:
        out["Input_States"] = tuple(f(s).detach().clone().requires_grad_() for s in t["Input_States"])
    return out


def mamba3_tensors(t: dict, state_names) -> dict:
    """Every tensor input by name, the input states as four entries."""
    out = {k: v for k, v in t.items() if isinstance(v, torch.Tensor)}
    for name, s in zip(state_names, t.get("Input_States", ())):
        out[f"Input_States.{name}"] = s
    return out


def assert_angle_close(got, want, dtype, name):
    """Angles are kept mod 2 pi: compare where they point."""
    from ssm_triton.tolerance import assert_close
    assert_close(torch.cos(got.double()), torch.cos(want), dtype, f"cos {name}")
    assert_close(torch.sin(got.double()), torch.sin(want), dtype, f"sin {name}")


def assert_mamba3_matches(out, finals, want, want_states, x, x64, dtype, seed, state_names):
    """Outputs, final states and the gradient of every input (one random cotangent per output, the angle
    through cos and sin) against the float64 reference's, in bf16 / fp16 within the budget of outputs of
    kernel-computed tensor-core operands (``tolerance.COMPUTED_OPERANDS``)."""
    from ssm_triton.tolerance import assert_close, tolerance
    assert_close(out, want, dtype, "out", computed_operands=True)
    assert_angle_close(finals[0], want_states[0], torch.float32, "final angle")
    for name, g, w in zip(state_names[1:], finals[1:], want_states[1:]):
        assert_close(g, w, dtype, f"final {name}", computed_operands=True)
    ws = [normal(o.shape, seed + 20 + i, out.device) for i, o in enumerate((want, *want_states))]

    def loss(o, states):
        angle = states[0].double()
        total = (o.double() * ws[0]).sum() + (torch.cos(angle) * ws[1]).sum() + (torch.sin(angle) * ws[1]).sum()
        return total + sum((s.double() * w).sum() for s, w in zip(states[1:], ws[2:]))

    inputs = mamba3_tensors(x, state_names)
    got = torch.autograd.grad(loss(out, finals), list(inputs.values()))
    exp = torch.autograd.grad(loss(want, want_states), list(mamba3_tensors(x64, state_names).values()))
    # a gradient that is zero by structure (ADT's at L = 1 without input states: the decay acts on a zero state)
    # has no scale of its own; the kernels' sums of cancelling terms leave fp32 rounding there, held to the
    # budget relative to the largest gradient of the call
    scale = max(float(e.abs().max()) for e in exp if e.numel())
    for name, g, e in zip(inputs, got, exp):
        assert g.dtype == inputs[name].dtype, name
        if e.numel() and not bool(e.any()):
            worst = float(g.double().abs().max()) / scale
            assert worst <= tolerance(dtype, True), f"d {name}: {worst:.3e} of the largest gradient, expected 0"
            continue
        assert_close(g, e, dtype, f"d {name}", computed_operands=True)


# ---- transformers ----

def groups_in_fallback_norm() -> bool:
    """Whether transformers' own gated norm normalises each of n_groups apart, as mamba_ssm's does. Before
    about 5.20 (5.17 on the GPU machine) it normalised all groups together; with n_groups > 1 its training
    loss then differs from mamba_ssm's fused function, and so from ours, by its own choice."""
    import inspect

    from transformers.models.mamba2 import modeling_mamba2
    # 5.25 renamed MambaRMSNormGated to Mamba2RMSNormGated
    norm = getattr(modeling_mamba2, "Mamba2RMSNormGated", None) or modeling_mamba2.MambaRMSNormGated
    return "group_size" in inspect.signature(norm.__init__).parameters


def split_reference(zxbcdt, w, b, dt_bias, A, D, H, P, G, N, d_mlp, norm_w, gate_first, out_w, out_b=None,
                    initial_states=None, seq_idx=None):
    """mamba_split_conv1d_scan_combined composed from the float64 references: ``(out, final_states)``."""
    L = zxbcdt.shape[1]
    z0, x0, z, xBC, dt = torch.split(zxbcdt, [d_mlp, d_mlp, H * P, H * P + 2 * G * N, H], dim=-1)
    xBC = causal_conv1d_torch(xBC.transpose(1, 2), w, b, seq_idx=seq_idx, activation="silu").transpose(1, 2)
    x, B, C = torch.split(xBC, [H * P, G * N, G * N], dim=-1)
    r = lambda t, *s: t.reshape(t.shape[0], L, *s)  # noqa: E731
    y, final = ssd_quadratic_torch(r(x, H, P), dt, A, r(B, G, N), r(C, G, N), D=D,
                                   z=None if norm_w is not None else r(z, H, P), dt_bias=dt_bias,
                                   initial_states=initial_states, seq_idx=seq_idx, dt_softplus=True)
    y = y.reshape(y.shape[0], L, H * P)
    if norm_w is not None:
        y = rmsnorm_torch(y, norm_w, z=z, eps=1e-5, group_size=H * P // G, norm_before_gate=not gate_first)
    if d_mlp:
        y = torch.cat([F.silu(z0) * x0, y], dim=-1)
    if out_w is not None:
        y = y @ out_w.T + (out_b if out_b is not None else 0)
    return y, final


@contextlib.contextmanager
def one_launch_training(segments: int, *noted: str):
    """The training route of the SSD's one-launch forward forced on (``launch.FUSED_TRAIN`` and ``FUSED``), rows in
    ``segments`` segments of 16-step multiples; yields the list of its launches, each as the tuple of its ``noted``
    keyword arguments."""
    from ssm_triton.kernels.ssd import fused, launch
    launched = []
    real = fused.ssd_fused_fwd_kernel.launch

    def spy(*a, **k):
        launched.append(tuple(k.get(n) for n in noted))
        return real(*a, **k)

    before = fused.SEGMENTS, fused.ALIGN, launch.FUSED, launch.FUSED_TRAIN
    fused.SEGMENTS, fused.ALIGN, launch.FUSED, launch.FUSED_TRAIN = str(segments), 16, "1", "1"
    fused.ssd_fused_fwd_kernel.launch = spy
    try:
        yield launched
    finally:
        fused.ssd_fused_fwd_kernel.launch = real
        fused.SEGMENTS, fused.ALIGN, launch.FUSED, launch.FUSED_TRAIN = before


@contextlib.contextmanager
def walking_backward(sub: int = 32, segments: int = 1, ahead: bool = True, frec: bool = False, merge: bool = True):
    """The backward of Mamba-3's scans in one launch (``launch.WALK_BWD``, ``walk_bwd.py``) forced on, walking
    chunks of ``2 sub`` steps in halves (``launch.WALK_SUB``), each row's chunks in ``segments`` side by side
    (``launch.WALK_SEGMENTS``; fewer where the row has fewer chunks), each block's loads issued by the block walked
    before it where ``ahead`` (``launch.WALK_AHEAD``), else by itself, the carried state's decay term from a running
    scalar where ``frec`` (``launch.WALK_FREC``), ``dh`` cast once and three row sums in one reduction where
    ``merge`` (``launch.WALK_MERGE``); yields the list of its launches' ``(Q, SUB, segments, dk's dtype, dq's dtype,
    AHEAD)`` so a test sees the route taken (replays off, as for
    :func:`sums_in_state_passing`)."""
    from ssm_triton.kernels import replay
    from ssm_triton.kernels.ssd import launch
    launched = []

    class Spy:
        def __call__(self, grid, **k):
            launched.append((k["Q"], k["SUB"], grid[1], k["DK"].dtype, k["DQ"].dtype, k["AHEAD"]))
            return kernel(grid, **k)

    kernel = launch.walk_bwd_kernel
    names = "WALK_BWD", "walk_bwd_kernel", "WALK_SUB", "WALK_SEGMENTS", "WALK_AHEAD", "WALK_FREC", "WALK_MERGE"
    before = [getattr(launch, n) for n in names], replay.ENABLED
    for n, v in zip(names, ("1", Spy(), sub, str(segments), "1" if ahead else "0", "1" if frec else "0",
                             "1" if merge else "0")):
        setattr(launch, n, v)
    replay.ENABLED = False
    try:
        yield launched
    finally:
        for n, v in zip(names, before[0]):
            setattr(launch, n, v)
        replay.ENABLED = before[1]


@contextlib.contextmanager
def stages_only():
    """The SSD's staged forward forced (``launch.FUSED`` "0": no one-launch forward, which a training call of few
    rows takes by default) with replays off: the route a test compares :func:`sums_in_state_passing` against."""
    from ssm_triton.kernels import replay
    from ssm_triton.kernels.ssd import launch
    before = launch.FUSED, replay.ENABLED
    launch.FUSED, replay.ENABLED = "0", False
    try:
        yield
    finally:
        launch.FUSED, replay.ENABLED = before


@contextlib.contextmanager
def sums_in_state_passing():
    """Each chunk's own end state summed inside the forward's state passing (``launch.OWN_FUSED``) and the adjoint
    sums inside the reversed one (``launch.ADJ_FUSED``), forced on, with the one-launch forward off (``launch.FUSED``
    "0": the stages run); yields ``{"own": [...], "adjoint": [...]}``, the ``Q`` of each of those kernels' launches,
    so a test sees the route taken (replays off: a replayed call launches binaries without passing the spies)."""
    from ssm_triton.kernels.ssd import launch
    launched = {"own": [], "adjoint": []}

    def spy(kernel, name):
        class Spy:
            def __call__(self, grid, **k):
                launched[name].append(k["Q"])
                return kernel(grid, **k)
        return Spy()

    names = ("OWN_FUSED", "ADJ_FUSED", "state_fwd_own_kernel", "state_bwd_adjoint_kernel")
    before = [getattr(launch, n) for n in names]
    for n, v in zip(names, ("1", "1", spy(launch.state_fwd_own_kernel, "own"),
                            spy(launch.state_bwd_adjoint_kernel, "adjoint"))):
        setattr(launch, n, v)
    try:
        with stages_only():
            yield launched
    finally:
        for n, v in zip(names, before):
            setattr(launch, n, v)
