"""Problem builders that several test files share (the scans' inputs), and the profile's ``BIG``
(defined in strategies.py) for files that need nothing else from there."""
import torch

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
