"""The Newton methods (quasi-DEER, DEER) through the layer functions and modules.

The solver itself (Jacobians against ``jax.jacfwd``, convergence, the adjoint,
``jaxrnn.unroll``) is tested in ``tests/test_newton.py``; here the layers'
options are held to the sequential layer (itself checked against Keras and
PyTorch elsewhere): values and gradients, lengths, masks, ``go_backwards``,
``initial_state``, NaN padding, ``return_info``, the fallback, and the errors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from tests.helpers import assert_tree_close, rel_err

CELLS = {
    "rnn": (jaxrnn.init_rnn, jaxrnn.simple_rnn),
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm),
    "gru": (jaxrnn.init_gru, jaxrnn.gru),
}
NEWTON = ("quasi_deer", "deer")


def _data(cell, batch, steps, inputs=3, hidden=6, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    params = CELLS[cell][0](k[0], inputs, hidden)
    x = jax.random.normal(k[1], (batch, steps, inputs))
    state = jaxrnn.zero_state(params, batch)
    state = jax.tree.map(lambda a: 0.5 * jax.random.normal(k[2], a.shape), state)
    return params, x, state


def _loss(cell, method, kw, params, x, state):
    ys, final = CELLS[cell][1](
        params, x, initial_state=state, return_sequences=True, return_state=True, method=method,
        **kw,
    )  # fmt: skip
    w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(s)) for s in jax.tree.leaves(final))


# (T, lengths, go_backwards): T = 0, 1 and 7 with and without lengths, each direction;
# T = 1000 and 10000 in test_long_sequences_equal_sequential_with_gradients
CASES = [
    (0, False, False), (0, True, True), (1, False, True), (1, True, False),
    (7, True, False), (7, False, True), (300, True, True),
]  # fmt: skip


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("method", NEWTON)
def test_newton_layer_equals_sequential_with_gradients(cell, method):
    for steps, lengths, go_backwards in CASES:
        params, x, state = _data(cell, 3, steps)
        kw = {"go_backwards": go_backwards}
        if lengths:
            kw["seq_lengths"] = jnp.array([steps, steps // 2, 0])
        fn = functools.partial(_loss, cell, method, kw)
        ref_fn = functools.partial(_loss, cell, "sequential", kw)
        got = jax.jit(jax.value_and_grad(fn, (0, 1, 2)))(params, x, state)
        ref = jax.jit(jax.value_and_grad(ref_fn, (0, 1, 2)))(params, x, state)
        assert_tree_close(
            got, ref, 1e-5, f"{cell}/{method}/T={steps}/lengths={lengths}/{go_backwards=}"
        )


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("method", NEWTON)
@pytest.mark.parametrize("steps", [1000, 10000])
def test_long_sequences_equal_sequential_with_gradients(cell, method, steps):
    # default tol and max_iter: values and gradients to 1e-5 relative, with and without
    # lengths (the refinement below tol is what brings quasi-DEER's gradients there)
    for lengths in (False, True):
        params, x, state = _data(cell, 2, steps, hidden=16, seed=steps + lengths)
        kw = {"seq_lengths": jnp.array([steps, steps // 3])} if lengths else {}
        fn = functools.partial(_loss, cell, method, kw)
        ref_fn = functools.partial(_loss, cell, "sequential", kw)
        got = jax.jit(jax.value_and_grad(fn, (0, 1, 2)))(params, x, state)
        ref = jax.jit(jax.value_and_grad(ref_fn, (0, 1, 2)))(params, x, state)
        assert_tree_close(got, ref, 1e-5, f"{cell}/{method}/T={steps}/{lengths=}")
        *_, info = CELLS[cell][1](params, x, initial_state=state, method=method,
                                  fallback=None, return_info=True, **kw)  # fmt: skip
        assert bool(info.converged), info  # the Newton result, not the fallback's


@pytest.mark.parametrize("method", NEWTON)
def test_gru_at_t_1000_and_lstm_with_a_mask(method):
    params, x, state = _data("gru", 2, 1000, hidden=16, seed=1)
    got, info = jaxrnn.gru(params, x, method=method, return_sequences=True, return_info=True)
    ref = jaxrnn.gru(params, x, return_sequences=True)
    assert bool(info.converged) and int(info.iterations) <= 16, info
    assert rel_err(got, ref) <= 1e-5
    params, x, state = _data("lstm", 2, 40, seed=2)
    mask = jax.random.bernoulli(jax.random.key(3), 0.7, (2, 40))
    got = jaxrnn.lstm(params, x, mask=mask, initial_state=state, method=method, return_state=True)
    ref = jaxrnn.lstm(params, x, mask=mask, initial_state=state, return_state=True)
    assert_tree_close(got, ref, 1e-5, "lstm with a mask")


@pytest.mark.parametrize("method", NEWTON)
def test_nan_padding_reaches_no_value_and_no_gradient(method):
    params, x, state = _data("gru", 3, 9)
    lengths = jnp.array([9, 4, 0])
    pad = jnp.arange(9)[None, :, None] >= lengths[:, None, None]
    kw = {"seq_lengths": lengths}
    fn = jax.value_and_grad(functools.partial(_loss, "gru", method, kw), (0, 1, 2))
    dirty = fn(params, jnp.where(pad, jnp.nan, x), state)
    clean = fn(params, jnp.where(pad, 0.0, x), state)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(dirty))
    assert_tree_close(dirty, clean, 1e-6, "NaN vs zero padding")
    assert float(jnp.abs(jnp.where(pad, dirty[1][1], 0)).max()) == 0.0


def test_unstable_lstm_falls_back_and_says_so():
    params, x, _ = _data("lstm", 2, 1000, hidden=16, seed=4)
    params = params._replace(recurrent_kernel=4.0 * params.recurrent_kernel)
    # the fallback is the generic scan of the step (the fused path differs by rounding)
    ref = jaxrnn.lstm(params, x, return_sequences=True, impl="scan")
    y, info = jaxrnn.lstm(
        params, x, method="quasi_deer", max_iter=30, return_sequences=True, return_info=True
    )
    assert not bool(info.converged) and int(info.iterations) <= 30
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)  # the sequential result
    y, info = jaxrnn.lstm(
        params, x, method="quasi_deer", max_iter=30, fallback=None, return_sequences=True,
        return_info=True,
    )  # fmt: skip
    assert not bool(info.converged) and np.isfinite(y).all()


def test_return_info_layout_vmap_and_modules():
    from flax import nnx

    import jaxrnn.nnx

    params, x, state = _data("gru", 4, 20)
    out, final, info = jaxrnn.gru(params, x, method="deer", return_state=True, return_info=True)
    assert out.shape == (4, 6) and final.shape == (4, 6) and info.iterations.shape == ()
    # vmap over single sequences: one Newton solve per sequence
    one = jax.vmap(lambda s: jaxrnn.gru(params, s[None], method="quasi_deer")[0])(x)
    np.testing.assert_allclose(one, jaxrnn.gru(params, x), rtol=1e-5, atol=1e-6)
    layer = jaxrnn.nnx.LSTM(3, 5, rngs=nnx.Rngs(0), method="quasi_deer", tol=1e-6)
    np.testing.assert_allclose(layer(x), jaxrnn.lstm(layer.params, x), rtol=1e-5, atol=1e-6)


def test_errors_name_the_argument():
    params, x, _ = _data("gru", 2, 5)
    with pytest.raises(ValueError, match=r"tol=0.001 applies to the Newton methods only"):
        jaxrnn.gru(params, x, tol=1e-3)
    with pytest.raises(ValueError, match=r"return_info=True applies to the Newton methods only"):
        jaxrnn.min_gru(jaxrnn.init_min_gru(jax.random.key(0), 3, 6), x, return_info=True)
    with pytest.raises(ValueError, match=r"method='deer' cannot run remat='sqrt'"):
        jaxrnn.gru(params, x, method="deer", remat="sqrt")
    with pytest.raises(ValueError, match=r"method='quasi_deer' cannot run recurrent_dropout"):
        jaxrnn.gru(params, x, method="quasi_deer", recurrent_dropout=0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"impl='fast' chooses .* method='sequential' only"):
        jaxrnn.gru(params, x, method="quasi_deer", impl="fast")
    with pytest.raises(ValueError, match=r"method='associative' is not offered by the GRU cell"):
        jaxrnn.gru(params, x, method="associative")
    with pytest.raises(ValueError, match=r"bidirectional: return_info=True is not supported"):
        bp = jaxrnn.BidirectionalParams(params, params)
        jaxrnn.bidirectional(jaxrnn.gru, bp, x, method="deer", return_info=True)
    with pytest.raises(ValueError, match=r"fallback='scan'; use 'sequential'"):
        jaxrnn.gru(params, x, method="deer", fallback="scan")
    with pytest.raises(ValueError, match=r"max_iter=0; it must be an integer >= 1"):
        jaxrnn.gru(params, x, method="deer", max_iter=0)


@settings(max_examples=15, deadline=None)
@given(
    cell=st.sampled_from(sorted(CELLS)),
    method=st.sampled_from(NEWTON),
    lengths=st.lists(st.integers(0, 23), min_size=3, max_size=3),
    scale=st.floats(0.2, 1.5),
    seed=st.integers(0, 2**16),
)
def test_property_newton_equals_sequential(cell, method, lengths, scale, seed):
    # fixed shapes (one compile per cell and method); lengths, weights and inputs vary
    params, x, state = _data(cell, 3, 23, inputs=2, hidden=4, seed=seed)
    params = params._replace(recurrent_kernel=scale * params.recurrent_kernel)
    kw = dict(initial_state=state, seq_lengths=jnp.array(lengths), return_sequences=True)
    ys, info = CELLS[cell][1](params, x, method=method, return_info=True, **kw)
    ref = CELLS[cell][1](params, x, **kw)
    # converged or not, the default fallback returns the sequential result
    np.testing.assert_allclose(ys, ref, rtol=1e-4, atol=1e-5)
    if bool(info.converged):
        assert int(info.iterations) <= 23 + 1  # at most T iterations make every state exact
