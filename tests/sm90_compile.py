"""Compiles every kernel for an H100 (sm_90) without a GPU: run by tests/test_sm90_compile.py in a
process with the interpreter off. Triton's GPU compiler rejects code the interpreter runs happily (a
function whose returns differ in shape, even under a constexpr ``if``, did), so CI checks it here.
Each kernel is compiled once per variant that changes its code (its options all off and all on, per I/O
dtype), not for every combination that shares it; CI compiles a subset of those (the SSD stages in four of
their seven dtype/option variants, the chunk-state modes and the fused forward's state layouts in one of
them, the selective scan's fixed-B/C forms in fp32, the scan at its rule's tile) and stops at LLVM IR (see
``_through_llvm_ir_only``): ``SSM_TRITON_SM90_FULL=1`` or ``--resources`` compiles all, to cubins. Absent optional
tensors are compiled as the launchers pass them: ``None``, a constexpr. Prints one line per failure and a last line
``compiled N, failed M``."""
import collections
import inspect
import itertools
import os
import re
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
from ssm_triton.kernels import mamba2_step as km2s  # noqa: E402
from ssm_triton.kernels import fused_step as km2  # noqa: E402
from ssm_triton.kernels import in_update as kiu  # noqa: E402
from ssm_triton.kernels.ssd import bwd_pairs as ssd_bwd  # noqa: E402
from ssm_triton.kernels.ssd import bmm as ssd_bmm  # noqa: E402
from ssm_triton.kernels.ssd import bwd_dt as ssd_dt  # noqa: E402
from ssm_triton.kernels.ssd import fused as ssd_fused  # noqa: E402
from ssm_triton.kernels.ssd import chunk_scan as ssd_scan  # noqa: E402
from ssm_triton.kernels.ssd import chunk_state as ssd_state  # noqa: E402
from ssm_triton.kernels.ssd import common as ssd_common  # noqa: E402
from ssm_triton.kernels.ssd import cumsum as ssd_cumsum  # noqa: E402
from ssm_triton.kernels.ssd import state_passing as ssd_pass  # noqa: E402
from ssm_triton.kernels.ssd import walk_bwd as ssd_walk  # noqa: E402
from ssm_triton.kernels.mamba3 import core as m3_core  # noqa: E402
from ssm_triton.kernels.mamba3 import prep as m3_prep  # noqa: E402
from ssm_triton.kernels.mamba3 import mimo as m3_mimo_terms  # noqa: E402
from ssm_triton.kernels.mamba3 import mimo_out as m3_mimo_out  # noqa: E402
from ssm_triton.kernels.mamba3 import weights as m3_weights  # noqa: E402
from ssm_triton.kernels.mamba3 import mimo_step as m3_mimo  # noqa: E402
from ssm_triton.kernels.mamba3 import step as m3_step  # noqa: E402
from ssm_triton.kernels.mamba3 import block_steps as m3_steps  # noqa: E402
from ssm_triton.kernels.tuning import H100  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
FULL_TILES = FULL = "--resources" in sys.argv or os.environ.get("SSM_TRITON_SM90_FULL") == "1"
PTR = {tl.float32: "*fp32", tl.bfloat16: "*bf16", tl.float16: "*fp16", tl.float64: "*fp64"}


# outputs the launchers pass as None when a flag is off, beyond the flags' own arguments, per kernel
_ALSO_ABSENT = {"_selective_scan_bwd_kernel": {"HAS_Z": ("DZ",)},
                "_selective_scan_fwd_kernel": {"SEGMENTED": ("SEG_H", "SEG_DT", "FINAL")},
                "_siso_prep_kernel": {"HAS_SEQ": ("OFF",)}, "_siso_prep_bwd_kernel": {"HAS_SEQ": ("OFF",)},
                "_angle_carry_kernel": {"HAS_SEQ": ("TAIL", "DTHF")},
                "_dx_dd_kernel": {"HAS_D": ("DD_PART",), "HAS_DIAG": ("DDIAG",)},
                "_rmsnorm_bwd_kernel": {"HAS_BIAS": ("DB_PART",)},
                "_out_bwd_kernel": {"HAS_D": ("DD",), "HAS_Z": ("DZ", "DMZ"), "HAS_OUT": ("DMO",)}, "_chunk_state_kernel": {"MODE": ("HPREV", "CU")},
                "_siso_step_kernel": {"HAS_STATES": ("THETA", "KS", "VS"), "STORE_V": ("CNT",)},
                "_mimo_step_kernel": {"HAS_STATES": ("THETA", "KS", "XS"), "STORE_X": ("CNT",)}}


def _through_llvm_ir_only():
    """CI's compile stops at LLVM IR: the checks that caught real faults (the front end, layouts, lowering of
    each op for sm_90) are behind it, and PTX and ptxas took 35% of the run (CPU, 2026-12-04: 107 of 307 s).
    The PTX and cubin stages become stubs so that ``triton.compile`` still returns a kernel object."""
    from triton.backends.nvidia.compiler import CUDABackend

    add_stages = CUDABackend.add_stages

    def without_ptx(self, stages, options, *args):
        add_stages(self, stages, options, *args)

        def no_ptx(llvm_ir: str, metadata):
            metadata["name"] = re.search(r"define [^@]*@([\w.$]+)\(", llvm_ir).group(1)
            return ""
        stages["ptx"] = no_ptx
        stages["cubin"] = lambda module, metadata: b""
    CUDABackend.add_stages = without_ptx


if not FULL:
    _through_llvm_ir_only()


