#!/usr/bin/env bash
# Call 56 (carry .whl and .peers; CALL_BUDGET ~540): the state update with heads on the grid's second axis (its
# programs walk the state as it lies), then issue 18's fp32 linear-scan rows:
#  (0) GPU tests of the state update and the steps that launch it (the deferred norm, the fused and composed
#      Mamba2 steps), and the SSD test whose comparison now runs the stages on both sides (call 54's one failure);
#  (1) the bandwidth probe again (the op against a copy and the probe's tiles), and the bench's state_update row
#      beside mamba_ssm's;
#  (2) call 55's fp32 linear scan beside accelerated-scan with and without REV_GATHER, as time allows.
set -uo pipefail
CALL_BUDGET=${CALL_BUDGET:-540}; T0=$(date +%s); left() { echo $(( CALL_BUDGET - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=6 TEST_TIMEOUT=150 TESTS="tests/test_state_update.py tests/test_norm_defer.py tests/test_fused_step.py tests/test_mamba2_step.py tests/test_ssd.py" \
  bash bench/gpu_run.sh -n 8 -k "not test_ssd or chunk_sums_inside" > /dev/null 2>&1
S=$OUT/summary.txt; mv $OUT/gpu.txt $S
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -60 $OUT/failures.txt 2>/dev/null; } >> $S
rm -f $OUT/pytest.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 80 python3 $R/bench/results/gpu-2026-12-08/probe_state_bw.py > $OUT/probe_state_bw.txt 2>&1
timeout 60 python3 -m ssm_triton bench --ops state_update > /tmp/p.txt 2>&1
{ echo "== bench state_update"; grep -E "^state_update" /tmp/p.txt || tail -3 /tmp/p.txt; } >> $S
for v in 0 1 0 1; do
  [ $(left) -gt 100 ] || break
  SSM_TRITON_SCAN_REV_GATHER=$v timeout $(( $(left) - 20 < 150 ? $(left) - 20 : 150 )) python3 -m ssm_triton bench \
    --ops linear_scan --match 'float32' > /tmp/p.txt 2>&1
  { echo "== linear scan fp32, SSM_TRITON_SCAN_REV_GATHER=$v"; grep -E "^linear_scan|accel" /tmp/p.txt | head -40 || tail -5 /tmp/p.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
