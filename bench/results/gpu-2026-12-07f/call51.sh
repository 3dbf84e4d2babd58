#!/usr/bin/env bash
# Call 51 (2026-12-07: what ~220 s of device time holds after five failed starts; carry .whl): no tests, the prefill
# graph with the chunk scan's split decay (SSM_TRITON_SCAN_SPLIT, with and without the register cap) against the
# default, one process each, tuner off; call50.sh's other rows wait for the next session.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-210} - ($(date +%s) - T0) )); }
SKIP_CHECK=1 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in "::::" "::1:168:" "::1::" "::::" "64,64,8,2::1::" "::1:168:"; do
  [ $(left) -gt 25 ] || break
  IFS=: read tiles order split cap state <<< "$v"
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_SCAN_TILES=$tiles SSM_TRITON_SCAN_ORDER=$order SSM_TRITON_SCAN_SPLIT=$split \
    SSM_TRITON_SCAN_MAXNREG=$cap SSM_TRITON_STATE_TILES=$state timeout 40 python3 -m ssm_triton bench --ops lm \
    --no-peers --match '^lm_prefill_cuda_graph' > /tmp/p.txt 2>&1
  echo "== TILES:ORDER:SPLIT:MAXNREG:STATE='$v' $(grep -E '^lm_prefill_cuda_graph' /tmp/p.txt | awk -F'|' '{print $6}')" >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