def compile_kernel(kernel, pointers: dict, constexprs: dict, num_warps: int = 4, num_stages: int = 3,
                   aligned: bool = False, maxnreg: int | None = None, unaligned: tuple = ()):
    """``kernel``: a launcher's Kernel object; its flags that are off make their arguments None. ``aligned``: every
    pointer and int32 argument (but those in ``unaligned``) marked divisible by 16, as a GPU launch specializes them at shapes like the bench's
    (P = 64, L = 4096, ...): its loads vectorize and its tiles take the layouts they take there (without it, a tile's
    columns may be spread over warps that a launch keeps in one). ``maxnreg``: a register cap, as a tuning candidate
    that sets one compiles with it."""
    fn = kernel.fn
    constexprs = dict(constexprs)
    for flag, arg in kernel.flags:
        if not constexprs.get(flag, True):
            constexprs[arg] = None
    for flag, args in _ALSO_ABSENT.get(fn.__name__, {}).items():
        off = constexprs.get(flag) is False or (flag == "MODE" and constexprs.get("MODE") != ssd_state.MODE_VARLEN)
        for arg in args:
            if off and arg in fn.arg_names and arg not in constexprs:
                constexprs[arg] = None
    names = fn.arg_names
    # a constexpr left out takes its default, as a launch that leaves it out does (not an int32 argument)
    for n, param in inspect.signature(fn.fn).parameters.items():
        if n not in constexprs and n not in pointers and param.default is not inspect.Parameter.empty:
            constexprs[n] = param.default
    sig = {}
    # arguments named neither as pointers nor as constexprs are the kernels' int32 sizes and strides
    for n in names:
        if n in constexprs:
            sig[n] = "constexpr"
        elif n in pointers:
            sig[n] = pointers[n]
        else:
            sig[n] = "i32"
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if aligned and sig[n] != "constexpr" and n not in unaligned}
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(n),): v for n, v in constexprs.items()},
                    attrs=attrs)
    options = {"num_warps": num_warps, "num_stages": num_stages, **({"maxnreg": maxnreg} if maxnreg else {})}
    return triton.compile(src, target=TARGET, options=options)


def sass(kernel, pointers: dict, constexprs: dict, **options):
    """``(compiled, SASS text)``: :func:`compile_kernel` then the cuobjdump Triton carries (the SASS readers under
    ``bench/results/cpu-*``)."""
    import subprocess
    import tempfile
    compiled = compile_kernel(kernel, pointers, constexprs, **options)
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        return compiled, subprocess.run([tool, "-sass", f.name], capture_output=True, text=True).stdout


def resources(compiled) -> str:
    """Registers, spill stack and shared memory per thread block of a compiled kernel (``cuobjdump
    -res-usage`` on its cubin; the cuobjdump that Triton's package carries)."""
    import subprocess
    import tempfile

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
    line = next((ln for ln in out.splitlines() if "REG:" in ln), "")
    return " ".join(w for w in line.split() if w.split(":")[0] in ("REG", "STACK", "SHARED"))


def _kw(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if k not in ("num_warps", "num_stages")}


def cases():
    # the scan: every tile shape the tuner may pick, in fp32; each I/O dtype with the rule's tile
    scan_problem = (8, 4096, None, None, True, True)
    space = ks.scan_fwd.space(scan_problem, H100)
    for io, opt in itertools.product([tl.float32, tl.bfloat16, tl.float16, tl.float64], [False, True]):
        acc = tl.float64 if io == tl.float64 else tl.float32
        flags = dict(HAS_H0=opt, REVERSE=opt, ACC=acc, **_kw(space[0]))
        yield "scan fwd", ks.scan_fwd, dict.fromkeys(["A", "B", "H", "H0"], PTR[io]), flags
        for aligned, rev in ((False, False), (True, False), (False, True)):   # the backward's forms (kernels/scan.py)
            if (aligned or rev) and io != tl.bfloat16 and not FULL:   # CI: the untimed forms in one dtype (~25 s)
                continue
            yield "scan bwd", ks.scan_bwd, dict.fromkeys(["G", "A", "H", "H0", "DA", "DB", "DH0"], PTR[io]), \
                dict(flags, ALIGNED=aligned, REV_GATHER=rev)
    for cfg in space[1:] if FULL else ():   # the tuner's other tiles: same code, other constants
        flags = dict(HAS_H0=True, REVERSE=True, ACC=tl.float32, **_kw(cfg))
        yield "scan fwd", ks.scan_fwd, dict.fromkeys(["A", "B", "H", "H0"], "*fp32"), flags
        yield "scan bwd", ks.scan_bwd, dict.fromkeys(["G", "A", "H", "H0", "DA", "DB", "DH0"], "*fp32"), \
            dict(flags, ALIGNED=False)
    rule = _kw(kd.discretize_fwd.space((64, 4096, 16, 16, "", "", "", "zoh"), H100)[0])
    for method, io in itertools.product(kd.METHODS.values(), [tl.float32, tl.bfloat16]):
        ptrs = {"DT": PTR[io], "B": PTR[io], "A": "*fp32", "ABAR": "*fp32", "BBAR": "*fp32"}
        yield "discretize fwd", kd.discretize_fwd, ptrs, dict(METHOD=method, ACC=tl.float32, BLOCK_N=16, **rule)
        bw = {**ptrs, "GABAR": "*fp32", "GBBAR": "*fp32", "DDT": PTR[io], "DA_PART": "*fp32", "DB_PART": "*fp32"}
        for ga, gb in [(True, True), (False, True)]:
            yield "discretize bwd", kd.discretize_bwd, bw, dict(METHOD=method, ACC=tl.float32, HAS_GA=ga, HAS_GB=gb,
                                                              BLOCK_L=64, BLOCK_N=16)
    io_names = ["U", "DELTA", "B", "C", "Z", "OUT", "DOUT", "DU", "DDELTA", "DZ"]
    f32_names = ["A", "D", "DBIAS", "H0", "LAST", "CKPT", "DLAST", "DA_PART", "DD_PART", "DBIAS_PART", "DB", "DC", "DH0",
                 "SEG_H", "SEG_DT", "FINAL", "MU", "SEG_MU"]
    for io, (b_fixed, c_fixed), opt in itertools.product([tl.float32, tl.bfloat16], [(False, False), (True, True),
                                                                                     (False, True)], [False, True]):
        if io != tl.float32 and (b_fixed or c_fixed) and not FULL:   # CI: the fixed forms in fp32 only
            continue
        bn = 16 if opt else 1
        ptrs = {**{n: PTR[io] for n in io_names}, **dict.fromkeys(f32_names, "*fp32")}
        flags = dict(HAS_D=opt, HAS_Z=opt, HAS_BIAS=opt, SOFTPLUS=opt, B_FIXED=b_fixed, C_FIXED=c_fixed,
                     EVEN=not opt, BLOCK_D=4 if opt else 1, BLOCK_L=32 if opt else 1024, BLOCK_N=bn)
        yield "selective_scan fwd", kss.selective_scan_fwd, ptrs, dict(HAS_H0=opt, STORE_CKPT=not opt, CKPT_L=32,
                                                                      SEGMENTED=opt == b_fixed,
                                                                      AHEAD=int(opt) + int(b_fixed),
                                                                      UNROLL=1 + int(c_fixed), A_LOG=opt, **flags)
        yield "selective_scan fwd summary", kss.selective_scan_fwd_summary, ptrs, dict(
            HAS_BIAS=opt, SOFTPLUS=opt, B_FIXED=b_fixed, BLOCK_D=flags["BLOCK_D"], BLOCK_L=flags["BLOCK_L"], BLOCK_N=bn,
            A_LOG=opt)
        yield "selective_scan bwd", kss.selective_scan_bwd, ptrs, dict(HAS_DLAST=opt, ATOMIC=not opt,
                                                                      NO_GATHER=opt != b_fixed,
                                                                      SEGMENTED=opt == c_fixed,
                                                                      SHARED=not (opt or b_fixed or c_fixed),
                                                                      REV_GATHER=not (opt or b_fixed or c_fixed),
                                                                      AHEAD=int(opt) + int(c_fixed) or int(not b_fixed),
                                                                      UNROLL=1 + int(opt != c_fixed), **flags)
        yield "selective_scan bwd summary", kss.selective_scan_bwd_summary, ptrs, dict(
            HAS_Z=opt, HAS_BIAS=opt, SOFTPLUS=opt, C_FIXED=c_fixed, EVEN=not opt, BLOCK_D=flags["BLOCK_D"],
            BLOCK_L=flags["BLOCK_L"], BLOCK_N=bn)


