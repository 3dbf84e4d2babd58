#!/usr/bin/env bash
# Call 29 (2026-12-07, forty-fifth session; carry .whl): the 130M LMs' replayed decode step at 16 rows with the fused
# three-launch steps and programmatic dependent launch (never timed at 16 rows: PDL_ROWS stops it at 4), against the
# composed step (call 28: Mamba2 0.6563, the fused step without PDL 0.7808; Mamba-1 0.6242), then the kernels of the
# best form.
T0=$(date +%s)
export SKIP_CHECK=1; SKIP_TESTS=1 bash bench/gpu_run.sh >/dev/null 2>&1; mv $OUT/gpu.txt $OUT/summary.txt
S=$OUT/summary.txt; cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst
run() {   # label, env...
  local label=$1; shift
  env "$@" timeout 80 python3 -m ssm_triton bench --ops lm --no-peers --match 'decode_step.\((4|16),\)' > /tmp/lm.txt 2>&1
  { echo "== $label"; grep -h "decode_step" /tmp/lm.txt | grep -v "\[#" | grep " ssm_triton "; } >> $S
}
run "default" A=1
run "PDL=1" SSM_TRITON_PDL=1
run "M2_FUSED_ROWS=16 PDL=1" SSM_TRITON_M2_FUSED_ROWS=16 SSM_TRITON_PDL=1
run "M2_STEP=1 PDL=1" SSM_TRITON_M2_STEP=1 SSM_TRITON_PDL=1
run "default (again)" A=1
for m in "lm_decode_step (16,)" "lm_mamba1_decode_step (16,)"; do
  SSM_TRITON_M2_FUSED_ROWS=16 SSM_TRITON_PDL=1 timeout 90 python3 -m ssm_triton.bench.profile --ops lm --match "$m" \
    --impl 'ssm_triton$' --rows 12 >> $OUT/profile.txt 2>&1
done
grep -E "ms of kernels|^  +[0-9]" $OUT/profile.txt | head -40 >> $S
echo "== total $(( $(date +%s) - T0 )) s" >> $S
