"""What the LM's prefill and decode graphs share: captured CUDA graphs by key, bounded, dropped together."""
from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager

import torch

from ..kernels import fused_step as _fused_kernels
from ..kernels.ssd import launch as _ssd_launch
from ..ops import fused_step as _fused

_data_ptr = torch.Tensor.data_ptr


def switched_on(variable: str) -> bool:
    """An on-by-default switch: off when the environment ``variable`` is ``0`` or empty."""
    return os.environ.get(variable, "1").strip() not in ("", "0")


def step_switches() -> tuple:
    """The switches a captured decode step's launches read at capture: the fused steps on or off, PDL's setting."""
    return _fused.ENABLED, _fused_kernels.PDL_ENABLED


@contextmanager
def as_captured():
    """Calls inside take the routes a capture takes: the SSD's staged forward where its size rule would pick the
    one-launch kernel for an eager call (``kernels/ssd/launch.FUSED``, left alone where set to "0" or "1"; a route
    switch, so op plans and replays made inside are keyed apart from eager calls'), and the decode steps' composed
    form past the replayed fused steps' rows (``ops/fused_step.WARMING``). A capture's warm-up runs so:
    otherwise the stages' tiles were never tuned for a graph's problems, whose eager calls all took the one-launch
    kernel, and the capture ran the rule's tiles (``TunablePlan.choose`` under capture; the 130M LM's prefill graph
    timed the same with the tuner on and off, H100 2026-12-07)."""
    before, warming = _ssd_launch.FUSED, _fused.WARMING
    if before not in ("0", "1"):
        _ssd_launch.FUSED = "0"
    _fused.WARMING = True   # the decode steps past the replayed fused steps' rows: the composed step
    try:
        yield
    finally:
        _ssd_launch.FUSED, _fused.WARMING = before, warming


def capture(run, device):
    """``(graph, run()'s output)``: ``run`` called twice on a side stream as it will be captured (every kernel of the
    captured routes compiled and tuned, nothing of a first call left to the capture: :func:`as_captured`), then
    captured as a CUDA graph whose replay rewrites that output."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), as_captured():
        for _ in range(2):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    return graph, out


class GraphCache:
    """Captured graphs of one model by key: at most ``capacity`` (each holds its own memory pool; the least
    recently used is dropped first), all dropped when the model's weights fingerprint changes (a graph reads
    the tensors it was captured with). A copied or unpickled model starts with none."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self.graphs: OrderedDict = OrderedDict()
        self.weights = None
        self._layout = None   # the backbone's top modules, and every parameter's and buffer's slot in them
        self._slots = ((), ())

    def __deepcopy__(self, memo):
        return type(self)(self.capacity)

    def __getstate__(self):
        return {"capacity": self.capacity}

    def __setstate__(self, state):
        self.__init__(state["capacity"])

    def clear(self) -> None:
        """Drops every graph (and walks the modules again at the next call)."""
        self.graphs.clear()
        self.weights = None
        self._layout = None

    def fingerprint(self, backbone) -> tuple:
        """The storage of every parameter and buffer, read through their slots in the modules (``.to()``, a
        new Parameter or ``.data = ...`` change it; values changed in place do not). The slots are walked
        again when one of the backbone's layers is replaced; a module replaced deeper down is not seen:
        call ``clear()`` after such surgery. Addresses only: a dtype or device conversion allocates each new
        storage while the old one is alive, so the first tensor converted moves. Two C-level ``map`` passes,
        ~25 µs for the 24-layer model on the CPU machine (a walk of ``parameters()`` took 0.5 ms of host a
        call on the H200 machine, 2026-12-02)."""
        layout = (id(backbone), id(backbone.embedding), id(backbone.norm_f), *map(id, backbone.layers))
        if layout != self._layout:
            self._layout = layout
            slots = [(store, name) for mod in backbone.modules() for store in (mod._parameters, mod._buffers)
                     for name, t in store.items() if t is not None]
            self._slots = (tuple(s for s, _ in slots), tuple(n for _, n in slots))
        try:
            return layout + tuple(map(_data_ptr, map(dict.__getitem__, *self._slots)))
        except (KeyError, TypeError):   # a slot emptied or deleted since the walk: walk again
            self._layout = None
            return self.fingerprint(backbone)

    def model_fingerprint(self, model) -> tuple:
        """:meth:`fingerprint` of an LM's backbone and its head's weight (tied or not)."""
        return self.fingerprint(model.backbone) + (model.lm_head.weight.data_ptr(),)

    def graph(self, weights, key, make):
        """The graph kept under ``key`` for these ``weights``; on a miss ``make() -> (graph, key)`` captures one
        (the key it returns is the one it is kept under: a capture may complete what the key describes)."""
        if weights != self.weights:
            self.clear()
            self.weights = weights
        found = self.graphs.get(key)
        if found is not None:
            self.graphs.move_to_end(key)
            return found
        while len(self.graphs) >= self.capacity:
            self.graphs.popitem(last=False)
        found, key = make()
        self.graphs[key] = found
        return found