def ssd_cases():
    f32 = lambda *names: dict.fromkeys(names, "*fp32")  # noqa: E731
    # every kernel with its options all off and all on, in each I/O dtype
    # fp32 twice: IEEE products ("highest") and TF32 tensor cores ("high")
    # and Mamba-3 MIMO's core: fp32 x, y and their gradients, bf16 k, q and states (kernels/mamba3/core.py)
    variants = [(tl.float32, False, False, tl.float32), (tl.float32, True, True, tl.float32),
                (tl.float32, True, True, ssd_common.TF32), (tl.bfloat16, False, False, tl.bfloat16),
                (tl.bfloat16, True, True, tl.bfloat16), (tl.float16, True, True, tl.float16),
                ("mixed", False, False, tl.bfloat16)]
    if not FULL:   # CI: each dtype, each option setting and each product kind once (130 of the check's 260 s were
        # these seven variants); the other pairings compile with SSM_TRITON_SM90_FULL=1
        variants = [variants[i] for i in (0, 2, 4, 6)]
    steps = ("X", "V", "Y", "OUT", "Z", "DY", "DX", "DOUT", "DZ")
    for io, seq, opt, dot in variants:
        iop = lambda *names: {n: PTR[tl.float32 if io == "mixed" and n in steps else  # noqa: E731
                                     tl.bfloat16 if io == "mixed" else io] for n in names}
        ints = {"SEQ": "*i32", "CU": "*i32", "lo": "fp32", "hi": "fp32"}
        # IEEE fp32 products unroll to FMAs: at the launchers' 64x128 tiles they took 190 of CI's 540 s here, so
        # CI compiles their code at 32-wide tiles (same source, same branches); --resources keeps the real tiles
        bk, bp, bn = (32, 32, 32) if dot == tl.float32 and not FULL_TILES else (64, 64, 128)
        tiles = dict(BLOCK_M=bk, BLOCK_K=bk, BLOCK_P=bp, BLOCK_N=bn, DOT=dot, Q=256)
        if io == "mixed":   # the core's dt terms come in fp32: only the step-sized kernels differ
            iop = (lambda f: lambda *names: {n: (PTR[tl.float32] if n in ("DT", "DDT") else v)
                                             for n, v in f(*names).items()})(iop)
        yield "ssd cumsum", ssd_cumsum.dt_cumsum_kernel, {**iop("DT"), **f32("DT_BIAS", "A", "DTP", "CUM"), **ints}, \
            dict(HAS_BIAS=opt, SOFTPLUS=opt, CLAMP=opt, Q=256, A_LOG=opt)
        # CI: the adjoint and varlen modes in the 16-bit variant only (same products, other indexing)
        for mode in (ssd_state.MODE_STATE, ssd_state.MODE_ADJOINT, ssd_state.MODE_VARLEN)[:3 if FULL or io == tl.bfloat16 else 1]:
            yield "ssd chunk_state", ssd_state.chunk_state_kernel, \
                {**iop("V", "W"), **f32("DTP", "CUM", "OUT"), "HPREV": PTR.get(dot, "*fp32"), **ints}, \
                dict(MODE=mode, HAS_SEQ=seq, Q=256, BLOCK_K=bk, BLOCK_P=bp, BLOCK_N=bn, DOT=dot)
        yield "ssd state fwd", ssd_pass.state_fwd_kernel, {**f32("S", "CUM", "H0", "FINAL"), "HS": PTR.get(dot, "*fp32"), **ints}, \
            dict(HAS_H0=opt, HAS_SEQ=seq, Q=256, BLOCK=1024)
        yield "ssd state bwd", ssd_pass.state_bwd_kernel, {**f32("ADJ", "CUM", "DFINAL", "DH0", "FPART"), "HS": PTR.get(dot, "*fp32"),
                                                           "DS": PTR.get(dot, "*fp32"), **ints}, \
            dict(HAS_DFINAL=opt, HAS_SEQ=seq, Q=256, BLOCK=1024)
        if FULL or io == tl.bfloat16:   # the chunks' sums inside the state passings (OWN_FUSED, ADJ_FUSED)
            yield "ssd state fwd own", ssd_pass.state_fwd_own_kernel, \
                {**iop("X", "B"), **f32("DTP", "CUM", "H0", "FINAL"), "HS": PTR.get(dot, "*fp32"), **ints}, \
                dict(HAS_H0=opt, HAS_SEQ=seq, Q=256, BLOCK_K=bk, BLOCK_P=min(bp, 64), BLOCK_N=min(bn, 64), DOT=dot)
            yield "ssd state bwd adjoint", ssd_pass.state_bwd_adjoint_kernel, \
                {**iop("DY", "C"), **f32("CUM", "DFINAL", "DH0", "FPART"), "HS": PTR.get(dot, "*fp32"),
                 "DS": PTR.get(dot, "*fp32"), **ints}, \
                dict(HAS_DFINAL=opt, HAS_SEQ=seq, Q=256, BLOCK_K=bk, BLOCK_P=min(bp, 64), BLOCK_N=min(bn, 64), DOT=dot)
        if FULL or io in (tl.bfloat16, "mixed"):   # the one-launch backward of one-group-a-head SSDs (Mamba-3's)
            yield "ssd walk bwd", ssd_walk.walk_bwd_kernel, \
                {**iop("X", "DY", "DX"), "K": PTR.get(dot, "*fp32"), "QQ": PTR.get(dot, "*fp32"),
                 "HS": PTR.get(dot, "*fp32"), **f32("DTP", "CUM", "DFINAL", "D", "DIAG", "XV", "DDIAG", "DA",
                                                   "DH0", "DD_PART", "SEG_A", "SEG_DEC"),
                 # dk, dq a head: bf16 where the cores multiply in 16 bits (launch.walk_backward)
                 **{n: "*fp32" if dot == tl.float32 else "*bf16" for n in ("DK", "DQ")}}, \
                dict(HAS_DFINAL=opt, HAS_D=opt, D_PER_CHANNEL=False, HAS_DD=opt, HAS_DIAG=opt, SEGMENTED=opt,
                     Q=64 if opt else 32, SUB=32, BLOCK_P=bp, BLOCK_N=bn, DOT=dot, AHEAD=seq,
                     FREC=opt, MERGE=opt)   # halves, or whole
            yield "ssd walk sums", ssd_walk.walk_sums_kernel, \
                {**iop("DY"), "QQ": PTR.get(dot, "*fp32"), **f32("CUM", "SEG_A", "SEG_DEC")}, \
                dict(Q=64, SUB=32, BLOCK_P=bp, BLOCK_N=bn, DOT=dot)
        yield "ssd bmm", ssd_bmm.bmm_kernel, {**iop("B", "C"), "CB": "*fp32"}, \
            dict(Q=256, BLOCK_M=64, BLOCK_K=64, BLOCK_N=64, DOT=dot)
        yield "ssd chunk_scan", ssd_scan.chunk_scan_kernel, \
            {**iop("X", "B", "C", "Z", "Y", "OUT", "HS", "NORM_W"), **f32("CB", "DTP", "CUM", "D", "DIAG", "SS"), **ints}, \
            dict(HAS_D=opt, D_PER_CHANNEL=seq, HAS_DIAG=opt, HAS_Z=opt, HAS_SEQ=seq, STORE_Y=opt, **tiles,
                 HAS_NORM=opt and not seq, SZ_A=8 if opt else 1,   # the deferred gated norm (ops/norm_defer.py)
                 SPLIT_DECAY=opt, LONGEST_FIRST=seq)
        yield "ssd dx", ssd_bwd.dx_dd_kernel, \
            {**iop("X", "B", "DY", "DX"), **f32("CB", "DTP", "CUM", "D", "DIAG", "DD_PART", "DDIAG", "US", "XV"),
             "ADJ": PTR.get(dot, "*fp32"), **ints}, dict(HAS_D=opt, HAS_DD=opt, D_PER_CHANNEL=seq, ATOMIC_DD=not seq, HAS_DIAG=opt, HAS_SEQ=seq, **tiles,
                                                        SPLIT_DECAY=opt)
        yield "ssd db", ssd_bwd.db_dc_pairs_kernel, \
            {**iop("X", "B", "C", "DY"), **f32("CB", "DTP", "CUM", "DB_PART", "DC_PART"), "RS": "*fp64", "CS": "*fp64",
             "ADJ": PTR.get(dot, "*fp32"), **ints}, dict(ATOMIC_DC=not seq, HAS_SEQ=seq, HEAVY_FIRST=opt, **tiles,
                                                         SPLIT_DECAY=opt)
        yield "ssd dc", ssd_bwd.dc_states_kernel, {**iop("X", "B", "C", "DY", "HS"), **f32("DTP", "CUM", "DC_PART", "INTER"), **ints}, \
            dict(PAIRS=seq, HAS_SEQ=seq, **tiles)
        # the fused forward at the launcher's chunk (32) and channel tiles; IEEE fp32 products run it only when
        # forced (SSM_TRITON_SSD_FUSED=1): one small tile (its wide tiles take minutes to compile)
        fused_tiles = ((32, 16, 128, False),) if dot == tl.float32 else \
            ((32, 64, 128, False), (32, 32, 256, False), (32, 64, 128, True))
        if not FULL:   # CI: each state layout once in 16 bits, TF32 at one tile
            fused_tiles = fused_tiles[:1] if dot != tl.bfloat16 else fused_tiles[::2]
        if io != "mixed":
            # a training forward's kept outputs (KEEP) too, in the modes that write them: at the first tile
            for (q, bp, bn, transposed), mode, keep in itertools.product(fused_tiles, (0, 1, 2), (False, True)):
                if mode and (transposed or not opt):   # the segmented modes: one tile, every option on
                    continue
                if keep and (mode == 1 or (q, bp, bn, transposed) != fused_tiles[0]):
                    continue
                yield f"ssd fused fwd mode {mode}", ssd_fused.ssd_fused_fwd_kernel, \
                    {**iop("X", "B", "C", "Z", "OUT", "KEEP_Y"), **f32("DT_BIAS", "A", "D", "H0", "FINAL", "SEG_STATE",
                                                                     "SEG_DECAY", "ADT", "DIAG", "KEEP_DT", "KEEP_CUM"),
                     "KEEP_HS": PTR.get(dot, "*fp32"), "DT": "*fp32" if seq else PTR[io], **ints}, \
                    dict(HAS_BIAS=opt and not seq, SOFTPLUS=opt, CLAMP=opt, HAS_D=opt, D_PER_CHANNEL=seq, HAS_Z=opt,
                         HAS_H0=opt, HAS_FINAL=mode != 1, Q=q, BLOCK_P=bp, BLOCK_N=bn, DOT=dot, STATE_T=transposed,
                         MODE=mode, CARRIED=mode == 2 and seq, STEPS_GIVEN=seq, HAS_DIAG=seq, RANKS=4 if seq else 1,
                         KEEP=keep, KQ=256 if keep else 1, AHEAD=mode == 2 or keep, A_LOG=opt and not seq and not keep)
            if dot == tl.bfloat16:   # no tensor-core dtype in it: once a bf16 variant
                yield "ssd segment carry", ssd_fused.ssd_segment_carry_kernel, f32("SEG_STATE", "SEG_DECAY", "H0"), \
                    dict(HAS_H0=opt, BLOCK=512)
        yield "ssd gate bwd", ssd_dt.gate_bwd_kernel, {**iop("DOUT", "Y", "Z", "X", "DY", "DZ"), "DD_PART": "*fp32", **ints}, \
            dict(HAS_DD=opt, ROWS=256, BLOCK_R=8, BLOCK_C=128)
        yield "ssd dt bwd", ssd_dt.dt_bwd_kernel, \
            {**iop("DT", "DDT"), **f32("DT_BIAS", "A", "DTP", "INTER", "US", "XV", "FPART", "DA", "DBIAS"), "RS": "*fp64", "CS": "*fp64",
             **ints}, dict(HAS_BIAS=opt, SOFTPLUS=opt, CLAMP=opt, ATOMIC=not opt, Q=256, BLOCK_F=8)


