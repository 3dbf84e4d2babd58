"""Compiles every kernel for an H100 (sm_90) without a GPU: run by tests/test_sm90_compile.py in a
process with the interpreter off. Triton's GPU compiler rejects code the interpreter runs happily (a
function whose returns differ in shape, even under a constexpr ``if``, did), so CI checks it here.
Prints one line per failure and a last line ``compiled N, failed M``."""
import itertools
import os
import sys

os.environ["TRITON_INTERPRET"] = "0"
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from ssm_triton.kernels import discretize as kd  # noqa: E402
from ssm_triton.kernels import scan as ks  # noqa: E402
from ssm_triton.kernels import selective_scan as kss  # noqa: E402
from ssm_triton.kernels import conv1d as kconv  # noqa: E402
from ssm_triton.kernels import norm as knorm  # noqa: E402
from ssm_triton.kernels import state_update as ksu  # noqa: E402
from ssm_triton.kernels.ssd import backward as ssd_bwd  # noqa: E402
from ssm_triton.kernels.ssd import bmm as ssd_bmm  # noqa: E402
from ssm_triton.kernels.ssd import bwd_dt as ssd_dt  # noqa: E402
from ssm_triton.kernels.ssd import chunk_scan as ssd_scan  # noqa: E402
from ssm_triton.kernels.ssd import chunk_state as ssd_state  # noqa: E402
from ssm_triton.kernels.ssd import cumsum as ssd_cumsum  # noqa: E402
from ssm_triton.kernels.ssd import state_passing as ssd_pass  # noqa: E402
from ssm_triton.kernels.tuning import discretize_configs, scan_configs  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
PTR = {tl.float32: "*fp32", tl.bfloat16: "*bf16", tl.float16: "*fp16", tl.float64: "*fp64"}


def _jit(kernel):
    return kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel


def compile_kernel(kernel, pointers: dict, constexprs: dict):
    fn = _jit(kernel)
    names = fn.arg_names
    sig = {}
    # arguments named neither as pointers nor as constexprs are the kernels' int32 sizes and strides
    for n in names:
        if n in constexprs:
            sig[n] = "constexpr"
        elif n in pointers:
            sig[n] = pointers[n]
        else:
            sig[n] = "i32"
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(n),): v for n, v in constexprs.items()})
    return triton.compile(src, target=TARGET)


def cases():
    io_types = [tl.float32, tl.bfloat16, tl.float16, tl.float64]
    default_scan = scan_configs(everything=True)[0].kwargs
    for io, has_h0, rev in itertools.product(io_types, [False, True], [False, True]):
        acc = tl.float64 if io == tl.float64 else tl.float32
        flags = dict(HAS_H0=has_h0, REVERSE=rev, ACC=acc, **default_scan)
        yield "scan fwd", ks._scan_fwd_kernel, dict.fromkeys(["A", "B", "H", "H0"], PTR[io]), flags
        yield "scan bwd", ks._scan_bwd_kernel, dict.fromkeys(["G", "A", "H", "H0", "DA", "DB", "DH0"], PTR[io]), flags
    for cfg in scan_configs(everything=True):  # every tile shape the tuner may pick
        flags = dict(HAS_H0=True, REVERSE=True, ACC=tl.float32, **cfg.kwargs)
        yield "scan fwd", ks._scan_fwd_kernel, dict.fromkeys(["A", "B", "H", "H0"], "*fp32"), flags
        yield "scan bwd", ks._scan_bwd_kernel, dict.fromkeys(["G", "A", "H", "H0", "DA", "DB", "DH0"], "*fp32"), flags
    for method, io in itertools.product(kd.METHODS.values(), [tl.float32, tl.bfloat16]):
        ptrs = {"DT": PTR[io], "B": PTR[io], "A": "*fp32", "ABAR": "*fp32", "BBAR": "*fp32"}
        for cfg in discretize_configs(everything=True)[:1]:
            yield "discretize fwd", kd._discretize_fwd_kernel, ptrs, dict(METHOD=method, ACC=tl.float32, BLOCK_N=16, **cfg.kwargs)
        bw = {**ptrs, "GABAR": "*fp32", "GBBAR": "*fp32", "DDT": PTR[io], "DA_PART": "*fp32", "DB_PART": "*fp32"}
        for ga, gb in [(True, True), (True, False), (False, True)]:
            yield "discretize bwd", kd._discretize_bwd_kernel, bw, dict(METHOD=method, ACC=tl.float32, HAS_GA=ga, HAS_GB=gb, BLOCK_L=64, BLOCK_N=16)
    io_names = ["U", "DELTA", "B", "C", "Z", "OUT", "DOUT", "DU", "DDELTA", "DZ"]
    f32_names = ["A", "D", "DBIAS", "H0", "LAST", "CKPT", "DLAST", "DA_PART", "DD_PART", "DBIAS_PART", "DB", "DC", "DH0"]
    for io, b_fixed, c_fixed, opt, bn in itertools.product([tl.float32, tl.bfloat16], [False, True], [False, True],
                                                           [False, True], [1, 16]):
        ptrs = {**{n: PTR[io] for n in io_names}, **dict.fromkeys(f32_names, "*fp32")}
        flags = dict(HAS_D=opt, HAS_Z=opt, HAS_BIAS=opt, SOFTPLUS=opt, B_FIXED=b_fixed, C_FIXED=c_fixed,
                     EVEN=not opt, BLOCK_D=4 if opt else 1, BLOCK_L=32 if opt else 1024, BLOCK_N=bn)
        yield "selective_scan fwd", kss._selective_scan_fwd_kernel, ptrs, dict(HAS_H0=opt, STORE_CKPT=not opt, **flags)
        yield "selective_scan bwd", kss._selective_scan_bwd_kernel, ptrs, dict(HAS_DLAST=opt, ATOMIC=not opt, **flags)


