"""``python rows.py GLOB``: every bench row of the JSON records matching GLOB, one line a case, each file's ms side by
side (the A/B calls' summary)."""
import glob
import json
import os
import sys

rows = {}
for f in sorted(glob.glob(sys.argv[1])):
    for r in json.load(open(f))["results"]:
        rows.setdefault((r["op"], str(r["shape"]), r["dtype"][6:], r["direction"], r["impl"]), []).append(
            f"{os.path.basename(f)[:-5]} {r['ms']:.4f}")
for k, v in rows.items():
    print(*k, " | ".join(v))
