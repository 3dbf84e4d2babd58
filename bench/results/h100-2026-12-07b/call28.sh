#!/usr/bin/env bash
# Call 28 (2026-12-07, forty-fifth session; carry .whl): where the 130M LMs' decode step at 16 rows spends its time
# (issue 17 asks 0.35 ms; the composed Mamba2 step was 0.607 on the H200, 0.646 on an H100), kernel by kernel
# (torch.profiler over the replayed step), then the fused three-launch step at 16 rows against the composed one.
T0=$(date +%s)
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
S=$OUT/summary.txt; cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
for m in "lm_decode_step (16,)" "lm_mamba1_decode_step (16,)" "lm_decode_step (1,)"; do
  timeout 100 python3 -m ssm_triton.bench.profile --ops lm --match "$m" --impl 'ssm_triton$' --rows 40 >> $OUT/profile.txt 2>&1
done
grep -E "ms of kernels|^  +[0-9]" $OUT/profile.txt | head -120 >> $S
for v in 4 16; do
  SSM_TRITON_M2_FUSED_ROWS=$v timeout 90 python3 -m ssm_triton bench --ops lm --no-peers --match 'decode_step.\((16),\)' \
    > /tmp/lm.txt 2>&1
  { echo "== M2_FUSED_ROWS=$v"; grep -h "decode_step" /tmp/lm.txt | grep -v "\[#"; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
