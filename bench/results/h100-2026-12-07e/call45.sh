#!/usr/bin/env bash
# Call 45 (2026-12-07, forty-eighth session; carry .whl, .peers; CALL_BUDGET=~480):
#  (0) GPU tests of the stride hints (kernels/hints.py: conv, gated norm, SSD chunk scan / one-launch, state update,
#      fused steps) and of the warm-up route test made fp16; memcheck of the conv's tests (column slices of odd widths);
#  (1) the 130M Mamba2 LM's replayed prefill and decode steps with SSM_TRITON_STRIDE_HINTS 1 / 0 and
#      SSM_TRITON_NORM_DEFER 1 / 0 (the gated norm deferred past out_proj, ops/norm_defer.py), tuner off, one process
#      each: in_proj's 3352-wide rows made the conv's and the gated norm's loads 2-byte ones;
#  (2) the replayed prefill's kernels with the hints (tuner off), against call 44's profile (conv 14.1 us a layer,
#      norms 7.4).
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-480} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=150 TESTS="tests/test_conv1d.py tests/test_norm.py tests/test_state_update.py tests/test_fused_step.py tests/test_mamba2_step.py tests/test_ssd_fused.py tests/test_prefill_graph.py tests/test_strided_inputs.py tests/test_norm_defer.py tests/test_lm.py" \
  SANITIZE="tests/test_conv1d.py" SANITIZE_K="float64" SANITIZE_TIMEOUT=120 bash bench/gpu_run.sh -n 8 > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -40 $OUT/failures.txt 2>/dev/null; echo "== memcheck"; tail -3 $OUT/memcheck.txt 2>/dev/null; } >> $S
rm -f $OUT/pytest.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in 11 01 10 11; do
  [ $(left) -gt 130 ] || break
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_STRIDE_HINTS=${v:0:1} SSM_TRITON_NORM_DEFER=${v:1:1} timeout 100 python3 -m ssm_triton \
    bench --ops lm --no-peers --match '^lm_(prefill_cuda_graph|decode_step \((1|16),\))' > /tmp/p.txt 2>&1
  { echo "== Mamba2 LM, STRIDE_HINTS=${v:0:1} NORM_DEFER=${v:1:1} (tuner off)"; grep -E "^lm_" /tmp/p.txt; } >> $S
done
if [ $(left) -gt 50 ]; then
  SSM_TRITON_AUTOTUNE=0 timeout $(( $(left) - 5 > 70 ? 70 : $(left) - 5 )) python3 -m ssm_triton.bench.profile --ops lm \
    --match "lm_prefill_cuda_graph (1, 2048)" --impl 'ssm_triton$' --rows 16 > $OUT/profile-prefill.txt 2>&1
  grep -E "ms of kernels|^  +[0-9]" $OUT/profile-prefill.txt | head -18 >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
