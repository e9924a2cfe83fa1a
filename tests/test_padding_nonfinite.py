"""Padded steps are never read: NaN or inf padding reaches no value and no gradient.

Padding with NaN is common (pandas, ragged series). Every check compares a run
whose padded steps hold NaN or inf with the same run on zero padding: outputs,
final states and the gradients with respect to parameters, inputs and initial
state must be finite and bit-identical.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.resets import unroll_with_resets

B, T, I, H = 3, 6, 2, 5
LENGTHS = jnp.array([6, 4, 0])
# a mask with gaps in the middle as well as at the end
MASK = jnp.array(
    [
        [True, False, True, True, False, False],
        [True, True, True, True, False, False],
        [False, False, False, False, False, False],
    ]
)
CELLS = {
    "simple_rnn": (jaxrnn.init_rnn, jaxrnn.simple_rnn),
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm),
    "gru": (jaxrnn.init_gru, jaxrnn.gru),
}


def padded(valid, fill, batch=B):
    """Inputs ``(batch, T, I)`` whose steps outside ``valid`` hold ``fill``."""
    x = jax.random.normal(jax.random.key(7), (batch, T, I))
    return jnp.where(valid[..., None], x, fill)


def assert_same_and_finite(tree_bad, tree_zero):
    for bad, zero in zip(jax.tree.leaves(tree_bad), jax.tree.leaves(tree_zero), strict=True):
        assert bool(jnp.isfinite(bad).all()), "a padded NaN/inf reached a value or gradient"
        np.testing.assert_array_equal(bad, zero)


def value_and_grads(layer, **kw):
    """``run(params, x, state)``: the layer's outputs and the gradients of a loss over them
    (params, x, state), compiled once and called on each padding."""

    def loss(p, x, s):
        out, final = layer(p, x, initial_state=s, return_state=True, **kw)
        return jnp.sum(out**2) + sum(jnp.sum(f) for f in jax.tree.leaves(final)), (out, final)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize(
    "impl, remat, by",
    [
        ("auto", None, "seq_lengths"),
        ("auto", None, "mask"),
        ("scan", None, "seq_lengths"),
        ("scan", None, "mask"),
        ("auto", "sqrt", "seq_lengths"),
        ("auto", "sqrt", "mask"),
        ("auto", "step", "seq_lengths"),
    ],
)
def test_layers_never_read_padding(name, impl, remat, by):
    init, layer = CELLS[name]
    p = init(jax.random.key(0), I, H)
    valid = (jnp.arange(T)[None] < LENGTHS[:, None]) if by == "seq_lengths" else MASK
    arg = {"seq_lengths": LENGTHS} if by == "seq_lengths" else {"mask": MASK}
    s0 = jax.tree.map(lambda a: a + 0.1, jaxrnn.zero_state(p, (B,)))
    # lengths: backwards too (each sequence reversed within its length); masks: forwards
    go_backwards = by == "seq_lengths"
    kw = dict(arg, impl=impl, remat=remat, go_backwards=go_backwards, return_sequences=True)
    run = value_and_grads(layer, **kw)
    zero = run(p, padded(valid, 0.0), s0)
    for fill in (jnp.nan, jnp.inf, -jnp.inf):
        assert_same_and_finite(run(p, padded(valid, fill), s0), zero)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_large_batch_paths_never_read_padding(name):
    """From 64 sequences on the LSTM's gradient takes another path (autodiff of an
    in-loop projection); time-major input and dropout too."""
    init, layer = CELLS[name]
    p = init(jax.random.key(0), I, H)
    lengths = jnp.arange(64) % (T + 1)
    valid = jnp.arange(T)[None] < lengths[:, None]
    s0 = jaxrnn.zero_state(p, (64,))
    kw = dict(seq_lengths=lengths, time_major=True, dropout=0.3, key=jax.random.key(3))
    tm = functools.partial(jnp.swapaxes, axis1=0, axis2=1)
    run = value_and_grads(layer, **kw)
    zero = run(p, tm(padded(valid, 0.0, 64)), s0)
    bad = run(p, tm(padded(valid, jnp.nan, 64)), s0)
    assert_same_and_finite(bad, zero)


def test_bidirectional_and_stacked_never_read_padding():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    bi = jaxrnn.BidirectionalParams(jaxrnn.init_gru(k1, I, H), jaxrnn.init_gru(k2, I, H))
    deep = [jaxrnn.init_lstm(k3, I, H), jaxrnn.init_lstm(k1, H, H)]
    valid = jnp.arange(T)[None] < LENGTHS[:, None]

    def loss(params, x):
        bi_p, deep_p = params
        a = jaxrnn.bidirectional(jaxrnn.gru, bi_p, x, seq_lengths=LENGTHS, return_sequences=True)
        b = jaxrnn.stacked(jaxrnn.lstm, deep_p, x, seq_lengths=LENGTHS, return_sequences=True)
        return jnp.sum(a**2) + jnp.sum(b**2)

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    zero = run((bi, deep), padded(valid, 0.0))
    for fill in (jnp.nan, jnp.inf):
        assert_same_and_finite(run((bi, deep), padded(valid, fill)), zero)


def test_modules_never_read_padding():
    from flax import nnx

    import jaxrnn.linen
    import jaxrnn.nnx

    valid = jnp.arange(T)[None] < LENGTHS[:, None]
    model = jaxrnn.nnx.LSTM(I, H, rngs=nnx.Rngs(0), return_sequences=True)

    def nnx_loss(m, x):
        return jnp.sum(m(x, seq_lengths=LENGTHS) ** 2)

    zero = nnx.value_and_grad(nnx_loss, argnums=(0, 1))(model, padded(valid, 0.0))
    bad = nnx.value_and_grad(nnx_loss, argnums=(0, 1))(model, padded(valid, jnp.nan))
    assert_same_and_finite(bad, zero)

    layer = jaxrnn.linen.GRU(H, return_sequences=True)
    variables = layer.init(jax.random.key(0), padded(valid, 0.0), seq_lengths=LENGTHS)

    def linen_loss(v, x):
        return jnp.sum(layer.apply(v, x, seq_lengths=LENGTHS) ** 2)

    zero = jax.value_and_grad(linen_loss, argnums=(0, 1))(variables, padded(valid, 0.0))
    bad = jax.value_and_grad(linen_loss, argnums=(0, 1))(variables, padded(valid, jnp.inf))
    assert_same_and_finite(bad, zero)


def my_step(w, h, x):
    """A user's own step (not a built-in cell): a pytree input, a product of inputs."""
    x1, x2 = x
    h = jnp.tanh(h @ w["u"] + (x1 * x2) @ w["w"])
    return h, h.sum(-1, keepdims=True)


