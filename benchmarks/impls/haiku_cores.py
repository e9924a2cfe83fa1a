"""Haiku: ``hk.LSTM`` / ``hk.GRU`` / ``hk.VanillaRNN`` with ``hk.dynamic_unroll``.

Two differ from the others' functions, so they load the weights and are timed but
not compared: ``hk.GRU`` is the reset-before GRU (the others are reset-after) and
``hk.VanillaRNN`` applies ReLU, not tanh.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from ._common import blocks, jax_built, sizes

CORES = {"rnn": hk.VanillaRNN, "lstm": hk.LSTM, "gru": hk.GRU}


def lstm_params(w):
    """Haiku's LSTM: one Linear on ``concat[x, h]``, gates i, g, f, o, +1 on f at every call."""
    order = [0, 2, 1, 3]  # i, f, g, o -> i, g, f, o
    kernel = np.concatenate([w.kernel, w.recurrent_kernel], axis=0)
    kernel = np.concatenate([blocks(kernel, 4)[k] for k in order], axis=-1)
    b_i, b_f, b_g, b_o = blocks(w.bias, 4)
    bias = np.concatenate([b_i, b_g, b_f - 1, b_o])
    return {"lstm/linear": {"w": kernel, "b": bias}}


def gru_params(w):
    """Haiku's GRU has Keras' gate order z, r, n but is reset-before (no recurrent bias)."""
    return {"gru": {"w_i": w.kernel, "w_h": w.recurrent_kernel, "b": w.bias}}


def rnn_params(w):
    """Haiku's VanillaRNN: two Linears, both with a bias (``double_bias=True``)."""
    return {
        "vanilla_rnn/linear": {"w": w.kernel, "b": w.bias},
        "vanilla_rnn/linear_1": {"w": w.recurrent_kernel, "b": np.zeros_like(w.bias)},
    }


LOADERS = {"rnn": rnn_params, "lstm": lstm_params, "gru": gru_params}


def build(cell, weights, x, target):
    _, H = sizes(weights)
    batch = x.shape[0]

    def unroll(x):
        core = CORES[cell](H)
        ys, _ = hk.dynamic_unroll(core, x, core.initial_state(batch), time_major=False)
        return ys  # (B, T, H)

    model = hk.without_apply_rng(hk.transform(unroll))
    shapes = jax.tree.map(np.shape, dict(jax.eval_shape(model.init, jax.random.key(0), x)))
    params = LOADERS[cell](weights)
    if jax.tree.map(np.shape, params) != shapes:
        raise ValueError(f"haiku parameter layout changed: {shapes}")
    params = jax.tree.map(jnp.asarray, params)
    return jax_built(model.apply, params, x, target, shares_weights=cell == "lstm")


IMPLS = {"haiku": build}
