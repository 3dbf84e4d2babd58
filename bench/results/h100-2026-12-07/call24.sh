#!/usr/bin/env bash
# Call 24 (carry .whl, .peers; up to CALL_BUDGET s (560), each step skipped once too little time is left): call 23's measurements
# plus the forty-third session's Mamba-2 step in fewer launches (kernels/in_update.py: SSM_TRITON_M2_IN_UPDATE=1, the
# state update inside the input projection's launch; =2, the out step too, one launch a layer). In order of need:
#  (1) GPU tests (8 xdist workers) of the fused steps (the new launch's property, config, chained and LM tests);
#  (2) the 130M Mamba2 LM's replayed step at 1 and 4 rows, IN_UPDATE 2, 1 and 0, one process each;
#  (3) memcheck of the new launch; GPU tests of the one-launch Mamba-2 step and the Mamba3 steps; memcheck of call 23's
#      forms;
#  (4) torch.profiler of the b1 step with IN_UPDATE=2; the LM at 16 rows with SSM_TRITON_M2_STEP 1 against 0;
#  (5) the Mamba-1 LM at 1 / 4 / 16 rows, SSM_TRITON_M1_DT_IN_UPDATE 1 against 0; the Mamba3 LM's b1 profile.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-560} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt
s=$(date +%s)
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=${FIRST_TESTS_S:-80} TESTS="tests/test_fused_step.py" bash bench/gpu_run.sh -n 8 -k "in_update or update_in or chained or lm_decoding or matches_the_float64" > /dev/null 2>&1
{ echo "== pytest ($(( $(date +%s)-s )) s)"; tail -2 $OUT/pytest.txt; head -60 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt $OUT/failures.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in 2 0 1; do
  [ $(left) -gt 60 ] || break
  SSM_TRITON_M2_IN_UPDATE=$v timeout 55 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \((1|4),\)' --json $OUT/lm2-inup$v.json > /tmp/lm2.txt 2>&1
  { echo "== lm2 M2_IN_UPDATE=$v ($(left) s left)"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; tail -3 /tmp/lm2.txt | grep -i error; } >> $S
done
cd $R
if [ $(left) -gt 70 ]; then
  s=$(date +%s)
  SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_fused_step.py" SANITIZE_K="update_in_the_input or chained" \
    SANITIZE_TIMEOUT=$(( $(left) > 130 ? 60 : 45 )) SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
  { echo "== memcheck ($(( $(date +%s)-s )) s)"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
fi
if [ $(left) -gt 120 ]; then
  s=$(date +%s)
  SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=90 TESTS="tests/test_mamba2_step.py tests/test_mamba3.py tests/test_mamba3_block.py" bash bench/gpu_run.sh -n 8 -k "one_launch or several_row or column_groups or whole or token_by_token" > /dev/null 2>&1
  { echo "== pytest mamba2_step/mamba3 ($(( $(date +%s)-s )) s)"; tail -2 $OUT/pytest.txt; head -40 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt $OUT/failures.txt $OUT/gpu.txt
fi
if [ $(left) -gt 100 ]; then
  s=$(date +%s)
  SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_fused_step.py tests/test_mamba2_step.py tests/test_mamba3.py" \
    SANITIZE_K="one_launch or dt_proj_in or token_by_token" SANITIZE_TIMEOUT=80 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
  { echo "== memcheck call 23's forms ($(( $(date +%s)-s )) s)"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
fi
cd /tmp
if [ $(left) -gt 45 ]; then
  SSM_TRITON_M2_IN_UPDATE=2 timeout 40 python3 -m ssm_triton.bench.profile --ops lm --match "lm_decode_step (1,)" --impl 'ssm_triton$' > /tmp/p2.txt 2>&1
  { echo "== profile lm2 b1 IN_UPDATE=2"; grep -v -i warn /tmp/p2.txt | head -14; } >> $S
fi
for v in 1 0; do
  [ $(left) -gt 45 ] || break
  SSM_TRITON_M2_STEP=$v timeout 40 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \(16,\)' --json $OUT/lm2-m2step$v.json > /tmp/lm2.txt 2>&1
  { echo "== lm2 M2_STEP=$v"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
done
for v in 1 0; do
  [ $(left) -gt 60 ] || break
  SSM_TRITON_M1_DT_IN_UPDATE=$v timeout 55 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_mamba1_decode_step' --json $OUT/lm1-dt$v.json > /tmp/lm1.txt 2>&1
  { echo "== lm1 DT_IN_UPDATE=$v"; grep -h "decode_step" /tmp/lm1.txt | grep -v "\[#"; } >> $S
done
if [ $(left) -gt 40 ]; then
  timeout 35 python3 -m ssm_triton.bench.profile --ops lm_mamba3 --match "(1,)" --impl 'ssm_triton$' > /tmp/p3.txt 2>&1
  { echo "== profile lm3 b1"; grep -v -i warn /tmp/p3.txt | head -12; } >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
cat $S
