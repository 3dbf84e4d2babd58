"""One spec per public op, from which both of its routes are built.

* Under ``torch.compile`` an op is a ``torch.library`` custom op (schema, fake, autograd registered), so
  graphs trace through it with no break.
* In eager mode the custom-op dispatcher adds host time to every call (0–70 µs over the bare launcher
  in our H100-machine runs, ``python -m ssm_triton.bench.overhead``), which small problems feel, so eager
  calls go through a plain ``torch.autograd.Function`` wrapping the same bodies, and calls that record
  no graph skip even that (and may take a lighter ``inference`` forward).

A spec names its arguments once, with their types (``"x: Tensor, D: Tensor?, chunk_size: int"``), its
outputs, which inputs are differentiable, what the backward keeps (inputs or outputs, by name) and the
bodies: ``forward(**args) -> tuple of outputs``, ``fake(**args)`` (shapes only), and
``backward(saved, grads) -> {input name: gradient}``, where ``saved`` maps every kept tensor and every
non-tensor argument to its value and ``grads`` maps each differentiable output to its gradient (None when
it received none). Gradients are matched to inputs by name, cast to the input's dtype, and None where an
input was None.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..kernels import replay as _replay

_TYPES = {"Tensor": "Tensor", "Tensor?": "Tensor?", "int": "SymInt", "float": "float", "bool": "bool", "str": "str"}


def compiling() -> bool:
    return torch.compiler.is_compiling()


def _parse(args: str) -> list[tuple[str, str]]:
    out = []
    for part in args.split(","):
        name, kind = (s.strip() for s in part.split(":"))
        if kind not in _TYPES:
            raise ValueError(f"unknown argument type {kind!r} for {name!r}")
        out.append((name, kind))
    return out


@dataclass
class OpSpec:
    name: str                                  # the custom op's name, "ssm_triton::<name>"
    args: str                                  # "name: type, ..." in call order
    outputs: tuple[str, ...]                   # the forward's outputs, in order (all tensors)
    forward: Callable                          # forward(**args) -> tuple, one tensor per output
    fake: Callable                             # fake(**args) -> tuple of empty tensors of the outputs' shapes
    grads: tuple[str, ...] = ()                # differentiable inputs
    grad_outputs: tuple[str, ...] = ()         # outputs that carry gradients (the rest are marked non-differentiable)
    saves: tuple[str, ...] = ()                # inputs and outputs the backward reads, by name
    backward: Callable | None = None           # backward(saved, grads) -> {input: gradient}
    inference: Callable | None = None          # forward for calls that record no graph
    like: dict[str, str] = field(default_factory=dict)  # gradient -> the kept tensor it is shaped like
    mutates: tuple[str, ...] = ()              # inputs updated in place (no backward then)
    # (first value of the call -> tuple): module switches and settings the launchers read beyond the arguments,
    # part of a replay's key; the first value is the first argument (forward) or the first kept tensor (backward)
    switches: Callable | None = None

    def __post_init__(self):
        self.params = _parse(self.args)
        self.names = tuple(n for n, _ in self.params)
        self.tensor_args = tuple(n for n, k in self.params if k.startswith("Tensor"))
        self.flags = tuple(n for n, k in self.params if not k.startswith("Tensor"))
        self.saved_tensors = tuple(n for n in self.saves if n in self.tensor_args or n in self.outputs)
        self.out_index = {n: i for i, n in enumerate(self.outputs)}
        self.grad_index = tuple(self.names.index(n) for n in self.grads)
        for g in self.grads:
            if self.like.get(g, g) not in self.saved_tensors:
                raise ValueError(f"{self.name}: gradient {g!r} needs {self.like.get(g, g)!r} among the saves")
        # positions, so that a call's save and its backward's gradients build no dict by name: each kept tensor in
        # (arguments, outputs), each flag among the arguments, the outputs marked non-differentiable, and per
        # gradient (its name, its input's position, the kept tensor whose dtype it takes)
        every = self.names + self.outputs
        self.save_at = tuple(every.index(n) if n in self.names else len(self.names) + self.outputs.index(n)
                             for n in self.saved_tensors)
        self.flag_at = tuple(self.names.index(n) for n in self.flags)
        self.aux_at = tuple(i for n, i in self.out_index.items() if n not in self.grad_outputs)
        self.grad_plan = tuple((g, i, self.saved_tensors.index(self.like.get(g, g)))
                               for g, i in zip(self.grads, self.grad_index))


def _cast(g, like):
    if like is None or g is None:
        return None
    return g if g.dtype == like.dtype else g.to(like.dtype)


def _schema_args(params) -> str:
    return ", ".join(f"{_TYPES[k]} {n}" for n, k in params)


def build(spec: OpSpec):
    """The op's callable, ``op(*args)`` in the spec's order, choosing the route per call."""
    mutating = bool(spec.mutates)

    # ---- compile route ----
    schema_args = ", ".join(
        (f"Tensor(a{i}!) {n}" if n in spec.mutates else f"{_TYPES[k]} {n}")
        for i, (n, k) in enumerate(spec.params))
    outs = "Tensor" if len(spec.outputs) == 1 else "(" + ", ".join("Tensor" for _ in spec.outputs) + ")"

    def fwd_body(*args):
        result = spec.forward(**dict(zip(spec.names, args)))
        return result[0] if len(spec.outputs) == 1 else tuple(result)

    op = torch.library.custom_op(f"ssm_triton::{spec.name}", fwd_body, mutates_args=spec.mutates,
                                 schema=f"({schema_args}) -> {outs}")

    @op.register_fake
    def _(*args):
        result = spec.fake(**dict(zip(spec.names, args)))
        return result[0] if len(spec.outputs) == 1 else tuple(result)

    if not mutating and spec.backward is not None:
        _build_compiled_backward(spec, op)

    # ---- eager route ----
    eager = None if mutating or spec.backward is None else _build_eager(spec)
    light_body = spec.inference or spec.forward
    names = spec.names
    light_replays = _replay.Replays()
    switches = spec.switches or _none

    def light(*args):
        return light_body(**dict(zip(names, args)))

    def call(*args):
        if compiling():
            out = op(*args)
            return (out,) if len(spec.outputs) == 1 else out
        if eager is not None and torch.is_grad_enabled():
            for a in args:   # a loop, not any() over a generator: a microsecond of host a call
                if isinstance(a, torch.Tensor) and a.requires_grad:
                    return eager(*args)
        return light_replays.run(_replay.key_of(args, switches(args[0])), light, args)

    return call


def _saved_dict(spec: OpSpec, tensors, flags) -> dict:
    saved = dict(zip(spec.saved_tensors, tensors))
    saved.update(zip(spec.flags, flags))
    return saved


def _positional(spec: OpSpec, result: dict, saved_tensors: tuple) -> tuple:
    """One gradient (or None) per input, in the op's order, cast to its input's dtype (the kept tensors in
    ``spec.saved_tensors``'s order)."""
    out = [None] * len(spec.names)
    get = result.get
    for name, i, like in spec.grad_plan:
        out[i] = _cast(get(name), saved_tensors[like])
    return tuple(out)


def _save(spec: OpSpec, ctx, args, outputs):
    every = (*args, *outputs)
    ctx.save_for_backward(*[every[i] for i in spec.save_at])
    ctx.flag_values = tuple([args[i] for i in spec.flag_at])
    if spec.aux_at:
        ctx.mark_non_differentiable(*[outputs[i] for i in spec.aux_at])


def _build_eager(spec: OpSpec):
    """The eager autograd route; the forward's and the backward's launcher work replayed per signature
    (``kernels/replay.py``)."""
    names = spec.names
    n_saved, n_flags = len(spec.saved_tensors), len(spec.flags)
    fwd_replays, bwd_replays = _replay.Replays(), _replay.Replays()
    switches = spec.switches or _none

    def run_forward(*args):
        return tuple(spec.forward(**dict(zip(names, args))))

    def run_backward(*values):
        saved = _saved_dict(spec, values[:n_saved], values[n_saved:n_saved + n_flags])
        return spec.backward(saved, dict(zip(spec.grad_outputs, values[n_saved + n_flags:])))

    def forward(ctx, *args):
        ctx.set_materialize_grads(False)  # unused outputs reach the backward as None, not as zeros
        key = _replay.key_of(args, switches(args[0]))
        # the replay these outputs came from (or were recorded for): their layouts are its, whatever the tuner
        # chose since (a key alone does not fix them: the first call of a signature may run during tuning)
        outputs, ctx.replay_from = fwd_replays.run_made(key, run_forward, args)
        _save(spec, ctx, args, outputs)
        return outputs

    def backward(ctx, *grads):
        if all(g is None for g in grads):
            return (None,) * len(spec.names)
        saved_tensors = ctx.saved_tensors
        gs = tuple(grads[spec.out_index[n]] for n in spec.grad_outputs)
        values = (*saved_tensors, *ctx.flag_values, *gs)
        key = _backward_key(ctx.replay_from, gs, switches(values[0]))
        if key is None:
            key = _replay.key_of(values, switches(values[0]))
        result = bwd_replays.run(key, run_backward, values)
        return _positional(spec, result, saved_tensors)

    cls = type(spec.name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                       "backward": staticmethod(backward)})
    return _fast_apply(cls)


