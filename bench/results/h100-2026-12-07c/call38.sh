#!/usr/bin/env bash
# Call 38 (2026-12-07, forty-sixth session; no carry): the last ~120 s of the session's device time: the 130M Mamba2
# LM's replayed prefill with A_log in the SSD's kernels (the new default) against A in PyTorch (SSM_TRITON_A_LOG=0), and
# its SSD stages at chunk 64 (SSM_TRITON_SSD_INF_CHUNK=64), one process each, tuner off.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-120} - ($(date +%s) - T0) )); }
S=$OUT/summary.txt
rm -rf /tmp/sst && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/sst . || exit 1
cd /tmp; export PYTHONPATH=/tmp/sst PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader >> $S
for v in "SSM_TRITON_A_LOG=1" "SSM_TRITON_A_LOG=0" "SSM_TRITON_SSD_INF_CHUNK=64" "SSM_TRITON_A_LOG=1"; do
  [ $(left) -gt 20 ] || break
  env SSM_TRITON_AUTOTUNE=0 $v timeout $(( $(left) - 5 < 50 ? $(left) - 5 : 50 )) python3 -m ssm_triton bench --ops lm \
    --no-peers --match '^lm_prefill_cuda_graph' > /tmp/p.txt 2>&1
  { echo "== $v (tuner off, $(( $(date +%s) - T0 )) s)"; grep -E "^lm_.*prefill" /tmp/p.txt; } >> $S
done
