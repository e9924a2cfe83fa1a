"""Zero carries made from the parameters alone (no random key needed)."""

from __future__ import annotations

from typing import Any

import jax

from .spec import param_type_names, spec_of


def zero_state(params: Any, batch_shape: tuple[int, ...] | int = ()) -> Any:
    """The all-zeros carry for ``params`` with leading ``batch_shape``.

    ``LSTMParams`` give ``LSTMState(h, c)``; ``RNNParams`` and ``GRUParams`` give
    ``h``. Shapes are ``(*batch_shape, H)`` in the parameters' dtype.

    Examples:
        >>> from jaxrnn import init_lstm
        >>> s = zero_state(init_lstm(jax.random.key(0), 3, 5), (2,))
        >>> s.h.shape, s.c.shape
        ((2, 5), (2, 5))
    """
    if isinstance(batch_shape, int):
        batch_shape = (batch_shape,)
    spec = spec_of(params)
    if spec is None:
        raise TypeError(
            f"zero_state: params must be {param_type_names()}, got "
            f"{type(params).__name__}. For your own cell, build the carry with jnp.zeros."
        )
    return spec.zero_state(params, tuple(batch_shape))


def last_hidden(carry: Any) -> jax.Array:
    """The hidden state ``h`` of a carry (``LSTMState.h`` or the array itself)."""
    return carry.h if hasattr(carry, "_fields") else carry
