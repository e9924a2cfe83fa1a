"""The three cells against float64 NumPy references, plus jit / vmap / grad / dtype sweeps."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn import LSTMState
from tests.helpers import CELLS, as_tuple, gru_ref, lstm_ref, make, random_carry, relu, rnn_ref


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 3)])
def test_step_matches_numpy_reference(name, batch_shape):
    p, step, ref = make(name)
    carry = random_carry(p, batch_shape, jax.random.key(7))
    x = jax.random.normal(jax.random.key(8), (*batch_shape, 3))
    new, y = step(p, carry, x)
    want = ref(
        p, tuple(np.asarray(c, np.float64) for c in as_tuple(carry)), np.asarray(x, np.float64)
    )
    for got, w in zip(as_tuple(new), want, strict=True):
        assert got.shape == (*batch_shape, 4)
        np.testing.assert_allclose(got, w, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(y, want[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CELLS)
def test_scan_composes_and_matches_reference_loop(name):
    p, step, ref = make(name)
    carry = random_carry(p, (2,), jax.random.key(3))
    xs = jax.random.normal(jax.random.key(4), (6, 2, 3))  # time-major for lax.scan
    final, ys = jax.lax.scan(functools.partial(step, p), carry, xs)
    c = tuple(np.asarray(v, np.float64) for v in as_tuple(carry))
    for t in range(6):
        c = ref(p, c, np.asarray(xs[t], np.float64))
        np.testing.assert_allclose(ys[t], c[0], atol=1e-5, rtol=1e-5)
    for got, w in zip(as_tuple(final), c, strict=True):
        np.testing.assert_allclose(got, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CELLS)
def test_jit_equals_eager_and_vmap_equals_loop(name):
    p, step, _ = make(name)
    carry = random_carry(p, (4,), jax.random.key(5))
    x = jax.random.normal(jax.random.key(6), (4, 3))
    eager = step(p, carry, x)
    jitted = jax.jit(step)(p, carry, x)
    mapped = jax.vmap(step, in_axes=(None, 0, 0))(p, carry, x)
    looped = [step(p, jax.tree.map(lambda a, i=i: a[i], carry), x[i]) for i in range(4)]
    for i in range(4):
        for a, b in zip(
            jax.tree.leaves(looped[i]),
            jax.tree.leaves(jax.tree.map(lambda a, i=i: a[i], mapped)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_vmap_over_parameters(name):
    """A sweep: several parameter sets mapped in one call equal separate calls."""
    ps = [make(name, seed=s)[0] for s in range(3)]
    step = make(name)[1]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *ps)
    carry = random_carry(ps[0], (2,), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (2, 3))
    out = jax.vmap(step, in_axes=(0, None, None))(stacked, carry, x)
    for k, p in enumerate(ps):
        want = step(p, carry, x)
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(out), strict=True):
            np.testing.assert_allclose(a, b[k], atol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_float64_matches_reference_tightly_and_grads_match_finite_differences(name):
    with jax.enable_x64(True):
        p, step, ref = make(name, dtype=jnp.float64)
        carry = random_carry(p, (2,), jax.random.key(9))
        x = jax.random.normal(jax.random.key(10), (2, 3), jnp.float64)
        new, _ = step(p, carry, x)
        want = ref(p, tuple(np.asarray(c) for c in as_tuple(carry)), np.asarray(x))
        for got, w in zip(as_tuple(new), want, strict=True):
            assert got.dtype == jnp.float64
            np.testing.assert_allclose(got, w, atol=1e-12, rtol=1e-12)

        def loss(p, carry, x):
            c, y = step(p, carry, x)
            return sum(jnp.sum(jnp.sin(v)) for v in jax.tree.leaves(c)) + jnp.sum(y**2)

        check_grads(loss, (p, carry, x), order=2, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_hidden_size_one_and_unbatched(name):
    p, step, ref = make(name, input_size=2, hidden=1)
    carry = random_carry(p, (), jax.random.key(0))
    x = jnp.array([0.3, -0.7])
    new, y = step(p, carry, x)
    want = ref(
        p, tuple(np.asarray(c, np.float64) for c in as_tuple(carry)), np.asarray(x, np.float64)
    )
    assert y.shape == (1,)
    np.testing.assert_allclose(y, want[0], atol=1e-6)


def test_activation_names_equal_callables():
    p, _, _ = make("lstm")
    carry = random_carry(p, (2,), jax.random.key(0))
    x = jnp.ones((2, 3))
    a = jaxrnn.lstm_step(p, carry, x, activation="relu", recurrent_activation="hard_sigmoid")
    b = jaxrnn.lstm_step(
        p, carry, x, activation=jax.nn.relu, recurrent_activation=jax.nn.hard_sigmoid
    )
    hs = lambda v: np.clip((v + 3) / 6, 0, 1)  # Keras 3 hard_sigmoid  # noqa: E731
    want = lstm_ref(
        p, *(np.asarray(c, np.float64) for c in carry), np.asarray(x, np.float64), act=relu, rec=hs
    )
    np.testing.assert_allclose(a[1], b[1], atol=0)
    np.testing.assert_allclose(a[1], want[0], atol=1e-5)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "gru_reset_before"])
@pytest.mark.parametrize("per_gate", [False, True])
def test_dropout_masks_in_step_match_reference(name, per_gate):
    p, step, _ = make(name)
    gates = {"rnn": 1, "lstm": 4}.get(name, 3)
    masks = jaxrnn.make_dropout_masks(
        jax.random.key(2),
        (5,),
        3,
        4,
        gates,
        dropout=0.4,
        recurrent_dropout=0.3 if per_gate else 0.0,
    )
    carry = random_carry(p, (5,), jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (5, 3))
    new, _ = step(p, carry, x, input_mask=masks.input, recurrent_mask=masks.recurrent)
    mx = np.asarray(masks.input, np.float64)
    mh = None if masks.recurrent is None else np.asarray(masks.recurrent, np.float64)
    c = tuple(np.asarray(v, np.float64) for v in as_tuple(carry))
    xx = np.asarray(x, np.float64)
    if name == "rnn":
        mh1 = None if mh is None else mh[:, 0]
        want = (rnn_ref(p, c[0], xx, m_x=mx if mx.ndim == 2 else mx[:, 0], m_h=mh1),)
    elif name == "lstm":
        want = lstm_ref(p, c[0], c[1], xx, m_x=mx, m_h=mh)
    else:
        want = (gru_ref(p, c[0], xx, reset_after=name == "gru", m_x=mx, m_h=mh),)
    for got, w in zip(as_tuple(new), want, strict=True):
        np.testing.assert_allclose(got, w, atol=1e-5, rtol=1e-5)


def test_dropout_masks_structure_and_scale():
    m = jaxrnn.make_dropout_masks(
        jax.random.key(0), (4000,), 3, 5, 4, dropout=0.25, recurrent_dropout=0.5
    )
    assert m.input.shape == (4000, 4, 3) and m.recurrent.shape == (4000, 4, 5)
    np.testing.assert_allclose(np.unique(np.asarray(m.input)), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(float((m.input == 0).mean()) - 0.25) < 0.01
    assert abs(float((m.recurrent == 0).mean()) - 0.5) < 0.01
    shared = jaxrnn.make_dropout_masks(jax.random.key(0), (2,), 3, 5, 4, dropout=0.25)
    assert shared.input.shape == (2, 3) and shared.recurrent is None
    assert jaxrnn.make_dropout_masks(None, (2,), 3, 5, 4, dropout=0.5) == (None, None)


def test_init_defaults_match_keras():
    p = jaxrnn.init_lstm(jax.random.key(0), 6, 8)
    assert p.kernel.shape == (6, 32) and p.recurrent_kernel.shape == (8, 32)
    np.testing.assert_array_equal(p.bias, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])
    limit = np.sqrt(6 / (6 + 32))  # glorot uniform over (I, 4H)
    assert np.abs(p.kernel).max() <= limit and np.abs(p.kernel).max() > 0.8 * limit
    u = np.asarray(p.recurrent_kernel, np.float64)  # orthogonal rows
    np.testing.assert_allclose(u @ u.T, np.eye(8), atol=1e-5)
    no_fb = jaxrnn.init_lstm(jax.random.key(0), 6, 8, unit_forget_bias=False)
    np.testing.assert_array_equal(no_fb.bias, np.zeros(32))
    assert jaxrnn.init_lstm(jax.random.key(0), 6, 8, use_bias=False).bias is None
    g = jaxrnn.init_gru(jax.random.key(0), 6, 8)
    assert g.bias.shape == (24,) and g.recurrent_bias.shape == (24,)
    g0 = jaxrnn.init_gru(jax.random.key(0), 6, 8, reset_after=False)
    assert g0.recurrent_bias is None
    r = jaxrnn.init_rnn(
        jax.random.key(0), 6, 8, dtype=jnp.bfloat16, bias_init=jax.nn.initializers.ones
    )
    assert r.kernel.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(r.bias, np.float32), np.ones(8))


def test_zero_state_shapes_and_types():
    lp = jaxrnn.init_lstm(jax.random.key(0), 2, 3)
    s = jaxrnn.zero_state(lp, (4,))
    assert isinstance(s, LSTMState) and s.h.shape == (4, 3) and not s.c.any()
    assert jaxrnn.zero_state(jaxrnn.init_gru(jax.random.key(0), 2, 3), 5).shape == (5, 3)
    assert jaxrnn.zero_state(jaxrnn.init_rnn(jax.random.key(0), 2, 3)).shape == (3,)
