#!/usr/bin/env bash
# Call 7 (2026-12-06, thirty-ninth session; carry .whl and .peers; the machine of call 6, warm, the peer's build from
# call 5 still there): the selective scan's GPU tests (every AHEAD, REV_GATHER drawn), memcheck of the segment tests,
# then the selective scan beside mamba_ssm's CUDA build with REV_GATHER among the candidates. As run (one line there):
export SKIP_CHECK=1; (bash bench/build_peer_scan.sh > $OUT/peer_build.txt 2>&1 &)
SSM_TRITON_EXAMPLES=6 TEST_TIMEOUT=120 TESTS="tests/test_selective_scan.py" bash bench/gpu_run.sh \
  -k "chunk_lengths or backward_time_segments or time_segments_match or gradients_match" > /dev/null 2>&1
SSM_TRITON_EXAMPLES=2 SANITIZE="tests/test_selective_scan.py" SANITIZE_K="backward_time_segments or time_segments_match" \
  SANITIZE_TIMEOUT=100 SKIP_TESTS=1 bash bench/gpu_run.sh > /dev/null 2>&1
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for i in $(seq 60); do [ -f $R/.peers/selective_scan_cuda*.so ] && break; sleep 3; done
SSM_TRITON_SS_REV_GATHER=1 timeout 100 python3 $R/bench/results/h100-2026-12-06f/bench_choices.py selective_scan_bwd \
  bench --ops selective_scan --json $OUT/ss-peer-rg.json > $OUT/ss-peer-rg.txt 2>&1
