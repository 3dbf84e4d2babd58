#!/usr/bin/env bash
# Call 57 (carry .whl and .peers; CALL_BUDGET ~400): call 56 cut to fit what device time is left, and where the
# one-launch SSD forward's chunk goes:
#  (0) GPU tests of the state update (heads on the grid's second axis now) and the steps that launch it, and the SSD
#      test whose comparison runs the stages on both sides;
#  (1) the bandwidth probe (the op against a copy) at b64 fp32 and b16 bf16;
#  (2) the SSD's b1 L2048 bf16 eager forward (tuner off) with parts of each chunk dropped (ablate_fused.py on a copy
#      of the tree: SSM_PROBE_ABL 1 pairs, 2 entering state, 4 state update, 8 fp32 decay sums, 16 no decay exps),
#      and the whole row in one segment;
#  (3) call 55's fp32 linear scan beside accelerated-scan with and without REV_GATHER, as time allows.
set -uo pipefail
CALL_BUDGET=${CALL_BUDGET:-400}; T0=$(date +%s); left() { echo $(( CALL_BUDGET - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
R=$(pwd)
SSM_TRITON_EXAMPLES=5 TEST_TIMEOUT=110 TESTS="tests/test_state_update.py tests/test_norm_defer.py tests/test_fused_step.py tests/test_mamba2_step.py tests/test_ssd.py" \
  bash bench/gpu_run.sh -n 8 -k "not test_ssd or chunk_sums_inside" > /dev/null 2>&1
S=$OUT/summary.txt; mv $OUT/gpu.txt $S
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -60 $OUT/failures.txt 2>/dev/null; } >> $S
rm -f $OUT/pytest.txt
# the ablation's copy of the tree, installed apart
rm -rf /tmp/abl && mkdir /tmp/abl && git ls-files | tar -cf - -T - | tar -xf - -C /tmp/abl \
  && python3 bench/results/gpu-2026-12-08/ablate_fused.py /tmp/abl/kernels/ssd/fused.py >> $S \
  && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/sst_abl /tmp/abl > /dev/null 2>&1
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 50 python3 $R/bench/results/gpu-2026-12-08/probe_state_bw.py 64 64 64 128 fp32 16 24 64 128 bf16 \
  > $OUT/probe_state_bw.txt 2>&1
for a in 0 1 2 4 8 16 7 31 0s; do
  [ $(left) -gt 40 ] || break
  seg=""; [ "$a" = 0s ] && seg=1 && a=0
  SSM_PROBE_ABL=$a SSM_TRITON_SSD_SEGMENTS=$seg SSM_TRITON_AUTOTUNE=0 PYTHONPATH=/tmp/site:/tmp/sst_abl \
    timeout 40 python3 -m ssm_triton bench --ops ssd --no-peers --match 'ssd \(1, 2048, 64, 64, 1, 128, 256\) bfloat16 fwd$' \
    > /tmp/p.txt 2>&1
  echo "== ablation SSM_PROBE_ABL=$a segments='$seg' $(grep -E '^ssd ' /tmp/p.txt | awk -F'|' '{print $6, $7}' || tail -2 /tmp/p.txt)" >> $S
done
for v in 0 1; do
  [ $(left) -gt 90 ] || break
  SSM_TRITON_SCAN_REV_GATHER=$v timeout $(( $(left) - 15 )) python3 -m ssm_triton bench \
    --ops linear_scan --match 'float32' > /tmp/p.txt 2>&1
  { echo "== linear scan fp32, SSM_TRITON_SCAN_REV_GATHER=$v"; grep -E "^linear_scan" /tmp/p.txt | head -40 || tail -5 /tmp/p.txt; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
