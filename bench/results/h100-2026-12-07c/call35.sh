#!/usr/bin/env bash
# Call 35 (2026-12-07, forty-sixth session; carry .whl, .peers; CALL_BUDGET=550): call 33 and 34 cut to one call
# (device starts refused for most of the session):
#  (1) GPU tests: generate's kept states, step and prefill graphs; the conv windows in the projection; the A_log forms;
#  (2) the LMs' replayed prefill with A_log in the scans' kernels against A in PyTorch (SSM_TRITON_A_LOG=1/0);
#  (3) the replayed Mamba2 prefill's SSD stages at chunk 64 / 128 (SSM_TRITON_SSD_INF_CHUNK; the model's is 256);
#  (4) generate as a user calls it, b1 / b16, prompt 128, 256 new tokens: ours, ours with the kept step,
#      mamba_ssm's generate(cg=True) with our weights (turn SSM_TRITON_GENERATE_CACHE on if it passes and wins);
#  (5) where the replayed Mamba2 prefill's time goes.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-550} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=100 TESTS="tests/test_decode_graph.py tests/test_fused_step.py tests/test_prefill_graph.py tests/test_a_log.py tests/test_ssd_fused.py" \
  bash bench/gpu_run.sh -n 4 -k "generate or conv_windows_in_the_projection or replayed or replaced_weight or from_log or a_log or own_chunk" > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -30 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
pre() {   # label, match, env...
  local label=$1 m=$2; shift 2
  [ $(left) -gt 60 ] || return
  env SSM_TRITON_AUTOTUNE=0 "$@" timeout 60 python3 -m ssm_triton bench --ops lm --no-peers --match "$m" > /tmp/p.txt 2>&1
  { echo "== $label (tuner off)"; grep -E "^lm_.*prefill" /tmp/p.txt; } >> $S
}
pre "prefill graphs, A_LOG=1" '^lm_(mamba1_)?prefill_cuda_graph' SSM_TRITON_A_LOG=1
pre "prefill graphs, A_LOG=0" '^lm_(mamba1_)?prefill_cuda_graph' SSM_TRITON_A_LOG=0
if [ $(left) -gt 150 ]; then
  timeout $(( $(left) - 130 > 170 ? 170 : $(left) - 130 )) python3 -m ssm_triton bench --ops lm --match '^lm_generate' \
    --json $OUT/generate.json > $OUT/generate.txt 2>&1
  { echo "== generate (rc=$?)"; grep -E "^lm_|^note" $OUT/generate.txt; } >> $S
fi
pre "Mamba2 prefill graph, SSD_INF_CHUNK=64" '^lm_prefill_cuda_graph' SSM_TRITON_SSD_INF_CHUNK=64
if [ $(left) -gt 50 ]; then
  SSM_TRITON_AUTOTUNE=0 timeout 45 python3 -m ssm_triton.bench.profile --ops lm --match "lm_prefill_cuda_graph (1, 2048)" \
    --impl 'ssm_triton$' --rows 16 > $OUT/profile-prefill.txt 2>&1
  grep -E "ms of kernels|^  +[0-9]" $OUT/profile-prefill.txt | head -18 >> $S
fi
for v in 1 0; do   # Mamba-2's composed step at 16 rows with in_proj and the conv windows in one launch
  [ $(left) -gt 40 ] || break
  SSM_TRITON_M2_CONV_IN_PROJ=$v timeout 40 python3 -m ssm_triton bench --ops lm --no-peers \
    --match '^lm_decode_step \(16,\)' > /tmp/c.txt 2>&1
  { echo "== M2_CONV_IN_PROJ=$v"; grep -E "^lm_decode_step" /tmp/c.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
