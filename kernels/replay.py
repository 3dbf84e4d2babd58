"""Replays: what a launcher did for one input signature, recorded once and issued again without its Python.

A launcher's work for given shapes, strides, dtypes and plain arguments is the same every call: the same
buffers allocated, the same kernels launched with the same grids, sizes and tiles, the same PyTorch ops
between them. Only the tensors' addresses and values change. :func:`record` runs a launcher once under a
``TorchFunctionMode`` that notes every PyTorch call that returns a tensor (allocations, sums, casts, views,
in-place updates) and, through a hook in :class:`~.tuning.Kernel`, every kernel launch, each with its tensors
named by slot (the inputs first, then each result in the order made). :class:`Replay` issues that list again
for new inputs: each PyTorch call re-run on the slots' tensors, each launch handed straight to the compiled
binary it ran (or, where none is bound — the interpreter, another dtype or alignment — through the kernel's
own path).

A recording is refused (that signature keeps the normal path) where the launcher's path could depend on
values: a tensor read back into Python (``item``, ``bool``, ``tolist``, ...), a bound launch inside it (an op
plan's), a result that no recorded call made. One taken while the tuner timed candidates is dropped and the
next call records again. ``tuning.forget()`` (pins, tuning switches) makes every replay stale.
``SSM_TRITON_REPLAY=0`` turns replays off.
"""
from __future__ import annotations

import os
import weakref
from keyword import iskeyword

import torch
from torch.overrides import TorchFunctionMode

from . import tuning

ENABLED = os.environ.get("SSM_TRITON_REPLAY", "1").strip() not in ("", "0")

# calls whose result carries a tensor's values into Python, where the launcher could branch on them
_READS = frozenset(("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__complex__", "numpy",
                    "__array__", "__repr__", "__format__", "__str__", "equal", "allclose", "is_nonzero",
                    "__contains__", "__iter__"))


# calls that give back their own tensor when it already has the asked layout and dtype: fixed by the signature,
# so a call that did at recording does at every replay, and is left out of it
_SAME = frozenset(("contiguous", "to", "float", "double", "half", "bfloat16", "int", "long", "type_as"))


# calls that write into a tensor and return nothing
_WRITES = frozenset(("__setitem__", "__delitem__"))


# calls that allocate memory and write nothing into it: a replay may hand out part of one workspace instead
_ALLOCS = frozenset(("empty", "empty_like", "new_empty"))

# calls that may return views of their first argument (each result checked at recording: same storage); a view
# only handed to kernels needs no tensor at a replay, only its address, a fixed distance from its base's. Each
# places its result relative to its argument's own offset (``as_strided``, whose offset is the storage's, is not
# among them: its distance would change with an input's offset, which a key does not hold)
_VIEWS = frozenset(("view", "reshape", "transpose", "permute", "split", "split_with_sizes", "unbind", "chunk",
                    "narrow", "select", "__getitem__", "squeeze", "unsqueeze", "expand", "t", "unflatten", "flatten",
                    "view_as", "movedim", "diagonal"))

# calls that make a new tensor (or a view) and change nothing else: left out of a replay where nothing reads what
# they made (a final state the caller did not ask for, copied at recording by a launcher that always makes it)
_PURE = _ALLOCS | _VIEWS | frozenset(("clone", "to", "contiguous", "float", "zeros", "zeros_like", "new_zeros",
                                      "ones", "ones_like", "full", "full_like"))


class _Slot:
    __slots__ = ("i",)

    def __init__(self, i: int):
        self.i = i


def _rebuild(cls, parts):
    if cls is tuple:
        return tuple(parts)
    if cls is list:
        return list(parts)
    if hasattr(cls, "_fields"):   # a NamedTuple
        return cls(*parts)
    return cls(parts)


