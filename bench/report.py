"""Markdown tables from benchmark records: ``python -m ssm_triton.bench.report RESULTS.json [...]``.

One table per device and date, one row per (op, shape, dtype, direction): ssm_triton's time and roofline
fraction, then each peer's time and its time over ours (above 1: we are faster; below 1 is marked
slower). This is how the README's tables are made from ``bench/results/*.json``.
"""
import argparse
import json
import sys
from collections import defaultdict

OURS = "ssm_triton"


def load(paths) -> list[dict]:
    records = []
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        records += data["results"] if isinstance(data, dict) else data
    return records


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssm_triton.bench.report", description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="JSON files written by python -m ssm_triton bench --json")
    args = p.parse_args(argv)
    print(tables(load(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
