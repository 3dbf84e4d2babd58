#!/usr/bin/env bash
# Call 26, call 25 cut to the device time left (carry .whl, .peers; ~330 s): why the Mamba-2 step in one launch (SSM_TRITON_M2_IN_UPDATE=2) ran 0.412 ms a
# token against the three launches' 0.225 (call 24, H200): one block stepped 24 times in a row, eager and replayed,
# modes 0/1/2, the waits' sleep (SSM_TRITON_IN_UPDATE_SLEEP ns) 0/200/1000; Nsight Compute of one launch of each mode.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-420} - ($(date +%s) - T0) )); }
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt; P=$R/bench/results/h200-2026-12-07/probe_in_update.py
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for cfg in "0 0 1" "2 0 1" "2 200 1" "1 200 1" "2 1000 1"; do
  set -- $cfg; [ $(left) -gt 100 ] || break
  SSM_TRITON_IN_UPDATE_SLEEP=$2 timeout 50 python3 $P $1 $3 2>&1 | tail -1 | sed "s/^/sleep $2: /" >> $S
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
