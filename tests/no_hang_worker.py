"""Everything in jaxrnn.parallel, repeated on several host devices, must finish.

Run by tests/test_no_hang.py as ``python no_hang_worker.py REPEATS`` with
JAX_NUM_CPU_DEVICES set (2 or 4), under a timeout and a faulthandler watchdog:
the sharded-sweep hang (a batched LAPACK QR on several host devices deadlocking
XLA:CPU's worker pool) was a race, so each program is executed several times.
Prints one line per check and OK at the end. Not a test module itself.
"""

import faulthandler
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn.parallel import data_mesh, data_parallel_step, replicate, shard_batch
from jaxrnn.sweep import grid, sweep
from jaxrnn.train import TrainState, fit, make_train_step

T, I = 10, 2


def keras_default_sweep(init, layer, hidden, repeats):
    """A README-style train_fn: Keras-default initialisation (orthogonal U) inside it."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, T, I)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((8, 1)), jnp.float32)

    def train_fn(hp):
        k1, k2 = jax.random.split(jax.random.key(hp["seed"]))
        params = {"rnn": init(k1, I, hidden), "w": 0.1 * jax.random.normal(k2, (hidden, 1))}

        def loss(p):
            return jnp.mean((layer(p["rnn"], x) @ p["w"] - y) ** 2)

        def step(p, _):
            value, g = jax.value_and_grad(loss)(p)
            return jax.tree.map(lambda a, b: a - hp["lr"] * b, p, g), value

        params, losses = jax.lax.scan(step, params, length=3)
        return loss(params), losses

    table = grid(lr=[1e-3, 3e-3], seed=[0, 1])  # 2 configurations per device on 2 devices
    mesh = data_mesh()
    plain = sweep(train_fn, table)
    for _ in range(repeats):
        sharded = sweep(train_fn, table, mesh=mesh)
        np.testing.assert_allclose(sharded.metrics, plain.metrics, rtol=1e-4, atol=1e-6)


def batched_qr_sweep(hidden, repeats):
    """A train_fn of one's own with a batched LAPACK call: the sweep runs it unbatched."""
    x = jnp.ones((4, T, I))

    def train_fn(hp):
        z = jax.random.normal(jax.random.key(hp["seed"]), (hidden, hidden))
        u = jnp.linalg.qr(z)[0]  # LAPACK geqrf/orgqr, batched by the sweep's vmap
        w = jnp.full((I, hidden), 0.1)

        def step(h, xt):
            return jnp.tanh(xt @ w + h @ u), None

        h, _ = jax.lax.scan(step, jnp.zeros((4, hidden)), jnp.swapaxes(x, 0, 1))
        return jnp.sum(h) * hp["lr"], jnp.zeros(1)

    table = grid(lr=[1.0, 2.0], seed=[0, 1, 2, 3])
    plain = sweep(train_fn, table)
    for _ in range(repeats):
        sharded = sweep(train_fn, table, mesh=data_mesh())
        np.testing.assert_allclose(sharded.metrics, plain.metrics, rtol=1e-4, atol=1e-5)


def training_steps(hidden, repeats):
    """data_parallel_step, make_train_step and fit over the mesh, with Keras-default init."""
    n = jax.device_count()
    B = 16 * n
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = rng.standard_normal((B, 1)).astype(np.float32)
    mesh = data_mesh()
    opt = optax.sgd(1e-2)
    params = {"rnn": jaxrnn.init_lstm(jax.random.key(0), I, hidden), "w": jnp.ones((hidden, 1))}

    def loss_fn(p, x, y, key):
        return jnp.mean((jaxrnn.lstm(p["rnn"], x) @ p["w"] - y) ** 2)

    def step_fn(state, batch):
        p, s = state
        value, g = jax.value_and_grad(loss_fn)(p, *batch, None)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), value

    dp = data_parallel_step(step_fn, mesh, split=True)
    explicit = make_train_step(loss_fn, opt, mesh=mesh, split=True)
    one = make_train_step(loss_fn, opt)
    _, want = one(TrainState.create(params, opt), (x, y), None)
    for _ in range(repeats):
        _, got = dp((replicate(params, mesh), opt.init(params)), shard_batch((x, y), mesh))
        np.testing.assert_allclose(got, want["loss"], rtol=1e-5)
        _, got = explicit(TrainState.create(params, opt), (x, y), None)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    fit(
        loss_fn,
        params,
        opt,
        x,
        y,
        epochs=1,
        batch_size=B // 2,
        key=jax.random.key(2),
        mesh=mesh,
        split=True,
        verbose=0,
    )


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    faulthandler.dump_traceback_later(float(os.environ.get("WATCHDOG", "200")), exit=True)
    n = jax.device_count()
    assert n == int(os.environ["JAX_NUM_CPU_DEVICES"]), jax.devices()
    checks = [
        (
            f"sweep rnn H={h}",
            lambda h=h: keras_default_sweep(jaxrnn.init_rnn, jaxrnn.simple_rnn, h, repeats),
        )
        for h in (32, 100, 256)
    ]
    checks.append(
        (
            "sweep lstm H=100",
            lambda: keras_default_sweep(jaxrnn.init_lstm, jaxrnn.lstm, 100, repeats),
        )
    )
    checks.append(("sweep with a batched QR H=100", lambda: batched_qr_sweep(100, repeats)))
    checks.append(("training steps H=100", lambda: training_steps(100, repeats)))
    for name, check in checks:
        start = time.perf_counter()
        check()
        print(
            f"{n} devices: {name}: {repeats} runs in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
    print("OK")


if __name__ == "__main__":
    main()
