"""The backward of ``F.linear(x, w, b)`` for the one-node ops that run a projection inside them."""


def linear_backward(dout, x, w, has_bias: bool):
    """``out = x w^T + b`` (``x (..., k)``, ``w (n, k)``): ``(dx, dw, db or None)`` from ``dout (..., n)``."""
    flat = dout.reshape(-1, dout.shape[-1])
    return dout @ w, flat.t() @ x.reshape(-1, x.shape[-1]), flat.sum(0) if has_bias else None
