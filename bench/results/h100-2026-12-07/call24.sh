#!/usr/bin/env bash
# Call 24 (carry .whl, .peers; ~500 s): call 23's measurements plus the forty-third session's Mamba-2 step in two
# launches (SSM_TRITON_M2_IN_UPDATE=1: the state update inside the input projection's launch, kernels/in_update.py;
# =2: the out step too, one launch a layer).
#  (1) GPU tests (8 xdist workers) of the fused steps (the new launch's property, config and LM tests among them), the
#      one-launch Mamba-2 step, the Mamba3 steps; memcheck of the new launch and of call 23's forms;
#  (2) the 130M Mamba2 LM's replayed step at 1 and 4 rows, IN_UPDATE 2, 1 and 0, one process each, then torch.profiler
#      of the b1 step with 2; b16 with SSM_TRITON_M2_STEP 1 against 0;
#  (3) the Mamba-1 LM at 1 / 4 / 16 rows, SSM_TRITON_M1_DT_IN_UPDATE 1 against 0;
#  (4) torch.profiler of the Mamba3 LM's b1 step.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt
s=$(date +%s)
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=120 TESTS="tests/test_fused_step.py tests/test_mamba2_step.py tests/test_mamba3.py tests/test_mamba3_block.py" bash bench/gpu_run.sh -n 8 -k "step or decod or one_launch or several_row or column_groups or in_update or update_in" > /dev/null 2>&1
{ echo "== pytest ($(( $(date +%s)-s )) s)"; tail -2 $OUT/pytest.txt; head -80 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt $OUT/failures.txt $OUT/gpu.txt
s=$(date +%s)
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_fused_step.py tests/test_mamba2_step.py tests/test_mamba3.py" \
  SANITIZE_K="update_in_the_input or every_in_update or one_launch or dt_proj_in or token_by_token" SANITIZE_TIMEOUT=100 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
{ echo "== memcheck ($(( $(date +%s)-s )) s)"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in 2 1 0; do
  SSM_TRITON_M2_IN_UPDATE=$v timeout 60 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \((1|4),\)' --json $OUT/lm2-inup$v.json > /tmp/lm2.txt 2>&1
  { echo "== lm2 M2_IN_UPDATE=$v"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
done
SSM_TRITON_M2_IN_UPDATE=2 timeout 45 python3 -m ssm_triton.bench.profile --ops lm --match "lm_decode_step (1,)" --impl 'ssm_triton$' > /tmp/p2.txt 2>&1
{ echo "== profile lm2 b1 IN_UPDATE=2"; grep -v -i warn /tmp/p2.txt | head -14; } >> $S
for v in 1 0; do
  SSM_TRITON_M2_STEP=$v timeout 45 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \(16,\)' --json $OUT/lm2-m2step$v.json > /tmp/lm2.txt 2>&1
  { echo "== lm2 M2_STEP=$v"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
done
for v in 1 0; do
  SSM_TRITON_M1_DT_IN_UPDATE=$v timeout 70 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_mamba1_decode_step' --json $OUT/lm1-dt$v.json > /tmp/lm1.txt 2>&1
  { echo "== lm1 DT_IN_UPDATE=$v"; grep -h "decode_step" /tmp/lm1.txt | grep -v "\[#"; } >> $S
done
timeout 45 python3 -m ssm_triton.bench.profile --ops lm_mamba3 --match "(1,)" --impl 'ssm_triton$' > /tmp/p3.txt 2>&1
{ echo "== profile lm3 b1"; grep -v -i warn /tmp/p3.txt | head -12; } >> $S
cat $S