class _Filled:
    """A template holding slots: a list, tuple, NamedTuple or dict of parts, filled in at each replay (the
    parts copied, then each slot's place set: ``direct`` for slots, ``nested`` for inner templates)."""
    __slots__ = ("like", "parts", "keys", "direct", "nested", "kind")

    def __init__(self, like, parts: list, keys):
        # the container's type only: the container itself holds the recording call's tensors, which a replay kept
        # alive as long as it was cached (every buffer a recorded call was given: 513 MiB still allocated after two
        # SSD fwd+bwd calls at b8 L4096 H64 P64 N128, the first output after two inference forwards; H200,
        # 2026-12-04)
        self.like, self.parts, self.keys = type(like), parts, keys
        self.direct = tuple((i, p.i) for i, p in enumerate(parts) if type(p) is _Slot)
        self.nested = tuple((i, p) for i, p in enumerate(parts) if type(p) is _Filled)
        self.kind = "dict" if keys is not None else self.like.__name__ if self.like in (tuple, list) else "other"

    def fill(self, table):
        parts = self.parts.copy()
        for i, slot in self.direct:
            parts[i] = table[slot]
        for i, inner in self.nested:
            parts[i] = inner.fill(table)
        kind = self.kind
        if kind == "tuple":
            return tuple(parts)
        if kind == "list":
            return parts
        if kind == "dict":
            return dict(zip(self.keys, parts))
        return _rebuild(self.like, parts)


def _fill(obj, table):
    """``obj`` with each slot replaced by the table's tensor."""
    kind = type(obj)
    if kind is _Slot:
        return table[obj.i]
    if kind is _Filled:
        return obj.fill(table)
    return obj


class _Call:
    """One recorded PyTorch call, re-run with the slots filled; its tensor results go to ``outs``. ``alloc``: for an
    allocation of uninitialised memory (``empty``, ``empty_like``, ``new_empty``) with a contiguous result, its
    ``(shape, dtype, device, bytes)``, else None. ``view``: for a call whose every tensor result is a view of its
    first argument (a slot), ``(that slot, each result's address minus the argument's)``, else None."""
    __slots__ = ("func", "args", "kwargs", "outs", "many", "alloc", "view")

    def __call__(self, table, stream) -> None:
        args, kwargs = self.args, self.kwargs
        out = self.func(*(args.fill(table) if type(args) is _Filled else args),
                        **(kwargs.fill(table) if type(kwargs) is _Filled else kwargs))
        many = self.many
        if many:
            for i, t in zip(self.outs, out):
                if i is not None:
                    table[i] = t
        elif many is not None:
            table[self.outs] = out


class _Launch:
    """One recorded kernel launch: ``(position in the binary's arguments, slot)`` per tensor. The binary runs
    it where the tensors have the 16-byte alignment it was compiled for; dtypes, shapes and strides are the
    signature's. Only the inputs' alignment can change between calls (every buffer comes fresh from the
    allocator, every view of one at the offset it had), so only theirs is checked, unless an input was
    misaligned when recorded (then the views of it may move: every aligned tensor is checked). Without a
    binary (the interpreter, a launch hook) the kernel's own path takes the call."""
    __slots__ = ("kernel", "grid", "args", "kw", "compiled", "values", "tensors", "check")

    def __call__(self, table, stream) -> None:
        compiled = self.compiled
        if compiled is not None and stream is not None:
            for slot in self.check:
                if table[slot].data_ptr() % 16:
                    break
            else:
                # addresses, not tensors: Triton's launcher asks the driver about every tensor it is given
                # (cuPointerGetAttribute), not about an int; the key fixed every device and dtype
                values = self.values.copy()
                for pos, slot in self.tensors:
                    values[pos] = table[slot].data_ptr()
                tuning.Kernel._lean(compiled, self.grid, stream, values)
                return
        self.kernel._launch(self.grid, _fill(self.args, table), self.kw)

    def fallback(self, args: dict) -> None:
        """The launch through the kernel's own path, ``args`` filled (a replay's generated code, where the binary
        does not fit or there is none)."""
        self.kernel._launch(self.grid, args, self.kw)


class _Free:
    """Drops the table's hold on slots that no later step reads. Without it a replay kept every intermediate of
    the call alive to its end: the SSD backward's fp32 adjoint sums (256 MiB at b8 L4096 H64 P64 N128) through
    the whole pair stage, the fwd+bwd's peak 1265 MiB against 953 with it (H200, 2026-12-04). Only the replay's
    references go: a tensor that something else holds (autograd's saved tensors, a view's base) stays."""
    __slots__ = ("slots",)

    def __init__(self, slots: tuple):
        self.slots = slots

    def __call__(self, table, stream) -> None:
        for s in self.slots:
            table[s] = None


