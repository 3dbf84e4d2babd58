#!/usr/bin/env bash
# Call 54 (carry .whl and .peers; ~580 s): the state update's bandwidth probe (issue 17 asks >= 90% of the copy
# bandwidth replayed: where does it lose, the barrier, the cache path, the tile, programs walking tiles), then
# call 53 (the few-rows SSD default timed, beside mamba_ssm; its SSD rows, the training headline and Mamba-3's
# prefill with the split forms).
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/sst0 . > /dev/null 2>&1
(R=$(pwd); cd /tmp && PYTHONPATH=/tmp/sst0 timeout 75 python3 $R/bench/results/gpu-2026-12-08/probe_state_bw.py) \
  > $OUT/probe_state_bw.txt 2>&1
CALL_BUDGET=${CALL_BUDGET:-505} bash bench/results/h100-2026-12-07g/call53.sh