def state_update_cases():
    for (io, state), opt in itertools.product([(tl.float32, tl.float32), (tl.bfloat16, tl.float32),
                                               (tl.bfloat16, tl.bfloat16)], [False, True]):
        ptrs = {"S": PTR[state], "X": PTR[io], "DT": PTR[io], "B": PTR[io], "C": PTR[io], "Z": PTR[io], "OUT": PTR[io],
                "A": "*fp32", "D": "*fp32", "DT_BIAS": "*fp32", "IDX": "*i64", "NORM_W": PTR[io], "SS": "*fp32"}
        # opt: the deferred gated norm too (ops/norm_defer.py), and hinted row strides
        yield "state_update", ksu.state_update_kernel, ptrs, dict(HAS_D=opt, HAS_Z=opt, HAS_BIAS=opt, SOFTPLUS=opt,
                                                                   HAS_IDX=opt, A_PER_HEAD=opt, DT_PER_HEAD=not opt, A_LOG=opt, PDL=opt,
                                                                   BLOCK_P=32, BLOCK_N=128, HAS_NORM=opt,
                                                                   **(dict(x_b_A=8, z_b_A=8) if opt else {}))
    # Mamba-1's fused step with dt_proj inside (one head of d_inner channels, N 16, rank 48 in one 64-wide block)
    ptrs = {"S": PTR[tl.float32], **dict.fromkeys(["X", "DT", "B", "C", "Z", "OUT", "DT_W"], PTR[tl.bfloat16]),
            "A": "*fp32", "D": "*fp32", "DT_BIAS": "*fp32", "IDX": "*i64"}
    yield "state_update dt_proj", ksu.state_update_kernel, ptrs, dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True,
                                                                       HAS_IDX=False, A_PER_HEAD=False, DT_PER_HEAD=False,
                                                                       A_LOG=True, PDL=True, DT_LOW=True, BLOCK_P=64,
                                                                       BLOCK_N=16, BLOCK_R=64)


