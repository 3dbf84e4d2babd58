#!/usr/bin/env bash
# Call 16 (2026-12-06, forty-first session; carry .whl, .peers; ~330 s, most needed first, each piece under its own
# timeout and appended to summary.txt as it ends, so a run cut short keeps what ran; the tool brings back 8 files):
#  (1) GPU tests of the fortieth session's kernel changes and this session's Mamba3 steps (one launch; in blocks of
#      state rows with the last reader writing k~ and the angle);
#  (2) the 130M-size Mamba3 LM's decode steps at b1 / b16, steps in 16-row blocks against one program a pair;
#  (3) with MEMCHECK=1, memcheck of the Mamba3 steps in row blocks;
#  (4) with SS256=1, the selective scan at 256-step checkpoints beside mamba_ssm's CUDA build (128, the default, ran in call 15:
#      b8 d4096 L2048 fwd+bwd 4.344 against 5.993 ms).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); D6=$R/bench/results/h100-2026-12-06f; S=$OUT/summary.txt
[ -n "${SS256:-}" ] && (s=$(date +%s); bash bench/build_peer_scan.sh > /tmp/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> /tmp/peer_build.txt) &
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=${TEST_TIMEOUT:-120} TESTS="tests/test_state_update.py tests/test_conv1d.py tests/test_selective_scan.py tests/test_scan.py tests/test_configs.py tests/test_mamba3.py tests/test_mamba3_mimo.py tests/test_mamba3_block.py" \
  bash bench/gpu_run.sh -k "update or decod or chunk_lengths or gradients_match or every_selective_scan_config or forward_matches_loop or every_scan or step or several_row" > /dev/null 2>&1
{ echo "== pytest"; tail -5 $OUT/pytest.txt; head -80 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt $OUT/failures.txt
M='decode_step.\((1|16),\)'
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for rows in 16 0; do
  SSM_TRITON_M3_STEP_ROWS=$rows timeout ${LM_TIMEOUT:-50} python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match "$M" \
    --json $OUT/lm3-rows$rows.json > /tmp/lm3-rows$rows.txt 2>&1
  { echo "== lm3 rows $rows"; grep -h "decode_step" /tmp/lm3-rows$rows.txt | grep -v "\[#"; } >> $S
done
cd $R
[ -n "${MEMCHECK:-}" ] && SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba3.py tests/test_mamba3_mimo.py" SANITIZE_K="several_row or planned_steps or block_step or decode_steps" \
  SANITIZE_TIMEOUT=70 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
[ -n "${MEMCHECK:-}" ] && { echo "== memcheck"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt
[ -z "${SS256:-}" ] && { cat $S; exit 0; }   # SS256=1: the selective scan's part too
wait; { echo "== build"; tail -1 /tmp/peer_build.txt; } >> $S
cd /tmp
SSM_TRITON_SS_CHUNK=256 timeout 80 python3 $D6/bench_choices.py selective_scan bench --ops selective_scan \
  --json $OUT/ss-ck256.json > /tmp/ss-ck256.txt 2>&1
cd $R
{ echo "== ss chunk 256"; python3 $D6/rows.py "$OUT/ss-ck256.json"; grep -h "chosen:" /tmp/ss-ck256.txt; } >> $S 2>&1
cat $S
