"""jaxrnn's public layer functions: ``simple_rnn``, ``lstm``, ``gru``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jaxrnn

from ._common import jax_built

LAYERS = {"rnn": jaxrnn.simple_rnn, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}


def build(cell, weights, x, target):
    layer = LAYERS[cell]

    def forward(params, x):
        return layer(params, x, return_sequences=True)  # (B, T, H)

    params = jax.tree.map(jnp.asarray, weights)
    return jax_built(forward, params, x, target, shares_weights=True)


IMPLS = {"jaxrnn": build}
