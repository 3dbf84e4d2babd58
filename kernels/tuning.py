"""Launching kernels: one object per kernel, declared beside it, and the autotuning behind it.

* :class:`Kernel` wraps a ``@triton.jit`` function that runs with fixed launch parameters. It is
  launched with keyword arguments only; an absent optional tensor is passed as ``None`` and the
  ``HAS_*`` flag that states its presence is derived from the declared ``flags`` mapping (Triton
  specialises a ``None`` argument as a constexpr, so no dummy pointer is needed).
* :class:`TunableKernel` adds a name (what :func:`pin` and the cache use), a **size rule**
  ``rule(problem, mode) -> launch keywords``, its **alternatives** (overrides of the rule, tuned over on
  a GPU), a **cache key** (size buckets, so a new length does not tune again) and a **grid**. Its
  :meth:`~TunableKernel.launch` resolves the launch keywords and grid once per problem and reuses them:
  a repeated call is a dictionary lookup and the launch.
* :class:`TunablePlan` is the same choice for a whole pipeline of launches (the SSD stages' tile
  plan), picked by timing the pipeline end to end.

The ``problem`` each rule sees is a hashable tuple of what the rule and grid need (sizes, flags); the
:class:`Mode` tells it whether kernels run compiled or in the interpreter and how many SMs the device
has: hardware facts come from the device, not from constants.

Rules that hold for every tunable:

* Under the Triton interpreter nothing is tuned (each config costs minutes there) and rules return
  small tiles, so tests with short sequences still cross several tiles and leave rows over.
* ``SSM_TRITON_AUTOTUNE=0`` pins every kernel to its rule: no tuning runs, launches are reproducible.
  The property tests use it; ``tests/test_configs.py`` runs every candidate of every space explicitly.
* :func:`pin` fixes one kernel's launch keywords for the process; :func:`unpin` undoes it.
* Choices are remembered for the process and written to a JSON file per device and Triton version
  (``$SSM_TRITON_TUNE_CACHE``, default ``~/.cache/ssm_triton``; ``SSM_TRITON_TUNE_CACHE=0`` keeps them
  in memory only). Deleting the file, or ``SSM_TRITON_RETUNE=1``, tunes again.
* Nothing is tuned while a CUDA graph is being captured (timing would break the capture): the rule
  runs, and the next eager call tunes.
"""
from __future__ import annotations

import functools
import json
import operator
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import triton
import triton.testing

try:
    from triton import knobs as _knobs
except ImportError:  # Triton before 3.4 has no knobs; the lean path is then off
    _knobs = None

from .host import next_power_of_2, pow2_divisor


@functools.cache
def interpreting() -> bool:
    # read once: Triton picks the interpreter when it is imported, so the variable cannot change it later
    return os.environ.get("TRITON_INTERPRET", "0").strip() not in ("", "0")


@dataclass(frozen=True)
class Mode:
    """How kernels run: ``interpreted`` (Triton's CPU interpreter) or compiled for a GPU with
    ``sm_count`` streaming multiprocessors."""
    interpreted: bool
    sm_count: int


INTERPRETED = Mode(True, 4)


