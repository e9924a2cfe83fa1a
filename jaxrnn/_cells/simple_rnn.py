"""The simple (Elman) recurrent cell: ``h' = act(x W + h U + b)``."""

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


class RNNParams(NamedTuple):
    """Parameters of a simple RNN cell, Keras layout (``x @ kernel``)."""

    kernel: jax.Array  # (I, H)
    recurrent_kernel: jax.Array  # (H, H)
    bias: jax.Array | None  # (H,) or None


def init_rnn(
    key: jax.Array, input_size: int, hidden_size: int, *, dtype=jnp.float32, use_bias: bool = True,
    kernel_init=initializers.glorot_uniform(), recurrent_init=orthogonal(),
    bias_init=initializers.zeros,
) -> RNNParams:  # fmt: skip
    """Initialise a simple RNN cell with Keras' defaults.

    Glorot-uniform kernel, orthogonal recurrent kernel, zero bias. Initialisers
    are ``jax.nn.initializers`` callables ``(key, shape, dtype) -> array``.

    Examples:
        >>> p = init_rnn(jax.random.key(0), 3, 5)
        >>> p.kernel.shape, p.recurrent_kernel.shape, p.bias.shape
        ((3, 5), (5, 5), (5,))
    """
    k_w, k_u, k_b = jax.random.split(key, 3)
    return RNNParams(
        kernel=draw(kernel_init, k_w, (input_size, hidden_size), dtype),
        recurrent_kernel=draw(recurrent_init, k_u, (hidden_size, hidden_size), dtype),
        bias=draw(bias_init, k_b, (hidden_size,), dtype) if use_bias else None,
    )


def rnn_step(
    params: RNNParams,
    carry: jax.Array,
    x: jax.Array,
    *,
    activation: str | Activation = jnp.tanh,
    input_mask: jax.Array | None = None,
    recurrent_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One step of a simple (Elman) RNN::

        h' = activation(x W + h U + b)        y = h'

    Args:
        params: ``RNNParams`` with ``kernel`` ``(I, H)``, ``recurrent_kernel``
            ``(H, H)``, ``bias`` ``(H,)`` or None.
        carry: the previous hidden state ``h``, shape ``(..., H)``.
        x: the input at this step, shape ``(..., I)``; any leading batch dims
            (or none) as long as they broadcast with ``carry``'s.
        activation: callable or Keras name (``"tanh"``, ``"relu"``, ...).
        input_mask: optional dropout mask multiplied onto ``x`` before its
            matmul (see ``make_dropout_masks``).
        recurrent_mask: optional dropout mask multiplied onto ``h`` before its matmul.

    Returns:
        ``(h', h')``: the new carry and the output, both ``(..., H)``.

    Raises:
        ValueError: feature or hidden sizes disagree with ``params``.
        TypeError: non-float input, or a carry whose dtype is not the params'.

    Examples:
        >>> p = init_rnn(jax.random.key(0), 3, 2)
        >>> h, y = rnn_step(p, jnp.zeros(2), jnp.ones(3))
        >>> h.shape
        (2,)
    """
    where = "rnn_step"
    hidden, dtype = check_step(params, RNNParams, x, where)
    check_hidden(carry, hidden, dtype, where, "carry")
    act = get_activation(activation, where=where, arg="activation")
    x = x.astype(dtype)
    h = carry
    a = masked_matmul(x, params.kernel, input_mask, 1) + masked_matmul(
        h, params.recurrent_kernel, recurrent_mask, 1
    )
    if params.bias is not None:
        a = a + params.bias
    h = act(a)
    return h, h


SPEC = register(CellSpec(
    kind="rnn", layer="simple_rnn", keras="SimpleRNN", torch="RNN", gates=1,
    step=rnn_step, init=init_rnn, params_type=RNNParams, state_fields=("h",), state_type=None,
    options=("activation",), fused="jaxrnn._fused.rnn",
    methods=("sequential", "quasi_deer", "deer"),
))  # fmt: skip
