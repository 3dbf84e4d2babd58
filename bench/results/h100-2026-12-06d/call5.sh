#!/usr/bin/env bash
# Call 5 (2026-12-06, thirty-seventh session): the selective scan's backward split in time segments (new: a summary
# launch, then the segments walked side by side; kernels/selective_scan.py). Its GPU tests (explicit segment
# lengths, every layout), memcheck of them, then the backward alone replayed from CUDA graphs at each segment
# length (sweep_selective bwd_segments), and the forward's split the same way (sweep_selective segments, off on
# GPUs since an eager sweep on 12-03). Carry .whl; about 330 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
SSM_TRITON_EXAMPLES=12 TEST_TIMEOUT=90 TESTS="tests/test_selective_scan.py" SKIP_CHECK=1 \
  bash bench/gpu_run.sh -k "backward_time_segments or chunk_lengths or gradients_match" > /dev/null 2>&1
cp $OUT/pytest.txt $OUT/pytest-ss.txt; rm -f $OUT/pytest.txt
SSM_TRITON_EXAMPLES=3 SANITIZE="tests/test_selective_scan.py" SANITIZE_K="backward_time_segments or chunk_lengths" \
  SANITIZE_TIMEOUT=80 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 100 python3 -m ssm_triton.bench.sweep_selective bwd_segments 1x1536x2048 1x1536x8192 1x4096x2048 2x1536x2048 \
  > $OUT/bwd-segments.txt 2>&1; echo "rc=$?" >> $OUT/bwd-segments.txt
timeout 50 python3 -m ssm_triton.bench.sweep_selective segments > $OUT/fwd-segments.txt 2>&1; echo "rc=$?" >> $OUT/fwd-segments.txt
tail -3 $OUT/pytest-ss.txt; tail -3 $OUT/memcheck.txt; grep -v Warn $OUT/bwd-segments.txt; grep -E "best|rc=" $OUT/fwd-segments.txt
