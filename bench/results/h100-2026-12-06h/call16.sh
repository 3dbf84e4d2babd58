#!/usr/bin/env bash
# Call 16 (2026-12-06, forty-first session; carry .whl, .peers; ~360 s, most needed first, each piece under its own
# timeout; the outputs gathered into summary.txt and the JSONs, the tool bringing back 8 files at most):
#  (1) GPU tests of the fortieth session's kernel changes and this session's Mamba3 steps (one launch; in blocks of
#      state rows with the last reader writing k~ and the angle);
#  (2) memcheck of the Mamba3 steps in row blocks;
#  (3) the 130M-size Mamba3 LM's decode steps at b1 / b16, steps in 16-row blocks against one program a pair;
#  (4) the selective scan at 256-step checkpoints beside mamba_ssm's CUDA build (128, the default, ran in call 15:
#      b8 d4096 L2048 fwd+bwd 4.344 against 5.993 ms).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D6=$R/bench/results/h100-2026-12-06f
(s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt) &
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=120 TESTS="tests/test_state_update.py tests/test_conv1d.py tests/test_selective_scan.py tests/test_scan.py tests/test_configs.py tests/test_mamba3.py tests/test_mamba3_mimo.py tests/test_mamba3_block.py" \
  bash bench/gpu_run.sh -k "update or decod or chunk_lengths or gradients_match or every_selective_scan_config or forward_matches_loop or every_scan or step or several_row" > /dev/null 2>&1
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba3.py tests/test_mamba3_mimo.py" SANITIZE_K="several_row or planned_steps or block_step or decode_steps" \
  SANITIZE_TIMEOUT=70 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
M='decode_step.\((1|16),\)'
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for rows in 16 0; do
  SSM_TRITON_M3_STEP_ROWS=$rows timeout 50 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match "$M" \
    --json $OUT/lm3-rows$rows.json > $OUT/lm3-rows$rows.txt 2>&1
done
wait
SSM_TRITON_SS_CHUNK=256 timeout 80 python3 $D6/bench_choices.py selective_scan bench --ops selective_scan \
  --json $OUT/ss-ck256.json > $OUT/ss-ck256.txt 2>&1
cd $R
{ echo "== pytest"; tail -5 $OUT/pytest.txt; cat $OUT/failures.txt 2>/dev/null | head -60; echo "== memcheck"; tail -4 $OUT/memcheck.txt
  echo "== build"; tail -1 $OUT/peer_build.txt; echo "== lm3"; grep -h "decode_step" $OUT/lm3-rows*.txt
  echo "== ss chunk 256"; python3 $D6/rows.py "$OUT/ss-ck256.json"; grep -h "chosen:" $OUT/ss-ck256.txt; } > $OUT/summary.txt 2>&1
rm -f $OUT/pytest.txt $OUT/failures.txt $OUT/memcheck.txt $OUT/peer_build.txt $OUT/lm3-rows*.txt $OUT/ss-ck256.txt $OUT/gpu.txt
cat $OUT/summary.txt