_C_APPLY = torch._C._FunctionBase.__dict__["apply"]
_transforms_active = torch._C._are_functorch_transforms_active
_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _fast_apply(cls):
    """``cls.apply`` without its Python prologue where that does nothing: ``Function.apply`` unwraps dead functorch
    wrappers among the arguments in a generator over all of them and then calls the C ``apply`` (3.7 us of this
    CPU's host a call with the SSD's 17 arguments, against 6 for the C call itself). Under a functorch transform,
    or with a functorch-wrapped tensor among the arguments, the full ``apply`` runs."""
    direct = _C_APPLY.__get__(None, cls)
    full = cls.apply

    def apply(*args):
        if _transforms_active():
            return full(*args)
        for a in args:
            if isinstance(a, torch.Tensor) and _wrapped(a):
                return full(*args)
        return direct(*args)
    return apply


def _backward_key(forward, grads: tuple, switches: tuple):
    """The replay key of a backward whose forward ran from (or recorded) the replay ``forward``: the saved tensors
    are the forward's inputs and results, whose layouts that replay fixes, and the flags are among its key's
    values; then the incoming gradients' signatures and what steers the launchers now. Keying the saved tensors
    again cost ~7 us of this CPU's host a call (20-odd tensors). None (the caller keys every value) where the
    forward had no replay, or where the backward records a graph (``create_graph``)."""
    if forward is None or torch.is_grad_enabled():
        return None
    key = [forward, *switches, torch.are_deterministic_algorithms_enabled()]
    cuda = False
    for g in grads:
        if g is None:
            key.append(None)
        else:
            cuda = cuda or g.is_cuda
            key.append((g.shape, g.stride(), g.dtype, g.get_device()))
    key.append(cuda and torch.cuda.is_current_stream_capturing())
    return tuple(key)


