"""Autotuning: search spaces, the tuned launch, the on-disk cache, pinning.

Two kinds of space:

* **Static** (``scan_configs``, ``discretize_configs``): a fixed list on a ``@triton.autotune`` kernel,
  keyed on power-of-two buckets of the sizes that matter; launched through :func:`launch`.
* **Per problem** (selective scan, decode step, conv1d, RMSNorm): the launcher builds the candidates
  from the problem's sizes, the first being the size rule measured on the H100, and
  :func:`launch_tuned` wraps the plain kernel in ``triton.autotune`` over them, once per key. Tile
  sizes that shape a scratch buffer stay with the rule; the rest (tiles, warps) is tuned.

Rules that hold for both:

* Under the Triton interpreter there is nothing to tune and every extra config costs minutes, so each
  space collapses to one small config — small enough that tests with short sequences still cross
  several tiles and leave rows over.
* ``SSM_TRITON_AUTOTUNE=0`` pins every kernel to its default config (the first of its space): no
  tuning runs, launches are reproducible. The property tests use it; ``tests/test_configs.py`` runs
  every config of every space explicitly, so tuned choices are checked too.
* :func:`pin` fixes one kernel's config for the process (``pin("selective_scan_bwd", BLOCK_D=2,
  num_warps=1)``); :func:`unpin` undoes it.
* Choices are remembered for the process and written to a JSON file per device and Triton version
  (``$SSM_TRITON_TUNE_CACHE``, default ``~/.cache/ssm_triton``; ``SSM_TRITON_TUNE_CACHE=0`` keeps them
  in memory only). Deleting the file, or ``SSM_TRITON_RETUNE=1``, tunes again.
* Nothing is tuned while a CUDA graph is being captured (timing would break the capture): the default
  config runs, and the next eager call tunes.
"""
import functools
import json
import os
from pathlib import Path

import torch
import triton
import triton.testing

from .host import next_power_of_2


@functools.cache
def interpreting() -> bool:
    # read once: Triton picks the interpreter when it is imported, so the variable cannot change it later
    return os.environ.get("TRITON_INTERPRET", "0").strip() not in ("", "0")


