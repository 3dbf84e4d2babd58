#!/usr/bin/env bash
# Call 12 (2026-12-06, fortieth session; carry .whl and .peers; ~540 s). Issues 18 and 19, the untimed switches of
# 12-06f: the selective scan at 256-step checkpoints (SSM_TRITON_SS_CHUNK=256) against 128 beside mamba_ssm's CUDA
# build (processes A B, each tuning its own, REV_GATHER with AHEAD among the candidates; its GPU tests at 256 in call 11); MIMO's
# output backward reading ahead (mimo_out.OUT_AHEAD) and its prep's SFU cos / sin (mimo.PREP_TRIG=fast): GPU tests,
# memcheck, the fwd+bwd A/B alternating in one process with the kernels' breakdown.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D=$R/bench/results/h100-2026-12-06f
(s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt) &
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=100 TESTS="tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh -k "matches_the_loop_with_every_gradient or reading_ahead" > /dev/null 2>&1
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba3_mimo.py" SANITIZE_K="reading_ahead or every_gradient" \
  SANITIZE_TIMEOUT=120 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 150 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" --ab "mamba3.mimo_out.OUT_AHEAD=1" \
  --ab "mamba3.mimo.PREP_TRIG=fast" --kernels 6 > $OUT/mimo-ab.txt 2>&1; echo "rc=$?" >> $OUT/mimo-ab.txt
wait
for run in 128 256; do
  SSM_TRITON_SS_CHUNK=$run timeout 80 python3 $D/bench_choices.py selective_scan bench --ops selective_scan \
    --json $OUT/ss-ck$run.json > $OUT/ss-ck$run.txt 2>&1
done
tail -2 $OUT/pytest.txt; tail -2 $OUT/memcheck.txt; tail -1 $OUT/peer_build.txt
grep -v -i warn $OUT/mimo-ab.txt | tail -25
python3 $D/rows.py "$OUT/*.json"
grep -h "chosen: selective_scan_bwd|" $OUT/ss-ck*.txt
