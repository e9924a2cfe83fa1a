"""Keras-semantics layer functions, stacking and bidirectional, against references."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import BidirectionalParams
from tests.helpers import as_tuple, gru_ref, lstm_ref, make, random_carry, rnn_ref, run_ref

LAYERS = {
    "simple_rnn": (jaxrnn.simple_rnn, "rnn", lambda p: lambda c, x: (rnn_ref(p, c[0], x),)),
    "lstm": (jaxrnn.lstm, "lstm", lambda p: lambda c, x: lstm_ref(p, c[0], c[1], x)),
    "gru": (jaxrnn.gru, "gru", lambda p: lambda c, x: (gru_ref(p, c[0], x),)),
}


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("lengths", [None, [5, 2, 0]])
def test_layer_matches_reference(name, go_backwards, lengths):
    layer, cell, ref = LAYERS[name]
    p, _, _ = make(cell)
    s0 = random_carry(p, (3,), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (3, 5, 3))
    sl = None if lengths is None else jnp.array(lengths)
    seq, final = layer(
        p,
        x,
        initial_state=s0,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        seq_lengths=sl,
    )
    last = layer(p, x, initial_state=s0, go_backwards=go_backwards, seq_lengths=sl)
    want_final, aligned = run_ref(ref(p), as_tuple(s0), x, lengths, reverse=go_backwards)
    want_seq = aligned[:, ::-1] if go_backwards else aligned  # Keras: processing order
    assert seq.shape == (3, 5, 4) and last.shape == (3, 4)
    np.testing.assert_allclose(seq, want_seq, atol=1e-5)
    for got, w in zip(as_tuple(final), want_final, strict=True):
        np.testing.assert_allclose(got, w, atol=1e-5)
    np.testing.assert_allclose(last, want_final[0], atol=1e-5)  # Keras: h at the last valid step
    if lengths is not None:  # zero-length: the initial state comes back untouched
        for got, s in zip(as_tuple(final), as_tuple(s0), strict=True):
            np.testing.assert_array_equal(got[2], s[2])


@pytest.mark.parametrize("name", LAYERS)
def test_time_major_and_jit(name):
    layer, cell, _ = LAYERS[name]
    p, _, _ = make(cell)
    x = jax.random.normal(jax.random.key(0), (2, 6, 3))
    a = layer(p, x, return_sequences=True, seq_lengths=jnp.array([6, 3]))
    b = layer(
        p,
        jnp.swapaxes(x, 0, 1),
        return_sequences=True,
        time_major=True,
        seq_lengths=jnp.array([6, 3]),
    )
    c = jax.jit(functools.partial(layer, return_sequences=True))(
        p, x, seq_lengths=jnp.array([6, 3])
    )
    np.testing.assert_allclose(a, jnp.swapaxes(b, 0, 1), atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)


@pytest.mark.parametrize("impl", ["auto", "scan"])
@pytest.mark.parametrize("name", LAYERS)
def test_time_major_mask_is_time_major(name, impl):
    """With ``time_major=True`` the mask is ``(T, B)``, like ``x``; B == T here, so a
    mask read in the other layout would run without an error and give other numbers."""
    layer, cell, _ = LAYERS[name]
    p, _, _ = make(cell)
    x = jax.random.normal(jax.random.key(0), (4, 4, 3))  # B == T
    mask = jnp.array([[1, 1, 0, 1], [1, 0, 0, 0], [0, 1, 1, 1], [1, 1, 1, 1]], bool)  # (B, T)
    kw = dict(return_sequences=True, return_state=True, impl=impl)
    want = layer(p, x, mask=mask, **kw)
    got = layer(p, jnp.swapaxes(x, 0, 1), mask=mask.T, time_major=True, **kw)
    np.testing.assert_allclose(want[0], jnp.swapaxes(got[0], 0, 1), atol=1e-6)
    for a, b in zip(jax.tree.leaves(want[1]), jax.tree.leaves(got[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    wrong = layer(p, jnp.swapaxes(x, 0, 1), mask=mask, time_major=True, **kw)[0]
    assert not np.allclose(want[0], jnp.swapaxes(wrong, 0, 1), atol=1e-3)


@pytest.mark.parametrize("shape,units", [((2, 1, 3), 2), ((1, 4, 2), 3), ((32, 10, 100), 128)])
def test_tutorial_shapes(shape, units):
    x = jnp.ones(shape)
    p = jaxrnn.init_rnn(jax.random.key(0), shape[-1], units)
    assert jaxrnn.simple_rnn(p, x).shape == (shape[0], units)
    assert jaxrnn.simple_rnn(p, x, return_sequences=True).shape == (shape[0], shape[1], units)
    out, state = jaxrnn.simple_rnn(p, x, return_state=True)
    np.testing.assert_array_equal(out, state)


def test_zero_length_batch_and_sequence():
    p = jaxrnn.init_lstm(jax.random.key(0), 3, 4)
    s0 = random_carry(p, (2,), jax.random.key(1))
    out, s = jaxrnn.lstm(p, jnp.ones((2, 0, 3)), initial_state=s0, return_state=True)
    np.testing.assert_array_equal(out, s0.h)
    np.testing.assert_array_equal(s.c, s0.c)
    assert jaxrnn.lstm(p, jnp.ones((2, 0, 3)), return_sequences=True).shape == (2, 0, 4)
    assert jaxrnn.gru(jaxrnn.init_gru(jax.random.key(0), 3, 4), jnp.ones((0, 5, 3))).shape == (0, 4)


def test_mask_equals_seq_lengths():
    p = make("gru")[0]
    x = jax.random.normal(jax.random.key(0), (3, 5, 3))
    sl = jnp.array([5, 1, 3])
    mask = jnp.arange(5)[None] < sl[:, None]
    for gb in (False, True):
        a = jaxrnn.gru(
            p, x, seq_lengths=sl, return_sequences=True, go_backwards=gb, return_state=True
        )
        b = jaxrnn.gru(p, x, mask=mask, return_sequences=True, go_backwards=gb, return_state=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("name", LAYERS)
def test_dropout_off_in_inference_and_fixed_across_time(name):
    layer, cell, _ = LAYERS[name]
    p, _, _ = make(cell)
    x = jax.random.normal(jax.random.key(0), (4, 6, 3))
    plain = layer(p, x, return_sequences=True)
    key = jax.random.key(3)
    for k in (None, key):  # training=False: no dropout, whatever the key
        np.testing.assert_array_equal(
            layer(
                p,
                x,
                return_sequences=True,
                dropout=0.5,
                recurrent_dropout=0.5,
                key=k,
                training=False,
            ),
            plain,
        )
    # a rate without a key is an error, not a silent switch to inference
    with pytest.raises(ValueError, match="key is None"):
        layer(p, x, dropout=0.5)
    with pytest.raises(ValueError, match="key is None"):
        layer(p, x, recurrent_dropout=0.5, training=True)
    np.testing.assert_array_equal(
        layer(p, x, return_sequences=True, training=True), plain
    )  # no rate
    dropped = layer(p, x, return_sequences=True, dropout=0.5, recurrent_dropout=0.3, key=key)
    assert not np.allclose(dropped, plain)
    np.testing.assert_array_equal(
        dropped,
        layer(
            p, x, return_sequences=True, dropout=0.5, recurrent_dropout=0.3, key=key, training=True
        ),
    )
    # the same masks at every step: an explicit loop over steps with those masks agrees
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    m = jaxrnn.make_dropout_masks(key, (4,), 3, 4, gates, dropout=0.5, recurrent_dropout=0.3)
    step = {"rnn": jaxrnn.rnn_step, "lstm": jaxrnn.lstm_step, "gru": jaxrnn.gru_step}[cell]
    c = jaxrnn.zero_state(p, (4,))
    for t in range(6):
        c, y = step(p, c, x[:, t], input_mask=m.input, recurrent_mask=m.recurrent)
        np.testing.assert_allclose(dropped[:, t], y, atol=1e-6)


def test_stacked_three_simple_rnns_with_dense_head():
    """The tutorial model: SimpleRNN(20) x 3 (return_sequences on the first two) + Dense(1)."""
    keys = jax.random.split(jax.random.key(0), 4)
    ps = [jaxrnn.init_rnn(keys[0], 1, 20)] + [jaxrnn.init_rnn(k, 20, 20) for k in keys[1:3]]
    w = jax.random.normal(keys[3], (20, 1))
    x = jax.random.normal(jax.random.key(5), (4, 7, 1))
    out, states = jaxrnn.stacked(jaxrnn.simple_rnn, ps, x, return_state=True)
    y = out @ w
    h = x
    for k, p in enumerate(ps):
        h = jaxrnn.simple_rnn(p, h, return_sequences=k < 2)
    np.testing.assert_allclose(out, h, atol=1e-6)
    assert y.shape == (4, 1) and len(states) == 3 and states[2].shape == (4, 20)
    np.testing.assert_array_equal(states[2], out)
    seq = jaxrnn.stacked(jaxrnn.simple_rnn, ps, x, return_sequences=True)
    assert seq.shape == (4, 7, 20)
    # depth one is the layer itself
    np.testing.assert_array_equal(
        jaxrnn.stacked(jaxrnn.simple_rnn, ps[:1], x), jaxrnn.simple_rnn(ps[0], x)
    )


def _bi_params(cell):
    return BidirectionalParams(make(cell, seed=0)[0], make(cell, seed=5)[0])


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_matches_each_sequence_alone(merge_mode):
    """Bidirectional over padded data equals running each sequence alone, both ways."""
    p = _bi_params("lstm")
    x = jax.random.normal(jax.random.key(0), (3, 5, 3))
    lengths = [5, 3, 1]
    seq, (sf, sb) = jaxrnn.bidirectional(
        jaxrnn.lstm,
        p,
        x,
        merge_mode=merge_mode,
        return_sequences=True,
        return_state=True,
        seq_lengths=jnp.array(lengths),
    )
    last = jaxrnn.bidirectional(
        jaxrnn.lstm, p, x, merge_mode=merge_mode, seq_lengths=jnp.array(lengths)
    )
    merge = {
        "concat": lambda a, b: np.concatenate([a, b], -1),
        "sum": np.add,
        "mul": np.multiply,
        "ave": lambda a, b: (a + b) / 2,
        None: lambda a, b: (a, b),
    }[merge_mode]
    for b, n in enumerate(lengths):
        xb = x[b : b + 1, :n]
        fw, fw_s = jaxrnn.lstm(p.forward, xb, return_sequences=True, return_state=True)
        bw, bw_s = jaxrnn.lstm(p.backward, xb[:, ::-1], return_sequences=True, return_state=True)
        want = merge(np.asarray(fw[0]), np.asarray(bw[0, ::-1]))
        want_last = merge(np.asarray(fw[0, -1]), np.asarray(bw[0, -1]))
        got = seq if merge_mode is not None else None
        if merge_mode is None:
            for g, w, gl, wl in zip(seq, want, last, want_last, strict=True):
                np.testing.assert_allclose(g[b, :n], w, atol=1e-5)
                np.testing.assert_array_equal(g[b, n:], 0)
                np.testing.assert_allclose(gl[b], wl, atol=1e-5)
        else:
            np.testing.assert_allclose(got[b, :n], want, atol=1e-5)
            np.testing.assert_array_equal(got[b, n:], 0)
            np.testing.assert_allclose(last[b], want_last, atol=1e-5)
        np.testing.assert_allclose(sf.c[b], fw_s.c[0], atol=1e-5)
        np.testing.assert_allclose(sb.c[b], bw_s.c[0], atol=1e-5)


def test_stacked_bidirectional_and_grad():
    bi = functools.partial(jaxrnn.bidirectional, jaxrnn.gru)
    p1 = _bi_params("gru")  # input 3 -> 2*4
    k = jax.random.split(jax.random.key(9), 2)
    p2 = BidirectionalParams(jaxrnn.init_gru(k[0], 8, 4), jaxrnn.init_gru(k[1], 8, 4))
    x = jax.random.normal(jax.random.key(0), (2, 5, 3))
    sl = jnp.array([5, 2])
    out = jaxrnn.stacked(bi, [p1, p2], x, seq_lengths=sl, return_sequences=True)
    mid = jaxrnn.bidirectional(jaxrnn.gru, p1, x, seq_lengths=sl, return_sequences=True)
    np.testing.assert_allclose(
        out,
        jaxrnn.bidirectional(jaxrnn.gru, p2, mid, seq_lengths=sl, return_sequences=True),
        atol=1e-6,
    )

    def loss(ps):
        return jnp.sum(jaxrnn.stacked(bi, ps, x, seq_lengths=sl) ** 2)

    g = jax.jit(jax.grad(loss))([p1, p2])
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(g))
    assert float(jnp.abs(g[0].backward.kernel).sum()) > 0


def test_dropout_keys_split_per_direction_and_layer():
    p = _bi_params("lstm")
    x = jax.random.normal(jax.random.key(0), (2, 4, 3))
    a, b = jaxrnn.bidirectional(
        jaxrnn.lstm,
        p,
        x,
        merge_mode=None,
        return_sequences=True,
        dropout=0.5,
        key=jax.random.key(1),
    )
    kf, kb = jax.random.split(jax.random.key(1))
    np.testing.assert_allclose(
        a, jaxrnn.lstm(p.forward, x, return_sequences=True, dropout=0.5, key=kf), atol=1e-6
    )
    np.testing.assert_allclose(
        b,
        jaxrnn.lstm(p.backward, x, return_sequences=True, dropout=0.5, key=kb, go_backwards=True)[
            :, ::-1
        ],
        atol=1e-6,
    )


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_dropout_rate_can_be_swept_with_vmap(name):
    """A traced rate (a swept hyperparameter) gives what the static rate gives; 0 keeps all."""
    layer = {"rnn": jaxrnn.simple_rnn, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}[name]
    p, _, _ = make(name)
    x = jax.random.normal(jax.random.key(1), (3, 5, p.kernel.shape[0]))
    key = jax.random.key(2)

    def run(rate, rec_rate=0.0):
        return layer(p, x, dropout=rate, recurrent_dropout=rec_rate, key=key, return_sequences=True)

    swept = jax.jit(jax.vmap(run))(jnp.array([0.0, 0.5]))
    np.testing.assert_allclose(swept[0], layer(p, x, return_sequences=True), atol=1e-6)
    np.testing.assert_allclose(swept[1], run(0.5), atol=1e-6)
    both = jax.vmap(run)(jnp.array([0.0, 0.3]), jnp.array([0.0, 0.4]))
    np.testing.assert_allclose(both[0], layer(p, x, return_sequences=True), atol=1e-6)
    np.testing.assert_allclose(both[1], run(0.3, 0.4), atol=1e-6)


def test_eager_calls_compile_once_per_configuration():
    """Calling a layer eagerly again with same-shaped inputs reuses the compiled program."""
    from jaxrnn._layers import _run

    p = jaxrnn.init_gru(jax.random.key(0), 3, 5)
    x = jnp.ones((2, 7, 3))
    jaxrnn.gru(p, x, return_sequences=True, seq_lengths=jnp.array([7, 3]))
    before = _run._cache_size()
    for scale in (1.0, 2.0, 3.0):
        jaxrnn.gru(p, scale * x, return_sequences=True, seq_lengths=jnp.array([7, 3]))
    assert _run._cache_size() == before
    jaxrnn.gru(p, x[:, :4], return_sequences=True, seq_lengths=jnp.array([4, 3]))
    assert _run._cache_size() == before + 1  # a new length is a new program


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_lengths_outside_0_T_act_as_clipped_also_under_jit(name):
    """Lengths are data (they cannot raise under jit): -3 acts as 0 and T + 4 as T."""
    layer = {"rnn": jaxrnn.simple_rnn, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}[name]
    p, _, _ = make(name)
    x = jax.random.normal(jax.random.key(3), (2, 5, p.kernel.shape[0]))
    run = jax.jit(
        lambda lengths: layer(p, x, return_sequences=True, return_state=True, seq_lengths=lengths)
    )
    out, state = run(jnp.array([-3, 9]))
    want_out, want_state = run(jnp.array([0, 5]))
    np.testing.assert_array_equal(out, want_out)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(want_state), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[0], 0.0)


def test_a_swept_dropout_rate_without_a_key_raises():
    """A traced rate may be 0 or not: without a key it is an error, before any XLA work."""
    p = jaxrnn.init_lstm(jax.random.key(0), 3, 4)
    x = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"dropout=<traced> but key is None"):
        jax.vmap(lambda r: jaxrnn.lstm(p, x, dropout=r))(jnp.array([0.0, 0.2]))
    out = jax.vmap(lambda r: jaxrnn.lstm(p, x, dropout=r, training=False))(jnp.array([0.0, 0.2]))
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], jaxrnn.lstm(p, x))
