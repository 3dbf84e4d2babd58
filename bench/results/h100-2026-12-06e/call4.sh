#!/usr/bin/env bash
# Call 4 (2026-12-06, thirty-eighth session; ~434 s of device time left after three refused starts; carry nothing,
# ~260 s). Issue 19: the SISO walk capped at 128 registers (SSM_TRITON_WALK_MAXNREG: two 8-warp programs an SM, 968 B
# of spill against 256, never timed) alternating with the default in one process (walk_choice --ab).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
s=$(date +%s)
timeout 210 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --ab "WALK_MAXNREG=128" --kernels 4 > $OUT/walk-maxnreg.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/walk-maxnreg.txt
grep -v -i warn $OUT/walk-maxnreg.txt | tail -30
