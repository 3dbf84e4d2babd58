#!/usr/bin/env bash
# Call 39 (written 2026-12-07 for the next session; no carry; ~250 s): the Mamba3 block's step sizes in one launch
# (kernels/mamba3/block_steps.py, SSM_TRITON_M3_STEPS_KERNEL): its GPU tests, memcheck over them (odd shapes), then
# the 130M-size Mamba3 LM's prefill (eager and replayed) with the kernel on and off, one process each, tuner off.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-250} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=60 TESTS="tests/test_mamba3_steps.py tests/test_mamba3_block.py" \
  bash bench/gpu_run.sh -n 4 -k "block_steps or one_launch_for_its_steps or left_padded" > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -30 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt
SSM_TRITON_EXAMPLES=3 SANITIZE="tests/test_mamba3_steps.py" SANITIZE_TIMEOUT=70 SKIP_TESTS=1 bash bench/gpu_run.sh \
  > /dev/null 2>&1
{ echo "== memcheck tests/test_mamba3_steps.py"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
for v in 1 0; do
  [ $(left) -gt 40 ] || break
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_M3_STEPS_KERNEL=$v timeout 60 python3 -m ssm_triton bench --ops lm_mamba3 \
    --no-peers --match 'prefill' > /tmp/p.txt 2>&1
  { echo "== Mamba3 LM prefill, M3_STEPS_KERNEL=$v (tuner off)"; grep -E "^lm_mamba3_.*prefill" /tmp/p.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