def ssd_cases():
    f32 = lambda *names: dict.fromkeys(names, "*fp32")  # noqa: E731
    # every kernel with its options all off and all on, in each I/O dtype
    for io, (seq, opt) in itertools.product([tl.float32, tl.bfloat16, tl.float16], [(False, False), (True, True)]):
        dot = tl.float32 if io == tl.float32 else io
        iop = lambda *names: dict.fromkeys(names, PTR[io])  # noqa: E731
        ints = {"SEQ": "*i32", "CU": "*i32", "lo": "fp32", "hi": "fp32"}
        tiles = dict(BLOCK_M=64, BLOCK_K=64, BLOCK_P=64, BLOCK_N=128, DOT=dot, Q=256)
        yield "ssd cumsum", ssd_cumsum._dt_cumsum_kernel, {**iop("DT"), **f32("DT_BIAS", "A", "DTP", "CUM"), **ints}, \
            dict(HAS_BIAS=opt, SOFTPLUS=opt, CLAMP=opt, Q=256)
        for mode in (ssd_state.MODE_STATE, ssd_state.MODE_ADJOINT, ssd_state.MODE_VARLEN):
            yield "ssd chunk_outer", ssd_state._chunk_outer_kernel, \
                {**iop("V", "W"), **f32("DTP", "CUM", "OUT"), "HPREV": PTR[dot], **ints}, \
                dict(MODE=mode, HAS_SEQ=seq, Q=256, BLOCK_K=64, BLOCK_P=64, BLOCK_N=128, DOT=dot)
        yield "ssd state fwd", ssd_pass._state_fwd_kernel, {**f32("S", "CUM", "H0", "FINAL"), "HS": PTR[dot], **ints}, \
            dict(HAS_H0=opt, HAS_SEQ=seq, Q=256, BLOCK=1024)
        yield "ssd state bwd", ssd_pass._state_bwd_kernel, {**f32("ADJ", "CUM", "DFINAL", "DH0", "FPART"), "HS": PTR[dot], **ints}, \
            dict(HAS_DFINAL=opt, HAS_SEQ=seq, Q=256, BLOCK=1024)
        yield "ssd bmm", ssd_bmm._bmm_kernel, {**iop("B", "C"), "CB": "*fp32"}, \
            dict(Q=256, BLOCK_M=64, BLOCK_K=64, BLOCK_N=64, DOT=dot)
        yield "ssd chunk_scan", ssd_scan._chunk_scan_fwd_kernel, \
            {**iop("X", "B", "C", "Z", "Y", "OUT", "HS"), **f32("CB", "DTP", "CUM", "D"), **ints}, \
            dict(HAS_D=opt, D_PER_CHANNEL=seq, HAS_Z=opt, HAS_SEQ=seq, STORE_Y=opt, **tiles)
        yield "ssd dx", ssd_bwd._dx_kernel, \
            {**iop("X", "B", "DY", "DX"), **f32("CB", "DTP", "CUM", "ADJ", "D", "DD_PART", "US", "XV"), **ints}, \
            dict(HAS_D=opt, D_PER_CHANNEL=seq, HAS_SEQ=seq, **tiles)
        yield "ssd db", ssd_bwd._db_kernel, \
            {**iop("X", "B", "C", "DY"), **f32("CB", "DTP", "CUM", "ADJ", "DB_PART", "DC_PART"), "RS": "*fp64", "CS": "*fp64",
             **ints}, dict(ATOMIC_DC=not seq, HAS_SEQ=seq, **tiles)
        yield "ssd dc", ssd_bwd._dc_kernel, {**iop("X", "B", "C", "DY", "HS"), **f32("DTP", "CUM", "DC_PART", "INTER"), **ints}, \
            dict(PAIRS=seq, HAS_SEQ=seq, **tiles)
        yield "ssd gate bwd", ssd_dt._gate_bwd_kernel, iop("DOUT", "Y", "Z", "DY", "DZ"), dict(BLOCK=1024)
        yield "ssd dt bwd", ssd_dt._dt_bwd_kernel, \
            {**iop("DT", "DDT"), **f32("DT_BIAS", "A", "DTP", "INTER", "US", "XV", "F", "DA_PART", "DBIAS_PART"), "RS": "*fp64", "CS": "*fp64",
             **ints}, dict(HAS_BIAS=opt, SOFTPLUS=opt, CLAMP=opt, Q=256)


