#!/usr/bin/env bash
# Call 3 (2026-12-06, thirty-seventh session). Issue 18's linear-scan rows beside accelerated-scan (the small rows'
# bf16 forward read 0.114 ms against 0.0175 on 12-03, unexplained: the kernel took 0.015 in the tuner's timing),
# with the kernel breakdown of that row; then issue 17's forward host time of the single-launch ops (op plans on
# and off alternating, bench/overhead.py --plans). Carry .whl; about 200 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 150 python3 -m ssm_triton bench --ops linear_scan --json $OUT/linear-scan.json > $OUT/linear-scan.txt 2>&1
echo "rc=$?" >> $OUT/linear-scan.txt
timeout 40 python3 -m ssm_triton.bench.profile --ops linear_scan --match "(1, 1536, 4096) bfloat16 fwd" \
  > $OUT/profile-ls-small.txt 2>&1
timeout 90 python3 -m ssm_triton.bench.overhead --plans --rounds 5 --ops linear_scan selective_scan ssd state_update \
  conv1d gated_rmsnorm --top 0 > $OUT/overhead-plans.txt 2>&1; echo "rc=$?" >> $OUT/overhead-plans.txt
python3 - <<'PY'
import json, os
d = json.load(open(os.environ["OUT"] + "/linear-scan.json"))
for r in d["results"]:
    print(r["shape"], r["dtype"][6:], r["direction"], r["impl"], round(r["ms"], 4), round(r.get("host_us", 0)))
PY
grep -v Warn $OUT/profile-ls-small.txt | grep -E "ms|tuned" | head; grep -vi warn $OUT/overhead-plans.txt | tail -40
