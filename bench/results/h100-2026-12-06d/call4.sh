#!/usr/bin/env bash
# Call 4 (2026-12-06, thirty-seventh session): where the linear scan's small fwd+bwd goes (call 3: b1 1536x1024
# fp32 0.341 ms against accelerated-scan's 0.105, host 183 against 154 us): kernel breakdown of ours and the peer's,
# then host time with and without replays. Carry .whl; about 60 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
timeout 50 python3 -m ssm_triton.bench.profile --ops linear_scan --match "(1, 1536, 1024) float32 fwd+bwd" --rows 10 \
  > $OUT/profile-ls-bwd.txt 2>&1
timeout 40 python3 -m ssm_triton.bench.profile --ops linear_scan --match "(8, 1536, 4096) bfloat16 fwd+bwd" --rows 10 \
  > $OUT/profile-ls-bwd8.txt 2>&1
timeout 60 python3 -m ssm_triton.bench.overhead --replays --rounds 5 --ops linear_scan --match "1536, (1024|4096)\) .* fwd\+bwd" \
  --top 0 > $OUT/overhead-ls.txt 2>&1
grep -v Warn $OUT/profile-ls-bwd.txt $OUT/profile-ls-bwd8.txt | grep -E "ms|tuned"; grep -vi warn $OUT/overhead-ls.txt | tail -12
