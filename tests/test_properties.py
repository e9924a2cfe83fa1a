"""Hypothesis properties over small random shapes (few examples: each new shape compiles)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn.interop import from_torch, to_torch

LAYERS = {
    "rnn": (jaxrnn.init_rnn, jaxrnn.simple_rnn),
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm),
    "gru": (jaxrnn.init_gru, jaxrnn.gru),
}
T, I, H = 5, 2, 3
cells = st.sampled_from(sorted(LAYERS))
lengths_st = st.lists(st.integers(0, T), min_size=1, max_size=3)


def _setup(cell, n, seed):
    init, layer = LAYERS[cell]
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k3, (n, T, I))
    return init, layer, init(k1, I, H), init(k2, I, H), x


@settings(max_examples=12, deadline=None)
@given(
    cell=cells,
    lengths=lengths_st,
    merge=st.sampled_from(["concat", "sum", None]),
    seed=st.integers(0, 999),
)
def test_bidirectional_over_padded_batch_equals_each_sequence_alone(cell, lengths, merge, seed):
    _, layer, fw, bw, x = _setup(cell, len(lengths), seed)
    params = jaxrnn.BidirectionalParams(fw, bw)
    out = jaxrnn.bidirectional(
        layer, params, x, merge_mode=merge, return_sequences=True, seq_lengths=jnp.array(lengths)
    )
    out = out if merge is not None else jnp.concatenate(out, axis=-1)
    for b, n in enumerate(lengths):
        alone = jaxrnn.bidirectional(
            layer, params, x[b : b + 1, :n], merge_mode=merge, return_sequences=True
        )
        alone = alone if merge is not None else jnp.concatenate(alone, axis=-1)
        np.testing.assert_allclose(out[b, :n], alone[0], atol=1e-5)
        np.testing.assert_array_equal(out[b, n:], 0.0)


@settings(max_examples=12, deadline=None)
@given(cell=cells, lengths=lengths_st, seqs=st.booleans(), seed=st.integers(0, 999))
def test_stack_of_depth_one_equals_the_layer(cell, lengths, seqs, seed):
    _, layer, p, _, x = _setup(cell, len(lengths), seed)
    kw = dict(return_sequences=seqs, return_state=True, seq_lengths=jnp.array(lengths))
    a, b = jaxrnn.stacked(layer, [p], x, **kw), layer(p, x, **kw)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    for u, v in zip(jax.tree.leaves(a[1]), jax.tree.leaves(b[1]), strict=True):
        np.testing.assert_allclose(u, v, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(cell=cells, lengths=lengths_st, backwards=st.booleans(), seed=st.integers(0, 999))
def test_vmap_over_single_sequences_equals_the_batched_layer(cell, lengths, backwards, seed):
    _, layer, p, _, x = _setup(cell, len(lengths), seed)
    run = functools.partial(layer, p, return_sequences=True, go_backwards=backwards)
    batched = run(x, seq_lengths=jnp.array(lengths))
    one = jax.vmap(lambda xb, n: run(xb[None], seq_lengths=n[None])[0])(x, jnp.array(lengths))
    np.testing.assert_allclose(one, batched, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(layers=st.integers(1, 3), bidirectional=st.booleans(), seed=st.integers(0, 999))
def test_pytorch_gru_state_dict_round_trips_exactly(layers, bidirectional, seed):
    rng = np.random.default_rng(seed)
    sd = {}
    for k in range(layers):
        for suffix in ["", "_reverse"] if bidirectional else [""]:
            in_size = I if k == 0 else H * (2 if bidirectional else 1)
            sd[f"weight_ih_l{k}{suffix}"] = rng.standard_normal((3 * H, in_size)).astype(np.float32)
            sd[f"weight_hh_l{k}{suffix}"] = rng.standard_normal((3 * H, H)).astype(np.float32)
            sd[f"bias_ih_l{k}{suffix}"] = rng.standard_normal(3 * H).astype(np.float32)
            sd[f"bias_hh_l{k}{suffix}"] = rng.standard_normal(3 * H).astype(np.float32)
    back = to_torch(from_torch(sd, batch_first=False).params)
    assert sorted(back) == sorted(sd)
    for name, value in sd.items():
        np.testing.assert_array_equal(back[name], value)


@settings(max_examples=8, deadline=None)
@given(
    cell=cells,
    steps=st.integers(1, 6),
    update=st.sampled_from(["window", "sequence"]),
    dropout=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 999),
)
def test_tbptt_with_one_window_equals_full_bptt(cell, steps, update, dropout, seed):
    import optax

    from jaxrnn.tbptt import make_tbptt_step
    from jaxrnn.train import TrainState

    init, layer = LAYERS[cell]
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    params = {"cell": init(k1, I, H), "w": jax.random.normal(k2, (H, 1))}
    x = jax.random.normal(k3, (2, steps, I))
    y = jnp.cumsum(x[..., :1], axis=1)

    def loss_fn(p, carry, x, y, key):
        hs, carry = layer(
            p["cell"],
            x,
            initial_state=carry,
            return_sequences=True,
            return_state=True,
            dropout=dropout,
            key=key,
            training=key is not None,
        )
        return jnp.mean((hs @ p["w"] - y) ** 2), carry

    carry = jaxrnn.zero_state(params["cell"], (2,))
    tx = optax.sgd(0.1)
    state, final, m = make_tbptt_step(loss_fn, tx, window=steps, update=update)(
        TrainState.create(params, tx), carry, (x, y), k4
    )
    # full BPTT by hand: one gradient through all steps, with the first window's key
    (loss, want_final), g = jax.value_and_grad(loss_fn, has_aux=True)(
        params, carry, x, y, jax.random.fold_in(k4, 0)
    )
    want = jax.tree.map(lambda p, g: p - 0.1 * g, params, g)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), state.params, want)
    np.testing.assert_allclose(m["loss"], [loss], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(want_final), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
