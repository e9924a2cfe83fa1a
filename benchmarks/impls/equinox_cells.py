"""Equinox: ``eqx.nn.LSTMCell`` / ``eqx.nn.GRUCell`` under ``lax.scan``, vmapped over the batch.

Equinox cells are unbatched, so the step is ``jax.vmap(cell)``. Equinox has no
simple RNN cell ("n/a"). The cells are built as shapes (``filter_eval_shape``) and
all their arrays replaced by the reference weights.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._common import blocks, jax_built, sizes, zrn_to_rzn


def build(cell, weights, x, target):
    I, H = sizes(weights)
    key = jax.random.key(0)
    w = weights
    if cell == "lstm":
        module = eqx.filter_eval_shape(eqx.nn.LSTMCell, I, H, key=key)
        new = (w.kernel.T, w.recurrent_kernel.T, w.bias)
        module = eqx.tree_at(lambda m: (m.weight_ih, m.weight_hh, m.bias), module, new)
    elif cell == "gru":
        # Equinox: input bias on r, z, n plus a recurrent bias on n only.
        c_r, c_z, c_n = blocks(zrn_to_rzn(w.recurrent_bias), 3)
        bias = zrn_to_rzn(w.bias) + np.concatenate([c_r, c_z, np.zeros_like(c_n)])
        module = eqx.filter_eval_shape(eqx.nn.GRUCell, I, H, key=key)
        new = (zrn_to_rzn(w.kernel).T, zrn_to_rzn(w.recurrent_kernel).T, bias, c_n)
        module = eqx.tree_at(lambda m: (m.weight_ih, m.weight_hh, m.bias, m.bias_n), module, new)
    else:
        return None  # Equinox has no simple RNN cell
    module = jax.tree.map(jnp.asarray, module)
    params, static = eqx.partition(module, eqx.is_array)

    def forward(params, x):
        step_fn = jax.vmap(eqx.combine(params, static))
        h0 = jnp.zeros((x.shape[0], H))

        def step(carry, x_t):
            carry = step_fn(x_t, carry)
            return carry, carry[0] if cell == "lstm" else carry

        carry = (h0, h0) if cell == "lstm" else h0
        _, ys = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(ys, 0, 1)  # (B, T, H)

    return jax_built(forward, params, x, target, shares_weights=True)


IMPLS = {"equinox": build}
