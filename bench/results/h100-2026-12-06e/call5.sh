#!/usr/bin/env bash
# Call 5 (written 2026-12-06, thirty-eighth session, for the next; carry .whl and .peers, ~330 s; did not run: no machine could be started,
# then too little device time was left). (1) Issue 19: the SISO walk capped at 128
# registers (SSM_TRITON_WALK_MAXNREG: two 8-warp programs an SM, 968 B of spill against 256) alternating with the
# default (walk_choice --ab), while mamba_ssm's CUDA selective scan builds in the background (CPU only). (2) Issue 18:
# the selective scan's headline rows beside that build with this session's backward (one zeroed buffer, shared sums).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
(s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt) &
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 250 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --ab "WALK_MAXNREG=128" --kernels 4 > $OUT/walk-maxnreg.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk-maxnreg.txt
wait
timeout 90 python3 -m ssm_triton bench --ops selective_scan --json $OUT/ss-peer.json > $OUT/ss-peer.txt 2>&1; echo "rc=$?" >> $OUT/ss-peer.txt
python3 - <<'PY'
import json, os
d = json.load(open(os.environ["OUT"] + "/ss-peer.json"))
for r in d["results"]:
    print(r["shape"], r["dtype"][6:], r["direction"], r["impl"], round(r["ms"], 4), round(r.get("host_us", 0)), r.get("peak_mb"))
PY
tail -1 $OUT/peer_build.txt; grep -v -i warn $OUT/walk-maxnreg.txt | tail -30
# With REV_GATHER's verdict from call4.sh: if it won there, rerun the peer bench above with SSM_TRITON_SS_REV_GATHER=1.