def interpreted_tile(extent: int, floor: int) -> int:
    """A tile along one axis under the interpreter: half the extent's power of two, at least ``floor``. The
    interpreter's cost is per operation of a program, nearly blind to the tile's size, so few large programs
    run fastest (CI runs every test through it); halving keeps two programs or more wherever the extent
    exceeds ``floor``, so the tests still cross program boundaries and masked edges."""
    return max(floor, next_power_of_2(max(extent, 1)) // 2)


H100 = Mode(False, 132)   # tests build the GPU spaces with it; the H200 has the same count
_modes: dict = {}


def run_mode(device: torch.device | None = None) -> Mode:
    """The mode kernels on ``device`` (default: the current CUDA device) run in; cached per device."""
    if interpreting():
        return INTERPRETED
    index = device.index if device is not None and device.index is not None else torch.cuda.current_device()
    mode = _modes.get(index)
    if mode is None:
        mode = _modes[index] = Mode(False, torch.cuda.get_device_properties(index).multi_processor_count)
    return mode


def autotuning() -> bool:
    return not interpreting() and os.environ.get("SSM_TRITON_AUTOTUNE", "1").strip() not in ("", "0")


def bucket(n: int) -> int:
    return next_power_of_2(max(int(n), 1))


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


@functools.cache
def _lean_env() -> bool:
    # on by default since the H200 A/B of 2026-12-02 (bench/overhead.py --ab, Triton 3.6): 5-12 us saved per
    # launch, 40-70 us per SSD forward, 200-290 us per SSD fwd+bwd; SSM_TRITON_LEAN=0 turns it off
    return (_knobs is not None and not interpreting()
            and os.environ.get("SSM_TRITON_LEAN", "1").strip() not in ("", "0"))


LEAN: bool | None = None   # set True/False to override SSM_TRITON_LEAN in this process (bench/overhead.py --ab)


def _lean_enabled() -> bool:
    return _lean_env() if LEAN is None else (LEAN and _knobs is not None and not interpreting())


def _hooks_active() -> bool:
    """Whether a Triton launch hook (a profiler's) is set: the lean path would bypass it. Triton 3.6 keeps
    an empty ``HookChain`` where later versions keep None."""
    for hook in (_knobs.runtime.launch_enter_hook, _knobs.runtime.launch_exit_hook):
        if hook is not None and getattr(hook, "calls", True):
            return True
    return False


def _raw_stream(device: int) -> int:
    """The current CUDA stream's handle, as Triton's own launcher reads it (``torch.cuda.current_stream``
    builds a Python Stream object each call: several microseconds)."""
    return torch._C._cuda_getCurrentRawStream(device)


def _lean_key(values, constexpr) -> tuple:
    """What of each argument Triton's compiled kernel depends on. A constexpr: its value. A tensor: its
    dtype and whether its address is 16-byte aligned. An int: whether it is 1, a multiple of 16, and
    fits in 32 bits. A float: nothing but its type. Two calls with equal keys run the same binary. One
    loop, no call per argument: this runs on every launch (27% less host time than a call per
    argument, 2026-12-03)."""
    key = []
    append = key.append
    tensor = torch.Tensor
    for value, const in zip(values, constexpr):
        if const:
            append(value)
            continue
        kind = type(value)
        if kind is int:
            append((value == 1, value % 16 == 0, -0x80000000 <= value <= 0x7FFFFFFF))
        elif value is None or kind is bool:
            append(value)
        elif kind is float:
            append(float)
        elif isinstance(value, tensor):
            append((value.dtype, value.data_ptr() % 16 == 0))
        else:
            raise TypeError(f"no lean key for {kind.__name__}")  # the launcher falls back to Triton's own path
    return tuple(key)


_SCALARS = (int, float, bool, type(None))
_BOUND_LIMIT = 4096   # compiled launches kept per kernel (each key names its sizes and strides)
_PLANNED = object()   # heads a _KeyPlan key: none of _lean_key's can equal it


def _getter(idx: tuple):
    """``values -> tuple of values[i] for i in idx``, one C call (operator.itemgetter) for two or more."""
    if len(idx) > 1:
        return operator.itemgetter(*idx)
    if len(idx) == 1:
        i = idx[0]
        return lambda values: (values[i],)
    return lambda values: ()


class _KeyPlan:
    """Where a kernel's arguments of each kind sit, learned from its first lean launch, so that a launch's
    key takes two C-level gathers and a loop over the pointers only: the constexpr values; the scalars
    (ints, floats, bools) by value, a finer key than :func:`_lean_key`'s (equal values specialise alike);
    per pointer its dtype and 16-byte alignment, or None. A launch whose scalars change type, or whose
    pointer slot holds something else, takes :func:`_lean_key` (both keys name the same binaries; they
    only index the cache differently)."""
    __slots__ = ("consts", "scalars", "scalar_types", "pointers")

    @staticmethod
    def make(values, constexpr) -> "_KeyPlan | None":
        consts, scalars, pointers = [], [], []
        for i, (value, const) in enumerate(zip(values, constexpr)):
            if const:
                consts.append(i)
            elif value is None or isinstance(value, torch.Tensor):
                pointers.append(i)
            elif type(value) in _SCALARS:
                scalars.append(i)
            else:
                return None
        plan = _KeyPlan()
        plan.consts, plan.scalars, plan.pointers = _getter(tuple(consts)), _getter(tuple(scalars)), tuple(pointers)
        plan.scalar_types = tuple(type(values[i]) for i in scalars)
        return plan

    def key(self, values, constexpr) -> tuple:
        scalars = self.scalars(values)
        if tuple(map(type, scalars)) != self.scalar_types:
            return _lean_key(values, constexpr)
        pointers = []
        append = pointers.append
        for i in self.pointers:
            value = values[i]
            if value is None:
                append(None)
            elif isinstance(value, torch.Tensor):
                append((value.dtype, value.data_ptr() % 16 == 0))
            else:
                return _lean_key(values, constexpr)
        return (_PLANNED, self.consts(values), scalars, tuple(pointers))


# the strides' divisors handed to kernels that take them (hints.py); SSM_TRITON_STRIDE_HINTS=0 hands 1 (the A/B)
STRIDE_HINTS = os.environ.get("SSM_TRITON_STRIDE_HINTS", "1") != "0"


class Kernel:
    """A ``@triton.jit`` kernel launched with keyword arguments.

    ``flags`` maps a constexpr flag to the argument whose presence it states
    (``{"HAS_D": "D"}``: ``HAS_D`` is ``D is not None``); the launcher fills those flags in. ``hints`` maps a
    constexpr to the stride whose power-of-two divisor it carries (``hints.py``), filled in likewise.

    Compiled launches are **lean**: the first call with a given specialization goes through Triton's
    ``kernel[grid]`` (which compiles, or finds the binary in its cache) and the compiled kernel it returns
    is kept under a key of what the binary depends on (:func:`_lean_key` of the arguments, the launch
    options, the device); later calls with that key hand the arguments straight to the compiled
    kernel's launcher, skipping Triton's per-call binding and cache-key work (5-12 us a launch on the H200's
    host). ``SSM_TRITON_LEAN=0`` turns it off; so does a Triton launch hook (profilers), since the lean path
    would bypass it.
    """

    def __init__(self, fn, flags: dict[str, str] | None = None, hints: dict[str, str] | None = None):
        self.fn = fn
        self.flags = tuple((flags or {}).items())
        self.hints = tuple((hints or {}).items())
        self._bound: dict = {}
        self._key_plan: _KeyPlan | None = None
        params = getattr(fn, "params", None)
        self._params = (tuple(p.name for p in params), tuple(bool(p.is_constexpr) for p in params),
                        frozenset(p.name for p in params)) if params else None
        # parameters with a default (``NO_GATHER: tl.constexpr = False``): a launch that leaves one out takes the
        # lean path too, the default in its place (Triton's binder puts it there for the first launch's binary)
        self._defaults = {p.name: p.default for p in params or () if getattr(p, "has_default", False)}

    def with_flags(self, args: dict) -> dict:
        for flag, arg in self.flags:
            args[flag] = args[arg] is not None
        for hint, arg in self.hints:   # the power of two dividing a stride (hints.py)
            args[hint] = pow2_divisor(args[arg]) if STRIDE_HINTS else 1
        return args

    def __call__(self, grid: tuple, **args) -> None:
        self._launch(grid, self.with_flags(args), {})

    def _lean_values(self, args: dict, kw: dict):
        """``(argument values in the kernel's order, the key of the binary they select)``, or None where the
        lean path cannot take them (a parameter left out that has no default, an argument :func:`_lean_key` has
        no key for)."""
        names, constexpr, known = self._params
        given = {**kw, **args}
        try:
            values = list(map(given.__getitem__, names))
        except KeyError:   # a parameter left out: its default, if it has one
            try:
                values = list(map({**self._defaults, **given}.__getitem__, names))
            except KeyError:
                return None
        try:
            plan = self._key_plan
            if plan is None:
                plan = self._key_plan = _KeyPlan.make(values, constexpr) or False
            lean = plan.key(values, constexpr) if plan else _lean_key(values, constexpr)
            # launch options (num_warps, num_stages) may come with the arguments or with the tuned keywords
            key = (torch.cuda.current_device(),
                   () if args.keys() <= known else tuple((k, v) for k, v in args.items() if k not in known),
                   tuple((k, v) for k, v in kw.items() if k not in known), lean)
        except TypeError:
            return None
        return values, key

    def _launch(self, grid: tuple, args: dict, kw: dict) -> None:
        rec = _recording.rec
        if rec is not None and not rec.paused:   # a replay's recording (replay.py): launch, then note it
            rec.paused += 1
            try:
                self._launch_now(grid, args, kw)
            finally:
                rec.paused -= 1
            if rec.ok:
                rec.launched(self, grid, args, kw)
            return
        self._launch_now(grid, args, kw)

    def _launch_now(self, grid: tuple, args: dict, kw: dict) -> None:
        if self._params is None or not _lean_enabled():
            self.fn.run(grid=grid, warmup=False, **args, **kw)
            return
        lean = self._lean_values(args, kw)
        if lean is None:
            self.fn.run(grid=grid, warmup=False, **args, **kw)
            return
        values, key = lean
        compiled = self._bound.get(key)
        if compiled is None or _hooks_active():
            compiled = self.fn.run(grid=grid, warmup=False, **args, **kw)
            if compiled is not None and not hasattr(compiled, "result"):
                if len(self._bound) >= _BOUND_LIMIT:   # keyed by sizes: a server seeing every length
                    self._bound.clear()
                self._bound[key] = compiled
            return
        self._lean(compiled, grid, _raw_stream(key[0]), values)

    @staticmethod
    def _lean(compiled, grid, stream, values) -> None:
        n = len(grid)
        compiled.run(grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1, stream, compiled.function,
                     compiled.packed_metadata, None, None, None, *values)


class Bound:
    """One launch of a :class:`TunableKernel` fixed in everything but a few tensor arguments: its launch
    keywords, grid, compiled binary and every other argument resolved once, so that issuing it again (a
    decode step, token after token) costs the compiled launcher's call and little else. Made by
    :meth:`TunableKernel.bind`; ``bound(stream, *tensors)`` launches on the raw CUDA ``stream`` with
    ``tensors`` in the order of ``vary``. A tensor the binary was not compiled for (another dtype, an
    address not 16-byte aligned), a launch hook (a profiler) or a tuning change since the binding
    (:func:`forget`, :func:`pin`) sends the call through :meth:`TunableKernel.launch` instead. Each call
    fills a copy of the bound values with the tensors' addresses, so the binding keeps no caller's tensor."""
    __slots__ = ("kernel", "problem", "args", "vary", "compiled", "grid", "values", "slots", "dtypes", "generation")

    def __call__(self, stream, *tensors) -> None:
        rec = _recording.rec
        if rec is not None:   # an op plan's launch inside a replay's recording: not recordable
            rec.refuse()
        if self.generation == _generation and not _hooks_active():
            values = self.values.copy()
            for slot, dtype, t in zip(self.slots, self.dtypes, tensors):
                at = t.data_ptr()
                if t.dtype is not dtype or at % 16:
                    break
                values[slot] = at   # an address: the launcher asks the driver about a tensor, not about an int
            else:
                Kernel._lean(self.compiled, self.grid, stream, values)
                return
        self.kernel.launch(self.problem, **self.args, **dict(zip(self.vary, tensors)))


class Launch:
    """One launch of a plan (a cached sequence of launches, ``ops/fused_step.py``, ``ops/selective_scan.py``):
    through the tuner's path (which compiles, and tunes on a GPU) until it can be bound, then through its
    :class:`Bound` form; ``vary`` names the tensors given at each call, ``args`` the rest. In the interpreter it
    is never bound, so tests run a plan's bookkeeping through the tuner's path."""
    __slots__ = ("kernel", "problem", "args", "vary", "bound")

    def __init__(self, kernel, problem, args, vary):
        self.kernel, self.problem, self.vary, self.bound = kernel, problem, vary, None
        self.args = {k: v for k, v in args.items() if k not in vary}

    def __call__(self, stream, *tensors):
        bound = self.bound
        if bound is not None and bound.generation == _generation:
            bound(stream, *tensors)
            return
        given = dict(zip(self.vary, tensors))
        self.kernel.launch(self.problem, **self.args, **given)
        self.bound = self.kernel.bind(self.problem, self.vary, **self.args, **given)

    def at(self, stream, addresses) -> bool:
        """Launch through the binding with ``addresses`` (ints, 16-byte aligned, in ``vary``'s order): Triton's
        launcher asks the driver about every tensor it is given (``cuPointerGetAttribute``), not about an int.
        False, launching nothing, where the binding is missing or stale, a launch hook is set or a replay is
        being recorded: the caller then launches with tensors."""
        bound = self.bound
        if bound is None or bound.generation != _generation or _recording.rec is not None or _hooks_active():
            return False
        values = bound.values.copy()   # a copy: nothing of this call is left in the binding
        for slot, at in zip(bound.slots, addresses):
            values[slot] = at
        grid = bound.grid
        compiled = bound.compiled
        compiled.run(grid[0], grid[1], grid[2], stream, compiled.function, compiled.packed_metadata, None, None, None,
                     *values)
        return True


def device_index(device: torch.device) -> int:
    """A CUDA device's index (the current one where the device names none), -1 for any other: what a plan asks
    ``_raw_stream`` for."""
    if device.type != "cuda":
        return -1
    return device.index if device.index is not None else torch.cuda.current_device()


def addresses(tensors) -> list | None:
    """Each tensor's address, or None where one is not 16-byte aligned (a binary compiled for aligned
    arguments cannot take it)."""
    out = []
    for t in tensors:
        at = t.data_ptr()
        if at % 16:
            return None
        out.append(at)
    return out


class OneLaunch:
    """An op plan of one :class:`Launch` (``ssm_triton/ops/_plans.py``): ``plan(tensors) -> outputs`` allocates
    the outputs (``outs``: ``(shape, dtype)`` each, on ``device``) and launches with ``tensors[i]`` for ``i`` in
    ``take`` (the launch's leading ``vary`` names), then the outputs (its trailing ones)."""
    __slots__ = ("launch", "take", "outs", "device", "dev")

    def __init__(self, launch: Launch, take: tuple, outs: tuple, device: torch.device):
        self.launch, self.take, self.outs, self.device = launch, take, outs, device
        self.dev = device_index(device)

    def __call__(self, tensors) -> list:
        made = [torch.empty(shape, device=self.device, dtype=dtype) for shape, dtype in self.outs]
        given = [tensors[i] for i in self.take]
        stream = _raw_stream(self.dev) if self.dev >= 0 else None
        # the plan's key fixed every dtype and device: only an input's alignment can differ from the binary's
        ats = addresses(given) if self.launch.bound is not None else None
        if ats is None or not self.launch.at(stream, ats + [t.data_ptr() for t in made]):
            self.launch(stream, *given, *made)
        return made


# ---- choices: pins, the process memory and the disk cache ----

_REGISTRY: dict[str, "_Choice"] = {}
_generation = 0   # bumped by forget(): Bound launches (and replays) made before it resolve again


class _Recording(threading.local):
    rec = None   # the replay being recorded in this thread (replay.py), if any; a class default reads in ~50 ns
    # where getattr(local, "rec", None) on a missing attribute took ~400 ns (an exception inside)


_recording = _Recording()
_pinned: dict[str, dict] = {}
_chosen: dict[str, dict] = {}
_disk: dict | None = None


def recorder():
    """The replay being recorded in this thread (``replay.py``), or None."""
    return _recording.rec


def choices() -> dict:
    """The launch keywords chosen so far in this process (tuned, or read from the disk cache), by cache entry
    (kernel name and problem key): what a profile reports beside its kernels' times."""
    return dict(_chosen)


def tunable_names() -> list[str]:
    """Every name :func:`pin` takes (one per tunable kernel or plan)."""
    return sorted(_REGISTRY)


def forget() -> None:
    """Drop every resolved launch (pins, tuning switches or caches changed): the next call resolves again,
    and every :class:`Bound` launch made before goes back through the tuner's path."""
    global _generation
    _generation += 1
    _chosen.clear()
    for choice in _REGISTRY.values():
        choice.resolved.clear()
        choice._spaces.clear()     # the alternatives may read switches that changed
        choice._entries.clear()


def pin(name: str, **launch_kwargs) -> None:
    """Run tunable ``name`` (see :func:`tunable_names`) with these launch keywords (its tile constexprs,
    ``num_warps``, ``num_stages``; for ``ssd_fwd`` / ``ssd_bwd`` the tile plan's fields) instead of
    tuning; keywords left out keep the size rule's value."""
    if name not in _REGISTRY:
        raise ValueError(f"pin: name must be one of {', '.join(tunable_names())}; got {name!r}")
    _pinned[name] = dict(launch_kwargs)
    forget()


def unpin(name: str | None = None) -> None:
    """Forget one pin, or all of them."""
    if name is None:
        _pinned.clear()
    else:
        _pinned.pop(name, None)
    forget()


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


def _from_disk(entry: str, allowed) -> dict | None:
    """The cached choice for ``entry`` if it is still one of ``allowed`` (a cache written by another
    version of the spaces is ignored, not trusted)."""
    kw = _load_disk().get(entry)
    return kw if kw is not None and kw in allowed else None


def _recall(entry: str, allowed) -> dict | None:
    kw = _chosen.get(entry) or _from_disk(entry, allowed)
    if kw is not None:
        _chosen[entry] = kw
    return kw


def _remember(entry: str, kw: dict) -> dict:
    _chosen[entry] = kw
    _save_disk(entry, kw)
    return kw


class _Choice:
    """What a kernel and a plan share: a name, a size rule, alternatives, a key, and the order in
    which an explicit config, a pin, the cache and the rule are consulted."""

    def __init__(self, name: str, *, rule: Callable, key: Callable, alternatives: Callable | None = None,
                 fixed: tuple[str, ...] = ()):
        if name in _REGISTRY:
            raise ValueError(f"a tunable named {name!r} is declared twice")
        self.name = name
        self.rule = rule
        self.alternatives = alternatives or (lambda problem, mode: [])
        self.key = key
        self.fixed = fixed            # keywords that size the launcher's buffers: no pin changes them
        self.resolved: dict = {}      # problem -> what the launch needs, once chosen
        self._spaces: dict = {}
        self._entries: dict = {}
        _REGISTRY[name] = self

    def normalise(self, kw: dict) -> dict:
        return dict(kw)

    def space(self, problem, mode: Mode | None = None) -> tuple[dict, ...]:
        """The candidates for ``problem`` in ``mode`` (default: the current one): the rule first, then
        each alternative applied over it, duplicates dropped. Interpreted: the rule only."""
        mode = mode or run_mode()
        cached = self._spaces.get((problem, mode))
        if cached is None:
            rule = self.normalise(self.rule(problem, mode))
            out = [rule]
            for alt in ([] if mode.interpreted else self.alternatives(problem, mode)):
                kw = self.normalise({**rule, **alt})
                if kw not in out:
                    out.append(kw)
            cached = self._spaces[(problem, mode)] = tuple(out)
        return cached

    def entry(self, problem) -> str:
        """The cache's name for ``problem``'s choice: the tunable, the problem's key and a fingerprint of its
        candidates. A choice made among other candidates (a switch that adds some, another version of the spaces)
        is then tuned again, where the cache would hand the old choice back as long as it was still allowed: on
        2026-12-06 that made an A/B of a candidate-adding switch (``SSM_TRITON_SS_REV_GATHER``) time one choice
        under both settings."""
        mode = run_mode()
        hit = self._entries.get((problem, mode))
        if hit is None:
            space = json.dumps(self.space(problem, mode), sort_keys=True, default=str)
            hit = self._entries[(problem, mode)] = f"{self.name}|{self.key(problem)}|{zlib.crc32(space.encode()):08x}"
        return hit

    def choose(self, problem, config: dict | None = None) -> tuple[dict | None, bool]:
        """``(launch keywords or None when tuning must run, final?)``: an explicit ``config`` (tests,
        sweeps) over the rule, else a pin, else the cached choice, else the rule when nothing is tuned.
        ``final`` is False for the rule taken in place of a choice that a later eager call will tune."""
        space = self.space(problem)
        if config is not None:
            return self.normalise({**space[0], **config}), True
        if self.name in _pinned:
            pinned = {k: v for k, v in _pinned[self.name].items() if k not in self.fixed}
            return self.normalise({**space[0], **pinned}), True
        if not autotuning() or len(space) == 1:
            return space[0], True
        kw = _recall(self.entry(problem), space)
        if kw is not None:
            return kw, True
        if _capturing():
            return space[0], False
        return None, True


class TunableKernel(_Choice, Kernel):
    """A tunable ``@triton.jit`` kernel (see the module docstring).

    ``grid(problem, kw) -> tuple``; ``rule(problem, mode) -> dict`` and ``alternatives(problem, mode)
    -> list[dict]`` give launch keywords (constexpr tiles, ``num_warps``, ``num_stages``);
    ``key(problem) -> tuple``; ``restore`` names arguments the kernel updates in place and ``zero``
    those it accumulates into (the tuner restores / re-zeroes them around each timed run, so tuning
    leaves the result of one launch).
    """

    def __init__(self, name: str, fn, *, grid: Callable, rule: Callable, key: Callable,
                 alternatives: Callable | None = None, flags: dict[str, str] | None = None,
                 hints: dict[str, str] | None = None,
                 restore: tuple[str, ...] = (), zero: tuple[str, ...] = (), fixed: tuple[str, ...] = (),
                 num_warps: int = 4, num_stages: int = 3):
        Kernel.__init__(self, fn, flags, hints)
        _Choice.__init__(self, name, rule=rule, key=key, alternatives=alternatives, fixed=fixed)
        self.grid = grid
        self.restore, self.zero = restore, zero
        self.timings: dict = {}   # problem -> {config: timings} of its last tuning run (for reports)
        self.defaults = {"num_warps": num_warps, "num_stages": num_stages}

    def normalise(self, kw: dict) -> dict:
        return {**self.defaults, **kw}

    def resolve(self, problem, config: dict | None = None):
        """``(launch keywords, grid)`` for ``problem``, resolved once per problem and reused; None when the
        tuner must run first. ``config`` forces the keywords (over the rule's) and is not remembered."""
        hit = self.resolved.get(problem) if config is None else None
        if hit is None:
            kw, final = self.choose(problem, config)
            if kw is None:
                return None
            hit = (kw, self.grid(problem, kw))
            if final and config is None:
                self.resolved[problem] = hit
        return hit

    def launch(self, problem, config: dict | None = None, **args) -> dict:
        """Launches with keyword ``args``; returns the launch keywords used. ``config`` forces them
        (over the rule's)."""
        hit = self.resolve(problem, config)
        if hit is None:
            return self._tune(problem, self.with_flags(args))
        kw, grid = hit
        self._launch(grid, self.with_flags(args), kw)
        return kw

    def bind(self, problem, vary: tuple, **args) -> "Bound | None":
        """A :class:`Bound` launch of ``problem`` with ``args``, the tensors named in ``vary`` to be given at
        each call; None where the lean path does not run (the interpreter, ``SSM_TRITON_LEAN=0``) or this
        launch has not run yet (it binds the binary its first :meth:`launch` compiled, after any tuning)."""
        if self._params is None or not _lean_enabled():
            return None
        hit = self.resolved.get(problem)
        if hit is None:
            return None
        kw, grid = hit
        args = self.with_flags(dict(args))
        lean = self._lean_values(args, kw)
        if lean is None or any(not isinstance(args[name], torch.Tensor) for name in vary):
            return None
        values, key = lean
        compiled = self._bound.get(key)
        if compiled is None or any(args[name].data_ptr() % 16 for name in vary):
            return None
        bound = Bound()
        names = self._params[0]
        bound.kernel, bound.problem, bound.vary, bound.compiled = self, problem, tuple(vary), compiled
        bound.grid = (*grid, 1, 1)[:3]   # always three: Launch.at reads them so
        bound.args = {k: v for k, v in args.items() if k not in vary}
        bound.values, bound.slots = values, tuple(names.index(name) for name in vary)
        bound.dtypes = tuple(args[name].dtype for name in vary)
        bound.generation = _generation
        for slot in bound.slots:
            values[slot] = None
        return bound

    def _tune(self, problem, args: dict) -> dict:
        rec = recorder()
        if rec is not None:   # a replay recorded now would hold the timing runs: record after the choice
            rec.refuse(retry=True)
        space = self.space(problem)
        configs = []
        for kw in space:
            meta = dict(kw)
            warps, stages = meta.pop("num_warps"), meta.pop("num_stages")
            # a register cap (ptx .maxnreg): more programs an SM for a latency-bound kernel, at the price of spills
            configs.append(triton.Config(meta, num_warps=warps, num_stages=stages, maxnreg=meta.pop("maxnreg", None)))
        # an argument passed as None (an absent optional buffer) has nothing to restore or zero
        restore = [n for n in self.restore if args.get(n) is not None]
        zero = [n for n in self.zero if args.get(n) is not None]
        tuner = triton.autotune(configs=configs, key=[], restore_value=restore or None,
                                reset_to_zero=zero or None)(self.fn)
        tuner[lambda meta: self.grid(problem, meta)](**args)
        best = tuner.best_config
        self.timings[problem] = {str(c): t for c, t in (getattr(tuner, "configs_timings", None) or {}).items()}
        kw = self.normalise({**best.kwargs, "num_warps": best.num_warps, "num_stages": best.num_stages,
                             **({"maxnreg": best.maxnreg} if getattr(best, "maxnreg", None) else {})})
        _remember(self.entry(problem), kw)
        self.resolved[problem] = (kw, self.grid(problem, kw))
        return kw


class TunablePlan(_Choice):
    """A choice among keyword sets for a pipeline of launches (the SSD stages' tile plan), timed end to
    end. ``run(option)`` must leave no trace a second call would see (it allocates its outputs); an
    option that fails to compile or launch (out of shared memory on a smaller GPU, say) is skipped."""

    def pick(self, problem, run: Callable[[dict], object], config: dict | None = None) -> dict:
        hit = self.resolved.get(problem) if config is None else None
        if hit is not None:
            return hit
        kw, final = self.choose(problem, config)
        if kw is None:
            rec = recorder()
            if rec is not None:
                rec.refuse(retry=True)
            space = self.space(problem)
            timed = []
            for i, option in enumerate(space):
                try:
                    timed.append((triton.testing.do_bench(lambda: run(option), warmup=5, rep=20), i))
                except Exception:  # noqa: BLE001
                    continue
            kw = _remember(self.entry(problem), space[min(timed)[1]] if timed else space[0])
        if final and config is None:
            self.resolved[problem] = kw
        return kw