def norm_cases():
    for io, (z, first) in itertools.product([tl.float32, tl.bfloat16], [(False, False), (True, True), (True, False)]):
        ptrs = {**dict.fromkeys(["X", "Z", "W", "BIAS", "Y", "DY", "DX", "DZ"], PTR[io]),
                **dict.fromkeys(["RSTD", "DW_PART", "DB_PART", "RES", "RES_OUT"], "*fp32"), "eps": "fp32"}
        flags = dict(HAS_Z=z, GATE_FIRST=first, HAS_BIAS=first, BLOCK_R=4, BLOCK_G=1024)
        if z:   # z's row stride hinted (kernels/hints.py), as a column slice of in_proj's output is
            flags.update(SZ_A=8)
        # the residual add (the LM's inference) with the ungated norm, which keeps no rstd (a plan's call)
        yield "rmsnorm fwd", knorm.rmsnorm_fwd, ptrs, dict(flags, HAS_RES=not z, STORE_RES=not z, HAS_RSTD=bool(z))
        if not z:   # the LM's add+norm taking a Mamba2 layer's deferred gated norm (ops/norm_defer.py)
            yield "rmsnorm fwd scale", knorm.rmsnorm_fwd, {**ptrs, "SS": "*fp32", "ss_dim": "fp32", "ss_eps": "fp32"}, \
                dict(flags, HAS_RES=True, STORE_RES=True, HAS_RSTD=False, HAS_SCALE=True, BLOCK_S=32)
        yield "rmsnorm bwd", knorm.rmsnorm_bwd, ptrs, {**flags, "BLOCK_G": 1 if first else 1024}


def conv1d_cases():
    for io, opt in itertools.product([tl.float32, tl.bfloat16], [False, True]):
        ptrs = {**dict.fromkeys(["X", "Wt", "BIAS", "OUT", "DOUT", "DX", "STATE"], PTR[io]), "SEQ": "*i32",
                **dict.fromkeys(["DPRE", "DW_PART", "DB_PART"], "*fp32")}
        flags = dict(W=4 if opt else 2, HAS_BIAS=opt, HAS_SEQ=opt, SILU=opt, BLOCK_D=16, BLOCK_L=256,
                     **(dict(SXB_A=8, SXL_A=8, SOB_A=2) if opt else {}))   # kernels/hints.py's strides
        yield "conv1d fwd", kconv.conv1d_fwd, ptrs, flags
        yield "conv1d bwd pre", kconv.conv1d_bwd_pre, ptrs, flags
        yield "conv1d bwd dx", kconv.conv1d_bwd_dx, ptrs, dict(W=flags["W"], HAS_SEQ=opt, BLOCK_D=16, BLOCK_L=256,
                                                                     SXL_A=8 if opt else 1)
        yield "conv1d update", kconv.conv1d_update, ptrs, dict(W=flags["W"], HAS_BIAS=opt, SILU=opt, BLOCK_D=32,
                                                                     BLOCK_S=4, BLOCK_L=1 if opt else 8,
                                                                     x_b_A=8 if opt else 1)