def _slots_in(obj, into: set) -> None:
    kind = type(obj)
    if kind is _Slot:
        into.add(obj.i)
    elif kind is _Filled:
        into.update(s for _, s in obj.direct)
        for _, inner in obj.nested:
            _slots_in(inner, into)


def _reads(step) -> set:
    """The slots a step reads: its arguments' (a launch's tensors among them)."""
    used: set = set()
    _slots_in(step.args, used)
    if type(step) is _Call:
        _slots_in(step.kwargs, used)
    else:
        used.update(s for _, s in step.tensors)
    return used


def _without_dead(steps: list, out) -> list:
    """``steps`` without the calls of :data:`_PURE` whose results neither the result nor a later kept step reads
    (a launch, a write or any other call is always kept)."""
    live: set = set()
    _slots_in(out, live)
    kept = []
    for step in reversed(steps):
        if type(step) is _Call and step.many is not None and getattr(step.func, "__name__", "") in _PURE:
            made = step.outs if step.many else (step.outs,)
            if not any(s is not None and s in live for s in made):
                continue
        live |= _reads(step)
        kept.append(step)
    return kept[::-1]


def _with_frees(steps: list, n_inputs: int, out) -> list:
    """``steps`` with a :class:`_Free` after each step that is the last to read (or that made, unread) slots
    other than the inputs and the result's."""
    last: dict = {}
    for i, step in enumerate(steps):
        used: set = set()
        if type(step) is _Call:
            _slots_in(step.args, used)
            _slots_in(step.kwargs, used)
            outs = step.outs if step.many else () if step.many is None else (step.outs,)
            used.update(s for s in outs if s is not None)
        else:
            _slots_in(step.args, used)
            used.update(s for _, s in step.tensors)
        for s in used:
            last[s] = i
    keep: set = set(range(n_inputs))
    _slots_in(out, keep)
    frees: dict = {}
    for s, i in last.items():
        if s not in keep:
            frees.setdefault(i, []).append(s)
    result = []
    for i, step in enumerate(steps):
        result.append(step)
        if i in frees:
            result.append(_Free(tuple(sorted(frees[i]))))
    return result


class Replay:
    """``replay(inputs) -> result`` for inputs of the signature it was recorded with (the caller keys it); None
    when made stale by ``tuning.forget()`` (the caller records again). Its steps run as one generated Python
    function (:func:`_generate`); ``steps`` keeps them as objects, run one by one where ``GENERATED`` is off."""
    __slots__ = ("size", "steps", "out", "device", "generation", "run")

    def __call__(self, inputs):
        if self.generation != tuning._generation:
            return None
        stream = None
        if self.device is not None and not tuning._hooks_active():
            stream = tuning._raw_stream(self.device)
        if GENERATED:
            return self.run(inputs, stream)
        table = [*inputs, *([None] * (self.size - len(inputs)))]
        for step in self.steps:
            step(table, stream)
        return _fill(self.out, table)


# a replay's steps as straight-line Python (``_generate``) rather than a loop over step objects, each filling a
# template from a table: SSM_TRITON_REPLAY_GENERATED=0 runs the objects (same steps, same order)
GENERATED = os.environ.get("SSM_TRITON_REPLAY_GENERATED", "1").strip() not in ("", "0")

# scratch buffers (allocated, then only handed to kernels) of a generated replay come from one allocation where it
# needs at most this many bytes: one ``torch.empty`` instead of several (each 3-10 us of the H200's host). Buffers
# of disjoint lives share bytes, but the workspace is held for the whole call where the step objects free each
# buffer after its last reader: the bound keeps that difference small where it would show in a peak
WORKSPACE_BYTES = 32 << 20
_ALIGN = 256


