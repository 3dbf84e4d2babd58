#!/usr/bin/env bash
# Call 4 (written 2026-12-06, thirty-eighth session, for the next; carry .whl, ~330 s). The selective scan backward's
# adjoint scan run forward over the chunk read backwards through tl.gather (REV_GATHER: at sm_90 with triton 3.6 a
# state's pass over a chunk 323 -> 270 instructions, 101 -> 49 shuffles; bench/results/cpu-2026-12-06e/; the linear
# scan's backward has the same form, SSM_TRITON_SCAN_REV_GATHER), tested
# through the interpreter only: its GPU tests (the tests pass it explicitly), memcheck of them with odd shapes, then
# the bench's selective scan rows (no peers) with it among the tuner's candidates (SSM_TRITON_SS_REV_GATHER=1) and
# without, alternating processes; then the backward alone replayed at the segment lengths, with it.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
SSM_TRITON_EXAMPLES=8 TEST_TIMEOUT=100 TESTS="tests/test_selective_scan.py" \
  bash bench/gpu_run.sh -k "backward_time_segments or gradients_match" > /dev/null 2>&1
cp $OUT/pytest.txt $OUT/pytest-ss.txt; rm -f $OUT/pytest.txt
SSM_TRITON_EXAMPLES=3 SANITIZE="tests/test_selective_scan.py" SANITIZE_K="backward_time_segments or gradients_match" \
  SANITIZE_TIMEOUT=90 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for round in 1 2; do for rg in 0 1; do
  SSM_TRITON_SS_REV_GATHER=$rg timeout 60 python3 -m ssm_triton bench --ops selective_scan --no-peers \
    --json $OUT/ss-rg$rg-r$round.json > /dev/null 2>&1
done; done
for round in 1 2; do for rg in 0 1; do   # the linear scan's backward the same way (its fp32 rows)
  SSM_TRITON_SCAN_REV_GATHER=$rg timeout 45 python3 -m ssm_triton bench --ops linear_scan --match 'float32 fwd\+bwd' \
    --json $OUT/ls-rg$rg-r$round.json > /dev/null 2>&1
done; done
SSM_TRITON_SS_REV_GATHER=1 timeout 90 python3 -m ssm_triton.bench.sweep_selective bwd_segments 1x1536x2048 1x1536x8192 \
  > $OUT/bwd-segments-rg.txt 2>&1; echo "rc=$?" >> $OUT/bwd-segments-rg.txt
python3 - <<'PY'
import json, os, glob
rows = {}
for f in sorted(glob.glob(os.environ["OUT"] + "/ss-rg*.json")) + sorted(glob.glob(os.environ["OUT"] + "/ls-rg*.json")):
    for r in json.load(open(f))["results"]:
        rows.setdefault((r["op"], str(r["shape"]), r["direction"], r["impl"]), []).append(f"{os.path.basename(f)[3:-5]} {r['ms']:.4f} h{round(r.get('host_us', 0))}")
for k, v in rows.items():
    print(*k, " | ".join(v))
PY
tail -3 $OUT/pytest-ss.txt; tail -3 $OUT/memcheck.txt; grep -v Warn $OUT/bwd-segments-rg.txt