def vector_check() -> int:
    """The stride hints (``kernels/hints.py``) restore 16-byte accesses: the causal conv's forward reading bf16
    channels in place from in_proj's output (a step stride Triton sees no divisor of, 3352 in the 130M Mamba2) and
    the gated norm reading ``z`` from it, compiled with those strides unmarked, without and with the hint. Prints
    each variant's global accesses; fails unless the hinted ones have no 2-byte access and the unhinted ones do
    (a Triton that vectorizes without the hint would make it dead weight)."""
    conv = ("conv1d fwd", kconv.conv1d_fwd, {**dict.fromkeys(["X", "OUT"], "*bf16"), "Wt": "*fp32", "BIAS": "*fp32"},
            dict(W=4, HAS_BIAS=True, HAS_SEQ=False, SILU=True, BLOCK_D=64, BLOCK_L=64, SXD=1, SOD=1),
            ("SXB", "SXL", "SOB", "SOL"))
    norm = ("rmsnorm fwd", knorm.rmsnorm_fwd, {**dict.fromkeys(["X", "Z", "Y"], "*bf16"), "W": "*fp32", "eps": "fp32"},
            dict(HAS_Z=True, GATE_FIRST=False, HAS_BIAS=False, HAS_RES=False, STORE_RES=False, HAS_RSTD=False,
                 BLOCK_R=2, BLOCK_G=2048), ("SZ",))
    bad = 0
    for name, kernel, ptrs, flags, strides in (conv, norm):
        for hint in (1, 8):
            compiled = compile_kernel(kernel, ptrs, dict(flags, **{f"{n}_A": hint for n in strides}), aligned=True,
                                      unaligned=strides, num_warps=8 if kernel is knorm.rmsnorm_fwd else 4)
            got = dict(collections.Counter(re.findall(r"[ls][dt]\.global[.a-z0-9]*", compiled.asm["llir"])))
            narrow = sum(v for k, v in got.items() if k.endswith(".b16"))
            ok = (narrow == 0) == (hint > 1)
            bad += not ok
            print(f"{'' if ok else 'FAILED '}{name} strides {strides} hint {hint}: {got}")
    print(f"vector check, failed {bad}")
    return 1 if bad else 0


def fused_step_cases():
    """The fused decode steps' two projection kernels: options all off and all on, the norm's gate on either
    side; the matrix-vector form (one row a program, what up to 4 rows run) with the reduction in one tile,
    the tensor-core form looped over it; with the options on also the other way round, and the matrix-vector
    form over several rows (what more rows run) in one tile and looped."""
    for io, (opt, first) in itertools.product([tl.float32, tl.bfloat16], [(False, False), (True, True), (True, False)]):
        ptrs = {**dict.fromkeys(["HID", "NORM_W", "WIN", "BIN", "CONV_W", "CONV_B", "CONV_S", "ZX", "Y", "WOUT", "BOUT",
                                 "OUT"], PTR[io]), "RES": "*fp32", "RES_OUT": "*fp32", "eps": "fp32"}
        forms = [(1, 8, 1024, 768), (16, 32, 128, 768)] + ([(1, 8, 256, 768), (16, 32, 128, 128), (4, 4, 1024, 768), (2, 4, 256, 768)]
                                                              if opt and first else [])
        for bm, bo, bk, k in forms:
            tiles = dict(DOT=io, PDL=opt, AHEAD=opt, BLOCK_M=bm, BLOCK_O=bo, BLOCK_K=bk)
            yield "fused in step", km2.in_step_kernel, ptrs, dict(HAS_NORM=opt, HAS_RES=opt, HAS_BIN=opt, HAS_CONV=opt,
                                                                  HAS_CONV_B=opt, W=4 if opt else 1, K=k, **tiles)
            yield "fused out step", km2.out_step_kernel, ptrs, dict(HAS_NORM=opt, GATE_FIRST=first, HAS_BOUT=opt,
                                                                    d_ssm=k if bk >= k else 2 * k, **tiles)


def in_update_cases():
    """Mamba-2's state update inside the input projection's launch: options off and on, the gate in the update or
    not, fp32 and bf16 rows, bf16 and fp32 states; the 130M block's tile (8 columns, 768 deep, N 128)."""
    for (io, state), opt in itertools.product([(tl.float32, tl.float32), (tl.bfloat16, tl.float32),
                                               (tl.bfloat16, tl.bfloat16)], [False, True]):
        ptrs = {**dict.fromkeys(["HID", "NORM_W", "WIN", "BIN", "CONV_W", "CONV_B", "CONV_S", "ZX", "Y", "GATE_W",
                                 "WOUT", "BOUT", "OUT"], PTR[io]),
                "RES": "*fp32", "RES_OUT": "*fp32", "S": PTR[state], "A_LOG": "*fp32", "D": "*fp32",
                "DT_BIAS": "*fp32", "CNT": "*i32", "eps": "fp32", "gate_eps": "fp32"}
        for one in (False, True):
            yield "in update", kiu.in_update_kernel, ptrs, dict(
                HAS_NORM=opt, HAS_RES=opt, HAS_BIN=opt, HAS_CONV_B=opt, HAS_D=opt, GATE=not opt, W=4, K=768, DOT=io,
                PDL=opt, BLOCK_O=8, BLOCK_K=1024, BLOCK_N=128, ONE=one, HAS_GATE_NORM=one and opt,
                GATE_FIRST=False, HAS_BOUT=one and not opt, BLOCK_OO=4 if one else 1, BLOCK_KO=2048 if one else 16)


def mamba2_step_cases():
    """Mamba-2's step between its projections: without and with the norm (its gate on either side), fp32 and bf16
    rows, bf16 and fp32 states."""
    for (io, state), (norm, first) in itertools.product([(tl.float32, tl.float32), (tl.bfloat16, tl.float32),
                                                         (tl.bfloat16, tl.bfloat16)],
                                                        [(False, False), (True, True), (True, False)]):
        ptrs = {**dict.fromkeys(["ZX", "CONV_S", "CONV_W", "CONV_B", "Y"], PTR[io]), "SSM": PTR[state],
                **dict.fromkeys(["A_LOG", "DT_BIAS", "D", "NORM_W", "PART"], "*fp32"), "CNT": "*i32", "eps": "fp32"}
        yield "mamba2 step", km2s.mamba2_step_kernel, ptrs, dict(W=4, HAS_CONV_B=norm, HAS_NORM=norm, GATE_FIRST=first,
                                                                  BLOCK_P=32, BLOCK_N=128, BLOCK_W=4, BLOCK_F=2048,
                                                                  BLOCK_J=64, BLOCK_C=256)