def _carve(ws, offset: int, shape: tuple, dtype):
    """The tensor a scratch buffer is in the workspace ``ws`` (uint8), for a launch that takes tensors."""
    size = 1
    for n in shape:
        size *= n
    nbytes = size * torch.empty((), dtype=dtype).element_size()
    return ws[offset:offset + nbytes].view(dtype).view(shape)


def _scratch(steps, out, n_inputs: int) -> tuple[dict, int]:
    """``({slot: (offset, shape, dtype)}, total bytes)`` of the scratch buffers that share one workspace: results
    of allocations (``_Call.alloc``) that no PyTorch call reads (but views that are only addresses: their launches
    read the buffer) and the result does not hold, on one device, at least two; none where the workspace would
    exceed ``WORKSPACE_BYTES``. Buffers whose lives do not overlap (one freed, by its ``_Free`` step or its views'
    last, before the other is made) may share bytes, as the caching allocator would have reused them: the workspace
    is no larger than the most scratch alive at once, plus gaps."""
    read: set = set()           # read by a call other than a view
    viewed: dict = {}           # slot -> the view calls reading it
    for step in steps:
        if type(step) is _Call:
            if step.view is not None:
                viewed.setdefault(step.view[0], []).append(step)
            else:
                _slots_in(step.args, read)
                _slots_in(step.kwargs, read)
    _slots_in(out, read)
    made = [(i, step.outs, step.alloc) for i, step in enumerate(steps)
            if type(step) is _Call and step.alloc is not None and step.outs not in read and step.outs >= n_inputs]
    # a buffer read through views only if every such view is an address (``_address_only``, which needs the base
    # in the workspace: settled together)
    while True:
        views = _address_only(steps, out, n_inputs, {slot for _, slot, _ in made})
        kept = [m for m in made if all(all(o is None or o in views for o in (v.outs if v.many else (v.outs,)))
                                       for v in viewed.get(m[1], ()))]
        if len(kept) == len(made):
            break
        made = kept
    if len(made) < 2 or len({a[2] for _, _, a in made}) != 1:
        return {}, 0
    freed = {s: i for i, step in enumerate(steps) if type(step) is _Free for s in step.slots}
    # a buffer lives as long as the views that are its addresses (their frees, not its own, end its use)
    base_of = {}
    for step in steps:
        if type(step) is _Call and step.view is not None:
            for o in (step.outs if step.many else (step.outs,)):
                if o is not None and o in views:
                    base_of[o] = step.view[0]
    for v in base_of:
        root = v
        while root in base_of:
            root = base_of[root]
        if v in freed or root in freed:
            freed[root] = max(freed.get(root, len(steps)), freed.get(v, len(steps)))
    at: dict = {}
    placed: list = []   # (offset, end offset, the step freeing it)
    total = 0
    for i, slot, (shape, dtype, _, nbytes) in made:
        size = -(-max(nbytes, 1) // _ALIGN) * _ALIGN
        live = sorted((o, e) for o, e, gone in placed if gone > i)
        offset = 0
        for o, e in live:   # the lowest gap that fits among the buffers alive now
            if offset + size <= o:
                break
            offset = max(offset, e)
        placed.append((offset, offset + size, freed.get(slot, len(steps))))
        at[slot] = (offset, shape, dtype)
        total = max(total, offset + size)
    return (at, total) if total <= WORKSPACE_BYTES else ({}, 0)


def _address_only(steps, out, n_inputs: int, scratch) -> set:
    """Slots made by view calls (``_Call.view``) that a replay needs only as addresses: every reader a launch or
    another such view, none in the result, and the base an input, a workspace buffer or such a view itself (memory
    that outlives the call's last launch without a tensor holding it: a view of an intermediate would not keep its
    base alive)."""
    calls = [step for step in steps if type(step) is _Call]
    made = {}
    for step in calls:
        if step.view is not None:
            for slot in (step.outs if step.many else (step.outs,)):
                if slot is not None:
                    made[slot] = step
    held: set = set()
    _slots_in(out, held)
    keep = {s for s in made if s not in held}
    changed = True
    while changed:   # each call that stays a call needs tensors of what it reads, and makes tensors
        changed = False
        for step in calls:
            outs = [] if step.many is None else [o for o in (step.outs if step.many else (step.outs,)) if o is not None]
            if (step.view is not None and outs and all(o in keep for o in outs)
                    and (step.view[0] < n_inputs or step.view[0] in scratch or step.view[0] in keep)):
                continue   # stays address-only
            read: set = set(outs)
            _slots_in(step.args, read)
            _slots_in(step.kwargs, read)
            if read & keep:
                keep -= read
                changed = True
    return keep


class _Source:
    """The text of a generated replay and the objects it names (``c<k>``: functions, constants, binaries)."""

    def __init__(self, scratch: dict):
        self.env: dict = {"_rebuild": _rebuild, "_Kernel": tuning.Kernel, "_carve": _carve, "_uint8": torch.uint8}
        self.named: dict = {}     # id(object) -> its name in env
        self.lines: list = []
        self.scratch = scratch    # slot -> (offset, shape, dtype) in the workspace ``ws``
        self.views: dict = {}     # slot -> the expression making its tensor (an address-only view's, for fallbacks)

    def name(self, obj) -> str:
        """``obj`` as an expression: a literal for None, bools, ints and strings, else a name bound in ``env``."""
        kind = type(obj)
        if obj is None or kind is bool or kind is int or kind is str:
            return repr(obj)
        at = self.named.get(id(obj))
        if at is None:
            at = self.named[id(obj)] = f"c{len(self.named)}"
            self.env[at] = obj
        return at

    def expr(self, obj) -> str:
        """A template as an expression over the slots' variables ``s<i>``."""
        kind = type(obj)
        if kind is _Slot:
            if obj.i in self.scratch:
                offset, shape, dtype = self.scratch[obj.i]
                return f"_carve(ws, {offset}, {shape!r}, {self.name(dtype)})"
            if obj.i in self.views:
                return self.views[obj.i]
            return f"s{obj.i}"
        if kind is not _Filled:
            return self.name(obj)
        parts = [self.expr(p) for p in obj.parts]
        if obj.kind == "tuple":
            return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        if obj.kind == "list":
            return "[" + ", ".join(parts) + "]"
        if obj.kind == "dict":
            return "{" + ", ".join(f"{self.name(k)}: {p}" for k, p in zip(obj.keys, parts)) + "}"
        return f"_rebuild({self.name(obj.like)}, [{', '.join(parts)}])"


def _call_text(src: "_Source", step: _Call) -> str:
    """A recorded call as an expression, each argument its own name (no tuple or dict unpacked at the call)."""
    args = step.args
    given = [src.expr(p) for p in (args.parts if type(args) is _Filled else args)]
    kwargs = step.kwargs
    named = zip(kwargs.keys, kwargs.parts) if type(kwargs) is _Filled else kwargs.items()
    given += [f"{k}={src.expr(v)}" if k.isidentifier() and not iskeyword(k) else f"**{{{k!r}: {src.expr(v)}}}"
              for k, v in named]
    return f"{src.name(step.func)}({', '.join(given)})"


def _generate(steps, out, n_inputs: int):
    """``run(inputs, stream) -> result``: the steps as one Python function. Each recorded PyTorch call is a line
    calling the function on the slots' variables, each launch a line handing the binary its values with the
    tensors' addresses (after the alignment check of :class:`_Launch`, else its :meth:`_Launch.fallback`), each
    free a ``None`` assignment. Why: interpreting the step objects cost 1-2 us a step on top of the PyTorch call or
    launch itself (the SSD's fwd+bwd replays 47 steps)."""
    scratch, total = _scratch(steps, out, n_inputs)
    src = _Source(scratch)
    views = _address_only(steps, out, n_inputs, scratch)
    used: set = set()
    for step in steps:
        if type(step) is _Call:
            _slots_in(step.args, used)
            _slots_in(step.kwargs, used)
        elif type(step) is _Launch:
            _slots_in(step.args, used)
            used.update(s for _, s in step.tensors)
    _slots_in(out, used)
    lines = src.lines
    lines += [f"    s{i} = inputs[{i}]" for i in sorted(used) if i < n_inputs]
    addressed: set = set()
    made = False
    for step in steps:
        kind = type(step)
        if kind is _Free:
            freed = [s for s in step.slots if s not in scratch and s not in views]
            if freed:
                lines.append("    " + " = ".join(f"s{s}" for s in freed) + " = None")
        elif kind is _Call and step.view is not None and (step.outs if step.many else (step.outs,))[0] in views:
            base, deltas = step.view
            if base not in addressed:
                addressed.add(base)
                lines.append(f"    p{base} = s{base}.data_ptr()")
            call = _call_text(src, step)
            for j, slot in enumerate(step.outs if step.many else (step.outs,)):
                if slot is not None:
                    src.views[slot] = f"{call}[{j}]" if step.many else call
                    lines.append(f"    p{slot} = p{base} + {deltas[j]}")
                    addressed.add(slot)
        elif kind is _Call and step.outs in scratch:
            if not made:   # the first: the workspace
                made = True
                lines += [f"    ws = {src.name(torch.empty)}({total}, dtype=_uint8, device={src.name(step.alloc[2])})",
                          "    pws = ws.data_ptr()"]
            lines.append(f"    p{step.outs} = pws + {scratch[step.outs][0]}")
            addressed.add(step.outs)
        elif kind is _Call:
            call = _call_text(src, step)
            if step.many is None:
                lines.append(f"    {call}")
            elif not step.many:
                lines.append(f"    s{step.outs} = {call}")
            else:
                lines.append(f"    _o = {call}")
                lines += [f"    s{i} = _o[{j}]" for j, i in enumerate(step.outs) if i is not None]
        else:
            fallback = f"{src.name(step)}.fallback({src.expr(step.args)})"
            if step.compiled is None:
                lines.append(f"    {fallback}")
                continue
            for _, s in step.tensors:
                if s not in addressed:
                    addressed.add(s)
                    lines.append(f"    p{s} = s{s}.data_ptr()")
            at = dict(step.tensors)
            values = ", ".join(f"p{at[pos]}" if pos in at else src.name(v) for pos, v in enumerate(step.values))
            check = "".join(f" and not p{s} % 16" for s in dict.fromkeys(step.check) if s not in scratch)
            lines += [f"    if stream is not None{check}:",
                      f"        _Kernel._lean({src.name(step.compiled)}, {src.name(step.grid)}, stream, [{values}])",
                      "    else:", f"        {fallback}"]
    lines.append(f"    return {src.expr(out)}")
    text = "def run(inputs, stream):\n" + "\n".join(lines) + "\n"
    exec(compile(text, "<ssm_triton replay>", "exec"), src.env)   # noqa: S102 - text built above from our steps
    run = src.env["run"]
    run.text = text   # what it runs, for a reader (``replay.run.text``)
    return run


def _forget(slots: dict, key: int, slot: int) -> None:
    if slots.get(key) == slot:
        del slots[key]


class _Recorder(TorchFunctionMode):
    def __init__(self, inputs):
        super().__init__()
        self.slots: dict = {}     # id(tensor) -> slot
        # the inputs and the constants, alive until the recording ends; each result is let go when the launcher
        # drops it (its slot forgotten with it, so a new tensor that reuses its id is not taken for it): keeping
        # them all held the recording call's peak at the sum of every buffer (1281 MiB for the SSD's headline
        # fwd+bwd against 977 without, H200 2026-12-04)
        self.keep: list = []
        self.steps: list = []
        self.size = self.n_inputs = len(inputs)
        self.inputs_aligned = True   # False: an input was not 16-byte aligned when recorded
        self.ok = True            # False: refused
        self.retry = False        # True: refused because the tuner ran; record again next call
        self.paused = 0           # inside a kernel launch (the interpreter runs PyTorch there)
        self.device = None
        for i, t in enumerate(inputs):
            if isinstance(t, torch.Tensor):
                self.slots[id(t)] = i
                self.keep.append(t)

    def refuse(self, retry: bool = False) -> None:
        self.ok = False
        self.retry = self.retry or retry

    def _template(self, obj, constants_ok: bool = True):
        """``obj`` with tensors as slots; an unknown tensor is kept as a constant, or refuses the recording."""
        if isinstance(obj, torch.Tensor):
            i = self.slots.get(id(obj))
            if i is None:
                if not constants_ok:
                    self.refuse()
                self.keep.append(obj)
                return obj
            return _Slot(i)
        keys = None
        if type(obj) is dict:
            keys, items = tuple(obj), tuple(obj.values())
        elif isinstance(obj, (tuple, list)) and obj:
            items = obj
        else:
            return obj
        parts = [self._template(o, constants_ok) for o in items]
        if not any(type(p) is _Slot or type(p) is _Filled for p in parts):
            return obj
        return _Filled(obj if keys is None else None, parts, keys)

    def _new(self, t) -> int:
        i = self.size
        self.size += 1
        self.slots[id(t)] = i
        weakref.finalize(t, _forget, self.slots, id(t), i)   # the map, not the recorder: nothing outlives the call
        return i

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.paused or not self.ok:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in _READS:
            self.refuse()
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if args and out is args[0] and name in _SAME:
            return out
        if isinstance(out, torch.Tensor):
            many = False
        elif isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out):
            many = True
        elif name in _WRITES:
            many = None   # a write that returns nothing: replayed for its effect
        else:
            return out   # sizes, strides, dtypes, flags: fixed by the signature
        call = _Call()
        call.func, call.args, call.kwargs = func, self._template(args), self._template(kwargs)
        call.many = many
        call.alloc = call.view = None
        if name in _ALLOCS and many is False and out.is_contiguous():
            call.alloc = (tuple(out.shape), out.dtype, out.device, out.numel() * out.element_size())
        elif name in _VIEWS and many is not None and args and isinstance(args[0], torch.Tensor):
            base = self.slots.get(id(args[0]))
            results = list(out) if many else [out]
            at = args[0].untyped_storage().data_ptr()
            if base is not None and all(isinstance(o, torch.Tensor) and o.untyped_storage().data_ptr() == at
                                        for o in results):
                # an empty result's address is the allocator's business, never read: 0 from its base
                call.view = (base, tuple(o.data_ptr() - args[0].data_ptr() if o.numel() else 0 for o in results))
        call.outs = (None if many is None else
                     tuple(self._new(o) if isinstance(o, torch.Tensor) else None for o in out) if many else self._new(out))
        self.steps.append(call)
        return out

    def launched(self, kernel, grid, args: dict, kw: dict) -> None:
        """After a kernel launch with ``args``: its step."""
        step = _Launch()
        step.kernel, step.grid, step.kw = kernel, grid, kw
        step.args = self._template(args)
        step.compiled = step.values = None
        step.tensors = step.check = ()
        if kernel._params is not None and tuning._lean_enabled():
            lean = kernel._lean_values(args, kw)
            compiled = kernel._bound.get(lean[1]) if lean is not None else None
            if compiled is not None:
                values, key = lean
                tensors, aligned = [], []
                for pos, v in enumerate(values):
                    slot = self.slots.get(id(v)) if isinstance(v, torch.Tensor) else None
                    if slot is not None:
                        tensors.append((pos, slot))
                        if v.data_ptr() % 16 == 0:
                            aligned.append(slot)
                        elif slot < self.n_inputs:
                            self.inputs_aligned = False
                        values[pos] = None
                step.compiled, step.values, step.tensors = compiled, values, tuple(tensors)
                step.check = tuple(aligned)
                if self.device is None:
                    self.device = key[0]
        self.steps.append(step)

    def replay(self, result) -> Replay | None:
        out = self._template(result, constants_ok=False)
        if not self.ok:
            return None
        if self.inputs_aligned:   # only the inputs' alignment can change (see _Launch)
            for step in self.steps:
                if type(step) is _Launch:
                    step.check = tuple(s for s in step.check if s < self.n_inputs)
        r = Replay()
        steps = _with_frees(_without_dead(self.steps, out), self.n_inputs, out)
        r.size, r.steps, r.out, r.device, r.generation = self.size, tuple(steps), out, self.device, tuning._generation
        r.run = _generate(r.steps, out, self.n_inputs)
        return r


