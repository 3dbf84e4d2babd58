#!/usr/bin/env bash
# Call 58 (carry .whl and .peers; CALL_BUDGET ~300, more runs call55.sh's fp32 linear scan after it): the state
# update's bandwidth probe (its new grid order against the old, in one kernel), the one-launch SSD forward's chunk
# with parts dropped (ablate_fused.py on a copy of the tree), then the GPU tests of the state update, the steps that
# launch it and the SSD test that now forces the stages.
set -uo pipefail
CALL_BUDGET=${CALL_BUDGET:-300}; T0=$(date +%s); left() { echo $(( CALL_BUDGET - ($(date +%s) - T0) )); }
R=$(pwd)
SKIP_CHECK=1 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1   # installs the package and the peers
S=$OUT/summary.txt; mv $OUT/gpu.txt $S
rm -rf /tmp/abl && mkdir /tmp/abl && git ls-files | tar -cf - -T - | tar -xf - -C /tmp/abl \
  && python3 bench/results/gpu-2026-12-08/ablate_fused.py /tmp/abl/kernels/ssd/fused.py >> $S \
  && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/sst_abl /tmp/abl > /dev/null 2>&1
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 60 python3 $R/bench/results/gpu-2026-12-08/probe_state_bw.py 64 64 64 128 fp32 16 24 64 128 bf16 \
  > $OUT/probe_state_bw.txt 2>&1
timeout 40 python3 -m ssm_triton bench --ops state_update > /tmp/p.txt 2>&1   # eager and replayed, beside mamba_ssm
{ echo "== bench state_update (eager and replayed)"; grep -E "^state_update" /tmp/p.txt || tail -3 /tmp/p.txt; } >> $S
for a in 0 1 2 4 8 16 0s; do
  [ $(left) -gt 110 ] || break
  seg=""; [ "$a" = 0s ] && seg=1 && a=0
  SSM_PROBE_ABL=$a SSM_TRITON_SSD_SEGMENTS=$seg SSM_TRITON_AUTOTUNE=0 PYTHONPATH=/tmp/site:/tmp/sst_abl \
    timeout 30 python3 -m ssm_triton bench --ops ssd --no-peers --match 'ssd \(1, 2048, 64, 64, 1, 128, 256\) bfloat16 fwd$' \
    > /tmp/p.txt 2>&1
  echo "== ablation SSM_PROBE_ABL=$a segments='$seg' $(grep -E '^ssd ' /tmp/p.txt | awk -F'|' '{print $6, $7}' || tail -2 /tmp/p.txt)" >> $S
done
T=$(( $(left) - 10 )); [ $T -gt 100 ] && T=100
SSM_TRITON_EXAMPLES=4 SSM_TRITON_FAILURES=$OUT/failures.txt timeout $T python3 -m pytest -q -p no:cacheprovider -n 8 \
  $R/tests/test_state_update.py $R/tests/test_norm_defer.py $R/tests/test_fused_step.py $R/tests/test_mamba2_step.py \
  $R/tests/test_ssd.py -k "not test_ssd or chunk_sums_inside" > /tmp/pt.txt 2>&1
{ echo "== pytest (${T} s limit)"; tail -2 /tmp/pt.txt; head -40 $OUT/failures.txt 2>/dev/null; } >> $S
for v in 0 1; do   # call 55's rows where time is left: the fp32 linear scan beside accelerated-scan
  [ $(left) -gt 90 ] || break
  SSM_TRITON_SCAN_REV_GATHER=$v timeout $(( $(left) - 15 )) python3 -m ssm_triton bench --ops linear_scan \
    --match 'float32' > /tmp/p.txt 2>&1
  { echo "== linear scan fp32, SSM_TRITON_SCAN_REV_GATHER=$v"; grep -E "^linear_scan" /tmp/p.txt | head -40 || tail -5 /tmp/p.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
