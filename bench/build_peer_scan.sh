#!/usr/bin/env bash
# Builds mamba_ssm's CUDA selective scan (selective_scan_cuda, a benchmark peer of selective_scan_fn) for sm_90
# on the GPU machine, against its torch, into .peers/ (which bench/gpu_run.sh puts on PYTHONPATH).
# Needs the sdist's csrc/selective_scan copied to .peers/csrc/selective_scan (git-ignored, carried), e.g.
#   tar xzf mamba_ssm-2.3.2.post1.tar.gz && cp -r mamba_ssm-2.3.2.post1/csrc .peers/
# The nvcc flags are the sdist's setup.py's; ~2.5 minutes with 16 cores.
set -euo pipefail
src=$(pwd)/.peers/csrc/selective_scan
[ -d "$src" ] || { echo "no $src: copy the sdist's csrc there"; exit 1; }
ls .peers/selective_scan_cuda*.so >/dev/null 2>&1 && { echo "selective_scan_cuda already built"; exit 0; }
mkdir -p /tmp/ssbuild && cd /tmp/ssbuild
cat > setup.py <<PY
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension
import glob
srcs = ["$src/selective_scan.cpp"] + sorted(glob.glob("$src/*.cu"))
flags = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
         "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
         "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
         "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math", "-lineinfo",
         "-gencode", "arch=compute_90,code=sm_90", "--threads", "4"]
setup(name="selective_scan_cuda", ext_modules=[CUDAExtension("selective_scan_cuda", srcs,
      extra_compile_args={"cxx": ["-O3", "-std=c++17"], "nvcc": flags}, include_dirs=["$src"])],
      cmdclass={"build_ext": BuildExtension})
PY
MAX_JOBS=${MAX_JOBS:-16} python3 setup.py build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
cp selective_scan_cuda*.so "$OLDPWD/.peers/"
echo "built $(ls "$OLDPWD"/.peers/selective_scan_cuda*.so)"
