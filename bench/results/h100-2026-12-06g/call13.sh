#!/usr/bin/env bash
# Call 13 (2026-12-06, fortieth session; carry .whl, .peers, .base = git archive 5891442, the session's first code;
# ~560 s, the first ~380 s the most needed): what calls 11 and 12 held, cut to one call by the device time left (starts refused), most needed first.
#  (1) GPU tests of the session's changes: the composed decode steps without PyTorch launches between ours (62e8b83),
#      the selective scan's folded entering state and unrolled state loops (9cb8f68, 64614bd: every candidate, chunk
#      lengths, gradients), the linear scan's folded carry (a023285);
#  (2) the 130M LMs' b1 / b16 decode steps after and before (.base) (Mamba2 replays the composed step at b16);
#  (3) the selective scan beside mamba_ssm's CUDA build (built in the call);
#  (4) memcheck of the conv update's strided reads, the A_log step and the selective scan's chunk lengths;
#  (5) the .base code's selective scan rows (no peers), the same call.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D6=$R/bench/results/h100-2026-12-06f
(s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt) &
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=90 TESTS="tests/test_state_update.py tests/test_conv1d.py tests/test_mamba2.py tests/test_mamba.py tests/test_selective_scan.py tests/test_scan.py tests/test_configs.py" \
  bash bench/gpu_run.sh -k "step or update or decod or chunk_lengths or gradients_match or every_selective_scan_config or forward_matches_loop or every_scan" > /dev/null 2>&1
M='decode_step.\((1|16),\)'
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 100 python3 -m ssm_triton bench --ops lm --match "$M" --json $OUT/lm.json > $OUT/lm.txt 2>&1
rm -rf /tmp/base && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/base $R/.base
PYTHONPATH=/tmp/base timeout 90 python3 -m ssm_triton bench --ops lm --no-peers --match "$M" --json $OUT/lm-baseline.json \
  > $OUT/lm-baseline.txt 2>&1
wait
timeout 80 python3 $D6/bench_choices.py selective_scan bench --ops selective_scan --json $OUT/ss.json > $OUT/ss.txt 2>&1
cd $R
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_conv1d.py tests/test_state_update.py tests/test_selective_scan.py" \
  SANITIZE_K="update_matches or from_A_log or chunk_lengths" SANITIZE_TIMEOUT=100 SKIP_TESTS=1 \
  bash bench/gpu_run.sh > /dev/null 2>&1
(cd /tmp; PYTHONPATH=/tmp/base timeout 50 python3 -m ssm_triton bench --ops selective_scan --no-peers \
  --json $OUT/ss-base.json > $OUT/ss-base.txt 2>&1)
tail -2 $OUT/pytest.txt; tail -2 $OUT/memcheck.txt; tail -1 $OUT/peer_build.txt
grep -E "decode_step" $OUT/lm.txt | head -24; echo "-- baseline"; grep -E "decode_step" $OUT/lm-baseline.txt | head -16
python3 $D6/rows.py "$OUT/ss*.json"; python3 $D6/rows.py "$OUT/lm*.json"; grep -h "chosen:" $OUT/ss.txt
