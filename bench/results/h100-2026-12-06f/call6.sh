#!/usr/bin/env bash
# Call 6 (2026-12-06, thirty-ninth session; carry .whl). 12-06e's call 4 A/B of REV_GATHER did not test it: the
# tuning cache kept the first process's choice (made without the candidates) for the later ones. The cache now names
# a choice by its candidates (kernels/tuning.py: Choice.entry), so each setting tunes its own; the A/B again, each
# process printing what it took, for the selective scan's backward and the linear scan's (REV_GATHER, ALIGNED),
# and the selective scan's loads ahead (SSM_TRITON_SS_FWD_AHEAD, SSM_TRITON_SS_BWD_AHEAD).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd); D=$R/bench/results/h100-2026-12-06f
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
# the loads ahead (AHEAD, forward and backward, new this session) are more factors: (REV_GATHER, forward's AHEAD,
# backward's AHEAD) 000 (the code before), 011, 111
for round in 1 2; do for cfg in 000 011 111; do
  SSM_TRITON_SS_REV_GATHER=${cfg:0:1} SSM_TRITON_SS_FWD_AHEAD=${cfg:1:1} SSM_TRITON_SS_BWD_AHEAD=${cfg:2:1} \
    timeout 80 python3 $D/bench_choices.py \
    selective_scan bench --ops selective_scan --no-peers --json $OUT/ss-$cfg-r$round.json > $OUT/ss-$cfg-r$round.txt 2>&1
done; done
for round in 1; do for sw in "" "SSM_TRITON_SCAN_REV_GATHER=1" "SSM_TRITON_SCAN_ALIGNED=1"; do
  n=${sw:-plain}; n=${n#SSM_TRITON_SCAN_}; n=${n%=1}
  env $sw timeout 50 python3 $D/bench_choices.py scan_bwd bench --ops linear_scan --match 'float32 fwd\+bwd' \
    --json $OUT/ls-$n-r$round.json > $OUT/ls-$n-r$round.txt 2>&1
done; done
python3 - <<'PY'
import json, os, glob
rows = {}
for f in sorted(glob.glob(os.environ["OUT"] + "/*-r*.json")):
    for r in json.load(open(f))["results"]:
        rows.setdefault((r["op"], str(r["shape"]), r["dtype"][6:], r["direction"], r["impl"]), []).append(
            f"{os.path.basename(f)[:-5]} {r['ms']:.4f}")
for k, v in rows.items():
    print(*k, " | ".join(v))
PY
grep -h "chosen" $OUT/ss-*.txt | sort | uniq -c | head -40; grep -h "chosen" $OUT/ls-*.txt | sort | uniq -c | head -30