def state_update_cases():
    for io, state, opt in itertools.product([tl.float32, tl.bfloat16], [tl.float32, tl.bfloat16], [False, True]):
        ptrs = {"S": PTR[state], "X": PTR[io], "DT": PTR[io], "B": PTR[io], "C": PTR[io], "Z": PTR[io], "OUT": PTR[io],
                "A": "*fp32", "D": "*fp32", "DT_BIAS": "*fp32", "IDX": "*i64"}
        yield "state_update", ksu._state_update_kernel, ptrs, dict(HAS_D=opt, HAS_Z=opt, HAS_BIAS=opt, SOFTPLUS=opt,
                                                                   HAS_IDX=opt, A_PER_HEAD=opt, DT_PER_HEAD=not opt,
                                                                   BLOCK_P=32, BLOCK_N=128)


def norm_cases():
    for io, z, first in itertools.product([tl.float32, tl.bfloat16], [False, True], [False, True]):
        ptrs = {**dict.fromkeys(["X", "Z", "W", "BIAS", "Y", "DY", "DX", "DZ"], PTR[io]),
                **dict.fromkeys(["RSTD", "DW_PART", "DB_PART"], "*fp32"), "eps": "fp32"}
        flags = dict(HAS_Z=z, GATE_FIRST=first, HAS_BIAS=first, BLOCK_R=4, BLOCK_G=1024)
        yield "rmsnorm fwd", knorm._rmsnorm_fwd_kernel, ptrs, flags
        yield "rmsnorm bwd", knorm._rmsnorm_bwd_kernel, ptrs, {**flags, "BLOCK_G": 1 if first else 1024}


def conv1d_cases():
    for io, opt in itertools.product([tl.float32, tl.bfloat16], [False, True]):
        ptrs = {**dict.fromkeys(["X", "Wt", "BIAS", "OUT", "DOUT", "DX", "STATE"], PTR[io]), "SEQ": "*i32",
                **dict.fromkeys(["DPRE", "DW_PART", "DB_PART"], "*fp32")}
        flags = dict(W=4 if opt else 2, HAS_BIAS=opt, HAS_SEQ=opt, SILU=opt, BLOCK_D=16, BLOCK_L=256)
        yield "conv1d fwd", kconv._conv_fwd_kernel, ptrs, flags
        yield "conv1d bwd pre", kconv._conv_bwd_pre_kernel, ptrs, flags
        yield "conv1d bwd dx", kconv._conv_bwd_dx_kernel, ptrs, dict(W=flags["W"], HAS_SEQ=opt, BLOCK_D=16, BLOCK_L=256)
        yield "conv1d update", kconv._conv_update_kernel, ptrs, dict(W=flags["W"], HAS_BIAS=opt, SILU=opt, BLOCK_D=32,
                                                                     BLOCK_S=4, BLOCK_L=1 if opt else 8)


def main() -> int:
    done = failed = 0
    for name, kernel, ptrs, flags in itertools.chain(cases(), ssd_cases(), state_update_cases(), norm_cases(), conv1d_cases()):
        try:
            compile_kernel(kernel, ptrs, flags)
            done += 1
        except Exception as e:  # report the innermost cause: the compiler's own message
            failed += 1
            while e.__cause__ is not None:
                e = e.__cause__
            print(f"FAILED {name} {flags}: {type(e).__name__}: {str(e)[:400]}")
    print(f"compiled {done}, failed {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
