"""Flax Linen: ``nn.RNN`` over ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ._common import blocks, jax_built, sizes


def lstm_params(w):
    """Reference LSTM weights as Linen's per-gate Dense parameters (both LSTM cells)."""
    params = {}
    gates = zip(
        "ifgo", blocks(w.kernel, 4), blocks(w.recurrent_kernel, 4), blocks(w.bias, 4), strict=True
    )
    for gate, kernel, recurrent_kernel, bias in gates:
        params[f"i{gate}"] = {"kernel": kernel}
        params[f"h{gate}"] = {"kernel": recurrent_kernel, "bias": bias}
    return params


def gru_params(w):
    """Linen's GRUCell: input Dense with bias for r, z, n; recurrent bias only on n."""
    b_z, b_r, b_n = blocks(w.bias, 3)
    c_z, c_r, c_n = blocks(w.recurrent_bias, 3)
    w_z, w_r, w_n = blocks(w.kernel, 3)
    u_z, u_r, u_n = blocks(w.recurrent_kernel, 3)
    return {
        "ir": {"kernel": w_r, "bias": b_r + c_r},
        "iz": {"kernel": w_z, "bias": b_z + c_z},
        "in": {"kernel": w_n, "bias": b_n},
        "hr": {"kernel": u_r},
        "hz": {"kernel": u_z},
        "hn": {"kernel": u_n, "bias": c_n},
    }


def simple_params(w):
    return {"i": {"kernel": w.kernel, "bias": w.bias}, "h": {"kernel": w.recurrent_kernel}}


def build(cell, weights, x, target, *, optimized=False):
    _, H = sizes(weights)
    if cell == "lstm":
        rnn_cell = nn.OptimizedLSTMCell(H) if optimized else nn.LSTMCell(H)
        loaded = lstm_params(weights)
    elif optimized:
        return None  # OptimizedLSTMCell is an LSTM only
    elif cell == "gru":
        rnn_cell, loaded = nn.GRUCell(H), gru_params(weights)
    else:
        rnn_cell, loaded = nn.SimpleCell(H), simple_params(weights)
    model = nn.RNN(rnn_cell)
    shapes = jax.tree.map(np.shape, jax.eval_shape(model.init, jax.random.key(0), x)["params"])
    loaded = {"cell": jax.tree.map(jnp.asarray, loaded)}
    if jax.tree.map(np.shape, loaded) != shapes:
        raise ValueError(f"linen parameter layout changed: {shapes}")

    def forward(params, x):
        return model.apply({"params": params}, x)  # (B, T, H)

    return jax_built(forward, loaded, x, target, shares_weights=True)


IMPLS = {"linen": build, "linen-opt": functools.partial(build, optimized=True)}
