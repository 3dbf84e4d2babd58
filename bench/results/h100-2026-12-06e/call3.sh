#!/usr/bin/env bash
# Call 3 (2026-12-06, thirty-eighth session; carry .whl, ~420 s). (1) Issue 18's fp32 linear-scan fwd+bwd rows
# (0.92-0.97x accelerated-scan in call 1) with the backward's aligned form among the tuner's candidates
# (SSM_TRITON_SCAN_ALIGNED=1: a[t] read in place, never timed) against without, alternating processes, and the
# kernels of one such row for both implementations. (2) Issue 19: the SISO walk capped at 128 registers (two 8-warp
# programs an SM; 968 B of spill against 256) alternating with the default (walk_choice --ab).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for round in 1 2; do for al in 0 1; do
  SSM_TRITON_SCAN_ALIGNED=$al timeout 70 python3 -m ssm_triton bench --ops linear_scan --match 'float32 fwd\+bwd' \
    --json $OUT/ls-fp32-al$al-r$round.json > /dev/null 2>&1
done; done
timeout 60 python3 -m ssm_triton.bench.profile --ops linear_scan --match "(1, 1536, 16384) float32 fwd+bwd" \
  > $OUT/profile-ls-fp32.txt 2>&1
SSM_TRITON_SCAN_ALIGNED=1 timeout 60 python3 -m ssm_triton.bench.profile --ops linear_scan --match "(1, 1536, 16384) float32 fwd+bwd" \
  --impl ssm_triton >> $OUT/profile-ls-fp32.txt 2>&1
s=$(date +%s)
timeout 230 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --ab "WALK_MAXNREG=128" --kernels 4 > $OUT/walk-maxnreg.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk-maxnreg.txt
python3 - <<'PY'
import json, os, glob
rows = {}
for f in sorted(glob.glob(os.environ["OUT"] + "/ls-fp32-*.json")):
    tag = os.path.basename(f)[8:-5]
    for r in json.load(open(f))["results"]:
        rows.setdefault((str(r["shape"]), r["impl"]), []).append(f"{tag} {r['ms']:.4f}")
for k, v in rows.items():
    print(k, " ".join(v))
PY
grep -v Warn $OUT/profile-ls-fp32.txt | grep -E "ms of|kernel|tuned" | head -20; grep -v -i warn $OUT/walk-maxnreg.txt | tail -30
