#!/usr/bin/env bash
# Call 3 (2026-12-06): the new defaults against the old in one process, the running-scalar decay term (FREC), the
# Mamba-3 GPU tests on the new defaults, and the bench beside mamba_ssm.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 110 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --ab "WALK_FREC=1" \
  --ab "WALK_AHEAD=0 mamba3.launch.PREP_AHEAD=0" --kernels 4 > $OUT/walk_frec.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk_frec.txt
cd $R
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=120 TESTS="tests/test_mamba3.py tests/test_mamba3_mimo.py tests/test_mamba3_block.py" \
  bash bench/gpu_run.sh -k "backward or loads_ahead or prep or matches_the_loop or packed" > /dev/null 2>&1
cp $OUT/pytest.txt $OUT/tests.txt 2>/dev/null
SKIP_CHECK=1 SKIP_TESTS=1 BENCH_OPS=mamba3 BENCH_ARGS='--match fwd\+bwd' BENCH_TIMEOUT=220 bash bench/gpu_run.sh > $OUT/bench_run.txt 2>&1
tail -2 $OUT/tests.txt; grep -E "fwd\+bwd|_walk_bwd|_siso_prep_bwd|rc=" $OUT/walk_frec.txt; ls $OUT
