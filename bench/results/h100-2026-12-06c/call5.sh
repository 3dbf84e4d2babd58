#!/usr/bin/env bash
# Call 5 (2026-12-06, thirty-sixth session): the walk's and the SISO prep backward's merged sums now the defaults
# (call 3, records in call3/); MIMO rank 4 at B8 L4096 H32 P64 N128 bf16 fwd+bwd with the output backward's and prep
# forward's merged sums alternating with the defaults (--kernels 8), then SISO B8 beside mamba_ssm's Triton Mamba-3 in
# one process (its autotuning takes minutes; call 3's 260 s did not reach it). Carry .whl and .peers; about 560 s.
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1
R=$(pwd)
cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
s=$(date +%s)
timeout 170 python3 -m ssm_triton.bench.walk_choice --only "MIMO b8" \
  --ab "mamba3.mimo.OUT_MERGE=1 mamba3.mimo.PREP_MERGE=1" --kernels 8 > $OUT/mimo_merge.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/mimo_merge.txt
s=$(date +%s)
timeout 340 python3 -m ssm_triton.bench.walk_choice --only "SISO b8" --peer > $OUT/siso_peer.txt 2>&1
echo "rc=$? s=$(( $(date +%s)-s ))" >> $OUT/siso_peer.txt
grep -E "fwd\+bwd|_out_bwd|_prep_fwd|_prep_bwd|_walk_bwd|rc=" $OUT/mimo_merge.txt; cat $OUT/siso_peer.txt | grep -v Warn
