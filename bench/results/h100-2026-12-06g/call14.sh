#!/usr/bin/env bash
# Call 14 (2026-12-06, fortieth session; carry .base = git archive 5891442, the session's first code; ~200 s): call 13
# cut to what ~200 s of device time holds: the 130M LMs' b16 decode step after and before (.base), then the GPU tests
# of the composed steps' two kernels' changes.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D6=$R/bench/results/h100-2026-12-06f
M='decode_step.\((16),\)'
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
timeout 70 python3 -m ssm_triton bench --ops lm --no-peers --match "$M" --json $OUT/lm.json > $OUT/lm.txt 2>&1
rm -rf /tmp/base && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/base $R/.base
PYTHONPATH=/tmp/base timeout 70 python3 -m ssm_triton bench --ops lm --no-peers --match "$M" --json $OUT/lm-baseline.json \
  > $OUT/lm-baseline.txt 2>&1
cd $R
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=60 TESTS="tests/test_state_update.py tests/test_conv1d.py" \
  bash bench/gpu_run.sh -k "update_matches or from_A_log or planned" > /dev/null 2>&1
tail -2 $OUT/pytest.txt; python3 $D6/rows.py "$OUT/lm*.json"
