#!/usr/bin/env bash
# Call 11 (2026-12-06, fortieth session; carry .base = git archive 5891442, the session's first code; ~540 s). Issue 17 (and the 256-step checkpoints' tests for call 12):
#  (1) the SSD one-launch forward's step rows a chunk ahead (SSM_TRITON_SSD_FUSED_AHEAD=1, 12-06f, untimed): its GPU
#      tests with every candidate, memcheck of them, tune_fused at b1 L2048 / L512 with it and without (each process
#      tunes its own);
#  (2) the composed decode steps without PyTorch launches between ours (62e8b83): GPU tests, memcheck of the conv
#      update's strided reads and the A_log step, the 130M LMs' b1 / b16 decode steps before (.base) and after in one
#      call (Mamba2 replays the composed step at b16), and the b16 step's kernels.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D=$R/bench/results/h100-2026-12-06f
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=150 TESTS="tests/test_ssd_fused.py tests/test_state_update.py tests/test_conv1d.py tests/test_mamba2.py tests/test_mamba.py" \
  bash bench/gpu_run.sh -k "every_tuning_candidate or step or update or decod" > /dev/null 2>&1
cp $OUT/pytest.txt $OUT/pytest-main.txt
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_ssd_fused.py tests/test_conv1d.py tests/test_state_update.py" \
  SANITIZE_K="every_tuning_candidate or update_matches or from_A_log" SANITIZE_TIMEOUT=150 SKIP_TESTS=1 \
  bash bench/gpu_run.sh > /dev/null 2>&1
SSM_TRITON_SS_CHUNK=256 SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=90 TESTS="tests/test_selective_scan.py" bash bench/gpu_run.sh \
  -k "gradients_match or backward_time_segments" > /dev/null 2>&1   # call 12 times the 256-step checkpoints
cp $OUT/pytest.txt $OUT/pytest-chunk256.txt
(cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
 for ah in 0 1; do
   SSM_TRITON_SSD_FUSED_AHEAD=$ah SSM_TRITON_TUNE_CACHE=0 timeout 90 python3 -m ssm_triton.bench.tune_fused \
     --shapes 1x2048 1x512 --segments 4 > $OUT/tune-fused-ahead$ah.txt 2>&1
 done)
M='decode_step.\((1|16),\)'
BASELINE=.base BASELINE_ARGS="--match $M" BASELINE_TIMEOUT=140 BENCH_OPS=lm BENCH_ARGS="--match $M" BENCH_TIMEOUT=150 \
  PROFILE="--ops lm --match (16,)" PROFILE_TIMEOUT=70 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
tail -2 $OUT/pytest-main.txt; tail -2 $OUT/pytest-chunk256.txt; tail -2 $OUT/memcheck.txt
grep -v -i warn $OUT/tune-fused-ahead*.txt | tail -24
grep -E "decode_step" $OUT/bench.txt | head -24; echo "-- baseline"; grep -E "decode_step" $OUT/baseline.txt | head -16
grep -E "ms of kernels|^ +[0-9.]+ ms" $OUT/profile.txt | head -30
