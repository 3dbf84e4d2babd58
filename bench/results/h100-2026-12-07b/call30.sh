#!/usr/bin/env bash
# Call 30 (2026-12-07, forty-fifth session; carry .whl): the fused steps' looped projections with their norms in one
# pass (kernels/fused_step.py ONE_PASS, SSM_TRITON_STEP_ONE_PASS=0/1 pins the form): GPU tests, memcheck, then the
# 130M LMs' replayed step at 16 rows, the fused step (SSM_TRITON_M2_FUSED_ROWS=16) in one pass and in two against the
# composed step (call 28: 0.6563 composed, 0.7808 fused in two passes), and the kernels of the one-pass step.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-480} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=6 TEST_TIMEOUT=100 TESTS="tests/test_fused_step.py" bash bench/gpu_run.sh -n 4 \
  -k "one_pass_or_two or every_in_step or matches_the_float64 or lm_decoding" > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -30 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt
SSM_TRITON_EXAMPLES=3 SANITIZE="tests/test_fused_step.py" SANITIZE_K="one_pass_or_two" SANITIZE_TIMEOUT=60 \
  SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
{ echo "== memcheck"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
run() {   # label, env...
  local label=$1; shift
  [ $(left) -gt 70 ] || return
  env "$@" timeout 75 python3 -m ssm_triton bench --ops lm --no-peers --match 'decode_step.\((16),\)' > /tmp/lm.txt 2>&1
  { echo "== $label"; grep -h "decode_step" /tmp/lm.txt | grep -v "\[#" | grep " ssm_triton "; } >> $S
}
run "fused 16 rows, one pass" SSM_TRITON_M2_FUSED_ROWS=16 SSM_TRITON_STEP_ONE_PASS=1
run "fused 16 rows, two passes" SSM_TRITON_M2_FUSED_ROWS=16 SSM_TRITON_STEP_ONE_PASS=0
run "composed (default rows), one pass" SSM_TRITON_STEP_ONE_PASS=1
run "fused 16 rows, one pass (again)" SSM_TRITON_M2_FUSED_ROWS=16 SSM_TRITON_STEP_ONE_PASS=1
if [ $(left) -gt 60 ]; then
  SSM_TRITON_M2_FUSED_ROWS=16 SSM_TRITON_STEP_ONE_PASS=1 timeout 60 python3 -m ssm_triton.bench.profile --ops lm \
    --match "lm_decode_step (16,)" --impl 'ssm_triton$' --rows 8 > $OUT/profile.txt 2>&1
  grep -E "ms of kernels|^  +[0-9]|tuned: mamba2_(in|out)_step" $OUT/profile.txt | head -16 >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
