"""Two costs of Triton's interpreter taken away, neither changing a value it computes.

``tl.associative_scan`` with a user combine function: one call of that function per step along the
scanned axis instead of one per element.

Triton's interpreter runs a custom scan element by element: each of the tile's elements is a Python call
of the combine function on scalars, about 40 µs each. The selective scan's tiles made that most of the
CPU suite's time (one tiny Mamba block's gradients took 70 s, 2026-12-02). A combine function is
elementwise by Triton's contract, so calling it once per step on the whole slice across the other axes
gives the same values.

A call of a ``@triton.jit`` helper from a kernel: the interpreter patches ``triton.language`` again on
every such call, listing each module's members (``inspect.getmembers``) to find the builtins, although
the kernel's launch has patched them already, which makes the call a no-op (a sixth of a Mamba block's
gradient test). The builtins' names are listed once per module here, and a module found patched is
left as it is, as before.

Installed only when kernels are interpreted; a Triton without the hooks is left alone (slow, not wrong)."""
import inspect

import numpy as np


def _slice_scan(self, input):
    """``ScanOps.generic_scan`` with the combine applied to whole slices: ``input`` a tuple of tensors of
    one shape, scanned along ``self.axis`` (flipped by the caller for a reverse scan)."""
    import triton.language as tl

    axis = self.axis
    data = [arg.handle.data for arg in input]
    dtypes = [arg.dtype for arg in input]
    out = [np.empty_like(d) for d in data]
    at = lambda i: (slice(None),) * axis + (i,)  # noqa: E731
    acc = [d[at(0)].copy() for d in data]
    for o, a in zip(out, acc):
        o[at(0)] = a
    for i in range(1, data[0].shape[axis]):
        prev = tuple(self.to_tensor(a, t) for a, t in zip(acc, dtypes))
        cur = tuple(self.to_tensor(d[at(i)], t) for d, t in zip(data, dtypes))
        got = self.combine_fn.fn(*prev, *cur)
        got = got if isinstance(got, tuple) else (got,)
        for j, g in enumerate(got):
            value = g.handle.data if isinstance(g, tl.core.tensor) else g
            # a 0-d slice comes back as a 1-element array: take it back to the slice's shape
            out[j][at(i)] = np.reshape(value, out[j][at(i)].shape) if np.size(value) == out[j][at(i)].size else value
            acc[j] = out[j][at(i)].copy()
    return [self.to_tensor(o, t) for o, t in zip(out, dtypes)]


def _listing_once(original):
    """``_patch_builtin(pkg, builder, scope)`` with the builtins' names listed once per ``pkg`` (while
    unpatched: the first call comes from a kernel's launch, before any helper runs)."""
    import triton.language as tl

    names: dict = {}

    def patch_builtin(pkg, builder, scope):
        found = names.get(id(pkg))
        if found is None:
            # the original's own listing (inherited members included), once
            found = names.setdefault(id(pkg), [n for n, m in inspect.getmembers(pkg) if tl.core.is_builtin(m)])
        if not found:
            return original(pkg, builder, scope)
        if not tl.core.is_builtin(getattr(pkg, found[0], None)):
            return      # patched already: the original finds no builtin either
        for name in found:
            member = getattr(pkg, name)
            if tl.core.is_builtin(member):
                _patch_attr(pkg, name, member, builder, scope)

    from triton.runtime.interpreter import _patch_attr
    return patch_builtin


def install() -> bool:
    """Install both; True when the hooks were found."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return False
    scan_ops = getattr(interpreter, "ScanOps", None)
    if scan_ops is None or not hasattr(scan_ops, "generic_scan") or not hasattr(interpreter, "_patch_builtin") \
            or not hasattr(interpreter, "_patch_attr"):
        return False
    scan_ops.generic_scan = _slice_scan
    interpreter._patch_builtin = _listing_once(interpreter._patch_builtin)
    return True