def mamba3_cases():
    f32 = lambda *names: dict.fromkeys(names, "*fp32")  # noqa: E731
    for io, opt in ((tl.float32, False), (tl.bfloat16, True), (tl.float16, True)):
        iop = lambda *names: dict.fromkeys(names, PTR[io])  # noqa: E731
        # the walk's per-head dk, dq (launch.walk_backward): bf16 for 16-bit cores
        walk_kq = lambda *names: dict.fromkeys(names, PTR[tl.float32 if io == tl.float32 else tl.bfloat16])  # noqa: E731
        dot = tl.float32 if io == tl.float32 else io
        tiles = dict(BLOCK_T=16, BLOCK_S=32, BLOCK_R=64)
        yield "mamba3 core decay grad", m3_core.decay_grad_kernel, \
            {**f32("INTER", "US", "FPART", "DA"), "RS": "*fp64", "CS": "*fp64"}, dict(Q=64, BLOCK_F=8)
        yield "mamba3 angle sums", m3_prep.angle_sums_kernel, f32("ANG", "DT", "SUMS"), dict(BLOCK_T=16, BLOCK_S=32)
        yield "mamba3 block steps", m3_steps.block_steps_kernel, \
            {**iop("PROJ"), **f32("DT_BIAS", "DT", "ADT", "TRAP"), "MASK": "*i32"}, dict(HAS_MASK=opt, BLOCK_L=128,
                                                                                        BLOCK_H=32)
        for rev in (False, True):
            yield "mamba3 block prefix", m3_prep.block_prefix_kernel, f32("SUMS", "INIT", "OUT", "LAST"), \
                dict(HAS_INIT=opt, REVERSE=rev, BLOCK_C=64, BLOCK_S=32)
        yield "mamba3 prep", m3_prep.siso_prep_kernel, \
            {**iop("Q", "K"), **f32("QB", "KB", "ANG", "DT", "TRAP", "ADT", "THETA_B", "OFF", "DTP", "CUM", "DIAG", "QK"),
             "QR": PTR[dot], "KR": PTR[dot], "SEQ": "*i32"}, dict(HAS_SEQ=opt, CHUNK=64, HEADS=4, **tiles)
        yield "mamba3 prep bwd", m3_prep.siso_prep_bwd_kernel, \
            {**iop("Q", "K"), **f32("QB", "KB", "ANG", "DT", "TRAP", "QK", "THETA_B", "OFF", "XV", "DDIAG",
                                    "DE0", "DQ", "DK", "QB_PART", "KB_PART", "SUF", "DDT", "DTRAP", "DTH_SUMS"),
             **walk_kq("DQR", "DKR"), "SEQ": "*i32"}, dict(HAS_DE0=not opt, HAS_SEQ=opt, SPLIT=opt + 1, BLOCK_T=16 << (2 * opt), PAIRS=16,
                 THETA_EVERY=1 << (2 * opt), AHEAD=opt, MERGE=opt)
        yield "mamba3 angle carry", m3_prep.angle_carry_kernel, \
            {**f32("ANG", "DT", "CARRY", "TAIL", "DTHF", "DANG", "DDT"), "SEQ": "*i32"}, dict(HAS_SEQ=opt, BLOCK_T=16, BLOCK_S=32)
        yield "mamba3 seq angles", m3_prep.seq_angles_kernel, {**f32("ANG", "DT", "THETA_B", "OFF", "FINAL"), "CU": "*i32"}, \
            dict(BLOCK_T=16, BLOCK_S=32)
        yield "mamba3 seq tail", m3_prep.seq_tail_kernel, {**f32("SUF", "CARRY", "TAIL"), "CU": "*i32"}, \
            dict(BLOCK_T=16, BLOCK_S=32)
        yield "mamba3 step", m3_step.siso_step_kernel, \
            {**iop("Q", "K", "V", "Z", "OUT", "KS", "VS", "KS_OUT", "VS_OUT"),
             **f32("ADT", "DT", "TRAP", "QB", "KB", "ANG", "D", "THETA", "SSM", "THETA_OUT", "SSM_OUT", "DTB", "QW",
                   "KW"), "CNT": "*i32"}, \
            dict(HAS_D=opt, HAS_Z=opt, BLOCK_P=16 if opt else 64, BLOCK_S=32, BLOCK_R=64, PRE=opt, NORM=opt,
                 SPLIT=opt, GROUPED=opt)   # opt: the block's step, in blocks of state rows
        yield "mamba3 step whole rows", m3_step.siso_step_kernel, \
            {**iop("Q", "K", "V", "Z", "OUT", "KS", "VS", "KS_OUT", "VS_OUT"),
             **f32("ADT", "DT", "TRAP", "QB", "KB", "ANG", "D", "THETA", "SSM", "THETA_OUT", "SSM_OUT", "DTB", "QW",
                   "KW"), "CNT": "*i32"}, \
            dict(HAS_D=opt, HAS_Z=opt, BLOCK_P=16 if opt else 64, BLOCK_S=32, BLOCK_R=64, PRE=opt, NORM=opt,
                 SPLIT=opt, WHOLE=True, BLOCK_N=128)
        yield "mamba3 mimo step", m3_mimo.mimo_step_kernel, \
            {**iop("Q", "K", "V", "Z", "OUT", "KS", "XS", "KS_OUT", "XS_OUT"),
             **f32("ADT", "DT", "TRAP", "QB", "KB", "MV", "MZ", "MO", "ANG", "D", "THETA", "SSM", "THETA_OUT", "SSM_OUT",
                   "DTB", "QW", "KW"), "CNT": "*i32"}, \
            dict(HAS_D=opt, HAS_Z=opt, HAS_MO=opt, BLOCK_P=16, BLOCK_N=128, PRE=opt, NORM=opt, SPLIT=opt)
        # the steps into new states: from the given ones (opt) or from zeros, the token's v / x not stored
        yield "mamba3 step new states", m3_step.siso_step_kernel, \
            {**iop("Q", "K", "V", "Z", "OUT", "KS", "VS"),
             **f32("ADT", "DT", "TRAP", "QB", "KB", "ANG", "D", "THETA", "SSM", "THETA_OUT", "SSM_OUT", "KS_OUT")}, \
            dict(HAS_D=opt, HAS_Z=opt, BLOCK_P=64, BLOCK_S=32, BLOCK_R=64, HAS_STATES=opt, STORE_V=False)
        yield "mamba3 mimo step new states", m3_mimo.mimo_step_kernel, \
            {**iop("Q", "K", "V", "Z", "OUT", "KS", "XS"),
             **f32("ADT", "DT", "TRAP", "QB", "KB", "MV", "MZ", "MO", "ANG", "D", "THETA", "SSM", "THETA_OUT", "SSM_OUT",
                   "KS_OUT")}, dict(HAS_D=opt, HAS_Z=opt, HAS_MO=opt, BLOCK_P=16, BLOCK_N=128, HAS_STATES=opt, STORE_X=False)
        # MIMO's running angle (Angles and DT as given) and pseudo-steps (fp32)
        yield "mamba3 mimo running angle", m3_mimo_terms.running_angle_kernel, {**iop("ANG", "DT"), **f32("THETA_B", "THETA")}, \
            dict(BLOCK_T=64, BLOCK_S=32)
        yield "mamba3 mimo angle grad", m3_mimo_terms.angle_grad_kernel, \
            {**iop("ANG", "DT"), **f32("DTH", "AFTER", "DANG", "DDT")}, dict(BLOCK_T=64, BLOCK_S=32)
        # the ranks' inputs and their gradient in V's dtype (mimo.rank_dtype)
        yield "mamba3 mimo ranks", m3_mimo_terms.ranks_kernel, {**iop("V", "X"), **f32("MV")}, dict(R=4, BLOCK_T=64, BLOCK_P=64)
        yield "mamba3 mimo ranks bwd", m3_mimo_terms.ranks_bwd_kernel, {**iop("V", "DX"), **f32("MV", "DV", "DMV_PART")}, \
            dict(R=4, BLOCK_T=32, BLOCK_P=64)
        # the per-step weights: DT as given, Trap fp32 or as given; a packed row's sequence index with opt
        yield "mamba3 mimo weights", m3_weights.weights_kernel, \
            {**iop("DT", "TRAP"), **f32("GAMMA", "ENEXT", "SCALE"), "SEQ": "*i32"}, dict(HAS_SEQ=opt, BLOCK_T=1024)
        yield "mamba3 mimo weights bwd", m3_weights.weights_bwd_kernel, \
            {**iop("DT", "DDT"), **f32("TRAP", "DTRAP", "DG", "DE", "DS"), "SEQ": "*i32"}, \
            dict(HAS_SEQ=opt, HAS_DG=True, HAS_DE=opt, HAS_DS=True, BLOCK_T=1024)
        if not opt:
            yield "mamba3 mimo angle grad sums", m3_mimo_terms.angle_grad_sums_kernel, f32("DTH", "SUMS"), \
                dict(BLOCK_T=64, BLOCK_S=32)
            yield "mamba3 pseudo steps", m3_core.pseudo_steps_kernel, f32("SCALE", "A", "DTP", "CUM"), dict(R=4, Q=256)
        # MIMO's terms around the stages (kernels/mamba3/mimo.py), at the launchers' tiles, rank 4, N 128, P 64
        yield "mamba3 mimo prep", m3_mimo_terms.prep_fwd_kernel, \
            {**iop("Q", "K"), **f32("QB", "KB", "THETA", "SC", "SCC"), "QR": PTR[dot], "KR": PTR[dot]}, \
            dict(R=4, DOT=dot, HOIST=opt, BLOCK_T=16, BLOCK_H=64, MERGE=opt, BLOCK_R=4, FAST_TRIG=opt)
        # the stages hand dq~, dk~ over (one op since f30395e), the walk's in bf16 for 16-bit cores
        yield "mamba3 mimo prep bwd", m3_mimo_terms.prep_bwd_kernel, \
            {**iop("Q", "K", "DQ", "DK"), **f32("QB", "KB", "THETA", "DSC", "DSCC", "DQB", "DKB", "DTH"),
             **walk_kq("DQR", "DKR")}, \
            dict(R=4 if opt else 6, HOIST=opt, BLOCK_T=8, BLOCK_H=32, MERGE=opt, FAST_TRIG=opt)
        # every rank in a program (kernels/mamba3/mimo_prep_bwd.py), at its rule's 8 pairs and its tuner's widest 16
        yield "mamba3 mimo prep bwd ranks", m3_mimo_terms.prep_bwd_ranks_kernel, \
            {**iop("Q", "K", "DQ", "DK"), **f32("QB", "KB", "THETA", "DSC", "DSCC", "DQB", "DKB", "DTH"),
             **walk_kq("DQR", "DKR")}, \
            dict(R=4 if opt else 3, BLOCK_R=4, BLOCK_T=8, BLOCK_H=8 if opt else 16, FAST_TRIG=opt)
        yield "mamba3 mimo out", m3_mimo_out.out_fwd_kernel, \
            {**iop("V", "Z", "OUT"), **f32("Y", "SC", "SCC", "GAMMA", "ENEXT", "MV", "D", "MZ", "MO")}, \
            dict(R=4, HAS_D=opt, HAS_Z=opt, HAS_OUT=opt, BLOCK_T=16, BLOCK_P=64)
        yield "mamba3 mimo out bwd", m3_mimo_out.out_bwd_kernel, \
            {**iop("DOUT", "V", "Z", "DY"), **f32("Y", "SC", "SCC", "GAMMA", "ENEXT", "MV", "D", "MZ", "MO", "DSC", "DSCC",
                                                "DG", "DE", "DV", "DZ", "DMV", "DMZ", "DMO", "DD")}, \
            dict(R=4, HAS_D=opt, HAS_Z=opt, HAS_OUT=opt, HOIST=opt, BLOCK_T=8, BLOCK_P=64, BLOCK_R=4, MERGE=opt,
                 ITERS=8 if opt else 1, AHEAD=opt)


