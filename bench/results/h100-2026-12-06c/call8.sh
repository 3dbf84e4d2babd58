#!/usr/bin/env bash
# Call 8 (written 2026-12-06, thirty-sixth session; not yet run: no device time was left): memcheck of the MIMO
# output backward walking several step blocks a program (OUT_ITERS, kernels/mamba3/mimo_out.py; 3 blocks so that a
# program's last blocks run past L), then the MIMO tests, then the MIMO B8 breakdown with every default of the
# session (--kernels 8: _out_bwd_kernel 3.37 ms, _prep_bwd_kernel 5.44, walk 8.25 on 12-06c's H100).
# Carry .whl and .peers; about 300 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
SSM_TRITON_MIMO_OUT_ITERS=3 SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba3_mimo.py" \
  SANITIZE_K="matches_the_loop_with_every_gradient or one_autograd_node" SANITIZE_TIMEOUT=120 SKIP_TESTS=1 \
  bash bench/gpu_run.sh > /dev/null 2>&1
cp $OUT/memcheck.txt $OUT/memcheck-out-iters.txt 2>/dev/null
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=100 TESTS="tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh > /dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 120 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" --kernels 8 > $OUT/mimo_b8.txt 2>&1
tail -3 $OUT/memcheck-out-iters.txt; tail -2 $OUT/pytest.txt; grep -E "fwd\+bwd|_kernel" $OUT/mimo_b8.txt
