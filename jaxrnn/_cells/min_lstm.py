"""The minLSTM cell (Feng et al. 2024, "Were RNNs All We Needed?"), gate order f, i, h̃.

No gate reads the state, and the two gates are normalised to sum to one, so the
recurrence is linear in ``h`` (there is no cell state ``c``)::

    h_t = a_t ⊙ h_{t-1} + b_t      a_t = f'_t,   b_t = i'_t ⊙ h̃_t
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers

from .min_gru import _preactivations, _step_input, init_min
from .spec import CellSpec, register


class MinLSTMParams(NamedTuple):
    """Parameters of a minLSTM cell, Keras layout, gates ``f, i, h̃`` along the last axis.

    There is no recurrent kernel: every gate is a projection of the input only.
    """

    kernel: jax.Array  # (I, 3H)
    bias: jax.Array | None  # (3H,) or None


def init_min_lstm(
    key: jax.Array, input_size: int, hidden_size: int, *, dtype=jnp.float32, use_bias: bool = True,
    kernel_init=initializers.glorot_uniform(), bias_init=initializers.zeros,
) -> MinLSTMParams:  # fmt: skip
    """Initialise a minLSTM cell with Keras' defaults for a dense kernel (Glorot
    uniform, zero bias).

    Examples:
        >>> p = init_min_lstm(jax.random.key(0), 3, 2)
        >>> p.kernel.shape, p.bias.shape
        ((3, 6), (6,))
    """
    return init_min(MinLSTMParams, 3, key, input_size, hidden_size, dtype, use_bias,
                    kernel_init, bias_init)  # fmt: skip


def min_lstm_coefficients(k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(a, b)`` of ``h_t = a ⊙ h_{t-1} + b`` from the pre-activations ``k = x W + bias``::

        f = σ(k_f)   i = σ(k_i)   f' = f / (f + i)   i' = i / (f + i)   h̃ = k_h
        a = f'       b = i' ⊙ h̃

    Where both gates underflow (``f + i = 0`` in floating point, ``k_f, k_i`` below
    about −88 in float32) ``f'`` is its limit ``σ(k_f − k_i)``, so no step divides
    by zero. ``k`` is ``(..., 3H)``. (This costs two exponentials per unit; the
    log-space form ``σ(log σ(k_f) − log σ(k_i))`` measured 4x slower on CPU.)

    Examples:
        >>> a, b = min_lstm_coefficients(jnp.array([0.0, 0.0, 2.0]))
        >>> a, b
        (Array([0.5], dtype=float32), Array([1.], dtype=float32))
    """
    k_f, k_i, k_h = jnp.split(k, 3, axis=-1)
    f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
    total = f + i
    ok = total > 0
    f_norm = jnp.where(ok, f / jnp.where(ok, total, 1), jax.nn.sigmoid(k_f - k_i))
    return f_norm, (1 - f_norm) * k_h


def min_lstm_step(
    params: MinLSTMParams,
    carry: jax.Array,
    x: jax.Array,
    *,
    input_mask: jax.Array | None = None,
    recurrent_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One minLSTM step::

        f = σ(x W_f + b_f)    i = σ(x W_i + b_i)    h̃ = x W_h + b_h
        f' = f / (f + i)      i' = i / (f + i)
        h' = f' ⊙ h + i' ⊙ h̃                        y = h'

    Args:
        params: ``MinLSTMParams``: ``kernel`` ``(I, 3H)``, ``bias`` ``(3H,)`` or None.
        carry: the previous hidden state ``h``, ``(..., H)`` (there is no cell state).
        x: input ``(..., I)``.
        input_mask: optional dropout mask on ``x`` (shared ``(..., I)`` or per gate
            ``(..., 3, I)``).
        recurrent_mask: must be None: the cell has no recurrent kernel to drop from.

    Returns:
        ``(h', h')``.

    Examples:
        >>> p = init_min_lstm(jax.random.key(0), 3, 2)
        >>> h, y = min_lstm_step(p, jnp.zeros((4, 2)), jnp.ones((4, 3)))
        >>> y.shape
        (4, 2)
    """
    h = _step_input(params, MinLSTMParams, carry, x, recurrent_mask, "min_lstm_step")
    a, b = min_lstm_coefficients(_preactivations(params, x.astype(h.dtype), input_mask, 3))
    h = a * h + b
    return h, h


SPEC = register(CellSpec(
    kind="min_lstm", layer="min_lstm", keras="MinLSTM", torch=None, gates=3,
    step=min_lstm_step, init=init_min_lstm, params_type=MinLSTMParams, state_fields=("h",),
    state_type=None, options=(), fused="jaxrnn._fused.min_rnn",
    methods=("sequential", "associative", "chunked"), coefficients=min_lstm_coefficients,
))  # fmt: skip
