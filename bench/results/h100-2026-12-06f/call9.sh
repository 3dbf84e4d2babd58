#!/usr/bin/env bash
# Call 9 (written 2026-12-06, thirty-ninth session, for the next; carry .whl; ~480 s). MIMO's output backward reading
# the next step block's inputs while a block computes (mimo_out.OUT_AHEAD, interpreter-tested only): its GPU tests,
# memcheck, then MIMO rank 4 B8 fwd+bwd with it and without, alternating in one process (it changes a constexpr,
# not the tuner's candidates), the kernels' breakdown; and the prep kernels' cos / sin by the SFU (mimo.PREP_TRIG=fast,
# the SISO prep's forms; MIMO's 12-05f comparison that kept libdevice's may have been the tuning cache's doing).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
SSM_TRITON_EXAMPLES=6 TEST_TIMEOUT=150 TESTS="tests/test_mamba3_mimo.py" \
  bash bench/gpu_run.sh -k "matches_the_loop_with_every_gradient or one_autograd" > /dev/null 2>&1
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba3_mimo.py" SANITIZE_K="matches_the_loop_with_every_gradient" \
  SANITIZE_TIMEOUT=150 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
R=$(pwd); D=$R/bench/results/h100-2026-12-06f; cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 240 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" --ab "mamba3.mimo_out.OUT_AHEAD=1" \
  --ab "mamba3.mimo.PREP_TRIG=fast" --kernels 6 \
  > $OUT/mimo-out-ahead.txt 2>&1; echo "rc=$?" >> $OUT/mimo-out-ahead.txt
for rg in 0 1; do   # the linear scan's REV_GATHER (12-06f's process stopped at its limit), each tuning its own
  SSM_TRITON_SCAN_REV_GATHER=$rg timeout 90 python3 -m ssm_triton bench --ops linear_scan --match 'float32 fwd\+bwd' \
    --json $OUT/ls-rg$rg.json > /dev/null 2>&1
done
tail -2 $OUT/pytest.txt; tail -2 $OUT/memcheck.txt; grep -v -i warn $OUT/mimo-out-ahead.txt | tail -25
python3 $D/rows.py "$OUT/ls-*.json"
