#!/usr/bin/env bash
# Call 3 (2026-12-06): the new defaults against the old and mamba_ssm in one process, the running-scalar decay term
# (FREC), then the Mamba-3 GPU tests on the new defaults.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 200 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --peer --ab "WALK_FREC=1" \
  --ab "WALK_AHEAD=0 mamba3.launch.PREP_AHEAD=0" --kernels 4 > $OUT/walk_frec_peer.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk_frec_peer.txt
cd $R
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=140 TESTS="tests/test_mamba3.py tests/test_mamba3_mimo.py tests/test_mamba3_block.py" \
  bash bench/gpu_run.sh -k "backward or loads_ahead or prep or matches_the_loop or packed" > /dev/null 2>&1
tail -2 $OUT/pytest.txt; grep -E "fwd\+bwd|_walk_bwd|_siso_prep_bwd|rc=" $OUT/walk_frec_peer.txt
