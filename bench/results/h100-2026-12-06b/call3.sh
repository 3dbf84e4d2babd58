#!/usr/bin/env bash
# Call 3 (2026-12-06; not run in the thirty-fourth or thirty-fifth session, which had no device time left): the new
# defaults beside mamba_ssm in one process and the running-scalar decay term (FREC, with its error bound since
# 48c84e5), the walk's merged row sums (MERGE), the prep backward's merged bias sums (mamba3.launch.PREP_MERGE) and
# all three alternating with them, then the Mamba-3 walk and prep-backward GPU tests (memcheck of them: call 4).
# Carry .whl and .peers; about 450 s (the tool allows 600 a command).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 260 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --peer --ab "WALK_FREC=1" --ab "WALK_MERGE=1" \
  --ab "mamba3.launch.PREP_MERGE=1" --ab "WALK_FREC=1 WALK_MERGE=1 mamba3.launch.PREP_MERGE=1" --kernels 4 \
  > $OUT/walk_frec_peer.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk_frec_peer.txt
cd $R
K="backward_in_one_launch or loads_ahead or prep_backward or chunks_digits"
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=2 TEST_TIMEOUT=${TEST_TIMEOUT:-120} TESTS="tests/test_mamba3.py tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh -k "$K" > /dev/null 2>&1
# (gpu_run.sh writes pytest.txt, failures.txt, gpu.txt and memcheck.txt into the tool's $OUT itself)
tail -2 $OUT/pytest.txt; grep -E "fwd\+bwd|_walk_bwd|_siso_prep_bwd|rc=" $OUT/walk_frec_peer.txt
