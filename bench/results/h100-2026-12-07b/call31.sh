#!/usr/bin/env bash
# Call 31 (2026-12-07, forty-fifth session; carry .whl, .peers): the 130M LMs beside mamba_ssm's own LM with the same
# weights (bench/peer_lm.py), first time: prefill b1 L2048 and the decode step at b1 / b16 (issue 17: prefill <= 3 ms
# and >= 15x mamba_ssm, decode >= 5x mamba_ssm's generate(cg=True)); then mamba_ssm's CUDA selective scan built and
# the Mamba-1 LM's rows beside its Mamba-1 LM.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-540} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt; cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 230 python3 -m ssm_triton bench --ops lm --match '^lm_(prefill|prefill_cuda_graph|decode_step) \((1|16|1, 2048)[,)]' \
  --json $OUT/lm-peer.json > $OUT/lm-peer.txt 2>&1
{ echo "== Mamba2 LM beside mamba_ssm (rc=$?)"; grep -E "^lm_|^note" $OUT/lm-peer.txt; } >> $S
if [ $(left) -gt 260 ]; then
  s=$(date +%s); (cd $R && bash bench/build_peer_scan.sh) > $OUT/peer_build.txt 2>&1
  echo "== peer scan build $(( $(date +%s)-s )) s: $(tail -1 $OUT/peer_build.txt)" >> $S
  timeout $(( $(left) - 20 )) python3 -m ssm_triton bench --ops lm \
    --match '^lm_mamba1_(prefill|prefill_cuda_graph|decode_step) \((1|16|1, 2048)[,)]' --json $OUT/lm1-peer.json > $OUT/lm1-peer.txt 2>&1
  { echo "== Mamba-1 LM beside mamba_ssm (rc=$?)"; grep -E "^lm_|^note" $OUT/lm1-peer.txt; } >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
