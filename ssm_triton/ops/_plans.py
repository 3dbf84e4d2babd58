"""Op plans: the forward of a call that records no graph, cached per input signature (``docs/design.md``).

A public op looks its call up by :func:`plan_key` (each tensor's shape, strides, dtype and device; each plain
argument's type and value) before its checks. A plan is made only after a call of that very signature passed
the checks and ran the normal path, and only where the inputs reach the kernel as they are and the forward
is one launch (``kernels/tuning.py``'s ``OneLaunch``); anything else stores ``False`` and keeps the normal
path. Plans are bounded per op (least recently used first out).
"""
import torch

from .._validate import Passed
from ..kernels import tuning as _tuning
from ._layout import records_graph


def Plans(size: int = 256) -> Passed:
    """A bounded map from :func:`plan_key` to a plan, or False where none applies."""
    return Passed(size)


# whether a call keeps tensors for a backward or is being compiled (no plan then): the lookups call it through
# this name, which the host benchmarks' A/B replaces (bench/overhead.py --plans, bench/host_sim.py)
recording = records_graph


def plan_key(tensors, plain) -> tuple:
    """The signature a plan is made for (possibly unhashable: the map then finds nothing). Plain arguments go
    with their types, so a value the checks would refuse (``1`` for a flag, say) never finds a plan made for an
    accepted one."""
    key = []
    for t in tensors:
        if isinstance(t, torch.Tensor):
            key += (t.shape, t.stride(), t.dtype, t.device)
        else:   # None, or a wrong argument the checks will refuse (never a plan's key)
            key += (type(t), t)
    for v in plain:
        key += (type(v), v)
    return tuple(key)


def lookup(plans: Passed, tensors, plain):
    """``(plan or None, key or None)`` for a call: no key when autograd records it, torch.compile traces it or a
    replay records it (``kernels/replay.py``: a plan's bound launch would refuse the recording), else the call's
    key and its plan if one was made."""
    if recording(*tensors) or _tuning.recorder() is not None:   # a replay being recorded sees the normal path
        return None, None
    key = plan_key(tensors, plain)
    return plans.get(key) or None, key


def remember(plans: Passed, key, make) -> None:
    """After a call of ``key`` (None: not plannable) passed the checks and ran: ``make()``'s plan, or False
    where it gives None, unless one was kept already."""
    if key is not None and plans.get(key) is None:
        plans.put(key, make() or False)
