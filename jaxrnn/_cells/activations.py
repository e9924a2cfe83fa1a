"""Activation functions by Keras name, or any callable."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from .._checks import lookup

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Activation] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,  # Keras 3: relu6(x + 3) / 6
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": partial(jax.nn.gelu, approximate=False),  # Keras' default is exact
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "softsign": jax.nn.soft_sign,
    "linear": lambda x: x,
}


def get_activation(activation: str | Activation | None, *, where: str, arg: str) -> Activation:
    """Return the callable for ``activation``: a Keras name, a callable, or None (linear)."""
    if activation is None:
        return ACTIVATIONS["linear"]
    alternative = "any callable such as jax.nn.relu"
    expected = "a callable or a name such as 'tanh'"
    return lookup(ACTIVATIONS, activation, where, arg, alternative=alternative, expected=expected)
