"""The obvious code a user writes: a hand-written cell under ``lax.scan``.

Same weights and equations as jaxrnn (Keras layout), nothing clever: the input
projection is computed inside the loop, one step at a time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._common import jax_built


def rnn_cell(p, h, x):
    h = jnp.tanh(x @ p.kernel + h @ p.recurrent_kernel + p.bias)
    return h, h


def lstm_cell(p, carry, x):
    h, c = carry
    a = x @ p.kernel + h @ p.recurrent_kernel + p.bias
    a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
    c = jax.nn.sigmoid(a_f) * c + jax.nn.sigmoid(a_i) * jnp.tanh(a_g)
    h = jax.nn.sigmoid(a_o) * jnp.tanh(c)
    return (h, c), h


def gru_cell(p, h, x):
    ax_z, ax_r, ax_n = jnp.split(x @ p.kernel + p.bias, 3, axis=-1)
    ah_z, ah_r, ah_n = jnp.split(h @ p.recurrent_kernel + p.recurrent_bias, 3, axis=-1)
    z = jax.nn.sigmoid(ax_z + ah_z)
    r = jax.nn.sigmoid(ax_r + ah_r)
    n = jnp.tanh(ax_n + r * ah_n)
    h = z * h + (1 - z) * n
    return h, h


CELLS = {"rnn": rnn_cell, "lstm": lstm_cell, "gru": gru_cell}


def initial_carry(cell, batch, hidden):
    h = jnp.zeros((batch, hidden))
    return (h, h) if cell == "lstm" else h


def scan_layer(cell, params, x, step=None):
    """All outputs ``(B, T, H)`` of ``CELLS[cell]`` scanned over ``x`` ``(B, T, I)``.

    ``step`` replaces the cell function (e.g. a ``jax.checkpoint``-ed one).
    """
    step = step or CELLS[cell]
    carry = initial_carry(cell, x.shape[0], params.recurrent_kernel.shape[0])
    _, ys = jax.lax.scan(functools.partial(step, params), carry, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1)


def build(cell, weights, x, target):
    params = jax.tree.map(jnp.asarray, weights)
    forward = functools.partial(scan_layer, cell)
    return jax_built(forward, params, x, target, shares_weights=True)


IMPLS = {"scan": build}
