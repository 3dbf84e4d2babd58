#!/usr/bin/env bash
# Call 18 (2026-12-07; carry .whl, .peers; ~330 s; on the machine call 17 left warm):
#  (1) the 130M Mamba2 LM's replayed decode step at 4 / 16 rows, at 16 the step between the projections in one
#      launch (the default rows) against the composed conv update, state update and gated norm (the composed_step
#      rows), same process, and torch.profiler of each;
#  (2) the 130M-size Mamba3 LM's replayed step at b1 / b16: 16-row blocks (default), GROUPED=1, the whole-row form
#      (SSM_TRITON_M3_STEP_WHOLE=1: 64 registers at 4 warps against 168) in 16- and 32-row blocks;
#  (3) torch.profiler of its b16 step, split and whole-row forms.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
# the default (graphed) rows take the one-launch step at 16 rows, ssm_triton_composed_step the three ops (same process)
timeout 100 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \((4|16),\)' --json $OUT/lm2.json > /tmp/lm2.txt 2>&1
{ echo "== lm2"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
# at 4 rows the three-launch fused step (in_proj and out_proj in Triton) against in_proj, the one launch and out_proj
SSM_TRITON_M2_FUSED_ROWS=2 timeout 60 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \((1|4),\)' --json $OUT/lm2-rows2.json > /tmp/lm2.txt 2>&1
{ echo "== lm2 fused rows 2 (one launch at 4 rows)"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
for impl in 'ssm_triton$' ssm_triton_composed_step; do
  timeout 60 python3 -m ssm_triton.bench.profile --ops lm --match "lm_decode_step (16,)" --impl "$impl" > /tmp/p2.txt 2>&1
  { echo "== profile lm2 b16 $impl"; head -16 /tmp/p2.txt; } >> $S
done
M='decode_step.\((1|16),\)'
i=0
for v in "ROWS=16" "GROUPED=1" "WHOLE=1" "WHOLE=1 SSM_TRITON_M3_STEP_ROWS=32"; do
  i=$((i+1))
  env SSM_TRITON_M3_STEP_$v timeout 45 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match "$M" \
    --json $OUT/lm3-$i.json > /tmp/lm3.txt 2>&1
  { echo "== lm3 $v"; grep -h "decode_step" /tmp/lm3.txt | grep -v "\[#"; } >> $S
done
for v in 0 1; do
  SSM_TRITON_M3_STEP_WHOLE=$v timeout 50 python3 -m ssm_triton.bench.profile --ops lm_mamba3 --match "(16,)" --impl 'ssm_triton$' > /tmp/p3.txt 2>&1
  { echo "== profile lm3 b16 WHOLE=$v"; head -12 /tmp/p3.txt; } >> $S
done
cat $S
