"""Mamba-3's backward by the SSD's stages or in one launch (``SSM_TRITON_WALK_BWD``, ``kernels/ssd/walk_bwd.py``):
``python -m ssm_triton.bench.walk_choice``.

Times ``mamba3_siso_combined`` and ``mamba3_mimo`` fwd+bwd (``triton.testing.do_bench`` medians, ms; the peak
memory of a fwd+bwd, MiB) at the bench's shapes (B8 L4096 and b1 L2048; SISO also b1 L512 and b2 L4096; H32 P64
N128 bf16, D and Z, SISO chunks of 64, MIMO rank 4 in chunks of 16), the two routes alternating in one process. ``--kernels N``: each route's N
longest kernels of one fwd+bwd (torch.profiler). ``--peer``: mamba_ssm's Triton SISO on the same inputs (its
autotuning takes minutes the first time; with ``--kernels``, its longest kernels and its autotuners' choices
too). ``--chunk``: SISO at another chunk length (the walk's tiles are the chunk's: 32 steps hold fewer
registers). ``--forward``: the forward's routes instead (the one-launch forward's size rule
against it forced, ``SSM_TRITON_SSD_FUSED=1``): since 12-05 (this tool's figures) the rule takes it where the
(row, head) programs fill their waves 85% (rows to 16384 steps), Mamba-3's B8 H32 included, so the two rows there
should match. ``--kq``: the walk's
per-head ``dk, dq`` in bf16 (the default for 16-bit cores) against fp32 (``SSM_TRITON_WALK_KQ=32``). ``--ranks``:
MIMO's rank tensors ``x, dy, dx`` in bf16 (the default) against fp32 (``SSM_TRITON_MIMO_RANKS=32``). ``--prep N``:
SISO's prep backward in blocks of N steps against the forward's 16 (``SSM_TRITON_PREP_BWD_STEPS``). ``--ab
"WALK_SUB=64 bwd_dt.GATE_WARPS=4"``: the SSD kernels' module settings as they are against those (repeated: each
set of settings in turn, all in one process).
"""
import argparse

import torch
import triton.testing

import ssm_triton
from ssm_triton.bench.peers import load_past_package_init
from ssm_triton.bench.profile import print_kernels
from ssm_triton.bench.timing import peak_mb
from ssm_triton.bench.workloads_mamba3 import _inputs
from ssm_triton.kernels import tuning
from ssm_triton.kernels.mamba3 import launch as m3_launch
from ssm_triton.kernels.mamba3 import mimo
from ssm_triton.kernels.ssd import launch


def _ms(fn) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))


def _case(op, x: dict, chunk: int):
    dout = x.pop("g")
    leaves = [v for v in x.values() if v.requires_grad]

    def both():
        return torch.autograd.grad(op(**x, chunk_size=chunk), leaves, dout)
    return both


def _peer_configs() -> None:
    """The configs mamba_ssm's autotuners chose for its Mamba-3 kernels (warps, stages, register caps)."""
    import sys
    from triton.runtime.autotuner import Autotuner
    for mname, m in sorted(sys.modules.items()):
        if mname.startswith("mamba_ssm.ops.triton.mamba3"):
            for name, k in sorted(vars(m).items()):
                if isinstance(k, Autotuner) and getattr(k, "best_config", None) is not None:
                    print(f"    {name}: {k.best_config}")


