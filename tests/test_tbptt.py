"""Truncated BPTT equals a manual Python loop of windows; one window equals full BPTT."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.tbptt import make_tbptt_step, windows
from jaxrnn.train import TrainState

B, T, I, H = 2, 12, 2, 5


def _params(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"cell": jaxrnn.init_lstm(k1, I, H), "w": 0.3 * jax.random.normal(k2, (H, 1))}


def _run(p, carry, x, key):
    hs, carry = jaxrnn.lstm(
        p["cell"],
        x,
        initial_state=carry,
        return_sequences=True,
        return_state=True,
        dropout=0.2,
        key=key,
        training=key is not None,
    )
    return carry, hs @ p["w"]  # (B, t, 1)


def loss_fn(p, carry, x, y, key):
    carry, out = _run(p, carry, x, key)
    return jnp.mean((out - y) ** 2), carry


def _data(seed=1):
    x = jax.random.normal(jax.random.key(seed), (B, T, I))
    y = jnp.cumsum(x[..., :1], axis=1) * 0.3  # depends on the whole past
    return x, y


_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))  # one window's loss and gradient


def _manual_window_loop(params, carry, x, y, key, k, tx, calls):
    """The semantics, written as a Python loop of windows with stop_gradient."""
    opt_state = tx.init(params)
    tx_update = jax.jit(tx.update)
    losses = []
    for _ in range(calls):
        for w in range(T // k):
            xs, ys = x[:, w * k : (w + 1) * k], y[:, w * k : (w + 1) * k]
            kw = None if key is None else jax.random.fold_in(key, w)
            c_in = jax.lax.stop_gradient(carry)
            (loss, carry), g = _grad(params, c_in, xs, ys, kw)
            carry = jax.lax.stop_gradient(carry)
            updates, opt_state = tx_update(g, opt_state, params)
            params = jax.tree.map(lambda p, u: p + u, params, updates)
            losses.append(loss)
    return params, carry, np.array(losses)


def test_window_updates_equal_manual_loop():
    params, (x, y) = _params(), _data()
    carry = jaxrnn.zero_state(params["cell"], (B,))
    key = jax.random.key(7)  # dropout, one key per window
    tx = optax.adam(0.05)
    step = make_tbptt_step(loss_fn, tx, window=4)
    state, c, got_losses = TrainState.create(params, tx), carry, []
    for _ in range(2):  # two calls: the carry continues the stream
        state, c, m = step(state, c, (x, y), key)
        got_losses.append(m["loss"])
    want_p, want_c, want_losses = _manual_window_loop(params, carry, x, y, key, 4, tx, 2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state.params, want_p)
    np.testing.assert_allclose(c.h, want_c.h, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(got_losses), want_losses, rtol=1e-5, atol=1e-7)
    assert int(state.step) == 2 * 3 and m["grad_norm"].shape == (3,)


def test_clipnorm_equals_manual_loop_with_optax_chain():
    params, (x, y) = _params(2), _data(3)
    carry = jaxrnn.zero_state(params["cell"], (B,))
    step = make_tbptt_step(loss_fn, optax.sgd(0.5), window=6, clipnorm=0.01)
    state, _, m = step(TrainState.create(params, "sgd"), carry, (x, y), None)
    assert (np.asarray(m["grad_norm"]) > 0.01).all()  # clipping was active
    chain = optax.chain(optax.clip_by_global_norm(0.01), optax.sgd(0.5))
    want_p, _, _ = _manual_window_loop(params, carry, x, y, None, 6, chain, 1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state.params, want_p)


def test_sequence_update_is_mean_of_truncated_window_gradients():
    params, (x, y) = _params(4), _data(5)
    carry = jaxrnn.zero_state(params["cell"], (B,))
    tx = optax.sgd(1.0)  # update = -gradient
    state, c, m = make_tbptt_step(loss_fn, tx, window=3, update="sequence")(
        TrainState.create(params, tx), carry, (x, y), None
    )
    grads, h, window_losses = [], carry, []
    for w in range(T // 3):
        (loss, h), g = _grad(
            params, jax.lax.stop_gradient(h), x[:, 3 * w : 3 * w + 3], y[:, 3 * w : 3 * w + 3], None
        )
        grads.append(g)
        window_losses.append(loss)
    mean_g = jax.tree.map(lambda *g: sum(g) / len(g), *grads)
    want = jax.tree.map(lambda p, g: p - g, params, mean_g)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state.params, want)
    np.testing.assert_allclose(m["loss"], window_losses, rtol=1e-5)
    np.testing.assert_allclose(c.h, h.h, atol=1e-6)
    assert int(state.step) == 1 and m["grad_norm"].shape == (1,)
    # the truncation matters: full BPTT through all T steps gives another gradient
    full = jax.grad(lambda p: loss_fn(p, carry, x, y, None)[0])(params)
    u_full, u_trunc = full["cell"].recurrent_kernel, mean_g["cell"].recurrent_kernel
    assert float(jnp.abs(u_full - u_trunc).max()) > 1e-3


@pytest.mark.parametrize("update", ["window", "sequence"])
def test_single_window_equals_full_bptt(update):
    params, (x, y) = _params(6), _data(7)
    carry = jaxrnn.zero_state(params["cell"], (B,))
    tx = optax.adam(0.01)
    state, c, m = make_tbptt_step(loss_fn, tx, window=T, update=update)(
        TrainState.create(params, tx), carry, (x, y), jax.random.key(1)
    )
    key0 = jax.random.fold_in(jax.random.key(1), 0)
    (loss, final), g = jax.value_and_grad(loss_fn, has_aux=True)(params, carry, x, y, key0)
    updates, _ = tx.update(g, tx.init(params), params)
    want = optax.apply_updates(params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state.params, want)
    np.testing.assert_allclose(m["loss"], [loss], rtol=1e-6)
    np.testing.assert_allclose(c.c, final.c, atol=1e-6)


def test_one_compile_and_training_reduces_loss():
    count = {"n": 0}

    def counted(p, carry, x, y, key):
        count["n"] += 1
        return loss_fn(p, carry, x, y, key)

    params, (x, y) = _params(8), _data(9)
    carry = jaxrnn.zero_state(params["cell"], (B,))
    tx = optax.adam(0.03)
    step = make_tbptt_step(counted, tx, window=4)
    state = TrainState.create(params, tx)
    first = None
    for i in range(30):
        state, _, m = step(state, carry, (x, y), None)
        first = float(m["loss"].mean()) if first is None else first
        if i == 0:
            traced = count["n"]
    assert count["n"] == traced  # no retrace after the first call
    assert float(m["loss"].mean()) < 0.5 * first


def test_windows_and_errors():
    x = jnp.arange(2 * 6 * 1.0).reshape(2, 6, 1)
    w = windows(x, 2)
    np.testing.assert_array_equal(w[1], x[:, 2:4])
    with pytest.raises(
        ValueError,
        match=r"window=5 does not divide the sequence length T=12.*divisors of 12: \[1, 2, 3, 4, 6, 12\].*x\[:, :10\]",
    ):
        make_tbptt_step(loss_fn, "sgd", window=5)(
            TrainState.create(_params(), "sgd"),
            jaxrnn.zero_state(_params()["cell"], (B,)),
            _data(),
            None,
        )
    with pytest.raises(ValueError, match=r"window=0; it must be an integer >= 1"):
        make_tbptt_step(loss_fn, "sgd", window=0)
    with pytest.raises(ValueError, match=r"unknown update='epoch'; use 'window'"):
        make_tbptt_step(loss_fn, "sgd", window=2, update="epoch")
    with pytest.raises(ValueError, match=r"share the time axis.*\(2, 6, 1\), \(2, 5\)"):
        windows((x, jnp.zeros((2, 5))), 1)
    bad = lambda p, c, x, y, k: ((x[..., :1] - y) ** 2, c)  # noqa: E731
    with pytest.raises(ValueError, match=r"loss of shape \(2, 4, 1\); reduce it"):
        make_tbptt_step(bad, "sgd", window=4)(
            TrainState.create(_params(), "sgd"),
            jaxrnn.zero_state(_params()["cell"], (B,)),
            _data(),
            None,
        )
