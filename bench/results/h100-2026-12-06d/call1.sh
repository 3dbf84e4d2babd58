#!/usr/bin/env bash
# Call 1 (2026-12-06, thirty-seventh session). Issue 17: the segmented SSD forward past 8 segments with the carry
# pass (built 12-04i, never timed): b1 rows, H64 P64 N128 bf16, 1-32 segments, eager and graphed (device alone),
# then the rule's 4 and 8 without the carry pass. Issue 18: the SSD's fp32 rows with TF32 products
# (ssm_triton_tf32, "high" precision; never timed) beside mamba_ssm (TF32 always) and the IEEE route, b2 L4096.
# Carry .whl and .peers; about 530 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 250 python3 -m ssm_triton.bench.tune_fused --shapes 1x2048 1x512 1x8192 1x4096 --segments 1 4 8 16 32 \
  --carry 1 > $OUT/tune-carry.txt 2>&1; echo "rc=$?" >> $OUT/tune-carry.txt
timeout 60 python3 -m ssm_triton.bench.tune_fused --shapes 1x2048 1x8192 --segments 4 8 --carry 0 \
  > $OUT/tune-nocarry.txt 2>&1; echo "rc=$?" >> $OUT/tune-nocarry.txt
timeout 190 python3 -m ssm_triton bench --ops ssd --sweep --match '\(2, 4096,' --json $OUT/ssd-tf32.json \
  > $OUT/ssd-tf32.txt 2>&1; echo "rc=$?" >> $OUT/ssd-tf32.txt
grep -v Warn $OUT/tune-carry.txt $OUT/tune-nocarry.txt | grep -E "segments|staged|b=|rc="; grep -E "ssd|rc=" $OUT/ssd-tf32.txt | tail -30
