# Sourced by call49-51.sh (from the repo root, $OUT set, CALL_BUDGET the seconds a call may take): left (seconds of
# the budget left), prefill (the replayed 130M Mamba2 prefill, tuner off, one process a form) and ssd_headline.
T0=$(date +%s); left() { echo $(( ${CALL_BUDGET:-420} - ($(date +%s) - T0) )); }
prefill() {   # each argument tiles:order:split:maxnreg:state tiles (SSM_TRITON_SCAN_TILES, _SCAN_ORDER, ...)
  for v in "$@"; do
    [ $(left) -gt 25 ] || break
    IFS=: read tiles order split cap state <<< "$v"
    SSM_TRITON_AUTOTUNE=0 SSM_TRITON_SCAN_TILES=$tiles SSM_TRITON_SCAN_ORDER=$order SSM_TRITON_SCAN_SPLIT=$split \
      SSM_TRITON_SCAN_MAXNREG=$cap SSM_TRITON_STATE_TILES=$state timeout 40 python3 -m ssm_triton bench --ops lm \
      --no-peers --match '^lm_prefill_cuda_graph' > /tmp/p.txt 2>&1
    echo "== TILES:ORDER:SPLIT:MAXNREG:STATE='$v' $(grep -E '^lm_prefill_cuda_graph' /tmp/p.txt | awk -F'|' '{print $6}')" >> $S
  done
}
ssd_headline() {   # each argument scan split:dx split; the SSD b8 L4096 H64 P64 N128 chunk 256 bf16 rows, tuner off
  for v in "$@"; do
    [ $(left) -gt 50 ] || break
    SSM_TRITON_AUTOTUNE=0 SSM_TRITON_SCAN_SPLIT=${v%:*} SSM_TRITON_DX_SPLIT=${v#*:} timeout 60 python3 -m ssm_triton \
      bench --ops ssd --no-peers --match 'ssd \(8, 4096, 64, 64, 1, 128, 256\) bfloat16' > /tmp/p.txt 2>&1
    { echo "== SSD headline, SCAN_SPLIT:DX_SPLIT=$v (tuner off)"; grep -E "^ssd " /tmp/p.txt || tail -3 /tmp/p.txt; } >> $S
  done
}
