#!/usr/bin/env bash
# Call 18 (2026-12-07; carry .whl, .peers; ~330 s; on the machine call 17 left warm):
#  (1) the 130M Mamba2 LM's replayed decode step at 16 rows, the step between the projections in one launch
#      (SSM_TRITON_M2_STEP=1, the default) against the composed conv update, state update and gated norm (0), and
#      torch.profiler of each;
#  (2) the 130M-size Mamba3 LM's replayed step at b1 / b16: 16-row blocks (default), GROUPED=1, 8-row blocks;
#  (3) torch.profiler of its b16 step.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in 1 0 1; do
  SSM_TRITON_M2_STEP=$v timeout 60 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \((4|16),\)' \
    --json $OUT/lm2-m2step$v.json > /tmp/lm2.txt 2>&1
  { echo "== lm2 M2_STEP=$v"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
done
for v in 1 0; do
  SSM_TRITON_M2_STEP=$v timeout 60 python3 -m ssm_triton.bench.profile --ops lm --match "^lm_decode_step \(16,\)" --impl ssm_triton_eager > $OUT/profile2_m2step$v.txt 2>&1
  { echo "== profile lm2 b16 M2_STEP=$v"; head -16 $OUT/profile2_m2step$v.txt; } >> $S
done
M='decode_step.\((1|16),\)'
for v in "ROWS=16" "GROUPED=1" "ROWS=8"; do
  env SSM_TRITON_M3_STEP_$v timeout 45 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match "$M" \
    --json $OUT/lm3-$v.json > /tmp/lm3.txt 2>&1
  { echo "== lm3 $v"; grep -h "decode_step" /tmp/lm3.txt | grep -v "\[#"; } >> $S
done
timeout 50 python3 -m ssm_triton.bench.profile --ops lm_mamba3 --match "(16,)" --impl ssm_triton_eager > /tmp/p3.txt 2>&1
{ echo "== profile lm3 b16"; head -20 /tmp/p3.txt; } >> $S
cat $S
