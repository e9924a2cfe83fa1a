"""The generic driver: lengths, masks, reverse, time-major, unroll=k, custom steps."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from tests.helpers import lstm_ref, make, random_carry, run_ref


def _lstm_case(batch=3, steps=6, seed=0):
    p, _, _ = make("lstm", seed=seed)
    carry = random_carry(p, (batch,), jax.random.key(seed + 10))
    xs = jax.random.normal(jax.random.key(seed + 11), (batch, steps, 3))
    return p, carry, xs


def _ref(p, carry, xs, lengths=None, reverse=False):
    return run_ref(lambda c, x: lstm_ref(p, c[0], c[1], x), tuple(carry), xs, lengths, reverse)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [6, 3, 0]])
def test_unroll_matches_reference_semantics(reverse, lengths):
    p, carry, xs = _lstm_case()
    sl = None if lengths is None else jnp.array(lengths)
    final, ys = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, reverse=reverse, seq_lengths=sl)
    (h, c), want = _ref(p, carry, xs, lengths, reverse)
    np.testing.assert_allclose(ys, want, atol=1e-5)
    np.testing.assert_allclose(final.h, h, atol=1e-5)
    np.testing.assert_allclose(final.c, c, atol=1e-5)
    if lengths is not None:  # the zero-length sequence keeps its initial state exactly
        np.testing.assert_array_equal(final.h[2], carry.h[2])
        np.testing.assert_array_equal(ys[1, 3:], 0)


def test_time_major_equals_batch_major_and_mask_equals_lengths():
    p, carry, xs = _lstm_case()
    lengths = jnp.array([2, 6, 4])
    a = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, seq_lengths=lengths)
    b = jaxrnn.unroll(
        jaxrnn.lstm_step, p, jnp.swapaxes(xs, 0, 1), carry, time_major=True, seq_lengths=lengths
    )
    mask = jnp.arange(6)[None, :] < lengths[:, None]
    c = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, mask=mask)
    np.testing.assert_allclose(a[1], jnp.swapaxes(b[1], 0, 1), atol=1e-6)
    np.testing.assert_allclose(a[0].c, b[0].c, atol=1e-6)
    np.testing.assert_array_equal(a[1], c[1])


def test_reverse_equals_flip_run_flip():
    p, carry, xs = _lstm_case()
    fin_r, ys_r = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, reverse=True)
    fin_f, ys_f = jaxrnn.unroll(jaxrnn.lstm_step, p, xs[:, ::-1], carry)
    np.testing.assert_allclose(ys_r, ys_f[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(fin_r.h, fin_f.h, atol=1e-6)


def test_reverse_with_lengths_reverses_within_each_sequence():
    p, carry, xs = _lstm_case()
    lengths = [4, 6, 1]
    fin, ys = jaxrnn.unroll(
        jaxrnn.lstm_step, p, xs, carry, reverse=True, seq_lengths=jnp.array(lengths)
    )
    for b, n in enumerate(lengths):
        one = jax.tree.map(lambda a, b=b: a[b : b + 1], carry)
        f1, y1 = jaxrnn.unroll(jaxrnn.lstm_step, p, xs[b : b + 1, :n][:, ::-1], one)
        np.testing.assert_allclose(ys[b, :n], y1[0, ::-1], atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0)
        np.testing.assert_allclose(fin.h[b], f1.h[0], atol=1e-6)


def test_arbitrary_mask_skips_steps():
    p, carry, xs = _lstm_case(batch=1)
    mask = jnp.array([[True, False, True, True, False, True]])
    fin, ys = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, mask=mask)
    keep = np.flatnonzero(mask[0])
    f2, y2 = jaxrnn.unroll(jaxrnn.lstm_step, p, xs[:, keep], carry)
    np.testing.assert_allclose(ys[0, keep], y2[0], atol=1e-6)
    np.testing.assert_array_equal(ys[0, ~np.asarray(mask[0])], 0)
    np.testing.assert_allclose(fin.c, f2.c, atol=1e-6)


@pytest.mark.parametrize("steps", [0, 1])
def test_tiny_sequences(steps):
    p, carry, xs = _lstm_case(steps=steps)
    fin, ys = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry)
    assert ys.shape == (3, steps, 4)
    (h, c), want = _ref(p, carry, xs)
    np.testing.assert_allclose(fin.h, h, atol=1e-6)
    np.testing.assert_allclose(ys, want, atol=1e-6)


@pytest.mark.parametrize("k", [2, 4, True])
def test_unroll_k_equals_unroll_1(k):
    p, carry, xs = _lstm_case(steps=7)
    a = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, seq_lengths=jnp.array([7, 5, 2]))
    b = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, seq_lengths=jnp.array([7, 5, 2]), unroll=k)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, atol=1e-6)


def test_custom_step_and_pytree_inputs():
    """Any step works: an exponential moving average with a pytree input."""

    def ema(alpha, carry, x):
        new = alpha * carry + (1 - alpha) * (x["a"] + x["b"])
        return new, {"mean": new}

    xs = {"a": jnp.arange(10.0).reshape(2, 5, 1), "b": jnp.ones((2, 5, 1))}
    fin, ys = jaxrnn.unroll(ema, 0.5, xs, jnp.zeros((2, 1)), seq_lengths=jnp.array([5, 2]))
    want = np.zeros((2, 1))
    for t in range(5):
        want[0] = 0.5 * want[0] + 0.5 * (t + 1)
    np.testing.assert_allclose(fin[0], want[0])
    np.testing.assert_allclose(fin[1], [0.5 * (0.5 * 6) + 0.5 * 7])
    assert ys["mean"].shape == (2, 5, 1) and float(ys["mean"][1, 3, 0]) == 0.0


def test_jit_vmap_grad_through_unroll():
    p, carry, xs = _lstm_case()
    lengths = jnp.array([6, 2, 4])
    run = functools.partial(jaxrnn.unroll, jaxrnn.lstm_step, seq_lengths=lengths)
    eager = run(p, xs, carry)
    jitted = jax.jit(run)(p, xs, carry)
    np.testing.assert_allclose(eager[1], jitted[1], atol=1e-6)

    # vmap over the batch of an unbatched, time-major run equals the batched run
    def single(x, c, n):
        return jaxrnn.unroll(jaxrnn.lstm_step, p, x, c, time_major=True, seq_lengths=n)

    fin_v, ys_v = jax.vmap(single)(xs, carry, lengths)
    np.testing.assert_allclose(ys_v, eager[1], atol=1e-6)
    np.testing.assert_allclose(fin_v.c, eager[0].c, atol=1e-6)

    def loss(p):
        fin, ys = run(p, xs, carry)
        return jnp.sum(ys**2) + jnp.sum(fin.c)

    g = jax.grad(loss)(p)
    eps = 1e-3
    d = jnp.zeros_like(p.kernel).at[1, 5].set(eps)
    fd = (loss(p._replace(kernel=p.kernel + d)) - loss(p._replace(kernel=p.kernel - d))) / (2 * eps)
    np.testing.assert_allclose(g.kernel[1, 5], fd, rtol=2e-2, atol=1e-3)


@functools.partial(jax.jit, static_argnames="reverse")
def _gru_unroll(p, xs, carry, sl, reverse):
    """Compiled once per shape, shared by the examples below."""
    return jaxrnn.unroll(jaxrnn.gru_step, p, xs, carry, seq_lengths=sl, reverse=reverse)


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    pad=st.integers(0, 3),
    reverse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_padding_never_changes_valid_outputs(lengths, pad, reverse, seed):
    """Whatever sits in the padding, valid outputs and final states are unchanged."""
    batch, steps = len(lengths), max(lengths) + pad
    p, _, _ = make("gru")
    # NumPy data: no eager JAX op (each would compile again for every new shape)
    rng = np.random.default_rng(seed)
    carry = rng.standard_normal((batch, 4)).astype(np.float32)
    xs = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    valid = np.arange(steps)[None, :] < np.array(lengths)[:, None]
    garbage = np.where(valid[..., None], xs, 100 * rng.standard_normal(xs.shape)).astype(np.float32)
    sl = np.array(lengths, np.int32)
    a = _gru_unroll(p, xs, carry, sl, reverse=reverse)
    b = _gru_unroll(p, garbage, carry, sl, reverse=reverse)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(b[1])[~valid], 0)
