"""The LSTM cell (Hochreiter & Schmidhuber, with forget gate), gate order i, f, g, o."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers

from .._checks import check_hidden, check_step
from .._dropout import masked_matmul
from .activations import Activation, get_activation
from .init import draw
from .orthogonal import orthogonal
from .spec import CellSpec, register


class LSTMParams(NamedTuple):
    """Parameters of an LSTM cell, Keras layout, gates ``i, f, g, o`` along the last axis."""

    kernel: jax.Array  # (I, 4H)
    recurrent_kernel: jax.Array  # (H, 4H)
    bias: jax.Array | None  # (4H,) or None


class LSTMState(NamedTuple):
    """The LSTM carry: hidden state ``h`` and cell state ``c`` (Keras' ``[h, c]`` order)."""

    h: jax.Array  # (..., H)
    c: jax.Array  # (..., H)


def init_lstm(
    key: jax.Array, input_size: int, hidden_size: int, *, dtype=jnp.float32, use_bias: bool = True,
    unit_forget_bias: bool = True, kernel_init=initializers.glorot_uniform(),
    recurrent_init=orthogonal(), bias_init=initializers.zeros,
) -> LSTMParams:  # fmt: skip
    """Initialise an LSTM cell with Keras' defaults.

    Glorot-uniform kernel ``(I, 4H)``, orthogonal recurrent kernel ``(H, 4H)``,
    ``bias_init`` for the bias with the forget-gate slice set to one when
    ``unit_forget_bias`` (as Keras: ``[b_i, 1, b_g, b_o]``).

    Examples:
        >>> p = init_lstm(jax.random.key(0), 3, 2)
        >>> p.bias.tolist()
        [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    k_w, k_u, k_b = jax.random.split(key, 3)
    h4 = 4 * hidden_size
    bias = None
    if use_bias:
        if unit_forget_bias:
            k_i, k_go = jax.random.split(k_b)
            bias = jnp.concatenate(
                [
                    draw(bias_init, k_i, (hidden_size,), dtype),
                    jnp.ones((hidden_size,), dtype),
                    draw(bias_init, k_go, (2 * hidden_size,), dtype),
                ]
            )
        else:
            bias = draw(bias_init, k_b, (h4,), dtype)
    return LSTMParams(
        kernel=draw(kernel_init, k_w, (input_size, h4), dtype),
        recurrent_kernel=draw(recurrent_init, k_u, (hidden_size, h4), dtype),
        bias=bias,
    )


def lstm_step(
    params: LSTMParams,
    carry: LSTMState,
    x: jax.Array,
    *,
    activation: str | Activation = jnp.tanh,
    recurrent_activation: str | Activation = jax.nn.sigmoid,
    input_mask: jax.Array | None = None,
    recurrent_mask: jax.Array | None = None,
) -> tuple[LSTMState, jax.Array]:
    """One LSTM step::

        i = σ(x W_i + h U_i + b_i)      f = σ(x W_f + h U_f + b_f)
        g = act(x W_g + h U_g + b_g)    o = σ(x W_o + h U_o + b_o)
        c' = f ⊙ c + i ⊙ g              h' = o ⊙ act(c')          y = h'

    with σ = ``recurrent_activation`` and act = ``activation``.

    Args:
        params: ``LSTMParams``: ``kernel`` ``(I, 4H)``, ``recurrent_kernel``
            ``(H, 4H)``, ``bias`` ``(4H,)`` or None; gates ``i, f, g, o``.
        carry: ``LSTMState(h, c)``, each ``(..., H)``.
        x: input ``(..., I)``, any leading batch dims or none.
        activation: callable or Keras name, ``act`` above.
        recurrent_activation: callable or Keras name for the gates, ``σ`` above.
        input_mask: optional dropout mask for ``x``, shared ``(..., I)`` or per
            gate ``(..., 4, I)``.
        recurrent_mask: optional dropout mask for ``h``, shared ``(..., H)`` or per
            gate ``(..., 4, H)``; ``c`` is never dropped.

    Returns:
        ``(LSTMState(h', c'), h')``.

    Raises:
        ValueError: sizes disagree with ``params``.
        TypeError: the carry is not an ``LSTMState``, or has the wrong dtype.

    Examples:
        >>> p = init_lstm(jax.random.key(0), 3, 2)
        >>> s, y = lstm_step(p, LSTMState(jnp.zeros(2), jnp.zeros(2)), jnp.ones(3))
        >>> s.c.shape, y.shape
        ((2,), (2,))
    """
    where = "lstm_step"
    hidden, dtype = check_step(params, LSTMParams, x, where)
    if not isinstance(carry, LSTMState):
        raise TypeError(
            f"{where}: carry must be an LSTMState(h, c), got {type(carry).__name__}. "
            "Wrap it as jaxrnn.LSTMState(h=h, c=c) (note: Flax uses (c, h) order), or make "
            "zeros with jaxrnn.zero_state(params, batch_shape)."
        )
    check_hidden(carry.h, hidden, dtype, where, "carry.h")
    check_hidden(carry.c, hidden, dtype, where, "carry.c")
    act = get_activation(activation, where=where, arg="activation")
    rec_act = get_activation(recurrent_activation, where=where, arg="recurrent_activation")
    x = x.astype(dtype)
    h, c = carry
    a = masked_matmul(x, params.kernel, input_mask, 4) + masked_matmul(
        h, params.recurrent_kernel, recurrent_mask, 4
    )
    if params.bias is not None:
        a = a + params.bias
    a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
    i, f, g, o = rec_act(a_i), rec_act(a_f), act(a_g), rec_act(a_o)
    c = f * c + i * g
    h = o * act(c)
    return LSTMState(h, c), h


SPEC = register(CellSpec(
    kind="lstm", layer="lstm", keras="LSTM", torch="LSTM", gates=4,
    step=lstm_step, init=init_lstm, params_type=LSTMParams, state_fields=("h", "c"),
    state_type=LSTMState, options=("activation", "recurrent_activation"),
    init_options=("unit_forget_bias",), fused="jaxrnn._fused.lstm",
    methods=("sequential", "quasi_deer", "deer"),
))  # fmt: skip
