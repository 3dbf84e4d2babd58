#!/usr/bin/env bash
# Call 42 (2026-12-07, forty-seventh session; carry .whl, .peers; CALL_BUDGET=~420): a first plan (call 41, refused twice and never run) reordered for less device
# time (two refused starts cost ~390 s):
#  (1) GPU tests of the session's code: softplus's series (every kernel with dt_softplus reads it), the 16-row
#      conv-in-projection step and the Mamba3 step-size kernel, both on by default now; memcheck of the step-size kernel;
#  (2) the replayed Mamba2 prefill (tuner off, one process each): the SSD's one-launch forward in the graph
#      (SSM_TRITON_SSD_FUSED=1), the chunk states summed inside the state passing (SSM_TRITON_SSD_OWN_FUSED=1), default;
#  (2b) the 130M-size Mamba3 LM's prefill, its scan reading V, Z and the angles in place (no copies);
#  (3) Nsight Compute of the replayed prefill's chunk scan kernel (25 us a layer, ~5x its I/O);
#  (4) generate beside mamba_ssm's generate(cg=True), then the prefills' profile with the tuner on, as time allows.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-420} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=110 TESTS="tests/test_mamba3_steps.py tests/test_strided_inputs.py tests/test_fused_step.py tests/test_state_update.py tests/test_ssd_fused.py tests/test_discretize.py" \
  bash bench/gpu_run.sh -n 8 > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -40 $OUT/failures.txt 2>/dev/null; } >> $S; rm -f $OUT/pytest.txt
SSM_TRITON_EXAMPLES=3 SANITIZE="tests/test_mamba3_steps.py" SANITIZE_TIMEOUT=80 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
{ echo "== memcheck tests/test_mamba3_steps.py"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for v in SSM_TRITON_SSD_FUSED=1 SSM_TRITON_SSD_OWN_FUSED=1 SSM_TRITON_SSD_FUSED=; do
  [ $(left) -gt 150 ] || break
  env SSM_TRITON_AUTOTUNE=0 $v timeout 45 python3 -m ssm_triton bench --ops lm --no-peers --match '^lm_prefill_cuda_graph' \
    > /tmp/p.txt 2>&1
  { echo "== prefill graph, $v (tuner off)"; grep -E "^lm_prefill_cuda" /tmp/p.txt; } >> $S
done
if [ $(left) -gt 170 ]; then   # the Mamba3 LM's prefill with the scan reading V, Z and the angle rates in place (call 40: 4.742)
  SSM_TRITON_AUTOTUNE=0 timeout 60 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match 'prefill' > /tmp/p.txt 2>&1
  { echo "== Mamba3 LM prefill (tuner off)"; grep -E "^lm_mamba3_.*prefill" /tmp/p.txt; } >> $S
fi
if [ $(left) -gt 110 ]; then
  SSM_TRITON_AUTOTUNE=0 timeout 90 ncu --clock-control none -k "regex:_chunk_scan_fwd_kernel" --launch-skip 0 \
    --launch-count 1 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section SchedulerStats python3 -m ssm_triton.bench.profile --ops lm \
    --match "lm_prefill_cuda_graph (1, 2048)" --impl 'ssm_triton$' --calls 2 2>&1 | tail -150 > $OUT/ncu-chunk-scan.txt
  grep -E "Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Memory Throughput|Compute \(SM\)|Block Size|Grid Size|Waves|Stall|No Eligible|Issued Warp" $OUT/ncu-chunk-scan.txt | head -24 >> $S
fi
if [ $(left) -gt 150 ]; then
  timeout $(( $(left) - 20 )) python3 -m ssm_triton bench --ops lm --match '^lm_generate' \
    --json $OUT/generate.json > $OUT/generate.txt 2>&1
  { echo "== generate (rc=$?)"; grep -E "^lm_|^note" $OUT/generate.txt; } >> $S
fi
if [ $(left) -gt 50 ]; then
  timeout $(( $(left) - 5 > 60 ? 60 : $(left) - 5 )) python3 -m ssm_triton.bench.profile --ops lm \
    --match "lm_prefill_cuda_graph (1, 2048)" --impl 'ssm_triton$' --rows 16 > $OUT/profile-prefill.txt 2>&1
  grep -E "ms of kernels|^  +[0-9]" $OUT/profile-prefill.txt | head -18 >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