def main() -> int:
    """``--resources``: also print each compiled variant's registers and spill stack (no GPU needed); ``--aligned``
    compiles every variant with its pointers and sizes marked divisible by 16 (``compile_kernel``'s ``aligned``: a
    launch at the bench's shapes; the registers and spills it shows are those a GPU run gets there)."""
    if "--vectors" in sys.argv:
        return vector_check()
    show = "--resources" in sys.argv
    aligned = "--aligned" in sys.argv
    # ``--part i/n``: every n-th variant from the i-th (the test runs the parts side by side, one a core)
    part, parts = map(int, sys.argv[sys.argv.index("--part") + 1].split("/")) if "--part" in sys.argv else (0, 1)
    done = failed = 0
    every = itertools.chain(cases(), ssd_cases(), state_update_cases(), norm_cases(), conv1d_cases(), fused_step_cases(),
                            in_update_cases(), mamba2_step_cases(), mamba3_cases())
    for name, kernel, ptrs, flags in itertools.islice(every, part, None, parts):
        try:
            compiled = compile_kernel(kernel, ptrs, flags, aligned=aligned)
            done += 1
            if show:
                print(f"{name:28s} {resources(compiled):40s} {flags}")
        except Exception as e:  # report the innermost cause: the compiler's own message
            failed += 1
            while e.__cause__ is not None:
                e = e.__cause__
            print(f"FAILED {name} {flags}: {type(e).__name__}: {str(e)[:400]}")
    print(f"compiled {done}, failed {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
