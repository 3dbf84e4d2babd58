#!/usr/bin/env bash
# Call 27 (written 2026-12-07 for the next session; carry .whl, .peers; ~540 s with CALL_BUDGET=540):
#  (1) MIMO's prep backward with every rank in a program (SSM_TRITON_MIMO_PREP_BWD_RANKS=1, kernels/mamba3/mimo_prep_bwd.py,
#      untimed): GPU test against the float64 loop, memcheck, then fwd+bwd at B8 L4096 R4 against the per-rank kernel
#      (walk_choice --ab, one process, its 8 longest kernels: _prep_bwd_kernel 5.40 ms and a 0.50 ms reduce on an H100
#      12-06);
#  (2) the Mamba3 LM's step with its projections in our kernels (SSM_TRITON_M3_FUSED_PROJ=1 against 0);
#  (3) the probe of the Mamba-2 step in one launch (0.412 ms a b1 token against 0.225, H200 12-07): modes 0/2/1,
#      the waits' sleep 0/200/1000 ns, Nsight Compute of one launch of modes 2 and 0.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-540} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt; P=$R/bench/results/h200-2026-12-07/probe_in_update.py
s=$(date +%s)
SSM_TRITON_EXAMPLES=3 TEST_TIMEOUT=90 TESTS="tests/test_mamba3_mimo.py" bash bench/gpu_run.sh -n 4 \
  -k "every_rank_in_a_program or matches_the_loop_with_every" > /dev/null 2>&1
{ echo "== pytest mimo ($(( $(date +%s)-s )) s)"; tail -2 $OUT/pytest.txt; head -40 $OUT/failures.txt 2>/dev/null; } >> $S
rm -f $OUT/pytest.txt $OUT/failures.txt $OUT/gpu.txt
s=$(date +%s)
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_mamba3_mimo.py" SANITIZE_K="every_rank_in_a_program" SANITIZE_TIMEOUT=70 \
  SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
{ echo "== memcheck ($(( $(date +%s)-s )) s)"; tail -4 $OUT/memcheck.txt; } >> $S; rm -f $OUT/memcheck.txt $OUT/gpu.txt
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 170 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" --ab "mamba3.mimo_prep_bwd.PREP_BWD_RANKS=1" \
  --kernels 8 > $OUT/mimo_prep_ranks.txt 2>&1
{ echo "== MIMO prep bwd ranks (rc=$?)"; grep -E "fwd\+bwd|_prep_bwd|reduce_kernel|tuned: mamba3_mimo_prep_bwd" $OUT/mimo_prep_ranks.txt; } >> $S
# the Mamba3 LM's step with its projections in the fused steps' kernels (SSM_TRITON_M3_FUSED_PROJ, untimed) against the
# module's step (cuBLAS projections, the LM's add+norm apart); b1 0.491 / b16 0.784 ms on an H100 12-07
for v in 1 0; do
  [ $(left) -gt 150 ] || break
  SSM_TRITON_M3_FUSED_PROJ=$v timeout 60 python3 -m ssm_triton bench --ops lm_mamba3 --no-peers --match 'decode_step.\((1|4|16),\)' \
    --json $OUT/lm3-proj$v.json > /tmp/lm3.txt 2>&1
  { echo "== lm3 M3_FUSED_PROJ=$v"; grep -h "decode_step" /tmp/lm3.txt | grep -v "\[#"; } >> $S
done
# mode, sleep ns, rows, then pinned tiles (fewer, wider programs: all resident at 3 an SM)
for cfg in "0 0 1" "2 0 1" "2 200 1" "1 200 1" "2 0 1 BLOCK_O=16 BLOCK_OO=8 num_warps=8" "1 0 1 BLOCK_O=32 num_warps=8" "2 1000 1"; do
  set -- $cfg; [ $(left) -gt 100 ] || break
  SSM_TRITON_IN_UPDATE_SLEEP=$2 timeout 50 python3 $P $1 $3 ${@:4} 2>&1 | tail -1 | sed "s/^/sleep $2: /" >> $S
done
for mode in 2 0; do
  [ $(left) -gt 40 ] || break
  SSM_TRITON_AUTOTUNE=0 timeout 45 ncu --clock-control none -k "regex:_in_update|_in_step|_state_update|_out_step" --launch-skip 30 \
    --launch-count 3 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section MemoryWorkloadAnalysis python3 $P $mode 2>&1 | grep -v "^==PROF==" | tail -250 > $OUT/ncu-mode$mode.txt
  { echo "== ncu mode $mode"; grep -E "^  [_a-z].*\(|Duration|Registers Per|Warp Cycles Per Issued|Achieved Occupancy|Memory Throughput" $OUT/ncu-mode$mode.txt | head -24; } >> $S
done
echo "== total $(( $(date +%s) - T0 )) s" >> $S
cat $S
