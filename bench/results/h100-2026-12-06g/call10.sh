#!/usr/bin/env bash
# Call 10 (2026-12-06, fortieth session; carry .base = git archive 5891442, the session's first code; ~330 s): the
# composed decode steps without PyTorch launches between ours (62e8b83: the conv update reads in_proj's slice in
# place, the state update takes A_log): their GPU tests, memcheck of the conv update's strided reads, then the 130M
# LMs' b16 decode step (Mamba2 replays the composed step there) before and after, one call, and its kernels.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
SSM_TRITON_EXAMPLES=6 TEST_TIMEOUT=150 TESTS="tests/test_state_update.py tests/test_conv1d.py tests/test_mamba2.py tests/test_mamba.py" \
  bash bench/gpu_run.sh -k "step or update or decod" > /dev/null 2>&1
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_conv1d.py tests/test_state_update.py" SANITIZE_K="update_matches or from_A_log" \
  SANITIZE_TIMEOUT=90 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
M='decode_step.\((1|16),\)'
BASELINE=.base BASELINE_ARGS="--match $M" BASELINE_TIMEOUT=150 BENCH_OPS=lm BENCH_ARGS="--match $M" BENCH_TIMEOUT=170 \
  PROFILE="--ops lm --match (16,)" PROFILE_TIMEOUT=100 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
tail -2 $OUT/pytest.txt; tail -2 $OUT/memcheck.txt
grep -E "decode_step" $OUT/bench.txt | head -30; echo "-- baseline"; grep -E "decode_step" $OUT/baseline.txt 2>/dev/null | head -20
grep -E "ms of kernels|^ +[0-9.]+ ms" $OUT/profile.txt | head -40
