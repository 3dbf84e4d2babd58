"""PNG plots of benchmark records (matplotlib, imported only here).

Per op: a sweep figure where the records form series along the sequence length or the batch (three or
more sizes with everything else fixed): effective bandwidth (minimal I/O over time, the same measure
for every implementation) against size, one line per implementation and one panel per dtype and
direction. The cases outside any series go to a bar chart of times.
"""
import os
from collections import defaultdict

from .report import OURS

# (batch axis, length axis) of each op's shape tuple
SWEEP_AXES = {"linear_scan": (0, 2), "selective_scan": (0, 2), "ssd": (0, 1)}
MIN_POINTS = 3


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series(records: list[dict]) -> dict:
    """``{(op, axis_name, fixed_shape, dtype, direction): {impl: [(size, gbps), ...]}}`` for every run of
    at least ``MIN_POINTS`` sizes along the batch or length axis; ``fixed_shape`` has that axis as None."""
    found = defaultdict(lambda: defaultdict(dict))
    for r in records:
        axes = SWEEP_AXES.get(r["op"])
        if axes is None:
            continue
        for name, axis in zip(("batch", "length"), axes):
            fixed = tuple(None if i == axis else v for i, v in enumerate(r["shape"]))
            found[(r["op"], name, fixed, r["dtype"], r["direction"])][r["impl"]][r["shape"][axis]] = r["gbps"]
    out = {}
    for key, impls in found.items():
        if len(impls.get(OURS, {})) >= MIN_POINTS:
            out[key] = {impl: sorted(points.items()) for impl, points in impls.items()}
    return out


def _colors(records: list[dict]) -> dict:
    """One colour per implementation, the same in every panel and figure."""
    names = sorted({r["impl"] for r in records}, key=lambda n: (n != OURS, n))
    return {n: f"C{i % 10}" for i, n in enumerate(names)}


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _title_shape(fixed: tuple, axis_name: str) -> str:
    return "×".join(axis_name[0].upper() if v is None else str(v) for v in fixed)


def sweep_plots(records: list[dict], out_dir: str) -> list[str]:
    plt = _pyplot()
    by_op = defaultdict(list)
    for key, impls in series(records).items():
        by_op[key[0]].append((key, impls))
    colors = _colors(records)
    written = []
    for op, panels in sorted(by_op.items()):
        panels.sort(key=lambda p: (p[0][1], str(p[0][2]), p[0][3], p[0][4]))
        cols = min(4, len(panels))
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
        for ax, ((_, axis_name, fixed, dtype, direction), impls) in zip(axes.flat, panels):
            for impl in sorted(impls, key=lambda n: (n != OURS, n)):
                xs, ys = zip(*impls[impl])
                ax.plot(xs, ys, marker="o", lw=2.2 if impl == OURS else 1.2, label=impl, color=colors[impl])
            ax.set_xscale("log", base=2)
            ax.set_xlabel(axis_name)
            ax.set_ylabel("GB/s of minimal I/O")
            ax.set_title(f"{_title_shape(fixed, axis_name)} {dtype} {direction}", fontsize=9)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        r0 = next(r for r in records if r["op"] == op)
        fig.suptitle(f"{op} sweeps — {r0['device']}, {r0['date']}")
        written.append(_save(plt, fig, os.path.join(out_dir, f"{op}_sweep.png")))
    return written


def bar_plots(records: list[dict], out_dir: str) -> list[str]:
    plt = _pyplot()
    colors = _colors(records)
    in_series = set()
    for (op, _, fixed, dtype, direction), impls in series(records).items():
        for size, _ in impls[OURS]:
            in_series.add((op, tuple(size if v is None else v for v in fixed), dtype, direction))
    written = []
    for op in sorted({r["op"] for r in records}):
        rs = [r for r in records if r["op"] == op and (op, tuple(r["shape"]), r["dtype"], r["direction"]) not in in_series]
        if not rs:
            continue
        label = lambda r: ("x".join(map(str, r["shape"])), r["dtype"], r["direction"])  # noqa: E731
        cases = sorted({label(r) for r in rs})
        impls = sorted({r["impl"] for r in rs}, key=lambda n: (n != OURS, n))
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cases)), 4))
        width = 0.8 / len(impls)
        for i, impl in enumerate(impls):
            ms = {label(r): r["ms"] for r in rs if r["impl"] == impl}
            xs = [j + i * width for j, c in enumerate(cases) if c in ms]
            ax.bar(xs, [ms[c] for c in cases if c in ms], width, label=impl, color=colors[impl])
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
        ax.set_xticklabels(["\n".join(c) for c in cases], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median, log scale)")
        ax.set_title(f"{op} — {rs[0]['device']}, {rs[0]['date']}")
        ax.legend(fontsize=8)
        written.append(_save(plt, fig, os.path.join(out_dir, f"{op}.png")))
    return written


def plot(records: list[dict], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    return sweep_plots(records, out_dir) + bar_plots(records, out_dir)
