#!/usr/bin/env bash
# Call 3 (2026-12-06, thirty-eighth session; carry .whl and .base (3de07e4, the code before the change), ~420 s).
# (1) The selective scan backward's one zeroed buffer and shared sums (74bbe77; SHARED: dA, dD, delta_bias added
# atomically across batch rows and segments): its GPU tests, memcheck of them with odd shapes, then the bench's rows
# (no peers) on the new code and on 3de07e4, alternating processes, host_us beside the times. (2) Issue 18's fp32
# linear-scan fwd+bwd rows (0.92-0.97x accelerated-scan in call 1) with the backward's aligned form among the
# tuner's candidates (SSM_TRITON_SCAN_ALIGNED=1, never timed) against without, alternating.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
SSM_TRITON_EXAMPLES=8 TEST_TIMEOUT=100 TESTS="tests/test_selective_scan.py" \
  bash bench/gpu_run.sh -k "backward_time_segments or chunk_lengths or gradients_match" > /dev/null 2>&1
cp $OUT/pytest.txt $OUT/pytest-ss.txt; rm -f $OUT/pytest.txt
SSM_TRITON_EXAMPLES=3 SANITIZE="tests/test_selective_scan.py" SANITIZE_K="backward_time_segments or gradients_match" \
  SANITIZE_TIMEOUT=90 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
R=$(pwd)
rm -rf /tmp/base && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/base .base
cd /tmp
for round in 1 2; do for code in new base; do
  if [ $code = new ]; then P=/tmp/site:/tmp/sst; else P=/tmp/site:/tmp/base; fi
  PYTHONPATH=$P timeout 60 python3 -m ssm_triton bench --ops selective_scan --no-peers --json $OUT/ss-$code-r$round.json > /dev/null 2>&1
done; done
export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for round in 1 2; do for al in 0 1; do
  SSM_TRITON_SCAN_ALIGNED=$al timeout 50 python3 -m ssm_triton bench --ops linear_scan --match 'float32 fwd\+bwd' \
    --json $OUT/ls-fp32-al$al-r$round.json > /dev/null 2>&1
done; done
python3 - <<'PY'
import json, os, glob
rows = {}
for f in sorted(glob.glob(os.environ["OUT"] + "/ss-*.json")) + sorted(glob.glob(os.environ["OUT"] + "/ls-fp32-*.json")):
    tag = os.path.basename(f)[:-5]
    try:
        res = json.load(open(f))["results"]
    except Exception as e:
        print(tag, e); continue
    for r in res:
        rows.setdefault((r["op"], str(r["shape"]), r["dtype"][6:], r["direction"], r["impl"]), []).append(
            f"{tag} {r['ms']:.4f} h{round(r.get('host_us', 0))}")
for k, v in rows.items():
    print(*k, " | ".join(v))
PY
tail -3 $OUT/pytest-ss.txt; tail -3 $OUT/memcheck.txt