def _build_compiled_backward(spec: OpSpec, op):
    """A second custom op for the backward: grads of the differentiable outputs, then the kept tensors,
    then the non-tensor arguments; returns one tensor per differentiable input (empty for None)."""
    params = ([(f"grad_{n}", "Tensor?") for n in spec.grad_outputs]
              + [(n, "Tensor?") for n in spec.saved_tensors]
              + [(n, k) for n, k in spec.params if n in spec.flags])
    n_g, n_s = len(spec.grad_outputs), len(spec.saved_tensors)

    def unpack(args):
        grads = dict(zip(spec.grad_outputs, args[:n_g]))
        return grads, _saved_dict(spec, args[n_g:n_g + n_s], args[n_g + n_s:])

    def body(*args):
        grads, saved = unpack(args)
        result = spec.backward(saved, grads)
        out = []
        storages = set()
        for name in spec.grads:
            g = _cast(result.get(name), saved.get(spec.like.get(name, name)))
            # custom ops cannot return None, nor one tensor twice: a fresh empty stand-in each
            g = g.contiguous() if g is not None else _empty_like_any(args)
            # nor two views of one buffer (the SSD's dA, d dt_bias and dD share the one its kernels add into): a copy
            at = g.untyped_storage().data_ptr() if g.numel() else None
            if at in storages:
                g = g.clone()
            elif at is not None:
                storages.add(at)
            out.append(g)
        return out

    bwd = torch.library.custom_op(f"ssm_triton::{spec.name}_backward", body, mutates_args=(),
                                  schema=f"({_schema_args(params)}) -> Tensor[]")

    @bwd.register_fake
    def _(*args):
        _, saved = unpack(args)
        out = []
        for name in spec.grads:
            like = saved.get(spec.like.get(name, name))
            # contiguous, as the body returns them: an input may be a strided view (Mamba's x of xz)
            out.append(like.new_empty(like.shape) if like is not None else _empty_like_any(args))
        return out

    def setup_context(ctx, inputs, output):
        _save(spec, ctx, inputs, output if isinstance(output, tuple) else (output,))

    def backward(ctx, *grads):
        saved_tensors = ctx.saved_tensors
        gs = [grads[spec.out_index[n]] for n in spec.grad_outputs]
        result = bwd(*gs, *saved_tensors, *ctx.flag_values)
        # the empty stand-ins of absent inputs become None again
        return _positional(spec, dict(zip(spec.grads, result)), saved_tensors)

    op.register_autograd(backward, setup_context=setup_context)


def _none(first) -> tuple:
    return ()


def _empty_like_any(args):
    first = next(a for a in args if isinstance(a, torch.Tensor))
    return first.new_empty(0)

