#!/usr/bin/env bash
# Call 20 (2026-12-07; carry .whl, .peers; ~540 s): calls 17 and 18 in one, trimmed, for a session whose device time
# went to refused starts. Most needed first, each part under its own timeout, appended to summary.txt as it ends:
#  (1) GPU tests (8 xdist workers) of the Mamba-2 step in one launch, the Mamba3 steps (row blocks, whole rows), the
#      decode graphs and the files docs/status.md item 0000000000000000000 names;
#  (2) memcheck of the new steps;
#  (3) the 130M Mamba2 LM's replayed decode step at 4 / 16 rows (at 16: one launch between the projections, the
#      composed_step rows the three ops, same process) and a profile of the one-launch b16 step;
#  (4) the Mamba3 LM's replayed step, split 16-row blocks against whole rows in 16- and 32-row blocks.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt
s=$(date +%s)
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=${TEST_TIMEOUT:-170} TESTS="tests/test_mamba2_step.py tests/test_mamba3.py tests/test_mamba3_block.py tests/test_fused_step.py tests/test_decode_graph.py tests/test_mamba3_mimo.py tests/test_state_update.py tests/test_conv1d.py tests/test_selective_scan.py tests/test_scan.py tests/test_configs.py" \
  bash bench/gpu_run.sh -n 8 -k "update or decod or chunk_lengths or gradients_match or every_selective_scan_config or forward_matches_loop or every_scan or step or several_row or one_launch or whole" > /dev/null 2>&1
{ echo "== pytest ($(( $(date +%s)-s )) s)"; tail -8 $OUT/pytest.txt; head -150 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt $OUT/failures.txt
s=$(date +%s)
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba2_step.py tests/test_mamba3.py tests/test_mamba3_block.py" SANITIZE_K="one_launch or several_row or whole or planned_steps" \
  SANITIZE_TIMEOUT=80 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
{ echo "== memcheck ($(( $(date +%s)-s )) s)"; tail -6 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 90 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_decode_step \((4|16),\)' --json $OUT/lm2.json > /tmp/lm2.txt 2>&1
{ echo "== lm2"; grep -h "decode_step" /tmp/lm2.txt | grep -v "\[#"; } >> $S
M='decode_step.\((1|16),\)'
i=0
for v in "ROWS=16" "WHOLE=1" "WHOLE=1 SSM_TRITON_M3_STEP_ROWS=32"; do
  i=$((i+1))
  env SSM_TRITON_M3_STEP_$v timeout 45 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match "$M" \
    --json $OUT/lm3-$i.json > /tmp/lm3.txt 2>&1
  { echo "== lm3 $v"; grep -h "decode_step" /tmp/lm3.txt | grep -v "\[#"; } >> $S
done
timeout 45 python3 -m ssm_triton.bench.profile --ops lm --match "lm_decode_step (16,)" --impl 'ssm_triton$' > /tmp/p2.txt 2>&1
{ echo "== profile lm2 b16 (one launch)"; head -16 /tmp/p2.txt; } >> $S
cat $S
