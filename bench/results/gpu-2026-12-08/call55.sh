#!/usr/bin/env bash
# Call 55 (carry .whl; CALL_BUDGET ~400): issue 18's fp32 linear-scan rows, where accelerated-scan is ahead
# (0.92-1.00x at L <= 16K, H100 12-06e): every fp32 row beside it with the tuner's candidates as they are, then
# with the backward's REV_GATHER form among them (SSM_TRITON_SCAN_REV_GATHER=1; untimed since 12-06), one
# process each.
set -uo pipefail
CALL_BUDGET=${CALL_BUDGET:-400}; T0=$(date +%s); left() { echo $(( CALL_BUDGET - ($(date +%s) - T0) )); }
SKIP_CHECK=1 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1   # installs the package and the peers only
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
S=$OUT/summary.txt; nvidia-smi --query-gpu=name --format=csv,noheader > $S
for v in 0 1 0 1; do
  [ $(left) -gt 100 ] || break
  SSM_TRITON_SCAN_REV_GATHER=$v timeout 150 python3 -m ssm_triton bench --ops linear_scan --match 'float32' \
    --json $OUT/linear_scan_rev$v.json > /tmp/p.txt 2>&1
  { echo "== linear scan fp32, SSM_TRITON_SCAN_REV_GATHER=$v"; grep -E "^linear_scan|accel" /tmp/p.txt | head -40 || tail -5 /tmp/p.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
