"""Activation functions by Keras name, or any callable."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

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
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            known = ", ".join(sorted(ACTIVATIONS))
            raise ValueError(
                f"{where}: unknown {arg}={activation!r}. Use one of {known}, "
                "or pass any callable such as jax.nn.relu."
            ) from None
    if callable(activation):
        return activation
    raise TypeError(
        f"{where}: {arg} must be a callable or a name such as 'tanh', "
        f"got {type(activation).__name__}."
    )
