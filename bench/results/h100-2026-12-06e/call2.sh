#!/usr/bin/env bash
# Call 2 (2026-12-06, thirty-eighth session; carry .whl and .peers, ~450 s). Issue 18: mamba_ssm's CUDA selective scan
# built here (~150 s) while a background run fills the Triton cache for mamba_ssm's fp32 SSD (its autotuning cut
# 12-06d's TF32 fwd+bwd rows); then, the GPU to themselves: the selective scan's headline rows beside the CUDA build
# (the backward's time split is on since 12-06d), the SSD's fp32 fwd+bwd with TF32 products beside mamba_ssm, and
# Nsight Compute of the two selective scan backward kernels (ours: the rule's tiles, autotuning off) at b1 d1536 L2048.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
rm -rf /tmp/sst_bg; cp -r /tmp/sst /tmp/sst_bg
SSDM='ssd \(2, 4096, .*float32 fwd\+bwd'
(cd /tmp; PYTHONPATH=/tmp/site:/tmp/sst_bg:$R/.peers timeout 200 python3 -m ssm_triton bench --ops ssd --sweep \
  --match "$SSDM" > $OUT/warm.txt 2>&1) &
s=$(date +%s); bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1; echo "build s=$(( $(date +%s)-s ))" >> $OUT/peer_build.txt
wait
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 100 python3 -m ssm_triton bench --ops selective_scan --json $OUT/ss.json > $OUT/ss.txt 2>&1; echo "rc=$?" >> $OUT/ss.txt
timeout 150 python3 -m ssm_triton bench --ops ssd --sweep --match "$SSDM" --json $OUT/ssd-tf32-bwd.json \
  > $OUT/ssd-tf32-bwd.txt 2>&1; echo "rc=$?" >> $OUT/ssd-tf32-bwd.txt
for impl in ssm_triton mamba_ssm_cuda; do
SSM_TRITON_AUTOTUNE=0 timeout 60 ncu --clock-control none -k "regex:selective_scan_bwd" --launch-skip 2 --launch-count 2 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section SchedulerStats \
  python3 -m ssm_triton.bench.profile --ops selective_scan --match "(1, 1536, 2048, 16) bfloat16 fwd+bwd" \
  --impl $impl --calls 3 2>&1 | grep -v "^==PROF==" | tail -300 > $OUT/ncu-ss-bwd-$impl.txt
done
python3 - <<'PY'
import json, os
for f in ("ss.json", "ssd-tf32-bwd.json"):
    try:
        d = json.load(open(os.environ["OUT"] + "/" + f))
    except Exception as e:
        print(f, e); continue
    for r in d["results"]:
        print(r["shape"], r["dtype"][6:], r["direction"], r["impl"], round(r["ms"], 4), round(r.get("host_us", 0)), r.get("peak_mb"))
PY
tail -2 $OUT/peer_build.txt
for impl in ssm_triton mamba_ssm_cuda; do grep -E "selective_scan_bwd|Duration|Registers Per|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Executed Ipc Active|Stall|Warp Cycles Per Issued|Block Size|Grid Size|Eligible" $OUT/ncu-ss-bwd-$impl.txt | head -30; done
