"""Autotune search spaces, one function per kernel family.

* Under the Triton interpreter there is nothing to tune and every extra config costs minutes, so each
  space collapses to one small config — small enough that tests with short sequences still cross
  several tiles and leave rows over.
* ``SSM_TRITON_AUTOTUNE=0`` pins every kernel to its default config (the first of its space): no
  tuning runs, launches are reproducible. The property tests use it; ``tests/test_configs.py`` runs
  every config of every space explicitly, so tuned choices are checked too.
* Autotune keys are power-of-two buckets of the sizes that matter, so a new length re-tunes only when
  it falls in a new bucket. Triton caches the choice per process.
"""
import os

import triton


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip() not in ("", "0")


def autotuning() -> bool:
    return not interpreting() and os.environ.get("SSM_TRITON_AUTOTUNE", "1").strip() not in ("", "0")


def bucket(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _space(full: list[triton.Config], interpreter: triton.Config, everything: bool) -> list[triton.Config]:
    if interpreting():
        return [interpreter]
    return full if (everything or autotuning()) else full[:1]


def scan_configs(everything: bool = False) -> list[triton.Config]:
    # (rows per program, tile length, warps); the first is the default
    # The default, 1x2048 with 8 warps, ranked in the top four of these ten in 9 of the 12
    # (size, dtype, direction) cases of the H100 sweep (python -m ssm_triton.bench.sweep, 2026-11-23),
    # more than any other; in the other three the tuned choice is faster.
    shapes = [(1, 2048, 8), (1, 1024, 4), (1, 4096, 8), (2, 1024, 4), (2, 2048, 8),
              (4, 512, 4), (4, 1024, 8), (8, 256, 4), (8, 512, 8), (16, 128, 4)]
    full = [triton.Config({"BLOCK_R": r, "BLOCK_L": l}, num_warps=w) for r, l, w in shapes]
    return _space(full, triton.Config({"BLOCK_R": 2, "BLOCK_L": 16}, num_warps=1), everything)


def discretize_configs(everything: bool = False) -> list[triton.Config]:
    full = [triton.Config({"BLOCK_L": l}, num_warps=w) for l in (32, 16, 64, 128) for w in (4, 2, 8)]
    return _space(full, triton.Config({"BLOCK_L": 8}, num_warps=1), everything)


# (kernel, key) -> launch keywords of the config the autotuner chose. Triton's autotuner costs tens
# of microseconds of host time per call even on a cache hit, as much as the kernel on small
# problems, so after the first call for a key the launchers call the plain kernel with them.
_chosen: dict = {}


def _launch_kwargs(config: triton.Config) -> dict:
    return {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}


def launch(kernel, grid, key: tuple, *args, config: triton.Config | None = None, **constexprs) -> None:
    """Launch an autotuned ``kernel`` (a ``triton.runtime.Autotuner``).

    ``grid(meta) -> tuple`` as for Triton; ``key`` names the problem class the choice is valid for;
    ``config`` forces a config (tests use it to run each one).
    """
    if config is not None:
        kw = _launch_kwargs(config)
    else:
        kw = _chosen.get((kernel, key))
        if kw is None:
            if len(kernel.configs) > 1:
                kernel[grid](*args, **constexprs)
                _chosen[(kernel, key)] = _launch_kwargs(kernel.best_config)
                return
            kw = _chosen[(kernel, key)] = _launch_kwargs(kernel.configs[0])
    kernel.fn.run(*args, grid=grid(kw), warmup=False, **constexprs, **kw)
