"""Memory options for long sequences: recompute instead of storing.

``remat="step"`` wraps each step in ``jax.checkpoint``: the backward pass keeps
only the carry of every step and recomputes the gates. ``remat="sqrt"`` splits
the sequence into about √T chunks and checkpoints each chunk: the forward pass
keeps only the carries at chunk boundaries, and the backward pass recomputes
one chunk at a time, so the residuals take O(√T) instead of O(T) memory.
Both compute exactly the same values and gradients as ``remat=None``.

What the backward pass keeps, per sequence and step (H = hidden size):

- ``None`` on the fused path: the carry before the step and the gate values (LSTM
  ``h, c, i, f, g, o``: 6·H floats; SimpleRNN ``h`` before and after: 2·H; GRU
  ``h, z, r, n`` and ``h U_n``: 5·H; from ``AUTODIFF_MIN_BATCH`` sequences the
  LSTM keeps JAX's residuals of a loop projecting inside it, about as many). The
  input projection is not kept: it is computed chunk by chunk
  (``_fused.common.chunked``), and the weight gradient needs only ``x`` and the
  gate gradients, which the hand-written backward passes (LSTM, GRU) form one
  chunk of steps at a time (``_fused.common.BACKWARD_CHUNK``). On the generic
  scan (``impl="scan"``): JAX's residuals of the step.
- ``"step"``: the carry of every step (LSTM ``h, c``: 2·H; SimpleRNN, GRU: H); the
  gates are recomputed step by step in the backward pass (generic scan).
- ``"sqrt"``: the carries at the ~√T chunk boundaries; while the backward pass
  recomputes a chunk, that chunk's residuals as for ``None`` (fused path inside).
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
