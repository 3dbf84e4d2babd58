#!/usr/bin/env bash
# Call 40 (2026-12-07, forty-seventh session; no carry; ~330 s): call 39 and call 34's memcheck in one call:
#  (1) the Mamba3 block's step sizes in one launch (kernels/mamba3/block_steps.py, SSM_TRITON_M3_STEPS_KERNEL): GPU
#      tests, with the Mamba3 blocks' left-padded rows;
#  (2) memcheck of tests/test_mamba3_steps.py and tests/test_a_log.py (the scans' A_log forms), odd shapes;
#  (3) the 130M-size Mamba3 LM's prefill (eager and replayed) with the step-size kernel on and off, tuner off.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-330} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=60 TESTS="tests/test_mamba3_steps.py tests/test_mamba3_block.py" \
  bash bench/gpu_run.sh -n 4 -k "block_steps or one_launch_for_its_steps or left_padded" > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -30 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt
for f in tests/test_mamba3_steps.py tests/test_a_log.py; do
  [ $(left) -gt 120 ] || break
  SSM_TRITON_EXAMPLES=3 SANITIZE="$f" SANITIZE_TIMEOUT=100 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
  { echo "== memcheck $f"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
done
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
for v in 1 0; do
  [ $(left) -gt 40 ] || break
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_M3_STEPS_KERNEL=$v timeout 60 python3 -m ssm_triton bench --ops lm_mamba3 \
    --no-peers --match 'prefill' > /tmp/p.txt 2>&1
  { echo "== Mamba3 LM prefill, M3_STEPS_KERNEL=$v (tuner off)"; grep -E "^lm_mamba3_.*prefill" /tmp/p.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
