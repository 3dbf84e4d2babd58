#!/usr/bin/env bash
# Call 5 of 12-06e's plan, run 2026-12-06 (thirty-ninth session; carry .whl and .peers): (1) issue 19's SISO walk
# capped at 128 registers against the default, while mamba_ssm's CUDA selective scan builds in the background; (2)
# MIMO rank 4 B8 at chunks of 16 (the walk) and 32 (128 rank-steps a chunk: past the walk's 64, so the stages);
# (3) issue 18: the selective scan's rows beside that build.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
(s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt) &
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 200 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --ab "WALK_MAXNREG=128" --kernels 4 > $OUT/walk-maxnreg.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk-maxnreg.txt
wait
timeout 90 python3 -m ssm_triton bench --ops selective_scan --json $OUT/ss-peer.json > $OUT/ss-peer.txt 2>&1; echo "rc=$?" >> $OUT/ss-peer.txt
python3 - <<'PY'
import json, os
d = json.load(open(os.environ["OUT"] + "/ss-peer.json"))
for r in d["results"]:
    print(r["shape"], r["dtype"][6:], r["direction"], r["impl"], round(r["ms"], 4), round(r.get("host_us", 0)), r.get("peak_mb"))
PY
s=$(date +%s)
timeout 150 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" --mimo-chunk 16 --mimo-chunk 32 --kernels 6 > $OUT/mimo-chunks.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/mimo-chunks.txt
tail -1 $OUT/peer_build.txt; grep -v -i warn $OUT/walk-maxnreg.txt | tail -30; grep -v -i warn $OUT/mimo-chunks.txt | tail -40
