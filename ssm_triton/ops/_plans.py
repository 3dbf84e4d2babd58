"""Op plans: the forward of a call that records no graph, cached per input signature (``docs/design.md``).

A public op looks its call up by :func:`plan_key` (each tensor's shape, strides, dtype and device; each plain
argument's type and value) before its checks. A plan is made only after a call of that very signature passed
the checks and ran the normal path, and only where the inputs reach the kernel as they are and the forward
is one launch (``kernels/tuning.py``'s ``OneLaunch``); anything else stores ``False`` and keeps the normal
path. Plans are bounded per op (the oldest made goes first).

The lookup is the whole host cost of a planned call besides its allocation and launch, so it is one pass over
the arguments that also sees whether autograd would record the call (the H200's host ran a planned forward in
37-90 us on 2026-12-04, against ~10 us for its ``torch.empty`` and compiled launch).
"""
import torch

from ..kernels import tuning as _tuning
from ._spec import compiling

# False: every call takes the normal path, no plan looked up or made (the host benchmarks' A/B:
# bench/overhead.py --plans, bench/host_sim.py)
ENABLED = True


class Plans:
    """A bounded map from :func:`plan_key` to a plan, or False where none applies: a plain dict (an LRU's
    reordering on every hit cost more than the rare plan made again), its oldest entry dropped when full."""
    __slots__ = ("size", "_seen")

    def __init__(self, size: int = 256):
        self.size = size
        self._seen: dict = {}

    def get(self, key):
        if key is None:
            return None
        try:
            return self._seen.get(key)
        except TypeError:   # an unhashable plain argument: never planned
            return None

    def put(self, key, value) -> None:
        if key is None:
            return
        try:
            hash(key)
        except TypeError:
            return
        if key not in self._seen and len(self._seen) >= self.size:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = value


def _key(tensors, plain, grad: bool):
    """The key of :func:`plan_key`, or None where autograd records the call (``grad`` and an input requiring
    gradients) or an argument that should be a tensor is not one (the checks will refuse it)."""
    key = [*plain, *map(type, plain)]   # types too: a value the checks refuse (1 for a flag) is not an accepted one
    try:
        for t in tensors:
            if t is None:
                key.append(None)
            elif grad and t.requires_grad:
                return None
            else:
                key.append((t.shape, t.stride(), t.dtype, t.device))
    except AttributeError:
        return None
    return tuple(key)


def plan_key(tensors, plain) -> tuple:
    """The signature a plan is made for (None for a non-tensor where a tensor goes; possibly unhashable: the
    map then finds nothing)."""
    return _key(tensors, plain, False)


def lookup(plans: Plans, tensors, plain):
    """``(plan or None, key or None)`` for a call: no key when autograd records it, torch.compile traces it or a
    replay records it (``kernels/replay.py``: a plan's bound launch would refuse the recording), else the call's
    key and its plan if one was made."""
    if not ENABLED or _tuning._recording.rec is not None or compiling():
        return None, None
    key = _key(tensors, plain, torch.is_grad_enabled())
    return plans.get(key) or None, key


def remember(plans: Plans, key, make) -> None:
    """After a call of ``key`` (None: not plannable) passed the checks and ran: ``make()``'s plan, or False
    where it gives None, unless one was kept already."""
    if key is not None and plans.get(key) is None:
        plans.put(key, make() or False)
