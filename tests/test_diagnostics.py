"""input_gradient_norms against finite differences and a per-step loop."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.diagnostics import input_gradient_norms


def _rnn_loss(params, w, x):
    h = jaxrnn.simple_rnn(params, x)  # (B, H)
    return jnp.mean((h @ w) ** 2)


def _setup(B=2, T=4, F=2, H=3):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = jaxrnn.init_rnn(k1, F, H)
    w = jax.random.normal(k2, (H,))
    x = jax.random.normal(k3, (B, T, F))
    return functools.partial(_rnn_loss, params, w), x


def test_matches_central_finite_differences():
    loss, x = _setup()
    x64 = np.asarray(x, np.float64)
    f = lambda a: float(loss(jnp.asarray(a, jnp.float32)))  # noqa: E731
    eps = 1e-2
    g = np.zeros_like(x64)
    for idx in np.ndindex(x64.shape):
        d = np.zeros_like(x64)
        d[idx] = eps
        g[idx] = (f(x64 + d) - f(x64 - d)) / (2 * eps)
    expected = np.linalg.norm(g, axis=-1).mean(axis=0)  # (T,)
    got = np.asarray(input_gradient_norms(loss, x))
    assert got.shape == (x.shape[1],)
    np.testing.assert_allclose(got, expected, rtol=2e-2, atol=1e-4)


def test_matches_per_step_loop_and_time_major():
    loss, x = _setup(B=3, T=5)
    B, T, _ = x.shape
    expected = []
    for t in range(T):
        for_t = lambda xt, t=t: loss(x.at[:, t].set(xt))  # noqa: E731
        gt = jax.grad(for_t)(x[:, t])  # (B, F)
        expected.append(float(jnp.mean(jnp.linalg.norm(gt, axis=-1))))
    np.testing.assert_allclose(input_gradient_norms(loss, x), expected, rtol=1e-5, atol=1e-7)
    tm = input_gradient_norms(
        lambda xt: loss(jnp.swapaxes(xt, 0, 1)), jnp.swapaxes(x, 0, 1), time_major=True
    )
    np.testing.assert_allclose(tm, expected, rtol=1e-5, atol=1e-7)


def test_errors():
    with pytest.raises(ValueError, match="batch and a time axis"):
        input_gradient_norms(jnp.sum, jnp.ones(3))
    with pytest.raises(TypeError, match="floating"):
        input_gradient_norms(jnp.sum, jnp.ones((2, 3), jnp.int32))
    with pytest.raises(TypeError, match="scalar"):
        input_gradient_norms(lambda x: x, jnp.ones((2, 3)))


def test_first_nonfinite_finds_the_overflow_step_of_an_exploding_layer():
    """A linear RNN with U = 1e6·I overflows float32 at the step a NumPy loop predicts."""
    from jaxrnn.diagnostics import check_finite, first_nonfinite

    k1, k2 = jax.random.split(jax.random.key(0))
    ok = jaxrnn.init_rnn(k1, 2, 3)
    boom = jaxrnn.init_rnn(k2, 3, 3)._replace(recurrent_kernel=1e6 * jnp.eye(3))
    x = jnp.ones((2, 12, 2))
    h1 = np.asarray(jaxrnn.simple_rnn(ok, x, activation="linear", return_sequences=True))
    # independent float32 loop of layer 1: h = x W + b + h U
    w, b = np.asarray(boom.kernel), np.asarray(boom.bias)
    h = np.zeros((2, 3), np.float32)
    expected = None
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(12):
            h = (h1[:, t] @ w + b + h * np.float32(1e6)).astype(np.float32)
            if expected is None and not np.all(np.isfinite(h)):
                expected = t
    assert expected is not None
    found = first_nonfinite(jaxrnn.simple_rnn, [ok, boom], x, activation="linear")
    assert (found.layer, found.step) == (1, expected)
    assert not np.isfinite(found.value)
    # steps masked out never count: with every sequence cut before the overflow, all is finite
    short = jnp.array([expected, expected])
    assert (
        first_nonfinite(jaxrnn.simple_rnn, [ok, boom], x, activation="linear", seq_lengths=short)
        is None
    )
    with pytest.raises(FloatingPointError, match=f"layer 1 outputs .* at time step {expected}"):
        check_finite(jaxrnn.simple_rnn, [ok, boom], x, activation="linear")
