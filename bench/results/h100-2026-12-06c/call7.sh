#!/usr/bin/env bash
# Call 7 (2026-12-06, thirty-sixth session): MIMO rank 4 at B8 L4096 H32 P64 N128 bf16 fwd+bwd, the output backward
# walking 4 or 8 step blocks a program (mamba3.mimo.OUT_ITERS; its weights' sums over the steps and their partials
# once a program) against one, alternating in one process (--kernels 8); then the MIMO test that draws it.
# Carry .whl and .peers; about 220 s (the session's last 370 s of device time).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 150 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" --ab "mamba3.mimo.OUT_ITERS=4" \
  --ab "mamba3.mimo.OUT_ITERS=8" --kernels 8 > $OUT/mimo_iters.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/mimo_iters.txt
grep -E "fwd\+bwd|_out_bwd|reduce_kernel|rc=" $OUT/mimo_iters.txt
cd $R
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=80 TESTS="tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh -k "matches_the_loop_with_every" > /dev/null 2>&1
tail -2 $OUT/pytest.txt