def memoized_space(build):
    """Caches a launcher's candidate configs per arguments and per mode (interpreted or compiled): a
    space is a pure function of both, and rebuilding its ``triton.Config`` objects at every launch
    cost more host time than the rest of the launch. The mode is read through the defining module's
    ``interpreting`` so that tests which patch it there get the other space. Returns tuples."""
    cache: dict = {}
    mode = build.__globals__

    @functools.wraps(build)
    def space(*args, **kwargs):
        key = (mode["interpreting"](), args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = tuple(build(*args, **kwargs))
        return cache[key]
    return space


def autotuning() -> bool:
    return not interpreting() and os.environ.get("SSM_TRITON_AUTOTUNE", "1").strip() not in ("", "0")


def bucket(n: int) -> int:
    return next_power_of_2(max(int(n), 1))


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
_pinned: dict[str, dict] = {}
_disk: dict | None = None


def _launch_kwargs(config: triton.Config) -> dict:
    return {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}


# every name a launcher tunes under (launch derives the static kernels' from their functions)
TUNABLE = ("conv1d_bwd_dx", "conv1d_bwd_pre", "conv1d_fwd", "conv1d_update", "discretize_fwd_kernel",
           "rmsnorm_bwd", "rmsnorm_fwd", "scan_bwd_kernel", "scan_fwd_kernel", "selective_scan_bwd",
           "selective_scan_fwd", "ssd_bwd", "ssd_fwd", "state_update")


def pin(name: str, **launch_kwargs) -> None:
    """Run kernel ``name`` (one of :data:`TUNABLE`) with these launch keywords (its tile constexprs,
    ``num_warps``, ``num_stages``; for ``ssd_fwd`` / ``ssd_bwd`` the tile plan's fields) instead of
    tuning; keywords left out keep the size rule's value."""
    if name not in TUNABLE:
        raise ValueError(f"pin: name must be one of {', '.join(TUNABLE)}; got {name!r}")
    _pinned[name] = dict(launch_kwargs)


def unpin(name: str | None = None) -> None:
    """Forget one pin, or all of them."""
    if name is None:
        _pinned.clear()
    else:
        _pinned.pop(name, None)


_NAMES: set[str] = set()


def tunable_names() -> list[str]:
    """The kernels launched so far in this process, by the names :func:`pin` takes."""
    return sorted(_NAMES)


def register(name: str) -> str:
    assert name in TUNABLE, f"{name} is missing from tuning.TUNABLE"
    _NAMES.add(name)
    return name


def _cache_path() -> Path | None:
    where = os.environ.get("SSM_TRITON_TUNE_CACHE", "").strip()
    if where == "0" or not torch.cuda.is_available():
        return None
    device = torch.cuda.get_device_name().replace(" ", "_").replace("/", "_")
    root = Path(where) if where else Path.home() / ".cache" / "ssm_triton"
    return root / f"tuned-{device}-triton{triton.__version__}.json"


def _load_disk() -> dict:
    global _disk
    if _disk is None:
        _disk = {}
        path = _cache_path()
        if path is not None and path.exists() and os.environ.get("SSM_TRITON_RETUNE", "0") in ("", "0"):
            try:
                _disk = json.loads(path.read_text())
            except (OSError, ValueError):
                _disk = {}
    return _disk


def _save_disk(entry: str, kw: dict) -> None:
    disk = _load_disk()
    disk[entry] = kw
    path = _cache_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(disk, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:  # a read-only home: keep the choice for this process only
        pass


def _from_disk(entry: str, allowed: list[dict]):
    """The cached choice for ``entry`` if it is still one of ``allowed`` (a cache written by another
    version of the spaces is ignored, not trusted)."""
    kw = _load_disk().get(entry)
    return kw if kw is not None and kw in allowed else None


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _recall(entry: str, allowed: list[dict]):
    """The choice remembered for ``entry`` in this process or on disk, if it is one of ``allowed``."""
    kw = _chosen.get(entry) or _from_disk(entry, allowed)
    if kw is not None:
        _chosen[entry] = kw
    return kw


def _remember(entry: str, kw: dict) -> dict:
    _chosen[entry] = kw
    _save_disk(entry, kw)
    return kw


def launch(kernel, grid, key: tuple, *args, config: triton.Config | None = None, **constexprs) -> None:
    """Launch an autotuned ``kernel`` (a ``triton.runtime.Autotuner`` over a static space), under the
    name of its function without underscores (``scan_fwd_kernel``...) for :func:`pin` and the cache.

    ``grid(meta) -> tuple`` as for Triton; ``key`` names the problem class the choice is valid for;
    ``config`` forces a config (tests use it to run each one).
    """
    name = register(kernel.fn.__name__.strip("_"))
    if config is not None:
        kw = _launch_kwargs(config)
    elif name in _pinned:
        kw = {**_launch_kwargs(kernel.configs[0]), **_pinned[name]}
    else:
        entry = f"{name}|{key}"
        kw = _recall(entry, [_launch_kwargs(c) for c in kernel.configs])
        if kw is None and len(kernel.configs) > 1 and not _capturing():
            kernel[grid](*args, **constexprs)
            _remember(entry, _launch_kwargs(kernel.best_config))
            return
        # one config, or under graph capture: the default now, tuned at the next eager call
        kw = kw or _launch_kwargs(kernel.configs[0])
    kernel.fn.run(*args, grid=grid(kw), warmup=False, **constexprs, **kw)


def candidates(rule: dict, alternatives: list[dict], num_warps: int, num_stages: int = 3) -> list[triton.Config]:
    """``rule`` (the measured size rule's launch keywords) first, then each alternative (keywords that
    differ from the rule), duplicates dropped. ``num_warps`` / ``num_stages`` may appear in any of them;
    ``num_stages`` defaults to Triton's own default, which the rules were measured with."""
    out, seen = [], set()
    for alt in [{}] + alternatives:
        kw = {**rule, **alt}
        w, st = kw.pop("num_warps", num_warps), kw.pop("num_stages", num_stages)
        ident = (tuple(sorted(kw.items())), w, st)
        if ident not in seen:
            seen.add(ident)
            out.append(triton.Config(kw, num_warps=w, num_stages=st))
    return out


def override(space: list[triton.Config], num_warps: int | None = None, **kwargs) -> triton.Config | None:
    """The default config of ``space`` with the launcher's explicit overrides (tests, sweeps): the given
    keywords that are not None. None when nothing is overridden, so the launch is tuned."""
    given = {k: v for k, v in kwargs.items() if v is not None}
    if num_warps is None and not given:
        return None
    base = space[0]
    return triton.Config({**base.kwargs, **given}, num_warps=num_warps or base.num_warps, num_stages=base.num_stages)


def launch_tuned(name: str, fn, grid, key: tuple, args: tuple, constexprs: dict, space: list[triton.Config],
                 restore: tuple[str, ...] = (), zero: tuple[str, ...] = (), fixed: tuple[str, ...] = (),
                 config: triton.Config | None = None) -> dict:
    """Launch the plain ``@triton.jit`` kernel ``fn`` with the best config of ``space`` for ``key``.

    ``space[0]`` is the default (size rule). ``restore`` names arguments the kernel updates in place
    and ``zero`` those it accumulates into: the tuner restores / re-zeroes them around each timed run,
    so tuning leaves the same result as one launch. ``fixed`` names keywords a pin may not change
    (they size the launcher's buffers). Returns the launch keywords used.
    """
    register(name)
    if config is not None:
        kw = _launch_kwargs(config)
    elif name in _pinned:
        pinned = {k: v for k, v in _pinned[name].items() if k not in fixed and k not in constexprs}
        kw = {**_launch_kwargs(space[0]), **pinned}
    elif not autotuning() or len(space) == 1:
        kw = _launch_kwargs(space[0])
    else:
        entry = f"{name}|{key}"
        kw = _recall(entry, [_launch_kwargs(c) for c in space])
        if kw is None and not _capturing():
            tuner = triton.autotune(configs=list(space), key=[], restore_value=list(restore) or None,
                                    reset_to_zero=list(zero) or None)(fn)
            tuner[grid](*args, **constexprs)
            return _remember(entry, _launch_kwargs(tuner.best_config))
        kw = kw or _launch_kwargs(space[0])  # under graph capture: the default, tuned at the next eager call
    fn.run(*args, grid=grid(kw), warmup=False, **constexprs, **kw)
    return kw


def tune_call(name: str, key: tuple, options: list[dict], run) -> dict:
    """Pick among ``options`` (keyword sets for a whole pipeline of launches, such as the SSD stages'
    tile plan) by timing ``run(option)``; ``options[0]`` is the size rule. ``run`` must leave no trace
    a second call would see (it allocates its outputs). Same pins, cache and switches as
    :func:`launch_tuned`; an option that fails to compile or launch is skipped."""
    register(name)
    if name in _pinned:
        return {**options[0], **_pinned[name]}
    if not autotuning() or len(options) == 1 or _capturing():
        return options[0]
    entry = f"{name}|{key}"
    best = _recall(entry, options)
    if best is None:
        timed = []
        for i, option in enumerate(options):
            try:
                timed.append((triton.testing.do_bench(lambda: run(option), warmup=5, rep=20), i))
            except Exception:  # noqa: BLE001 - e.g. out of shared memory on a smaller GPU
                continue
        best = _remember(entry, options[min(timed)[1]] if timed else options[0])
    return best
