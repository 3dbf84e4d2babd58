#!/usr/bin/env bash
# Call 3 (2026-12-06, thirty-fifth session; 364 s of device time left, so lean): the new defaults against mamba_ssm
# in one process and the running-scalar decay term (FREC), then the Mamba-3 walk tests on the new defaults.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 110 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --peer --ab "WALK_FREC=1" --kernels 4 \
  > $OUT/walk_frec_peer.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk_frec_peer.txt
cd $R
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=2 TEST_TIMEOUT=${TEST_TIMEOUT:-120} TESTS="tests/test_mamba3.py tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh -k "backward_in_one_launch or loads_ahead or prep_backward" > /dev/null 2>&1
cp /tmp/out/pytest.txt $OUT/tests.txt 2>/dev/null; cp /tmp/out/failures.txt $OUT/ 2>/dev/null; cp /tmp/out/gpu.txt $OUT/ 2>/dev/null
tail -2 $OUT/tests.txt; grep -E "fwd\+bwd|_walk_bwd|_siso_prep_bwd|rc=" $OUT/walk_frec_peer.txt
