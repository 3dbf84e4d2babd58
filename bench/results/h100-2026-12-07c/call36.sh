#!/usr/bin/env bash
# Call 36 (2026-12-07, forty-sixth session; carry .whl): call 35 cut to what ~300 s of device time holds (device
# starts refused or taken back for most of the session): GPU tests of the A_log forms, the inference chunk length and
# generate's kept graphs (Mamba3 now left-paddable); the LMs' replayed prefill with A_log in the scans' kernels against
# A in PyTorch (SSM_TRITON_A_LOG=1/0); the Mamba2 prefill's SSD stages at chunk 64 (SSM_TRITON_SSD_INF_CHUNK).
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-300} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=80 TESTS="tests/test_decode_graph.py tests/test_a_log.py tests/test_ssd_fused.py" \
  bash bench/gpu_run.sh -n 4 -k "kept_graphs or from_log or a_log or own_chunk" > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -30 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
pre() {   # label, match, env...
  local label=$1 m=$2; shift 2
  [ $(left) -gt 45 ] || return
  env SSM_TRITON_AUTOTUNE=0 "$@" timeout 55 python3 -m ssm_triton bench --ops lm --no-peers --match "$m" > /tmp/p.txt 2>&1
  { echo "== $label (tuner off)"; grep -E "^lm_.*prefill" /tmp/p.txt; } >> $S
}
pre "prefill graphs, A_LOG=1" '^lm_(mamba1_)?prefill_cuda_graph' SSM_TRITON_A_LOG=1
pre "prefill graphs, A_LOG=0" '^lm_(mamba1_)?prefill_cuda_graph' SSM_TRITON_A_LOG=0
pre "Mamba2 prefill graph, SSD_INF_CHUNK=64" '^lm_prefill_cuda_graph' SSM_TRITON_SSD_INF_CHUNK=64
pre "Mamba2 prefill graph, SSD_INF_CHUNK=128" '^lm_prefill_cuda_graph' SSM_TRITON_SSD_INF_CHUNK=128
echo "== total $(( $(date +%s) - T0 )) s" >> $S
