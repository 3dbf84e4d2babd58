#!/usr/bin/env bash
# Call 50 (2026-12-07: call49.sh cut to what ~380 s of device time holds after four failed starts; carry .whl):
# the GPU tests of the split forms only (no memcheck, no decode rows), the prefill forms, the SSD headline.
# call49.sh's notes:
#  (0) GPU tests of the decode steps' deferred gated norm (SSM_TRITON_NORM_DEFER_STEP, off: written without a GPU) and
#      memcheck of its state-update tests;
#  (1) the 130M Mamba2 LM's replayed decode steps b4 / b16 (the composed step past 4 rows) with
#      SSM_TRITON_NORM_DEFER_STEP 1 / 0, tuner off, one process each: turn it on if b16 wins (one gated-norm launch
#      a layer less; ~2.5 us a layer in the 12-07 profile);
#  (2) the chunk scan's own tiles in the replayed prefill (SSM_TRITON_SCAN_TILES="BLOCK_M,BLOCK_K,warps,stages"), the
#      default first and last. Offline (sm90_compile, triton 3.6, with the deferred norm): 64,64,4,2 168 registers
#      74.5 KB (3 blocks a SM); 32,32,4,2 94 / 24.6 KB (5); 64,32,4,1 168 / 32.8 KB (3); 64,64,8,2 122 / 74.5 KB (2).
#      Make the winner the chunk scan's rule for the inference stages if it wins by more than the run-to-run spread.
#  (1b) the SSD headline fwd+bwd with the chunk scan's and the dx kernel's split decay (SSM_TRITON_SCAN_SPLIT,
#      SSM_TRITON_DX_SPLIT) on and off;
#  (4) the chunk states' tiles (SSM_TRITON_STATE_TILES; 192 programs of a whole state at the prefill);
#  (3) with SSM_TRITON_SCAN_SPLIT=1 (the decay of a block's earlier slices as a column and a row weight: BLOCK_K exps
#      a slice instead of BLOCK_M BLOCK_K, no mask; offline 204 registers at 64x64x4 warps (2 blocks a SM), 128 at 8
#      warps, 168 without a spill under SSM_TRITON_SCAN_MAXNREG=168) and SSM_TRITON_SCAN_ORDER=1 (the chunk's last step blocks launched first: 768 programs in ~2 waves of
#      396 slots at 64x64, whose work grows 1..4 slices with the block's place in its chunk).
. bench/results/gpu-2026-12-07f/forms.sh; CALL_BUDGET=${CALL_BUDGET:-420}
export SKIP_CHECK=1
SSM_TRITON_EXAMPLES=4 TEST_TIMEOUT=150 TESTS="tests/test_ssd.py::test_chunk_scan_forms_give_the_same_output tests/test_ssd.py::test_gradients_match_float64_autograd" \
  bash bench/gpu_run.sh -n 8 > /dev/null 2>&1
mv $OUT/gpu.txt $OUT/summary.txt; S=$OUT/summary.txt
{ echo "== pytest"; tail -2 $OUT/pytest.txt; head -40 $OUT/failures.txt 2>/dev/null; echo "== memcheck"; tail -3 $OUT/memcheck.txt 2>/dev/null; } >> $S
rm -f $OUT/pytest.txt
R=$(pwd); cd /tmp; export PYTHONPATH=/tmp/site:/tmp/sst:$R/.peers
prefill "::::" "::1:168:" "::1::" "64,64,8,2::1::" ":1:::" "::::64,64,64,4,2" "::::"
# the SSD headline's fwd+bwd (b8 L4096 H64 P64 N128 chunk 256 bf16), tuner off: scan split : dx split
ssd_headline 0:0 1:1
if [ $(left) -gt 60 ]; then   # memcheck of the split forms (drawn by the tests), small odd shapes
  SSM_TRITON_PROFILE=ci SSM_TRITON_EXAMPLES=3 timeout $(( $(left) - 5 )) compute-sanitizer --tool memcheck --error-exitcode 99 \
    python3 -m pytest $R/tests/test_ssd.py -q -p no:cacheprovider -x -k "forms_give or gradients_match" 2>&1 | tail -6 > /tmp/m.txt
  { echo "== memcheck (rc ${PIPESTATUS[0]})"; cat /tmp/m.txt; } >> $S
fi
echo "== total $(( $(date +%s) - T0 )) s" >> $S
