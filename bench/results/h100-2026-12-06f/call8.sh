#!/usr/bin/env bash
# Call 8 (written 2026-12-06, thirty-ninth session, for the next; carry .whl and .peers; ~480 s). Built after this
# session's device time ran out, interpreter-tested only:
#  (1) the SSD one-launch forward's step rows read a chunk ahead (fused.AHEAD_TUNED, SSM_TRITON_SSD_FUSED_AHEAD=1):
#      its GPU tests (every candidate, AHEAD both ways), memcheck of them, then tune_fused at issue 17's small shapes
#      with and without it (each process tunes its own: SSM_TRITON_TUNE_CACHE=0);
#  (2) the selective scan at 256-step checkpoints (SSM_TRITON_SS_CHUNK=256: 58 sm_90 instructions a step and state
#      in the backward's loop against 67.5, 243 registers) against 128, and REV_GATHER with loads ahead (new
#      candidates), beside mamba_ssm's CUDA build, processes alternating (call 9 has the linear scan's REV_GATHER).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D=$R/bench/results/h100-2026-12-06f
(s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt) &
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=120 TESTS="tests/test_ssd_fused.py tests/test_selective_scan.py" bash bench/gpu_run.sh \
  -k "every_tuning_candidate or segments or chunk_lengths or gradients_match" > /dev/null 2>&1
cp $OUT/pytest.txt $OUT/pytest-main.txt
SSM_TRITON_SS_CHUNK=256 SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=90 TESTS="tests/test_selective_scan.py" bash bench/gpu_run.sh \
  -k "gradients_match or matches_the_reference" > /dev/null 2>&1   # the 256-step checkpoints' correctness on a GPU
cp $OUT/pytest.txt $OUT/pytest-chunk256.txt
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_ssd_fused.py" SANITIZE_K="every_tuning_candidate" SANITIZE_TIMEOUT=120 \
  SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for ah in 0 1; do
  SSM_TRITON_SSD_FUSED_AHEAD=$ah SSM_TRITON_TUNE_CACHE=0 timeout 120 python3 -m ssm_triton.bench.tune_fused \
    --shapes 1x2048 1x512 --segments 4 > $OUT/tune-fused-ahead$ah.txt 2>&1
done
wait
for run in 128-r1 256-r1 128-r2; do   # A B A: the bench with the peers (~70 s a process)
  SSM_TRITON_SS_CHUNK=${run%-*} timeout 100 python3 $D/bench_choices.py selective_scan bench --ops selective_scan \
    --json $OUT/ss-ck$run.json > $OUT/ss-ck$run.txt 2>&1
done
tail -2 $OUT/pytest-main.txt; tail -2 $OUT/pytest-chunk256.txt; tail -2 $OUT/memcheck.txt; tail -1 $OUT/peer_build.txt
grep -v -i warn $OUT/tune-fused-ahead*.txt | tail -30
python3 $D/rows.py "$OUT/*.json"
grep -h "chosen: selective_scan_bwd|" $OUT/ss-ck*.txt
