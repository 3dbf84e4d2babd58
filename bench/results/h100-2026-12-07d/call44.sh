#!/usr/bin/env bash
# Call 44 (written 2026-12-07 for the next session; carry .whl, .peers; CALL_BUDGET=~560):
#  (0) GPU tests of the captures' warm-up routes (graph_cache.as_captured) and the in-place Mamba3 reads;
#  (1) Mamba3's in-place inference reads (SSM_TRITON_M3_IN_PLACE, on since 736401f): the 130M-size Mamba3 LM's prefill,
#      eager and replayed, 1 / 0 / 1 in separate processes on one machine (call 43 measured the eager row at 18.46 ms on
#      another machine against call 40's 11.17 before the change; the graph 4.711 against 4.742; on this CPU the eager
#      host went 11.0 -> 9.9 ms): keep it on only if the eager row does not lose;
#  (1b) the prefill graphs with the tuner on and off: a capture's warm-up now takes the stages, so their tiles are
#      tuned for the graph (before, the rule's tiles ran whatever the tuner said);
#  (2) generate beside mamba_ssm's generate(cg=True) (calls 35 and 41 never got a row: its kernels' compile);
#  (3) the replayed prefills' profile with the tuner on.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-560} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
# GPU tests of the captures' warm-up routes (the prefill and decode graphs, generate, the fused steps)
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=120 TESTS="tests/test_prefill_graph.py tests/test_decode_graph.py tests/test_fused_step.py tests/test_strided_inputs.py" \
  bash bench/gpu_run.sh -n 8 > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -40 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in 1 0 1; do
  [ $(left) -gt 300 ] || break
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_M3_IN_PLACE=$v timeout 60 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers \
    --match 'prefill' > /tmp/p.txt 2>&1
  { echo "== Mamba3 LM prefill, M3_IN_PLACE=$v (tuner off)"; grep -E "^lm_mamba3_.*prefill" /tmp/p.txt; } >> $S
done
for v in "" 0; do   # the prefill graphs and the 16-row step with the tuner on (a capture's warm-up now tunes the
  [ $(left) -gt 220 ] || break   # SSD's stages and the composed step's kernels) and off
  env ${v:+SSM_TRITON_AUTOTUNE=$v} timeout 110 python3 -m ssm_triton bench --ops lm --no-peers \
    --match '^lm_(mamba1_)?(prefill_cuda_graph|decode_step \(16,\))' > /tmp/p.txt 2>&1
  { echo "== prefill graphs, 16-row steps, SSM_TRITON_AUTOTUNE='$v'"; grep -E "^lm_" /tmp/p.txt; } >> $S
done
if [ $(left) -gt 150 ]; then
  timeout $(( $(left) - 70 )) python3 -m ssm_triton bench --ops lm --match '^lm_generate' \
    --json $OUT/generate.json > $OUT/generate.txt 2>&1
  { echo "== generate (rc=$?)"; grep -E "^lm_|^note" $OUT/generate.txt; } >> $S
fi
if [ $(left) -gt 50 ]; then
  timeout $(( $(left) - 5 > 60 ? 60 : $(left) - 5 )) python3 -m ssm_triton.bench.profile --ops lm \
    --match "lm_prefill_cuda_graph (1, 2048)" --impl 'ssm_triton$' --rows 16 > $OUT/profile-prefill.txt 2>&1
  grep -E "ms of kernels|^  +[0-9]" $OUT/profile-prefill.txt | head -18 >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
