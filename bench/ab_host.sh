#!/usr/bin/env bash
# Host time of two checkouts, alternating, in separate processes on one GPU machine:
#   bash bench/ab_host.sh .base [ROUNDS] [overhead.py arguments...]
# .base: an earlier checkout (git-ignored; `git archive <commit> | tar -x -C .base`, carried by the device tool).
# Each round runs `python -m ssm_triton.bench.overhead` (medians of 15 samples a row, --top 0) on the base, then on
# this checkout; the base runs this checkout's overhead.py (copied in), so both are measured the same way.
# Results: $OUT/ab-host-{base,new}-<round>.txt. Default rows: the batch-1 forwards and the decode step.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
repo=$(pwd)
base=$1; shift
rounds=${1:-3}; shift || true
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--ops linear_scan selective_scan ssd state_update conv1d gated_rmsnorm discretize mamba3
                              --match '^[a-z_0-9]+ \((1|64), .* fwd$')
cp "$repo/bench/overhead.py" "$repo/$base/bench/overhead.py"
rm -rf /tmp/ab-base /tmp/ab-new
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/ab-base "$repo/$base" || exit 1
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/ab-new "$repo" || exit 1
cd /tmp
for r in $(seq 1 "$rounds"); do
  for v in base new; do
    PYTHONPATH=/tmp/site:/tmp/ab-$v SSM_TRITON_AUTOTUNE=0 timeout 300 python3 -m ssm_triton.bench.overhead "${args[@]}" \
      --top 0 > "$OUT/ab-host-$v-$r.txt" 2>&1
  done
done
grep -h "host" "$OUT"/ab-host-*-1.txt | head -40
