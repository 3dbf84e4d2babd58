#!/usr/bin/env bash
# Call 15 (2026-12-06, forty-first session; carry .whl, .peers, .base = git archive 5891442, the fortieth session's first
# code; ~560 s, most needed first, each piece under its own timeout so a cut run keeps what ran):
#  (1) GPU tests of the fortieth session's kernel changes (composed decode steps, the selective scan's folded entering
#      state and unrolled state loops with every candidate, the linear scan's fold) and of this session's Mamba3 step
#      in one launch (the step kernels reading strided rows, the logits and norms inside);
#  (2) memcheck of the conv update's strided reads, the A_log step, the selective scan's chunk lengths, the Mamba3 steps;
#  (3) decode steps: the 130M Mamba2 LM at b1 / b16 and a 130M-size LM of Mamba3 mixers at b1 / b16 (one-launch step
#      against the composed one, same process);
#  (4) the selective scan beside mamba_ssm's CUDA build (built meanwhile) and on .base.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D6=$R/bench/results/h100-2026-12-06f
(s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt) &
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=110 TESTS="tests/test_state_update.py tests/test_conv1d.py tests/test_selective_scan.py tests/test_scan.py tests/test_configs.py tests/test_mamba3.py tests/test_mamba3_block.py" \
  bash bench/gpu_run.sh -k "update or decod or chunk_lengths or gradients_match or every_selective_scan_config or forward_matches_loop or every_scan or step" > /dev/null 2>&1
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_conv1d.py tests/test_state_update.py tests/test_selective_scan.py tests/test_mamba3.py" \
  SANITIZE_K="update_matches or from_A_log or chunk_lengths or planned_steps or block_step" SANITIZE_TIMEOUT=110 SKIP_TESTS=1 \
  bash bench/gpu_run.sh > /dev/null 2>&1
M='decode_step.\((1|16),\)'
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 90 python3 -m ssm_triton bench --ops lm --no-peers --match "$M" --json $OUT/lm.json > $OUT/lm.txt 2>&1
timeout 90 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match "$M" --json $OUT/lm3.json > $OUT/lm3.txt 2>&1
# where the b16 step's time goes (kernels of the replayed composed step; Mamba3's one-launch step)
timeout 60 python3 -m ssm_triton.bench.profile --ops lm --match "(16,)" --impl ssm_triton_composed_step > $OUT/profile_b16.txt 2>&1
timeout 60 python3 -m ssm_triton.bench.profile --ops lm_mamba3 --match "(16,)" --impl ssm_triton_eager > $OUT/profile3_b16.txt 2>&1
wait
timeout 80 python3 $D6/bench_choices.py selective_scan bench --ops selective_scan --json $OUT/ss.json > $OUT/ss.txt 2>&1
rm -rf /tmp/base && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/base $R/.base
PYTHONPATH=/tmp/base timeout 50 python3 -m ssm_triton bench --ops selective_scan --no-peers --json $OUT/ss-base.json > $OUT/ss-base.txt 2>&1
cd $R
tail -3 $OUT/pytest.txt; tail -3 $OUT/memcheck.txt; tail -1 $OUT/peer_build.txt
grep -E "decode_step" $OUT/lm.txt $OUT/lm3.txt | head -30; head -30 $OUT/profile_b16.txt; head -24 $OUT/profile3_b16.txt
python3 $D6/rows.py "$OUT/ss*.json"; grep -h "chosen:" $OUT/ss.txt
