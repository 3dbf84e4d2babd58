#!/usr/bin/env bash
# Call 47 (2026-12-07, forty-eighth session; carry .whl; CALL_BUDGET=~230): the chunk scan's own tiles in the 130M
# Mamba2 LM's replayed prefill (SSM_TRITON_SCAN_TILES="BLOCK_M,BLOCK_K,warps,stages"; the deferred norm on, tuner
# off), one process each, the default first and last. Offline (sm90_compile, triton 3.6): 64,64,4,2 168 registers
# 74.5 KB (3 blocks a SM); 32,32,4,2 94 / 24.6 KB (5); 64,32,4,1 168 / 32.8 KB (3); 64,64,8,2 122 / 74.5 KB (2).
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-230} - ($(date +%s) - T0) )); }
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/sst . > /dev/null 2>&1
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/sst; S=$OUT/summary.txt
for v in "" 32,32,4,2 64,32,4,1 64,64,8,2 32,64,4,2 64,64,4,1 32,32,2,2 32,32,4,1 ""; do
  [ $(left) -gt 25 ] || break
  SSM_TRITON_AUTOTUNE=0 SSM_TRITON_SCAN_TILES=$v timeout 40 python3 -m ssm_triton bench --ops lm --no-peers \
    --match '^lm_prefill_cuda_graph' > /tmp/p.txt 2>&1
  echo "== SCAN_TILES='$v' $(grep -E '^lm_prefill_cuda_graph' /tmp/p.txt | awk -F'|' '{print $6}')" >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
