#!/usr/bin/env bash
# Call 37 (2026-12-07, forty-sixth session; no carry): what ~200 s of device time holds, no tests (they ran on CPU):
# the LMs' replayed prefill with A_log in the scans' kernels against A in PyTorch (SSM_TRITON_A_LOG=1/0, one process
# each), and the Mamba2 prefill's SSD stages at chunk 64 (SSM_TRITON_SSD_INF_CHUNK; the model's chunk is 256).
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-190} - ($(date +%s) - T0) )); }
S=$OUT/summary.txt
rm -rf /tmp/sst && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/sst . || exit 1
cd /tmp; export PYTHONPATH=/tmp/sst PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } >> $S
pre() {   # label, match, env...
  local label=$1 m=$2; shift 2
  [ $(left) -gt 35 ] || return
  env SSM_TRITON_AUTOTUNE=0 "$@" timeout 50 python3 -m ssm_triton bench --ops lm --no-peers --match "$m" > /tmp/p.txt 2>&1
  { echo "== $label (tuner off)"; grep -E "^lm_.*prefill" /tmp/p.txt; } >> $S
}
pre "prefill graphs, A_LOG=1" '^lm_(mamba1_)?prefill_cuda_graph' SSM_TRITON_A_LOG=1
pre "prefill graphs, A_LOG=0" '^lm_(mamba1_)?prefill_cuda_graph' SSM_TRITON_A_LOG=0
pre "Mamba2 prefill graph, SSD_INF_CHUNK=64" '^lm_prefill_cuda_graph' SSM_TRITON_SSD_INF_CHUNK=64
echo "== total $(( $(date +%s) - T0 )) s" >> $S
