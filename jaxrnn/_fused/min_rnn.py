"""The min cells' recurrence (minGRU, minLSTM): one projection, then a linear scan.

Every gate is a projection of the input, so all of them come from one
``(T·B, I) @ (I, G·H)`` matmul before the loop; what remains,
``h_t = a_t ⊙ h_{t-1} + b_t``, is solved by ``jaxrnn._time.linear.diagonal``
with the layer's ``method`` (sequential, associative or chunked), whose
gradient is the adjoint recurrence. A padded step is the identity step
(``a = 1``, ``b = 0``) and outputs zeros.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._cells.spec import spec_of
from .._time.linear import diagonal
from .common import LoopOptions, project


def unsupported(step_kwargs: dict, where: str) -> str | None:
    """The min cells take no step options: every configuration runs here."""
    return None


def segment(step_kwargs: dict, params, h0, xs, mask, opts: LoopOptions):
    """``(h_T, ys)`` of the cell over time-major ``xs`` ``(T, B, I)``; ``mask`` ``(T, B, 1)``."""
    t, b, i = xs.shape
    # a 2-D matmul: its weight gradient is one dot, where a (T, B, I) one also transposes
    k = project(xs.reshape(t * b, i), params.kernel, opts).reshape(t, b, params.kernel.shape[-1])
    if params.bias is not None:
        k = k + params.bias
    a, b = spec_of(params).coefficients(k)
    if mask is not None:
        a, b = jnp.where(mask, a, jnp.ones((), a.dtype)), jnp.where(mask, b, jnp.zeros((), b.dtype))
    hs = diagonal(a, b, h0, method=opts.method, reverse=opts.reverse)
    if hs.shape[0] == 0:
        return h0, hs
    ys = hs if mask is None else jnp.where(mask, hs, jnp.zeros((), hs.dtype))
    return (hs[0] if opts.reverse else hs[-1]), ys
