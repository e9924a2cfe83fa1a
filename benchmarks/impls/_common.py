"""What every implementation module shares: the ``Built`` record and weight helpers.

Every implementation is a function ``build(cell, weights, x, target) -> Built | None``:

* ``cell`` is ``"rnn"``, ``"lstm"`` or ``"gru"``;
* ``weights`` are the reference weights, a jaxrnn NamedTuple of NumPy arrays in the
  Keras layout (gates ``i, f, g, o`` for the LSTM, ``z, r, n`` for the reset-after GRU);
* ``x`` is the input ``(B, T, I)`` and ``target`` the regression target ``(B, T, H)``,
  both float32 NumPy arrays.

It returns ``None`` when the library has no such cell ("n/a" in the tables). An
implementation that can load the reference weights does so (``shares_weights=True``),
and ``run.py`` then checks that its forward outputs equal jaxrnn's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Built(NamedTuple):
    """One implementation of one cell at one shape, ready to time."""

    forward: Callable  # forward(*forward_args) -> all outputs (B, T, H)
    forward_args: tuple
    train: Callable  # train(*train_args) -> gradients of the MSE wrt all weights
    train_args: tuple
    shares_weights: bool  # True when built from the reference weights
    framework: str = "jax"  # "jax": jit + lower + compile; "torch": eager


def jax_built(forward: Callable, weights: Any, x, target, *, shares_weights: bool) -> Built:
    """A ``Built`` for a pure JAX ``forward(weights, x) -> (B, T, H)``.

    The training step is ``jax.grad`` of the mean squared error of all outputs
    against ``target``, with respect to ``weights`` only.
    """

    def train(weights, x, target):
        def loss(weights):
            return jnp.mean((forward(weights, x) - target) ** 2)

        return jax.grad(loss)(weights)

    x, target = jnp.asarray(x), jnp.asarray(target)
    return Built(forward, (weights, x), train, (weights, x, target), shares_weights)


def blocks(a, n: int) -> list[np.ndarray]:
    """Split the last axis of ``a`` into ``n`` equal gate blocks."""
    return np.split(np.asarray(a), n, axis=-1)


def zrn_to_rzn(a) -> np.ndarray:
    """Reorder GRU gate blocks from Keras' ``z, r, n`` to PyTorch's and Flax's ``r, z, n``."""
    z, r, n = blocks(a, 3)
    return np.concatenate([r, z, n], axis=-1)


def sizes(weights) -> tuple[int, int]:
    """``(input_size, hidden_size)`` of reference weights."""
    return weights.kernel.shape[0], weights.recurrent_kernel.shape[0]


def write_report(lines: list[str], problems: list[str], out: str | None) -> int:
    """Print the report (appending it to ``out`` if given); exit status 1 on problems."""
    import sys

    lines = lines + [f"- {p}" for p in problems]
    report = "\n".join(lines) + "\n"
    print(report)
    if out:
        with open(out, "a") as f:
            f.write(report)
        print(f"appended to {out}", file=sys.stderr)
    return 1 if problems else 0
