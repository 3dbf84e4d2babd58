#!/usr/bin/env bash
# Call 34 (2026-12-07, forty-sixth session; carry .whl): memcheck of the scans' A_log forms (tests/test_a_log.py: the
# SSD's cumsum and one-launch kernels, the selective scan's forward and time-split summary with A_LOG), the eager
# prefills with A_log in the kernels against A in PyTorch (SSM_TRITON_A_LOG=1/0/1: three PyTorch launches a layer,
# host_us), the replayed Mamba2 prefill's SSD stages at chunk 64 / 128 / 256 (SSM_TRITON_SSD_INF_CHUNK), and where the
# Mamba-1 LM's replayed prefill spends its time.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-480} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=3 SANITIZE="tests/test_a_log.py" SANITIZE_TIMEOUT=120 SKIP_TESTS=1 bash bench/gpu_run.sh \
  > /dev/null 2>&1
S=$OUT/summary.txt
{ echo "== memcheck tests/test_a_log.py"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst SSM_TRITON_AUTOTUNE=0
for v in 1 0; do
  [ $(left) -gt 70 ] || break
  SSM_TRITON_A_LOG=$v timeout 70 python3 -m ssm_triton bench --ops lm --no-peers \
    --match '^lm_(mamba1_)?prefill \(1, 2048\)' > /tmp/p.txt 2>&1
  { echo "== eager prefill, A_LOG=$v (tuner off; ms, host_us)"; grep -E "^lm_.*prefill" /tmp/p.txt; } >> $S
done
# the replayed prefill's SSD stages at a chunk length of their own (launch.INF_CHUNK; the model's is 256)
for q in 64 128 256; do
  [ $(left) -gt 60 ] || break
  SSM_TRITON_SSD_INF_CHUNK=$q timeout 55 python3 -m ssm_triton bench --ops lm --no-peers \
    --match '^lm_prefill_cuda_graph' > /tmp/p.txt 2>&1
  { echo "== prefill graph, SSD_INF_CHUNK=$q (tuner off)"; grep -E "^lm_prefill_cuda" /tmp/p.txt; } >> $S
done
if [ $(left) -gt 70 ]; then
  timeout 65 python3 -m ssm_triton.bench.profile --ops lm --match "mamba1_prefill_cuda_graph (1, 2048)" \
    --impl 'ssm_triton$' --rows 14 > $OUT/profile-mamba1-prefill.txt 2>&1
  grep -E "ms of kernels|^  +[0-9]" $OUT/profile-mamba1-prefill.txt | head -18 >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
