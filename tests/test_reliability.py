"""Guarantees that matter most when they fail silently: determinism, no retracing, precision."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn

# A small training run with shuffling and dropout: every source of randomness is the key.
TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np, optax, jaxrnn
    from jaxrnn.train import fit

    def run():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((24, 6, 2)).astype(np.float32)
        y = x.sum(axis=(1, 2))[:, None]
        k1, k2 = jax.random.split(jax.random.key(0))
        params = {"rnn": jaxrnn.init_gru(k1, 2, 8), "w": 0.1 * jax.random.normal(k2, (8, 1))}

        def loss(p, x, y, key):
            h = jaxrnn.gru(p["rnn"], x, dropout=0.2, recurrent_dropout=0.1, key=key)
            return jnp.mean((h @ p["w"] - y) ** 2)

        params, _ = fit(loss, params, optax.adam(1e-2), x, y, epochs=3, batch_size=8,
                        key=jax.random.key(7), verbose=0)
        return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree.leaves(params)])

    if __name__ == "__main__":
        np.save(sys.argv[1], run())
    """
)


def test_training_is_bit_identical_in_one_process_and_across_processes(tmp_path):
    script = tmp_path / "train_once.py"
    script.write_text(TRAIN_SCRIPT)
    namespace: dict = {}
    exec(compile(TRAIN_SCRIPT, str(script), "exec"), namespace)
    first, second = namespace["run"](), namespace["run"]()
    np.testing.assert_array_equal(first, second)
    out = tmp_path / "params.npy"
    subprocess.run([sys.executable, str(script), str(out)], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(out), first)
    assert np.all(np.isfinite(first)) and np.ptp(first) > 0


def test_jitted_layer_and_train_step_compile_once():
    traces = []
    p = jaxrnn.init_lstm(jax.random.key(0), 3, 4)

    @jax.jit
    def step(p, x):
        traces.append(1)  # runs only while tracing
        return jax.grad(lambda q: jnp.mean(jaxrnn.lstm(q, x, return_sequences=True) ** 2))(p)

    for scale in (1.0, 2.0, 3.0):
        step(p, scale * jnp.ones((2, 5, 3)))
    assert len(traces) == 1
    step(p, jnp.ones((2, 6, 3)))  # a new shape is a new program
    assert len(traces) == 2


def test_changing_a_hyperparameter_array_does_not_recompile():
    """With optax.inject_hyperparams the learning rate is an argument, not a constant."""
    traces = []
    x = jnp.ones((2, 5, 3))

    @jax.jit
    def train(lr):
        traces.append(1)
        p = jaxrnn.init_rnn(jax.random.key(0), 3, 4)
        opt = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
        g = jax.grad(lambda q: jnp.mean(jaxrnn.simple_rnn(q, x) ** 2))(p)
        u, _ = opt.update(g, opt.init(p), p)
        return optax.apply_updates(p, u).kernel

    a, b = train(jnp.float32(1e-3)), train(jnp.float32(1e-1))
    assert len(traces) == 1
    assert not np.allclose(a, b)


def _sum_sq_grad(layer, p, x):
    return jax.grad(lambda q: jnp.sum(layer(q, x, return_sequences=True) ** 2))(p)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_float64_matches_float32_path(name):
    init, layer = {
        "rnn": (jaxrnn.init_rnn, jaxrnn.simple_rnn),
        "lstm": (jaxrnn.init_lstm, jaxrnn.lstm),
        "gru": (jaxrnn.init_gru, jaxrnn.gru),
    }[name]
    k1, k2 = jax.random.split(jax.random.key(3))
    x32 = jax.random.normal(k1, (3, 20, 4))
    lengths = jnp.array([20, 7, 0])
    p32 = init(k2, 4, 6)
    y32 = layer(p32, x32, return_sequences=True, seq_lengths=lengths)
    g32 = _sum_sq_grad(layer, p32, x32)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p32)
        x64 = jnp.asarray(x32, jnp.float64)
        y64 = layer(p64, x64, return_sequences=True, seq_lengths=lengths)
        g64 = _sum_sq_grad(layer, p64, x64)
        assert y64.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(y32), np.asarray(y64), atol=2e-6)
        for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g64), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-5)