class _Settings:
    """``--ab``: setting ``which`` to ``i`` (1, 2, ...) sets the module attributes the ``i``-th text names to its
    values (each parsed as its current value's type; a name ``module.NAME`` is one of ``ssm_triton.kernels.ssd``'s
    modules, or ``mamba3.module.NAME``, a bare one ``launch``'s), 0 puts every value found back."""
    def __init__(self, module, texts: list):
        import importlib
        self.configs = [{}]
        for text in texts:
            config = {}
            for pair in text.split():
                name, value = pair.split("=", 1)
                where, _, attr = name.rpartition(".")
                package = "ssm_triton.kernels" if where.startswith("mamba3") else "ssm_triton.kernels.ssd"
                owner = importlib.import_module(f"{package}.{where}") if where else module
                config[(owner, attr)] = type(getattr(owner, attr))(value)
            self.configs.append(config)
        self.configs[0] = {key: getattr(*key) for config in self.configs[1:] for key in config}

    def __setattr__(self, name, value):
        if name == "which":
            for (owner, attr), v in {**self.configs[0], **self.configs[value]}.items():
                setattr(owner, attr, v)
        else:
            object.__setattr__(self, name, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only the cases whose label ('SISO b8 L4096') contains this")
    parser.add_argument("--kernels", type=int, default=0, help="print this many of each fwd+bwd's longest kernels")
    parser.add_argument("--peer", action="store_true", help="mamba_ssm's Triton SISO in the same process")
    parser.add_argument("--chunk", type=int, default=0, help="SISO's chunk length (default 64; MIMO keeps 16)")
    parser.add_argument("--mimo-chunk", type=int, action="append", default=[],
                        help="MIMO's chunk length (default 16, the reference's 64 / R); repeated, each in turn")
    parser.add_argument("--forward", action="store_true",
                        help="the forward's routes instead: the rule's (SSM_TRITON_SSD_FUSED unset) against the "
                             "one-launch forward forced (=1), the default backward under both")
    parser.add_argument("--ranks", action="store_true",
                        help="MIMO's rank tensors (x, dy, dx) in V's dtype (the default) against fp32 "
                             "(SSM_TRITON_MIMO_RANKS=32), the default routes under both")
    parser.add_argument("--kq", action="store_true",
                        help="the walk's per-head dk, dq stored in bf16 (the default) against fp32 "
                             "(SSM_TRITON_WALK_KQ=32), the walk forced on under both")
    parser.add_argument("--prep", default="",
                        help="the prep backward in blocks of this many steps (SSM_TRITON_PREP_BWD_STEPS) against the "
                             "forward's (16), the default routes under both")
    parser.add_argument("--ab", action="append", default=[],
                        help="the SSD launcher's settings as they are against these (e.g. 'WALK_SUB=64 WALK_STAGES=2', "
                             "names of kernels/ssd/launch.py, or 'bwd_dt.GATE_ROWS=64': another module of "
                             "kernels/ssd), the default routes otherwise; repeated, each set in turn")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | fwd+bwd ms (do_bench medians), peak MiB")
    H, Hqk, P, N = 32, 1, 64, 128
    S = N // 4
    cases = [("SISO", b, L, None, args.chunk or 64) for b, L in ((8, 4096), (1, 2048), (1, 512), (2, 4096))]
    cases += [("MIMO", b, L, 4, c) for b, L in ((8, 4096), (1, 2048)) for c in args.mimo_chunk or [16]]
    peer = None
    if args.peer:
        mod, why = load_past_package_init("mamba_ssm.ops.triton.mamba3.mamba3_siso_combined")
        peer = mod.mamba3_siso_combined if mod is not None else None
        if peer is None:
            print(f"mamba_ssm skipped: {why}")
    for name, b, L, R, chunk in cases:
        label = f"{name} b{b} L{L} c{chunk}"
        # --ranks: MIMO's cases only; --prep: SISO's
        if args.only not in label or (args.ranks and R is None) or (args.prep and R is not None):
            continue
        x = _inputs("cuda", torch.bfloat16, b, L, H, Hqk, P, N, S, R)
        op = ssm_triton.mamba3_siso_combined if R is None else ssm_triton.mamba3_mimo
        both = _case(op, x, chunk)
        target = launch
        if args.ab:
            target, switch = _Settings(launch, args.ab), "which"
            # numbered: settings that share a first word stay apart in the listing
            names, words = ("as is", *(f"#{i} {text[:24]}" for i, text in enumerate(args.ab, 1))), \
                tuple(range(len(args.ab) + 1))
        elif args.prep:
            target, switch, names, words = m3_launch, "PREP_BWD_STEPS", ("prep bwd 16", f"prep bwd {args.prep}"), \
                ("16", args.prep)
        elif args.forward:
            switch, names, words = "FUSED", ("rule's fwd", "fused fwd "), ("", "1")
        elif args.ranks:
            target, switch, names, words = mimo, "RANKS", ("ranks fp32", "ranks bf16"), ("32", "1")
        elif args.kq:
            launch.WALK_BWD = "1"
            switch, names, words = "WALK_KQ", ("dk dq fp32", "dk dq bf16"), ("32", "1")
        else:
            switch, names, words = "WALK_BWD", ("stages    ", "one launch"), ("0", "1")
        for word in words * 2:   # twice each, alternating: a drift in the machine shows as a disagreement
            setattr(target, switch, word)
            ms = _ms(both)
            peak = peak_mb(both, torch.device("cuda"))
            print(f"{label:19s} {names[words.index(word)]}  fwd+bwd {ms:8.3f}  peak {peak:8.1f}", flush=True)
        if args.kernels:
            for word in words:
                setattr(target, switch, word)
                print(f"  {names[words.index(word)].strip()}:")
                print_kernels(both, args.kernels)
            # the tuners' choices (the prep backward's tiles have differed between machines of one kind)
            for entry, kw in sorted(tuning.choices().items()):
                if "mamba3" in entry:
                    print(f"  tuned: {entry[:100]} -> {kw}")
        launch.FUSED, launch.WALK_KQ, mimo.RANKS, m3_launch.PREP_BWD_STEPS = "", "", "", ""
        if args.ab:
            target.which = 0
        if peer is not None and R is None:
            peer_both = _case(peer, {**_inputs("cuda", torch.bfloat16, b, L, H, Hqk, P, N, S, None)}, chunk)
            ms = _ms(peer_both)
            print(f"{label:19s} mamba_ssm   fwd+bwd {ms:8.3f}  peak {peak_mb(peer_both, torch.device('cuda')):8.1f}",
                  flush=True)
            if args.kernels:
                print("  mamba_ssm:")
                print_kernels(peer_both, args.kernels)
                _peer_configs()
        launch.WALK_BWD = ""
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        print(f"{label:19s} walks its rows in {launch.walk_segments(b * H, -(-L // chunk), sms)} segments", flush=True)


if __name__ == "__main__":
    main()
