#!/usr/bin/env bash
# Call 23 (for the next session; carry .whl, .peers; ~330 s): what this session built after its device time ran out.
#  (1) GPU tests of the mended one-launch Mamba-2 step and of Mamba-1's fused step with dt_proj in the state update,
#      and memcheck of both and of the whole-row Mamba3 step after the review's helper change;
#  (2) the Mamba2 LM at 16 rows, one-launch step (SSM_TRITON_M2_STEP=1) against the three ops (0), one process each;
#  (3) the Mamba-1 LM (mamba-130m's shape) at 1 / 4 / 16 rows, dt_proj in the update (SSM_TRITON_M1_DT_IN_UPDATE=1,
#      four launches a layer) against its own launch (0, five);
#  (4) torch.profiler of the Mamba3 LM's b1 step.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt
s=$(date +%s)
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=90 TESTS="tests/test_mamba2_step.py tests/test_fused_step.py tests/test_mamba3.py tests/test_mamba3_block.py" bash bench/gpu_run.sh -n 8 -k "step or decod or one_launch or several_row or column_groups" > /dev/null 2>&1
{ echo "== pytest ($(( $(date +%s)-s )) s)"; tail -2 $OUT/pytest.txt; head -80 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt $OUT/failures.txt $OUT/gpu.txt
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba2_step.py tests/test_fused_step.py tests/test_mamba3.py" \
  SANITIZE_K="one_launch or dt_proj_in or token_by_token" SANITIZE_TIMEOUT=80 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
{ echo "== memcheck"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in 1 0; do
  SSM_TRITON_M2_STEP=$v timeout 45 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \(16,\)' --json $OUT/lm2-m2step$v.json > /tmp/lm2.txt 2>&1
  { echo "== lm2 M2_STEP=$v"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
done
for v in 1 0; do
  SSM_TRITON_M1_DT_IN_UPDATE=$v timeout 70 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_mamba1_decode_step' --json $OUT/lm1-dt$v.json > /tmp/lm1.txt 2>&1
  { echo "== lm1 DT_IN_UPDATE=$v"; grep -h "decode_step" /tmp/lm1.txt | grep -v "\[#"; } >> $S
done
# where the Mamba3 LM's b1 step goes (0.491 ms, ~20 us a layer against the Mamba2 LM's ~10 with its fused step)
timeout 45 python3 -m ssm_triton.bench.profile --ops lm_mamba3 --match "(1,)" --impl 'ssm_triton$' > /tmp/p3.txt 2>&1
{ echo "== profile lm3 b1"; grep -v -i warn /tmp/p3.txt | head -12; } >> $S
cat $S
