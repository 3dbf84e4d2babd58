#!/usr/bin/env bash
# Call 19 (2026-12-07; carry .whl, .peers; ~330 s): the selective scan at 256-step checkpoints (SSM_TRITON_SS_CHUNK=256)
# against the default 128, each tuned in its own process, both beside mamba_ssm's CUDA build (built first, ~105 s).
# Then the SSD one-launch forward's AHEAD (issue 17's small forward). Call 15 (H100, 12-06): b8 d4096 L2048 fwd+bwd 4.344 against 5.993 ms (1.38x; issue 18 asks 1.43x).
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
R=$(pwd); S=$OUT/summary.txt; D6=$R/bench/results/h100-2026-12-06f
s=$(date +%s); bash bench/build_peer_scan.sh > /tmp/peer_build.txt 2>&1
{ echo "== build ($(( $(date +%s)-s )) s)"; tail -1 /tmp/peer_build.txt; } >> $S
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
for ck in 256 128; do
  SSM_TRITON_SS_CHUNK=$ck timeout 95 python3 $D6/bench_choices.py selective_scan bench --ops selective_scan \
    --json $OUT/ss-ck$ck.json > /tmp/ss-ck$ck.txt 2>&1
  { echo "== ss chunk $ck"; grep -h "chosen:" /tmp/ss-ck$ck.txt; } >> $S
done
cd $R; { echo "== rows"; python3 $D6/rows.py "$OUT/ss-ck*.json"; } >> $S 2>&1
# then issue 17's small SSD forward: the one-launch forward's step rows a chunk ahead (SSM_TRITON_SSD_FUSED_AHEAD=1,
# built 12-06f, never timed), tune_fused at b1 L2048 / L512 in 4 segments with it and without, each its own process
cd /tmp
for ah in 1 0; do
  SSM_TRITON_SSD_FUSED_AHEAD=$ah SSM_TRITON_TUNE_CACHE=0 timeout 75 python3 -m ssm_triton.bench.tune_fused \
    --shapes 1x2048 1x512 --segments 4 > /tmp/tune-ahead$ah.txt 2>&1
  { echo "== tune_fused AHEAD=$ah"; grep -v -i warn /tmp/tune-ahead$ah.txt | tail -14; } >> $S
done
cat $S
