#!/usr/bin/env bash
# Call 51 (2026-12-07: what ~220 s of device time holds after five failed starts; carry .whl): no tests, the prefill
# graph with the chunk scan's split decay (SSM_TRITON_SCAN_SPLIT, with and without the register cap) against the
# default, one process each, tuner off; call50.sh's other rows wait for the next session.
. bench/results/gpu-2026-12-07f/forms.sh; CALL_BUDGET=${CALL_BUDGET:-210}
SKIP_CHECK=1 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
prefill "::::" "::1:168:" "::1::" "::::" "64,64,8,2::1::" "::1:168:"
echo "== total $(( $(date +%s) - T0 )) s" >> $S
