"""Counted arrivals: the programs of a group (a batch row's, a (row, head) pair's) each count themselves in once
their reads (and writes) of what the group shares are done; the last to arrive sees every other program's work
behind it and does what must come after all of them: writes a shared state in place that the others read old
(``kernels/mamba3/step.py``'s ``k~`` and angle, ``kernels/mamba2_step.py``'s conv windows of B and C), or finishes
what needs the whole group (Mamba-2's gated RMSNorm over a row's heads).

The count is an int32 in global memory, one per group, left at zero by the last arrival for the next launch. A
set of counters belongs to one state tensor (:func:`counters`): two layers, or two models on two streams, never
share one.
"""
import weakref

import torch
import triton
import triton.language as tl


@triton.jit
def last_arrival(CNT, at, expected):
    """Whether this program is the last of the ``expected`` programs counting at ``CNT[at]`` (each calls this once,
    after a barrier that ends its shared reads and writes; acquire-release at the GPU's scope, so the last sees the
    others' stores). The last resets the count."""
    arrived = tl.atomic_add(CNT + at, 1, sem="acq_rel")
    last = arrived == expected - 1
    if last:
        tl.atomic_xchg(CNT + at, 0)
    return last


# (device, state's address, count) -> (weak reference to the state's tensor, counters)
_COUNTERS: dict = {}
_CAPTURED: list = []


def counters(state, n: int) -> torch.Tensor:
    """``n`` zeroed int32 counters (:func:`last_arrival`) for the in-place steps of ``state``: one set per state
    tensor alive (the layers of a model, or two models on two streams, never share one); the kernels leave them at
    zero. A set first made inside a CUDA graph capture is that graph's alone (zeroed by its replays, not before: an
    eager step never gets it) and kept alive with it."""
    key = (state.device, state.data_ptr(), n)
    held = _COUNTERS.get(key)
    if held is not None and held[0]() is not None:
        return held[1]
    made = torch.zeros(n, device=state.device, dtype=torch.int32)
    if state.is_cuda and torch.cuda.is_current_stream_capturing():
        _CAPTURED.append(made)   # freed, its block could go to the capture's next allocation
        return made
    if len(_COUNTERS) >= 4096:   # the sets of states that are gone (their address may come back for another)
        for gone in [k for k, (ref, _) in _COUNTERS.items() if ref() is None]:
            del _COUNTERS[gone]
    # the tensor the caller keeps (a block may pass a view of its cache's state, made anew each call)
    base = state._base if state._base is not None else state
    _COUNTERS[key] = (weakref.ref(base), made)
    return made
