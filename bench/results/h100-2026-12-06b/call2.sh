#!/usr/bin/env bash
# Call 2 (2026-12-06, thirty-fourth session): the walk's and the prep backward's loads issued ahead, the decay's
# gradient from one tile, and an ablation of the walk's parts (a git-archive copy with ABL switches, carried as .abl).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); cp /tmp/out/gpu.txt $OUT/
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/abl $R/.abl >/dev/null 2>&1
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 200 python3 -m ssm_triton.bench.walk_choice --only b8 --ab "WALK_AHEAD=1" --ab "WALK_AHEAD=2" \
  --ab "WALK_AHEAD=1 WALK_STRADDLE=1" --ab "mamba3.launch.PREP_AHEAD=1" --kernels 3 > $OUT/walk_ahead_b8.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk_ahead_b8.txt
A=(--ab "WALK_AHEAD=1"); for b in 1 2 4 8 16 32 64 128; do A+=(--ab "WALK_AHEAD=1 WALK_ABL=$b"); done
s=$(date +%s)
PYTHONPATH=/tmp/abl:/tmp/site:$R/.peers timeout 150 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" "${A[@]}" \
  --kernels 1 > $OUT/walk_ablate.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk_ablate.txt
cd $R
SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=${TEST_TIMEOUT:-170} TESTS="tests/test_mamba3.py tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh -k "backward_in_one_launch or loads_ahead or prep_backward or matches_the_loop" > /dev/null 2>&1
cp /tmp/out/pytest.txt $OUT/tests.txt; cp /tmp/out/failures.txt $OUT/ 2>/dev/null
tail -2 $OUT/tests.txt; grep -E "fwd\+bwd|_walk_bwd|_siso_prep_bwd|rc=" $OUT/walk_ahead_b8.txt $OUT/walk_ablate.txt