def record(fn, inputs: tuple):
    """``(fn(*inputs), Replay or None, retry)``: the call's result, its replay where one can be made, and
    whether a refused recording is worth trying again (the tuner ran during it). Inside another recording
    ``fn`` just runs (the outer one sees its calls)."""
    if tuning.recorder() is not None:
        return fn(*inputs), None, False
    rec = _Recorder(inputs)
    tuning._recording.rec = rec   # per thread: the autograd engine runs CUDA backwards on threads of its own
    try:
        with rec:
            result = fn(*inputs)
    finally:
        tuning._recording.rec = None
    made = rec.replay(result)
    rec.keep.clear()    # the first call's inputs are not held by what its results' finalizers reach
    rec.slots.clear()
    return result, made, rec.retry


class Replays:
    """Replays by key, bounded (least recently used first out). ``run(key, fn, inputs)`` replays the key's
    recording, or runs ``fn(*inputs)`` and records it; a key of None (or an unhashable one) just runs."""

    def __init__(self, size: int = 256):
        from ssm_triton._validate import Passed
        self._map = Passed(size)
        _ALL.append(self)

    def run(self, key, fn, inputs: tuple):
        return self.run_made(key, fn, inputs)[0]

    def run_made(self, key, fn, inputs: tuple):
        """``(result, the key's replay or None)``: :meth:`run`, and the replay the result came from or was recorded
        for (a hashable object whose identity stands for the signature and the layouts of everything it makes),
        from one lookup of the key."""
        if key is None or not ENABLED or tuning.recorder() is not None:   # inside a recording: its calls are its
            return fn(*inputs), None
        found = self._map.get(key)
        if found:
            result = found(inputs)
            if result is not None:
                return result, found
        elif found is not None:   # False: this signature cannot be replayed
            return fn(*inputs), None
        result, replay, retry = record(fn, inputs)
        if replay is not None or not retry:
            self._map.put(key, replay or False)
        return result, replay

    def replay(self, key, inputs):
        """The key's replay run on ``inputs``, or None where there is none (nor for a key of None): a caller that
        keys its public arguments before checking them skips the checks on a hit, since a replay is made only
        after a call of its key passed them."""
        if key is None or not ENABLED or tuning.recorder() is not None:
            return None
        found = self._map.get(key)
        return found(inputs) if found else None

    def checked(self, key, inputs: tuple, check, fn, shortcut: bool = True):
        """What a public op runs: the key's replay where there is one (and ``shortcut``), else ``check()`` (the op's
        argument checks, raising on bad input) and then :meth:`run`. A hit skips the checks, since a replay is made
        only after a call of its key passed them; an op whose checks read values a key does not hold (packed rows'
        offsets) passes ``shortcut=False`` and is checked on every call."""
        if shortcut:
            out = self.replay(key, inputs)
            if out is not None:
                return out
        check()
        return self.run(key, fn, inputs)

    def clear(self) -> None:
        self._map._seen.clear()


_ALL: list = []


def clear_all() -> None:
    """Forget every replay (tests start from none)."""
    for r in _ALL:
        r.clear()


def key_of(values, switches: tuple = ()) -> tuple | None:
    """The signature a replay is recorded for: per tensor its shape, strides, dtype and device, per other value
    its type and value, then what else steers the launchers (``switches``: the op's module switches and, where
    its kernels multiply fp32 in the tensor cores, the fp32 matmul precision; grad mode, determinism, CUDA graph
    capture). None where a value is a tensor that requires grad under grad mode (a graph would be
    recorded, which a replay does not reproduce)."""
    if torch.compiler.is_compiling():   # traced: the graph is the replay
        return None
    key = []
    append = key.append
    cuda = False
    grad = torch.is_grad_enabled()
    tensor = torch.Tensor
    for v in values:
        if isinstance(v, tensor):
            if grad and v.requires_grad:
                return None
            at = v.get_device()   # -1 on the CPU
            if at >= 0:
                cuda = True
            append((v.shape, v.stride(), v.dtype, at))
        else:
            append((type(v), v))
    append((*switches, grad, torch.are_deterministic_algorithms_enabled(),
            cuda and torch.cuda.is_current_stream_capturing()))
    return tuple(key)
