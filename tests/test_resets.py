"""Resets inside a sequence equal running each episode separately."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn.resets import unroll_with_resets, with_resets

B, T, I, H = 2, 7, 3, 4


def _case(kind="lstm", seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    init = {"lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru, "rnn": jaxrnn.init_rnn}[kind]
    step = {"lstm": jaxrnn.lstm_step, "gru": jaxrnn.gru_step, "rnn": jaxrnn.rnn_step}[kind]
    p = init(k[0], I, H)
    xs = jax.random.normal(k[1], (B, T, I))
    carry = jax.tree.map(
        lambda z: 0.5 * jax.random.normal(k[2], z.shape), jaxrnn.zero_state(p, (B,))
    )
    return step, p, xs, carry


_jit_step = jax.jit(lambda step, p, c, x: step(p, c, x), static_argnums=0)


def _episodes_separately(step, p, xs, carry, resets, c0):
    """Each episode of each sequence run on its own from c0 (a Python loop over episodes)."""
    ys = np.zeros((B, T, H), np.float32)
    finals = []
    for b in range(B):
        cb = jax.tree.map(lambda a, b=b: a[b : b + 1], carry)
        c0b = jax.tree.map(lambda a, b=b: a[b : b + 1], c0)
        starts = [0] + [t for t in range(1, T) if resets[b, t]]
        if resets[b, 0]:
            cb = c0b
        for s, e in zip(starts, starts[1:] + [T], strict=True):
            if s > 0:
                cb = c0b
            for t in range(s, e):  # one episode, alone, from its starting carry
                cb, y = _jit_step(step, p, cb, xs[b : b + 1, t])
                ys[b, t] = np.asarray(y[0])
        finals.append(cb)
    final = jax.tree.map(lambda *a: jnp.concatenate(a), *finals)
    return final, ys


RESETS = np.array(
    [
        [False, False, True, False, True, True, False],
        [True, False, False, False, False, False, True],
    ]
)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_resets_equal_separate_episodes(kind):
    step, p, xs, carry = _case(kind)
    final, ys = unroll_with_resets(step, p, xs, carry, jnp.asarray(RESETS))
    zeros = jaxrnn.zero_state(p, (B,))  # a reset restores zeros, never the incoming carry
    want_final, want_ys = _episodes_separately(step, p, xs, carry, RESETS, zeros)
    np.testing.assert_allclose(ys, want_ys, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), final, want_final)


def test_resets_to_explicit_initial_state_and_time_major():
    step, p, xs, carry = _case("lstm", 1)
    c0 = jaxrnn.zero_state(p, (B,))
    final, ys = unroll_with_resets(
        step,
        p,
        jnp.swapaxes(xs, 0, 1),
        carry,
        jnp.asarray(RESETS.T),
        initial_state=c0,
        time_major=True,
    )
    want_final, want_ys = _episodes_separately(step, p, xs, carry, RESETS, c0)
    np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), want_ys, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), final, want_final)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
def test_resets_property(flags):
    step, p, xs, carry = _case("gru", 2)
    resets = np.array(flags).reshape(B, T)
    final, ys = jax.jit(unroll_with_resets, static_argnums=0)(
        step, p, xs, carry, jnp.asarray(resets)
    )
    want_final, want_ys = _episodes_separately(step, p, xs, carry, resets, jnp.zeros_like(carry))
    np.testing.assert_allclose(ys, want_ys, atol=1e-5)
    np.testing.assert_allclose(final, want_final, atol=1e-5)


def test_no_resets_equals_unroll_and_padding_ignores_resets():
    step, p, xs, carry = _case("lstm", 3)
    none = jnp.zeros((B, T), bool)
    f1, y1 = unroll_with_resets(step, p, xs, carry, none)
    f2, y2 = jaxrnn.unroll(step, p, xs, carry)
    np.testing.assert_allclose(y1, y2, atol=1e-6)
    # a reset on a padded step changes nothing
    lengths = jnp.array([4, 7])
    late = jnp.zeros((B, T), bool).at[0, 5].set(True)
    f3, y3 = unroll_with_resets(step, p, xs, carry, late, seq_lengths=lengths)
    f4, y4 = jaxrnn.unroll(step, p, xs, carry, seq_lengths=lengths)
    np.testing.assert_allclose(y3, y4, atol=1e-6)
    np.testing.assert_allclose(f3.h, f4.h, atol=1e-6)


def test_gradients_stay_within_episodes():
    step, p, xs, carry = _case("lstm", 4)
    resets = jnp.zeros((B, T), bool).at[:, 3].set(True)  # episodes [0, 3) and [3, 7)
    c0 = jaxrnn.zero_state(p, (B,))

    def out(x):
        _, ys = unroll_with_resets(step, p, x, carry, resets, initial_state=c0)
        return ys.sum(axis=-1)  # (B, T)

    jac = np.asarray(jax.jacrev(out)(xs)).sum(axis=-1)  # (B, T, B, T): d ys[b, t] / d xs[b', s]
    for t in range(T):
        for s in range(T):
            same = (t < 3) == (s < 3) and s <= t
            size = np.abs(jac[0, t, 0, s])
            assert (size > 0) if same else (size == 0), (t, s, size)
    # gradient of the final carry w.r.t. the starting carry is cut by the reset ...
    g = jax.grad(lambda c: unroll_with_resets(step, p, xs, c, resets, initial_state=c0)[0].h.sum())
    assert float(jnp.abs(g(carry).h).max()) == 0.0
    # ... and also with the default (zeros) ...
    g = jax.grad(lambda c: unroll_with_resets(step, p, xs, c, resets)[0].h.sum())
    assert float(jnp.abs(g(carry).h).max()) == 0.0
    # ... but reaches a state that every reset restores when asked (initial_state=carry)
    g = jax.grad(lambda c: unroll_with_resets(step, p, xs, c, resets, initial_state=c)[0].h.sum())
    assert float(jnp.abs(g(carry).h).max()) > 0.0


def test_a_reset_at_step_zero_restores_zeros_not_the_incoming_carry():
    step, p, xs, carry = _case("gru", 6)
    first = jnp.zeros((B, T), bool).at[:, 0].set(True)
    _, ys = unroll_with_resets(step, p, xs, carry, first)
    _, want = jaxrnn.unroll(step, p, xs, jnp.zeros_like(carry))
    np.testing.assert_allclose(ys, want, atol=1e-6)
    _, ys = unroll_with_resets(step, p, xs, carry, first, initial_state=carry)  # explicit
    _, want = jaxrnn.unroll(step, p, xs, carry)
    np.testing.assert_allclose(ys, want, atol=1e-6)


def test_resets_across_tbptt_windows():
    """A stream cut into windows, the carry passed on from window to window: every
    episode restarts from zeros whichever window it starts in (with the old default,
    a reset restored the window's incoming carry, a stale state)."""
    import optax

    from jaxrnn.tbptt import make_tbptt_step
    from jaxrnn.train import TrainState

    steps, k = 12, 3
    p = jaxrnn.init_lstm(jax.random.key(0), I, H)
    x = jax.random.normal(jax.random.key(1), (B, steps, I))
    y = jnp.zeros((B, steps, H))
    resets = np.zeros((B, steps), bool)
    resets[0, [4, 7, 9]] = True  # episodes that start inside windows 1, 2 and 3
    resets[1, [3, 6]] = True  # episodes that start at window boundaries
    resets = jnp.asarray(resets)

    def window_loss(p, carry, xr, y, key):
        x, r = xr
        carry, ys = unroll_with_resets(jaxrnn.lstm_step, p, x, carry, r)
        return jnp.mean((ys - y) ** 2, axis=(0, 2)).sum(), carry  # sum over the window

    tbptt = make_tbptt_step(window_loss, optax.sgd(0.0), window=k)
    state = TrainState.create(p, optax.sgd(0.0))
    _, carry, m = tbptt(state, jaxrnn.zero_state(p, (B,)), ((x, resets), y), None)

    want_final, want_ys = _episodes_separately_t(p, x, resets)
    per_step = jnp.mean(jnp.asarray(want_ys) ** 2, axis=(0, 2))  # (steps,)
    np.testing.assert_allclose(m["loss"], per_step.reshape(-1, k).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(carry.h, want_final.h, atol=1e-5)
    np.testing.assert_allclose(carry.c, want_final.c, atol=1e-5)


def _episodes_separately_t(p, x, resets):
    """Each episode of an LSTM stream run alone from zeros (Python loop over steps)."""
    batch, steps = resets.shape
    ys = np.zeros((batch, steps, H), np.float32)
    finals = []
    for b in range(batch):
        c = jaxrnn.zero_state(p, (1,))
        for t in range(steps):
            if resets[b, t]:
                c = jaxrnn.zero_state(p, (1,))
            c, yt = _jit_step(jaxrnn.lstm_step, p, c, x[b : b + 1, t])
            ys[b, t] = np.asarray(yt[0])
        finals.append(c)
    return jax.tree.map(lambda *a: jnp.concatenate(a), *finals), ys


def test_with_resets_under_lax_scan_with_broadcast_initial_state():
    step, p, xs, carry = _case("gru", 5)
    h0 = jnp.full((H,), 0.3)  # a (learned) initial state, broadcast over the batch
    wrapped = with_resets(step, initial_state=h0)
    resets = jnp.asarray(RESETS)

    def body(c, inp):
        return wrapped(p, c, inp)

    final, ys = jax.lax.scan(body, carry, (jnp.swapaxes(xs, 0, 1), resets.T))
    want_final, want_ys = _episodes_separately(
        step, p, xs, carry, RESETS, jnp.broadcast_to(h0, (B, H))
    )
    np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), want_ys, atol=1e-5)
    np.testing.assert_allclose(final, want_final, atol=1e-5)


def test_errors():
    step, p, xs, carry = _case("lstm")
    with pytest.raises(
        ValueError, match=r"resets.shape=\(7, 2\), expected \(2, 7\) \(batch, time\)"
    ):
        unroll_with_resets(step, p, xs, carry, jnp.zeros((T, B), bool))
    with pytest.raises(TypeError, match=r"resets has dtype int32.*astype\(bool\)"):
        unroll_with_resets(step, p, xs, carry, jnp.zeros((B, T), jnp.int32))
    wrapped = with_resets(step)
    with pytest.raises(TypeError, match=r"inputs \(x, reset\)"):
        wrapped(p, carry, xs[:, 0])
    with pytest.raises(TypeError, match="reset has dtype float32"):
        wrapped(p, carry, (xs[:, 0], jnp.zeros(B)))
