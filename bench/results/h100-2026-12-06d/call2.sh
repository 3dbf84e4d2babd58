#!/usr/bin/env bash
# Call 2 (2026-12-06, thirty-seventh session). (1) Kernel breakdown of the small selective scan's fwd+bwd (b1 d1536
# L2048 N16 bf16; 1.378 ms against mamba_ssm's 0.540 on 12-03, never profiled). (2) Nsight Compute of the segmented
# SSD forward at b1 L2048 (call 1: the output launch ~77 us of the 95, the summary 17.6; rule tiles, autotuning off).
# (3) The SSD's fp32 rows at b2 L4096 with TF32 products (ssm_triton_tf32) beside mamba_ssm and the IEEE route
# (call 1 ran out before them; --match now sees the dtype). (4) Memcheck of the MIMO output backward over 3 step
# blocks a program (OUT_ITERS; 12-06c's call8.sh). Carry .whl and .peers; about 500 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 60 python3 -m ssm_triton.bench.profile --ops selective_scan --match "(1, 1536, 2048" --impl ssm_triton \
  --rows 16 > $OUT/profile-ss-small.txt 2>&1
SSM_TRITON_AUTOTUNE=0 timeout 100 ncu --clock-control none -k "regex:fused" --launch-skip 4 --launch-count 2 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
  python3 -m ssm_triton.bench.profile --ops ssd --match "(1, 2048, 64, 64, 1, 128, 256) bfloat16 fwd" \
  --impl ssm_triton --calls 4 2>&1 | grep -v "^==PROF==" | tail -300 > $OUT/ncu-ssd-small.txt
timeout 230 python3 -m ssm_triton bench --ops ssd --sweep --match 'ssd \(2, 4096, .*float32' \
  --json $OUT/ssd-tf32.json > $OUT/ssd-tf32.txt 2>&1; echo "rc=$?" >> $OUT/ssd-tf32.txt
cd $R
SSM_TRITON_MIMO_OUT_ITERS=3 SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba3_mimo.py" \
  SANITIZE_K="matches_the_loop_with_every_gradient" SANITIZE_TIMEOUT=110 SKIP_TESTS=1 \
  bash bench/gpu_run.sh > /dev/null 2>&1
cp $OUT/memcheck.txt $OUT/memcheck-out-iters.txt 2>/dev/null; rm -f $OUT/memcheck.txt
head -40 $OUT/profile-ss-small.txt; grep -E "Duration|Registers|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Stall|Warp Cycles|Block Size|Grid Size" $OUT/ncu-ssd-small.txt | head -40
grep -v "^\[" $OUT/ssd-tf32.txt | tr '\r' '\n' | grep -v "^\[" | tail -20; tail -4 $OUT/memcheck-out-iters.txt
