"""Flax NNX: ``nnx.RNN`` over ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell`` / ``SimpleCell``.

The module is split once into its graph definition and parameters (``nnx.Param``)
and merged back inside the pure function that is jitted: the functional NNX
style, which keeps NNX's Python overhead out of the timed call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._common import blocks, jax_built, sizes, zrn_to_rzn


def set_param(param, value):
    param.value = jnp.asarray(value)


def load_lstm(cell, w):
    """Reference LSTM weights (i, f, g, o) into an ``nnx.LSTMCell`` (one Linear per gate)."""
    kernels = blocks(w.kernel, 4)
    recurrent_kernels = blocks(w.recurrent_kernel, 4)
    biases = blocks(w.bias, 4)
    for k, gate in enumerate("ifgo"):
        dense_i = getattr(cell, "if_" if gate == "f" else f"i{gate}")  # `if` is a keyword
        dense_h = getattr(cell, f"h{gate}")
        set_param(dense_i.kernel, kernels[k])
        set_param(dense_h.kernel, recurrent_kernels[k])
        set_param(dense_h.bias, biases[k])
    return True


def load_optimized_lstm(cell, w):
    set_param(cell.dense_i.kernel, w.kernel)
    set_param(cell.dense_h.kernel, w.recurrent_kernel)
    set_param(cell.dense_h.bias, w.bias)
    return True


def load_gru(cell, w):
    """Flax's GRUCell has no recurrent bias on n: it loads the reference only when that is 0."""
    recurrent_bias = zrn_to_rzn(w.recurrent_bias)
    set_param(cell.dense_i.kernel, zrn_to_rzn(w.kernel))
    set_param(cell.dense_h.kernel, zrn_to_rzn(w.recurrent_kernel))
    b_r, b_z, b_n = blocks(recurrent_bias, 3)
    set_param(
        cell.dense_i.bias,
        zrn_to_rzn(w.bias) + np.concatenate([b_r, b_z, np.zeros_like(b_n)]),
    )
    return not np.any(b_n)


def load_simple(cell, w):
    set_param(cell.dense_i.kernel, w.kernel)
    set_param(cell.dense_i.bias, w.bias)
    set_param(cell.dense_h.kernel, w.recurrent_kernel)
    return True


def build(cell, weights, x, target, *, optimized=False):
    I, H = sizes(weights)
    if cell == "lstm":
        cls, load = (
            (nnx.OptimizedLSTMCell, load_optimized_lstm) if optimized else (nnx.LSTMCell, load_lstm)
        )
    elif optimized:
        return None  # OptimizedLSTMCell is an LSTM only
    elif cell == "gru":
        cls, load = nnx.GRUCell, load_gru
    else:
        cls, load = nnx.SimpleCell, load_simple
    # Shapes only (no eager initialisation): every Param is then set from the weights.
    rnn_cell = nnx.eval_shape(lambda: cls(I, H, rngs=nnx.Rngs(0)))
    shares = load(rnn_cell, weights)
    # rngs=False and an explicit zero carry: no RNG state to thread through jit/grad.
    graphdef, params = nnx.split(nnx.RNN(rnn_cell, rngs=False), nnx.Param)

    def forward(params, x):
        h0 = jnp.zeros((x.shape[0], H))
        carry = (h0, h0) if cell == "lstm" else h0  # Flax's LSTM carry is (c, h)
        return nnx.merge(graphdef, params)(x, initial_carry=carry)  # (B, T, H)

    if not all(isinstance(p, jax.Array) for p in jax.tree.leaves(params)):
        raise ValueError("flax nnx parameter layout changed: a Param was not loaded")

    return jax_built(forward, params, x, target, shares_weights=shares)


IMPLS = {"nnx": build, "nnx-opt": functools.partial(build, optimized=True)}
