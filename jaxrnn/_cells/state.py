"""Zero carries made from the parameters alone (no random key needed)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._gru import GRUParams
from ._lstm import LSTMParams, LSTMState
from ._simple_rnn import RNNParams


def zero_state(params: Any, batch_shape: tuple[int, ...] | int = ()) -> Any:
    """The all-zeros carry for ``params`` with leading ``batch_shape``.

    ``LSTMParams`` give ``LSTMState(h, c)``; ``RNNParams`` and ``GRUParams`` give
    ``h``. Shapes are ``(*batch_shape, H)`` in the parameters' dtype.

    Example:
        >>> from jaxrnn import init_lstm
        >>> s = zero_state(init_lstm(jax.random.key(0), 3, 5), (2,))
        >>> s.h.shape, s.c.shape
        ((2, 5), (2, 5))
    """
    if isinstance(batch_shape, int):
        batch_shape = (batch_shape,)
    if not isinstance(params, (RNNParams, LSTMParams, GRUParams)):
        raise TypeError(
            "zero_state: params must be RNNParams, LSTMParams or GRUParams, got "
            f"{type(params).__name__}. For your own cell, build the carry with jnp.zeros."
        )
    hidden = params.recurrent_kernel.shape[0]
    zeros = jnp.zeros((*tuple(batch_shape), hidden), params.recurrent_kernel.dtype)
    if isinstance(params, LSTMParams):
        return LSTMState(zeros, zeros)
    return zeros


def last_hidden(carry: Any) -> jax.Array:
    """The hidden state ``h`` of a carry (``LSTMState.h`` or the array itself)."""
    return carry.h if isinstance(carry, LSTMState) else carry
