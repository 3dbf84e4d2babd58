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
    shapes = [(2, 1024, 4), (1, 1024, 4), (1, 2048, 8), (1, 4096, 8), (2, 2048, 8),
              (4, 512, 4), (4, 1024, 8), (8, 256, 4), (8, 512, 8), (16, 128, 4)]
    full = [triton.Config({"BLOCK_R": r, "BLOCK_L": l}, num_warps=w) for r, l, w in shapes]
    return _space(full, triton.Config({"BLOCK_R": 2, "BLOCK_L": 16}, num_warps=1), everything)


def discretize_configs(everything: bool = False) -> list[triton.Config]:
    full = [triton.Config({"BLOCK_L": l}, num_warps=w) for l in (32, 16, 64, 128) for w in (4, 2, 8)]
    return _space(full, triton.Config({"BLOCK_L": 8}, num_warps=1), everything)
