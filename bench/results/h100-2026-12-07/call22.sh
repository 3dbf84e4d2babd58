#!/usr/bin/env bash
# Call 22 (2026-12-07; carry .whl, .peers; ~150 s): call 21 cut to what ~170 s of device time holds: the Mamba2 LM at
# 16 rows with the mended one-launch step (SSM_TRITON_M2_STEP=1) and with the three ops (0), one process each, then
# the one-launch step's GPU tests.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt
(cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
 for v in 1 0; do
   SSM_TRITON_M2_STEP=$v timeout 45 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \(16,\)' --json $OUT/lm2-m2step$v.json > /tmp/lm2.txt 2>&1
   { echo "== lm2 M2_STEP=$v"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
 done)
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=50 TESTS="tests/test_mamba2_step.py" bash bench/gpu_run.sh -n 4 > /dev/null 2>&1
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -60 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt $OUT/failures.txt $OUT/gpu.txt
cat $S
