"""Markdown tables from benchmark records: ``python -m ssm_triton.bench.report RESULTS.json [...]``.

One table per device and date, one row per (op, shape, dtype, direction): ssm_triton's time and roofline
fraction, then each peer's time and its time over ours (above 1: we are faster; below 1 is marked
slower). ``--plot DIR`` redraws the plots from the records. ``--readme docs/benchmarks.md`` writes the tables
between the ``bench-tables`` markers of that page instead of printing them: that is how the record tables of
docs/benchmarks.md are made from ``bench/results/*.json``.
"""
import argparse
import json
import sys
from collections import defaultdict

OURS = "ssm_triton"
BEGIN = "<!-- bench-tables:begin (python -m ssm_triton.bench.report bench/results/*.json --readme docs/benchmarks.md) -->"
END = "<!-- bench-tables:end -->"


def load(paths) -> list[dict]:
    records = []
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        records += data["results"] if isinstance(data, dict) else data
    return records


def latest(records: list[dict]) -> list[dict]:
    """One record per (op, shape, dtype, direction, impl): the newest by date, a later file winning a tie,
    so a re-run supersedes the rows it re-measured and leaves the others."""
    keep: dict = {}
    for r in records:
        key = (r["op"], tuple(r["shape"]), r["dtype"], r["direction"], r["impl"])
        if key not in keep or r.get("date", "") >= keep[key].get("date", ""):
            keep[key] = r
    return list(keep.values())


def _ms(ms: float) -> str:
    return f"{ms:.4f}" if ms < 1 else f"{ms:.3f}" if ms < 100 else f"{ms:.1f}"


def tables(records: list[dict]) -> str:
    by_run = defaultdict(list)
    for r in records:
        by_run[(r.get("device", "?"), r.get("date", "?"))].append(r)
    out = []
    for (device, date), rs in sorted(by_run.items(), key=lambda kv: kv[0][1]):
        cases = defaultdict(dict)
        for r in rs:
            cases[(r["op"], "×".join(map(str, r["shape"])), r["dtype"], r["direction"])][r["impl"]] = r
        out += [f"**{device}, {date}**", "", "| op | shape | dtype | dir | ssm_triton ms | roofline | peer | peer ms | peer / ours |",
                "|---|---|---|---|---|---|---|---|---|"]
        for (op, shape, dtype, direction), impls in cases.items():
            ours = impls.get(OURS)
            peers = [(n, r) for n, r in impls.items() if n != OURS] or [(None, None)]
            for k, (name, peer) in enumerate(peers):
                cells = [op, shape, dtype, direction] if k == 0 else ["", "", "", ""]
                if k == 0 and ours is not None:
                    frac = ours.get("roofline_frac")
                    cells += [_ms(ours["ms"]), f"{100 * frac:.0f}%" if frac is not None else "–"]
                else:
                    cells += ["", ""] if k else ["–", "–"]
                if peer is None:
                    cells += ["–", "–", "–"]
                else:
                    ratio = peer["ms"] / ours["ms"] if ours else None
                    mark = "" if ratio is None or ratio >= 1 else " (slower)"
                    cells += [name, _ms(peer["ms"]), f"{ratio:.2f}×{mark}" if ratio is not None else "–"]
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def rewrite_readme(path: str, text: str) -> bool:
    """Replace what lies between the markers in ``path`` with ``text``; False when the markers are missing."""
    with open(path) as f:
        doc = f.read()
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        return False
    with open(path, "w") as f:
        f.write(doc[:start + len(BEGIN)] + "\n" + text.rstrip("\n") + "\n" + doc[end:])
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssm_triton.bench.report", description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="JSON files written by python -m ssm_triton bench --json")
    p.add_argument("--readme", metavar="PATH", help="write the tables between this file's bench-tables markers")
    p.add_argument("--plot", metavar="DIR", help="also draw the records' plots (bench/plots.py) into DIR")
    args = p.parse_args(argv)
    records = latest(load(args.results))
    if args.plot:
        from . import plots

        for path in plots.plot(records, args.plot):
            print(f"wrote {path}")
    text = tables(records)
    if args.readme is None:
        print(text)
        return 0
    if not rewrite_readme(args.readme, text):
        print(f"{args.readme}: no bench-tables markers ({BEGIN} ... {END})", file=sys.stderr)
        return 1
    print(f"rewrote the tables in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
