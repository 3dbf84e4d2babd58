#!/usr/bin/env bash
# One device-tool call: install, check, the GPU test suite, the benchmark. Results land in $OUT.
# Usage (from the repo root on the GPU machine): bash bench/gpu_run.sh [pytest args...]
# Optional peers travel as pure-Python wheels in .whl/ (git-ignored; name it in the device tool's carry):
#   python3 -m pip download --no-deps -d .whl accelerated-scan==0.3.1 mambapy==1.2.0 flash-linear-attention==0.6.0 fla-core==0.6.0
# mamba_ssm has no wheel and its build compiles CUDA: carry its Python sources instead, from the sdist,
#   as .peers/mamba_ssm (its pure-Triton SSD is imported past the package's __init__, bench/peers.py).
# Steps by variable: CP_SIM=1 (context-parallel per-rank compute), GENERATE=1 (LM demo), HF_NAMES=1 (transformers kernel names), SWEEP=1, SWEEP_BLOCKS=1 (decode step, rmsnorm), SWEEP_SS=1 (selective scan; SWEEP_SS=segments: the time-split forward), SWEEP_SSD="breakdown sweep" (SSD tiles), SWEEP_MIMO=1 (MIMO's term kernels' blocks), TESTS="tests/test_x.py ..." (default: all; TEST_VERBOSE=1 streams each test's outcome; each failure's report lands in failures.txt as it happens, so a run cut by TEST_TIMEOUT keeps them), OVERHEAD=1 or OVERHEAD="--ops ..." (host-time breakdown with the lean launcher, SSM_TRITON_LEAN=1; OVERHEAD_OFF=1 repeats it without), PROFILE="--ops OP [--match S]" (kernel breakdown, bench/profile.py), NCU="--ops OP --match S --impl ssm_triton --calls 4" with NCU_K=regex NCU_SKIP NCU_COUNT (Nsight Compute sections), SANITIZE_K (pytest -k), SANITIZE="tests/test_x.py ...", SKIP_CHECK=1 (CHECK_TIMEOUT seconds, CHECK_ARGS e.g. "--only mamba3 --outputs"),
# PEER_SCAN=1 (build mamba_ssm's CUDA selective scan first: bench/build_peer_scan.sh), TUNE_FUSED=1 (bench/tune_fused.py), BENCH_ARGS (more bench flags, e.g. --no-peers),
# SKIP_TESTS=1, BENCH_OPS="linear_scan discretize selective_scan ssd state_update conv1d gated_rmsnorm lm hf_mamba2" (BENCH_PLOT=1 draws the plots there too (the tool brings back 8 files at most: redraw them here with report --plot); BENCH_SWEEP=1 adds
# the length and batch sweeps, BENCH_NAME names the JSON, BENCH_TIMEOUT seconds); SSM_TRITON_EXAMPLES=N trims hypothesis.
# BASELINE=DIR (a copy of an earlier checkout, git-ignored and carried; BASELINE_ARGS more bench flags) times BENCH_OPS on that code too, in the same
#   call and without peers (baseline.json, BASELINE_TIMEOUT seconds): before/after on one machine.
# mamba_ssm's CUDA selective scan (a peer of selective_scan_fn) is a compiled extension: build selective_scan_cuda for sm_90 from
#   the sdist's csrc/selective_scan against the GPU machine's torch (2.11, cu130) and Python (3.12), and put the .so in .peers/.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
repo=$(pwd)
if ls .whl/*.whl >/dev/null 2>&1; then   # optional peers carried as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
rm -rf /tmp/sst   # a warm machine keeps the last install, and --target never overwrites it
python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/sst . || exit 1
export PYTHONPATH=/tmp/site:/tmp/sst:$repo/.peers PYTHONUNBUFFERED=1
cd /tmp   # import the installed package, not the source folder
if [ -n "${PEER_SCAN:-}" ]; then (cd "$repo" && bash bench/build_peer_scan.sh) 2>&1 | tee "$OUT/peer_build.txt"; fi   # mamba_ssm's CUDA scan
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
if [ -n "${SWEEP:-}" ]; then timeout "${SWEEP_TIMEOUT:-400}" python3 -m ssm_triton.bench.sweep ${SWEEP#1} 2>&1 | tee "$OUT/sweep.txt"; fi
if [ -n "${SWEEP_SSD:-}" ]; then timeout "${SWEEP_TIMEOUT:-400}" python3 -m ssm_triton.bench.sweep_ssd $SWEEP_SSD 2>&1 | tee "$OUT/sweep_ssd.txt"; fi
if [ -n "${SWEEP_MIMO:-}" ]; then timeout "${SWEEP_TIMEOUT:-400}" python3 -m ssm_triton.bench.sweep_mimo 2>&1 | tee "$OUT/sweep_mimo.txt"; fi
if [ -n "${SWEEP_BLOCKS:-}" ]; then python3 -m ssm_triton.bench.sweep_blocks 2>&1 | tee "$OUT/sweep_blocks.txt"; fi
if [ -n "${SWEEP_SS:-}" ]; then timeout "${SWEEP_TIMEOUT:-400}" python3 -m ssm_triton.bench.sweep_selective ${SWEEP_SS#1} 2>&1 | tee "$OUT/sweep_selective.txt"; fi
if [ -n "${OVERHEAD:-}" ]; then   # OVERHEAD="--ops ..." passes arguments; OVERHEAD_OFF=1 repeats it with the lean launcher off
  SSM_TRITON_LEAN=1 SSM_TRITON_AUTOTUNE=0 timeout "${OVERHEAD_TIMEOUT:-300}" python3 -m ssm_triton.bench.overhead ${OVERHEAD#1} 2>&1 | tee "$OUT/overhead.txt"
  if [ -n "${OVERHEAD_OFF:-}" ]; then SSM_TRITON_LEAN=0 SSM_TRITON_AUTOTUNE=0 timeout "${OVERHEAD_TIMEOUT:-300}" python3 -m ssm_triton.bench.overhead ${OVERHEAD#1} --top 0 2>&1 | tee "$OUT/overhead_nolean.txt"; fi
fi
if [ -n "${TUNE_FUSED:-}" ]; then   # TUNE_FUSED=1 or "--shapes 1x2048 ...": the one-launch SSD forward's tuning, candidate by candidate
  SSM_TRITON_TUNE_CACHE=0 timeout "${TUNE_TIMEOUT:-200}" python3 -m ssm_triton.bench.tune_fused ${TUNE_FUSED#1} 2>&1 | tee "$OUT/tune_fused.txt"
fi
if [ -n "${PROFILE:-}" ]; then timeout "${PROFILE_TIMEOUT:-200}" python3 -m ssm_triton.bench.profile $PROFILE 2>&1 | tee "$OUT/profile.txt"; fi
if [ -n "${NCU:-}" ]; then   # Nsight Compute over kernels matching NCU_K, the workload run by bench/profile.py --calls
  timeout "${NCU_TIMEOUT:-200}" ncu --clock-control none -k "regex:${NCU_K}" --launch-skip "${NCU_SKIP:-0}" \
    --launch-count "${NCU_COUNT:-2}" --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section WarpStateStats --section MemoryWorkloadAnalysis python3 -m ssm_triton.bench.profile $NCU 2>&1 | tail -400 > "$OUT/ncu.txt"
fi
if [ -n "${SANITIZE:-}" ]; then   # memcheck over the kernel tests, small odd shapes (ci profile)
  SSM_TRITON_PROFILE=ci timeout "${SANITIZE_TIMEOUT:-300}" compute-sanitizer --tool memcheck --error-exitcode 99 \
    python3 -m pytest $(for f in $SANITIZE; do echo "$repo/$f"; done) -q -p no:cacheprovider -x ${SANITIZE_K:+-k "$SANITIZE_K"} 2>&1 | tail -25 | tee "$OUT/memcheck.txt"
  echo "memcheck exit: ${PIPESTATUS[0]}" | tee -a "$OUT/memcheck.txt"
fi
if [ -n "${CP_SIM:-}" ]; then python3 -m ssm_triton.bench.cp_sim 2>&1 | tee "$OUT/cp_sim.txt"; fi
if [ -n "${GENERATE:-}" ]; then   # the LM demo's tokens/s, both block types
  for layer in Mamba2 Mamba1; do python3 -m ssm_triton generate --layer $layer 2>&1 | tee -a "$OUT/generate.txt"; done
fi
if [ -n "${HF_NAMES:-}" ]; then python3 -c "import transformers, transformers.models.mamba2.modeling_mamba2 as m2, transformers.models.mamba.modeling_mamba as m1; print('transformers', transformers.__version__); print([n for n in dir(m2) if 'conv1d' in n or 'scan' in n or 'state_update' in n]); print([n for n in dir(m1) if 'conv1d' in n or 'scan' in n or 'state_update' in n or 'inner' in n])" 2>&1 | tee "$OUT/hf_names.txt"; fi
if [ -z "${SKIP_CHECK:-}" ]; then timeout "${CHECK_TIMEOUT:-300}" python3 -m ssm_triton check ${CHECK_ARGS:-} 2>&1 | tee "$OUT/check.txt"; fi
if [ -z "${SKIP_TESTS:-}" ]; then
  SSM_TRITON_FAILURES="$OUT/failures.txt" timeout "${TEST_TIMEOUT:-300}" python3 -m pytest $(for f in ${TESTS:-tests}; do echo "$repo/$f"; done) $([ -n "${TEST_VERBOSE:-}" ] && echo -v || echo -q) -p no:cacheprovider "$@" 2>&1 | tee "$OUT/pytest.txt" | tail -40
fi
if [ -n "${BASELINE:-}" ] && [ -n "${BENCH_OPS:-}" ]; then   # the earlier code, same ops, its own install
  rm -rf /tmp/base && python3 -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/base "$repo/$BASELINE" \
    && PYTHONPATH=/tmp/base timeout "${BASELINE_TIMEOUT:-300}" python3 -m ssm_triton bench --ops $BENCH_OPS --no-peers ${BASELINE_ARGS:-} \
       --json "$OUT/baseline.json" 2>&1 | tail -60 | tee "$OUT/baseline.txt"
fi
if [ -n "${BENCH_OPS:-}" ]; then   # the JSON is rewritten after every case, so a run cut short by the timeout keeps its records
  timeout "${BENCH_TIMEOUT:-540}" python3 -m ssm_triton bench --ops $BENCH_OPS ${BENCH_SWEEP:+--sweep} ${BENCH_ARGS:-} --json "$OUT/${BENCH_NAME:-bench}.json" ${BENCH_PLOT:+--plot "$OUT"} 2>&1 | tee "$OUT/${BENCH_NAME:-bench}.txt"
fi
