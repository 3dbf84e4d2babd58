#!/usr/bin/env bash
# Call 53 (for the next session; carry .whl and .peers; CALL_BUDGET=~540): the few-rows SSD plans' new default (the
# chunk scan at 32-step slices, one stage, split decay, longest first; 32-channel chunk states), set on call 52's
# knob timings (2.088 ms) but not itself timed:
#  (0) GPU tests where a GPU's tiny shapes take the few-rows rule (the SSD, the deferred norm, the prefill graphs, the
#      plans, Mamba-3's scans, which keep the old form);
#  (1) the prefill graph by default against the forty-ninth session's forms forced; then beside mamba_ssm's LM;
#  (2) the SSD's few-rows bench rows (b1 L512 / L2048 / L8192, fwd and fwd+bwd, tuner off) by default and with the old
#      forms forced: the training calls at these sizes that take the stages now take the split scan too;
#      and with the backward's split decay (left off: inside the spread at the headline);
#  (2b) the training headline with the split and order forced (the many-rows rule has neither);
#  (3) the Mamba-3 LM's prefill with the split form forced (its plan keeps the old form until this row says).
. bench/results/gpu-2026-12-07f/forms.sh; CALL_BUDGET=${CALL_BUDGET:-540}
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=120 TESTS="tests/test_ssd.py tests/test_norm_defer.py tests/test_prefill_graph.py tests/test_configs.py tests/test_mamba3.py" \
  bash bench/gpu_run.sh -n 8 > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -60 $OUT/failures.txt 2>/dev/null; } >> $S
rm -f $OUT/pytest.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
OLD="64,64,4,2:0:0::64,128,64,4,2"
prefill "::::" "$OLD" "::::"
[ $(left) -gt 150 ] && SSM_TRITON_AUTOTUNE=0 timeout 90 python3 -m ssm_triton bench --ops lm --match '^lm_prefill' \
  --json $OUT/prefill.json > $OUT/prefill.txt 2>&1
for form in "" "$OLD" "dx"; do   # dx: the default with the backward's split decay (SSM_TRITON_DX_SPLIT=1)
  [ $(left) -gt 90 ] || break
  dx=0; [ "$form" = dx ] && dx=1 && form=""
  IFS=: read tiles order split cap state <<< "$form"
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_DX_SPLIT=$dx SSM_TRITON_SCAN_TILES=$tiles SSM_TRITON_SCAN_ORDER=$order SSM_TRITON_SCAN_SPLIT=$split \
    SSM_TRITON_STATE_TILES=$state timeout 80 python3 -m ssm_triton bench --ops ssd --no-peers \
    --match 'ssd \(1, (512|2048|8192), ' > /tmp/p.txt 2>&1
  { echo "== SSD few-rows rows, form '$form' DX_SPLIT=$dx (tuner off)"; grep -E "^ssd " /tmp/p.txt || tail -3 /tmp/p.txt; } >> $S
done
for v in "" 1; do   # the training headline (the many-rows rule: 64x32 scan tiles, one stage) with split + order forced
  [ $(left) -gt 80 ] || break
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_SCAN_SPLIT=$v SSM_TRITON_SCAN_ORDER=$v timeout 60 python3 -m ssm_triton bench \
    --ops ssd --no-peers --match 'ssd \(8, 4096, 64, 64, 1, 128, 256\) bfloat16' > /tmp/p.txt 2>&1
  { echo "== SSD headline, SCAN_SPLIT=SCAN_ORDER='$v' (tuner off)"; grep -E "^ssd " /tmp/p.txt || tail -3 /tmp/p.txt; } >> $S
done
for v in "" 1; do
  [ $(left) -gt 60 ] || break
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_SCAN_SPLIT=$v SSM_TRITON_SCAN_ORDER=$v timeout 60 python3 -m ssm_triton bench \
    --ops lm_mamba3 --no-peers --match 'prefill' > /tmp/p.txt 2>&1
  { echo "== Mamba3 LM prefill, SCAN_SPLIT=SCAN_ORDER='$v' (tuner off)"; grep -E "^lm_mamba3_.*prefill" /tmp/p.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
