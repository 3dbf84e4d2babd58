"""Input checks for the public API. Every error names the argument and what was expected."""
from collections import OrderedDict
from collections.abc import Sequence

import torch

from . import _runtime

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _dtype_names(dtypes: Sequence[torch.dtype]) -> str:
    return ", ".join(str(d).replace("torch.", "") for d in dtypes)


def tensor(name: str, x, *, ndim: int | None = None, min_ndim: int | None = None,
           dtypes: Sequence[torch.dtype] = FLOAT_DTYPES, shape_doc: str = "") -> torch.Tensor:
    """Checks that ``x`` is a tensor of an accepted dtype and rank; returns it."""
    where = f" {shape_doc}" if shape_doc else ""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{where}, got {type(x).__name__}")
    if x.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype in ({_dtype_names(dtypes)}), got {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D{where}, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims{where}, got shape {tuple(x.shape)}")
    return x


def shape(name: str, x: torch.Tensor, expected: Sequence[int], shape_doc: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {shape_doc} = {tuple(expected)}, got {tuple(x.shape)}")


def same_dtype(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    first = tensors[0].dtype
    for n, t in zip(names[1:], tensors[1:]):
        if t.dtype != first:
            raise TypeError(f"{n} must have the same dtype as {names[0]} ({first}), got {t.dtype}")


def heads_and_state(name: str, symbol: str, noun: str, heads: int, H: int, N: int, doc: str, max_n: int) -> None:
    """``heads`` (dim 2 of ``name``'s ``doc`` shape) must divide H; ``N`` (dim 3) must be in 1..max_n."""
    if heads < 1 or H % heads:
        raise ValueError(f"{name} has {symbol} = {heads} {noun} (dim 2 of {doc}), which must divide H = {H}")
    if not 1 <= N <= max_n:
        raise ValueError(f"{name} has state size N = {N} (dim 3 of {doc}); it must be between 1 and {max_n}")


def one_of(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def devices(names: Sequence[str], tensors: Sequence[torch.Tensor | None]) -> None:
    """All tensors on one device, and one the kernels can run on."""
    present = [(n, t) for n, t in zip(names, tensors) if t is not None]
    first_name, first = present[0]
    for n, t in present[1:]:
        if t.device != first.device:
            raise ValueError(f"{n} is on {t.device} but {first_name} is on {first.device}; "
                             "all tensors must be on one device")
    if first.device.type == "cpu" and not _runtime.INTERPRET:
        raise ValueError(f"{first_name} is a CPU tensor, but Triton kernels are compiled for CUDA in this "
                         "process; move the tensors to CUDA, or set TRITON_INTERPRET=1 before importing "
                         "ssm_triton to run them through the interpreter")
    if first.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{first_name} is on {first.device}; ssm_triton runs on CUDA tensors "
                         "(or CPU tensors through the Triton interpreter)")


class Passed:
    """What a public op's checks found for calls that passed them, by the call's signature (:func:`signature`):
    the checks depend on shapes, dtypes, devices and the plain arguments alone, so a call of a signature seen
    before skips them (about half of a small call's host time, 2026-12-02). Value checks (those that read a
    tensor's contents, like ``cu_seqlens``) are never skipped: calls that have them are not remembered.
    Bounded: the least recently seen signature goes first."""

    def __init__(self, size: int = 256):
        self.size = size
        self._seen: OrderedDict = OrderedDict()

    def get(self, key):
        if key is None:     # a call with value checks: never remembered
            return None
        try:
            found = self._seen.get(key)
        except TypeError:   # an unhashable argument: checked in full, never remembered
            return None
        if found is not None:
            self._seen.move_to_end(key)
        return found

    def put(self, key, value) -> None:
        if key is None:
            return
        try:
            self._seen[key] = value
        except TypeError:
            return
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)


def signature(tensors, plain) -> tuple:
    """A key of ``tensors`` (shape, dtype and device of each, or the non-tensor itself with its type) and the
    ``plain`` arguments, each with its type, so that ``1`` and ``True`` differ (a sequence's items too). It
    may be unhashable; :class:`Passed` then treats the call as unseen."""
    key = []
    for t in tensors:
        if isinstance(t, torch.Tensor):
            key += (t.shape, t.dtype, t.device)
        else:
            key += (type(t), t)
    for v in plain:
        if isinstance(v, (tuple, list)):
            key += (type(v), *((type(u), u) for u in v))
        else:
            key += (type(v), v)
    return tuple(key)


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def on_device(name: str, ok: torch.Tensor, message: str) -> None:
    """Checks a condition on index values without blocking the host: for CPU tensors at once (a
    ``ValueError`` naming ``name``), for CUDA tensors as an asynchronous device-side assertion
    (``torch._assert_async``: the error, with ``message``, surfaces at the next synchronisation).
    Skipped while a CUDA graph is being captured; the kernels never read out of bounds either way. Under
    ``torch.compile`` every tensor takes the traceable assertion (a host branch on values and the capture
    query cannot be traced)."""
    if ok.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(ok.all()):
            raise ValueError(f"{name} {message}")
    elif torch.compiler.is_compiling() or not _capturing():   # the capture query cannot be traced
        torch._assert_async(ok.all(), f"{name} {message}")


def seq_mask(mask, bsz: int, L: int) -> None:
    """A left-padding mask ``(batch, L)``: bool, an integer or a floating dtype, 0 on the padding."""
    tensor("seq_mask", mask, ndim=2, dtypes=(torch.bool, torch.int32, torch.int64, torch.float32, torch.bfloat16,
                                            torch.float16), shape_doc="(batch, L)")
    shape("seq_mask", mask, (bsz, L), "(batch, L)")
