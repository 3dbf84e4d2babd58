"""Two routes to the same launchers.

* Under ``torch.compile`` an op is a ``torch.library`` custom op (``register_fake`` +
  ``register_autograd``), so graphs trace through it with no break.
* In eager mode the custom-op dispatcher adds host time to every call (0–70 us over the bare launcher
  in our H100-machine runs, `python -m ssm_triton.bench.overhead`), which small problems feel, so eager
  calls go through a plain ``torch.autograd.Function`` wrapping the same forward and backward bodies,
  and calls that record no graph skip even that.
"""
import torch


def eager_autograd(name: str, forward, save, backward, inference=None):
    """An ``autograd.Function`` ``apply``: ``forward(*inputs) -> outputs``; ``save(ctx, inputs, outputs)``
    stores what the backward needs; ``backward(ctx, *grads) -> one grad (or None) per input``;
    ``inference(*inputs)``, when given, replaces ``forward`` for calls that record no graph (it may
    skip what only the backward reads)."""

    def fwd(ctx, *inputs):
        ctx.n_inputs = len(inputs)
        # unused outputs reach the backward as None rather than as materialised zeros
        ctx.set_materialize_grads(False)
        out = forward(*inputs)
        save(ctx, inputs, out)
        return out

    def bwd(ctx, *grads):
        if all(g is None for g in grads):
            return (None,) * ctx.n_inputs
        return backward(ctx, *grads)

    cls = type(name, (torch.autograd.Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})

    def apply(*inputs):
        if not torch.is_grad_enabled() or not any(isinstance(x, torch.Tensor) and x.requires_grad for x in inputs):
            return (inference or forward)(*inputs)
        return cls.apply(*inputs)

    return apply


def compiling() -> bool:
    return torch.compiler.is_compiling()
