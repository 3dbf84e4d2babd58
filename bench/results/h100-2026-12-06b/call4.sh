#!/usr/bin/env bash
# Call 4 (written 2026-12-06, thirty-fifth session; not yet run): MIMO rank 4 at B8 L4096 H32 P64 N128 bf16 fwd+bwd
# with the output backward's and the prep forward's merged sums (mimo.OUT_MERGE, mimo.PREP_MERGE) and the walk's
# FREC + MERGE, each alternating with the defaults in one process; then the MIMO GPU tests (they draw both),
# memcheck of them with the switches on, and memcheck of the SISO walk and prep-backward tests with theirs on.
# Carry .whl and .peers; about 520 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 200 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" --ab "mamba3.mimo.OUT_MERGE=1 mamba3.mimo.PREP_MERGE=1" \
  --ab "WALK_FREC=1 WALK_MERGE=1" --ab "mamba3.mimo.OUT_MERGE=1 mamba3.mimo.PREP_MERGE=1 WALK_FREC=1 WALK_MERGE=1" \
  --kernels 8 \
  > $OUT/mimo_merge.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/mimo_merge.txt
cd $R
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=100 TESTS="tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh -k "matches_the_loop or one_autograd_node" > /dev/null 2>&1
SSM_TRITON_MIMO_OUT_MERGE=1 SSM_TRITON_MIMO_PREP_MERGE=1 SSM_TRITON_EXAMPLES=1 SANITIZE="tests/test_mamba3_mimo.py" \
  SANITIZE_K="matches_the_loop_with_every_gradient" SANITIZE_TIMEOUT=90 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
cp $OUT/memcheck.txt $OUT/memcheck-mimo.txt 2>/dev/null
SSM_TRITON_WALK_FREC=1 SSM_TRITON_WALK_MERGE=1 SSM_TRITON_PREP_MERGE=1 SSM_TRITON_EXAMPLES=1 SANITIZE="tests/test_mamba3.py" \
  SANITIZE_K="backward_in_one_launch or loads_ahead or prep_backward" SANITIZE_TIMEOUT=120 SKIP_TESTS=1 \
  bash bench/gpu_run.sh > /dev/null 2>&1
tail -2 $OUT/pytest.txt; tail -3 $OUT/memcheck-mimo.txt $OUT/memcheck.txt; grep -E "fwd\+bwd|_out_bwd|_prep_fwd|_walk_bwd|rc=" $OUT/mimo_merge.txt
