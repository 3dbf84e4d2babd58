#!/usr/bin/env bash
# Call 1 (2026-12-06, thirty-eighth session; carry .whl, ~480 s). First 12-06d's call6.sh (does the linear scan's
# small fwd+bwd synchronize the host?), then issue 18's linear-scan fwd+bwd rows beside accelerated-scan again (the op
# reshapes nothing since 12-06d) with a cProfile of one small fwd+bwd on this host, the selective scan's backward
# segments with the 4/8-channel candidates, and the one-launch SSD forward's register caps (tune_fused, 4 segments).
bash bench/results/h100-2026-12-06d/call6.sh > /dev/null 2>&1
rm -f ssm_triton/kernels ssm_triton/reference ssm_triton/bench
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 120 python3 -m ssm_triton bench --ops linear_scan --match 'fwd\+bwd' --json $OUT/linear-scan-bwd.json > $OUT/linear-scan-bwd.txt 2>&1
echo "rc=$?" >> $OUT/linear-scan-bwd.txt
timeout 60 python3 -m ssm_triton.bench.overhead --ops linear_scan --match "1536, 1024\) float32 fwd\+bwd" --top 25 \
  > $OUT/overhead-ls-bwd.txt 2>&1; echo "rc=$?" >> $OUT/overhead-ls-bwd.txt
timeout 110 python3 -m ssm_triton.bench.sweep_selective bwd_segments 1x1536x2048 1x1536x8192 2x1536x2048 \
  > $OUT/bwd-segments.txt 2>&1; echo "rc=$?" >> $OUT/bwd-segments.txt
SSM_TRITON_TUNE_CACHE=0 timeout 110 python3 -m ssm_triton.bench.tune_fused --shapes 1x2048 1x512 --segments 4 \
  > $OUT/tune-maxnreg.txt 2>&1; echo "rc=$?" >> $OUT/tune-maxnreg.txt
python3 - <<'PY'
import json, os
d = json.load(open(os.environ["OUT"] + "/linear-scan-bwd.json"))
for r in d["results"]:
    print(r["shape"], r["dtype"][6:], r["direction"], r["impl"], round(r["ms"], 4), round(r.get("host_us", 0)))
PY
cat $OUT/sync.txt; grep -vi warn $OUT/overhead-ls-bwd.txt | head -60; grep -v Warn $OUT/bwd-segments.txt; grep -v Warn $OUT/tune-maxnreg.txt | tail -30