@pytest.mark.parametrize("remat", [None, "step", "sqrt"])
@pytest.mark.parametrize("by", ["seq_lengths", "mask"])
def test_unroll_any_step_never_reads_padding(remat, by):
    w = {"u": 0.3 * jnp.eye(H), "w": jnp.ones((I, H))}
    valid = (jnp.arange(T)[None] < LENGTHS[:, None]) if by == "seq_lengths" else MASK
    arg = {"seq_lengths": LENGTHS} if by == "seq_lengths" else {"mask": MASK}

    def loss(w, xs, h0, reverse):
        h, ys = jaxrnn.unroll(my_step, w, xs, h0, reverse=reverse, remat=remat, **arg)
        return jnp.sum(ys**2) + jnp.sum(h)

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    h0 = jnp.full((B, H), 0.2)
    for reverse in (False, True):
        zero = run(w, (padded(valid, 0.0), padded(valid, 0.0)), h0, reverse)
        for fill in (jnp.nan, jnp.inf):
            bad = run(w, (padded(valid, fill), padded(valid, 1.0)), h0, reverse)
            assert_same_and_finite(bad, zero)


def test_unroll_with_resets_never_reads_padding():
    p = jaxrnn.init_lstm(jax.random.key(0), I, H)
    valid = jnp.arange(T)[None] < LENGTHS[:, None]
    resets = jnp.zeros((B, T), bool).at[:, 2].set(True)

    def loss(p, x):
        c, ys = unroll_with_resets(
            jaxrnn.lstm_step, p, x, jaxrnn.zero_state(p, (B,)), resets, seq_lengths=LENGTHS
        )
        return jnp.sum(ys**2) + jnp.sum(c.c)

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    assert_same_and_finite(run(p, padded(valid, jnp.nan)), run(p, padded(valid, 0.0)))
