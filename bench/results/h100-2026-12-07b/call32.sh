#!/usr/bin/env bash
# Call 32 (2026-12-07; ~230 s of device time left; carry .whl): the 130M Mamba2 LM's replayed prefill (b1 L2048) with
# the SSD's one-launch forward (in segments) inside the captured graph (SSM_TRITON_SSD_FUSED=1) against the stages
# (the default under capture since 12-02e, when whole rows lost: 6.55 against 4.13 ms, before segments existed).
# Tuner off in both (its rules only) to keep the call short.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
S=$OUT/summary.txt; cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst SSM_TRITON_AUTOTUNE=0
for v in "" 1 ""; do
  SSM_TRITON_SSD_FUSED=$v timeout 45 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_prefill_cuda_graph' \
    > /tmp/p.txt 2>&1
  { echo "== SSD_FUSED='$v'"; grep -E "^lm_prefill_cuda" /tmp/p.txt; } >> $S
done
