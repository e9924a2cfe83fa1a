"""Keras 3 on the JAX backend: ``keras.layers.SimpleRNN/LSTM/GRU(return_sequences=True)``.

Driven functionally: ``layer.stateless_call(trainable, non_trainable, x)`` inside
``jax.jit`` and ``jax.grad``, with the trainable variables as the weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ._common import jax_built, sizes  # noqa: E402

if keras.backend.backend() != "jax":
    raise ImportError(f"Keras runs on {keras.backend.backend()!r}; set KERAS_BACKEND=jax")

LAYERS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def keras_weights(cell, w):
    """Reference weights in ``layer.get_weights()`` order (GRU bias: rows input, recurrent)."""
    if cell == "gru":
        return [w.kernel, w.recurrent_kernel, np.stack([w.bias, w.recurrent_bias])]
    return [w.kernel, w.recurrent_kernel, w.bias]


def build(cell, weights, x, target):
    _, H = sizes(weights)
    # Zero initialisers only make building cheap: the weights are set just below.
    layer = LAYERS[cell](
        H, return_sequences=True, kernel_initializer="zeros", recurrent_initializer="zeros"
    )
    layer.build(x.shape)
    layer.set_weights(keras_weights(cell, weights))
    trainable = [jnp.asarray(v.value) for v in layer.trainable_variables]
    non_trainable = [jnp.asarray(v.value) for v in layer.non_trainable_variables]

    def forward(trainable, x):
        y, _ = layer.stateless_call(trainable, non_trainable, x)
        return y  # (B, T, H)

    return jax_built(forward, trainable, x, target, shares_weights=True)


IMPLS = {"keras": build}
