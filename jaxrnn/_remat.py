"""Memory options for long sequences: recompute instead of storing.

``remat="step"`` wraps each step in ``jax.checkpoint``: the backward pass keeps
only the carry of every step and recomputes the gates. ``remat="sqrt"`` splits
the sequence into about √T chunks and checkpoints each chunk: the forward pass
keeps only the carries at chunk boundaries, and the backward pass recomputes
one chunk at a time, so the residuals take O(√T) instead of O(T) memory.
Both compute exactly the same values and gradients as ``remat=None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

REMATS = (None, "step", "sqrt")

Segment = Callable[[Any, Any, jax.Array | None], tuple[Any, Any]]


def check_remat(remat: Any, where: str) -> None:
    if remat not in REMATS:
        raise ValueError(
            f"{where}: unknown remat={remat!r}; use None (store everything), 'step' "
            "(checkpoint each step) or 'sqrt' (checkpoint ~sqrt(T) chunks)."
        )


def nested_scan(
    segment: Segment, carry: Any, xs: Any, valid: jax.Array | None, *, reverse: bool
) -> tuple[Any, Any]:
    """Run ``segment(carry, xs, valid) -> (carry, ys)`` over √T checkpointed chunks.

    ``xs`` leaves and ``ys`` are time-major ``(T, ...)``; ``valid`` is the boolean
    ``(T, *batch)`` step mask or None. The sequence is padded to a whole number of
    chunks with invalid steps, which leave the carry unchanged and are cut off
    the outputs.
    """
    leaves = jax.tree.leaves(xs)
    num_steps = leaves[0].shape[0]
    if num_steps <= 1:
        return segment(carry, xs, valid)
    chunk = math.isqrt(num_steps - 1) + 1  # ceil(sqrt(T))
    num_chunks = -(-num_steps // chunk)
    pad = num_chunks * chunk - num_steps
    if pad:
        if valid is None:
            valid = jnp.ones((num_steps, *leaves[0].shape[1:-1]), bool)
        xs = jax.tree.map(lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)), xs)
        valid = jnp.pad(valid, [(0, pad)] + [(0, 0)] * (valid.ndim - 1))

    def split(a):
        return a.reshape(num_chunks, chunk, *a.shape[1:])

    @jax.checkpoint
    def outer(c, inp):
        x_c, v_c = inp
        return segment(c, x_c, v_c)

    chunks = (jax.tree.map(split, xs), None if valid is None else split(valid))
    carry, ys = jax.lax.scan(outer, carry, chunks, reverse=reverse)
    ys = jax.tree.map(lambda a: a.reshape(num_chunks * chunk, *a.shape[2:])[:num_steps], ys)
    return carry, ys
