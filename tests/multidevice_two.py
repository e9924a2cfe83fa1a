"""Data parallelism on 2 host devices (run by tests/test_parallel.py, JAX_NUM_CPU_DEVICES=2).

Not a test module itself: the device count is fixed when JAX starts, so the test
runs this file in a fresh process. Prints OK at the end.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

import jaxrnn
import jaxrnn.losses
from jaxrnn.parallel import (
    MIN_ROWS_PER_DEVICE,
    batch_sharding,
    data_mesh,
    data_parallel_step,
    global_batch,
    put_global,
    shard_batch,
    split_pays,
)
from jaxrnn.train import TrainState, fit, make_train_step

B, T, I, H = 32, 100, 8, 64  # a realistic size: 16 rows per device


def loop_bodies_with_all_reduce(hlo: str) -> list[str]:
    """Names of while-loop bodies (and conditions) in compiled HLO that all-reduce."""
    bodies = set(re.findall(r"body=(%?[\w.\-]+)", hlo))
    found = []
    for block in hlo.split("\n\n"):
        header = block.strip().split("\n")[0]
        name = header.split(" ")[0]
        if name in bodies and "all-reduce(" in block:
            found.append(name)
    return found


def assert_trees_close(a, b, rtol=1e-4, atol=2e-6):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=rtol, atol=atol), a, b)


def sgd_step(loss, opt):
    """A plain training step ``(state, batch) -> (state, loss)`` of ``loss(p, *batch)``."""

    def step_fn(state, batch):
        p, s = state
        value, g = jax.value_and_grad(loss)(p, *batch)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), value

    return step_fn


def assert_partitioned_equals_one_device(step_fn, mesh, state, batch):
    """``data_parallel_step`` (XLA's partitioning) gives one device's loss and state, and
    its compiled program all-reduces, but never inside a loop body."""
    dp = data_parallel_step(step_fn, mesh)
    a, la = jax.jit(step_fn)(state, batch)
    b, lb = dp(state, batch)
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    assert_trees_close(b[0], a[0])
    hlo = dp.jitted.lower(state, batch).compile().as_text()
    assert "all-reduce(" in hlo
    assert not loop_bodies_with_all_reduce(hlo), loop_bodies_with_all_reduce(hlo)


def main():
    assert jax.device_count() == 2, jax.devices()
    mesh = data_mesh()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = np.sin(np.cumsum(x[..., :1], axis=1) / 5).astype(np.float32)
    lengths = rng.integers(1, T + 1, B).astype(np.int32)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"rnn": jaxrnn.init_lstm(k1, I, H), "w": 0.1 * jax.random.normal(k2, (H, 1))}

    def loss_fn(p, xl, y, key, rate=0.0):
        x, sl = xl
        h = jaxrnn.lstm(
            p["rnn"],
            x,
            seq_lengths=sl,
            return_sequences=True,
            dropout=rate,
            key=key,
            training=key is not None,
        )
        return jaxrnn.losses.mse(h @ p["w"], y, seq_lengths=sl)

    opt = optax.adam(3e-3)
    mae = {"mae": lambda p, xl, y: jnp.mean(jnp.abs(xl[0]))}
    params = init(jax.random.key(0))

    # make_train_step over the mesh (explicit shard_map + pmean) equals one device.
    one = make_train_step(loss_fn, opt, metrics=mae)
    two = make_train_step(loss_fn, opt, metrics=mae, mesh=mesh, split=True)
    s1 = s2 = TrainState.create(params, opt)
    for _ in range(4):
        s1, m1 = one(s1, ((x, lengths), y), None)
        s2, m2 = two(s2, ((x, lengths), y), None)
        for k in m1:
            np.testing.assert_allclose(m2[k], m1[k], rtol=2e-5, atol=1e-6, err_msg=k)
    assert_trees_close(s2.params, s1.params)
    assert s2.params["w"].sharding.is_fully_replicated and int(s2.step) == 4
    hlo = two.split_step.lower(s1, ((x, lengths), y), None).compile().as_text()
    assert "all-reduce(" in hlo and not loop_bodies_with_all_reduce(hlo)

    # The XLA-partitioned generic step at B = 64 (the LSTM's autodiff-backward size on one
    # device): equal values, and no all-reduce inside a loop body.
    x64, y64 = np.concatenate([x, x]), np.concatenate([y, y])
    l64 = np.concatenate([lengths, lengths])

    lstm_loss = functools.partial(loss_fn, key=None)
    state = (params, opt.init(params))
    assert_partitioned_equals_one_device(sgd_step(lstm_loss, opt), mesh, state, ((x64, l64), y64))

    # The same for a GRU, whose backward pass on one device runs in chunks of steps
    # (2^18 / (16 * 192) = 85 here): partitioned, it forms its weight gradients once.
    def gru_loss(p, xl, yy):
        xx, sl = xl
        h = jaxrnn.gru(p["rnn"], xx, seq_lengths=sl, return_sequences=True)
        return jaxrnn.losses.mse(h @ p["w"], yy, seq_lengths=sl)

    k1, k2 = jax.random.split(jax.random.key(1))
    gru_params = {"rnn": jaxrnn.init_gru(k1, I, H), "w": 0.1 * jax.random.normal(k2, (H, 1))}
    state = (gru_params, opt.init(gru_params))
    assert_partitioned_equals_one_device(sgd_step(gru_loss, opt), mesh, state, ((x, lengths), y))

    # The rule: too few rows per device run whole on every device (no split program).
    lstm = 4 * H * (I + H + 1)
    assert not split_pays(2 * MIN_ROWS_PER_DEVICE - 1, 2, steps=10**6, parameters=lstm)
    assert split_pays(B, 2, steps=T, parameters=lstm)
    assert not split_pays(B, 2, steps=2, parameters=lstm)  # too little work per device
    auto = make_train_step(loss_fn, opt, mesh=mesh)
    small = ((x[:6], lengths[:6]), y[:6])  # 3 rows per device: whole, though 6 divides by 2
    _, m3 = auto(TrainState.create(params, opt), small, None)
    _, m4 = one(TrainState.create(params, opt), small, None)
    np.testing.assert_allclose(m3["loss"], m4["loss"], rtol=1e-6)
    assert auto.split_step._cache_size() == 0  # the split program was never built

    # An explicitly split batch that does not divide keeps its clear error.
    try:
        two(s1, ((x[:31], lengths[:31]), y[:31]), None)
    except ValueError as e:
        assert "make_train_step: batch size 31" in str(e), e
        assert "not divisible by the 2 devices" in str(e), e
    else:
        raise AssertionError("an odd batch was split")

    # fit over the mesh equals fit on one device (no dropout), uneven last batches included:
    # 50 = 32 + 18 (18 rows split 9 + 9); 33 = 32 + 1 (the batch of 1 runs whole).
    for n_ex in (50, 33):
        xx, yy = np.concatenate([x, x])[:n_ex], np.concatenate([y, y])[:n_ex]
        ll = np.concatenate([lengths, lengths])[:n_ex]
        kw = dict(epochs=2, batch_size=32, key=jax.random.key(3), verbose=0, split=True)
        p_one, h_one = fit(loss_fn, params, opt, (xx, ll), yy, **kw)
        p_two, h_two = fit(loss_fn, params, opt, (xx, ll), yy, mesh=mesh, **kw)
        np.testing.assert_allclose(h_two.history["loss"], h_one.history["loss"], rtol=2e-5)
        assert_trees_close(p_two, p_one)

    # Dropout: each device draws its own masks (fold_in of the device index), at the rate.
    drop_step = make_train_step(functools.partial(loss_fn, rate=0.4), opt, mesh=mesh, split=True)
    _, m5 = drop_step(TrainState.create(params, opt), ((x, lengths), y), jax.random.key(5))
    assert np.isfinite(float(m5["loss"])) and float(m5["loss"]) != float(m1["loss"])

    def local_masks(key):
        k = jax.random.fold_in(key, jax.lax.axis_index("batch"))
        return jaxrnn.make_dropout_masks(k, (B // 2,), I, H, 4, dropout=0.4).input[None]

    masks = jax.jit(jax.shard_map(local_masks, mesh=mesh, in_specs=P(), out_specs=P("batch")))(
        jax.random.key(5)
    )
    masks = np.asarray(masks)
    assert masks.shape[0] == 2 and not np.array_equal(masks[0], masks[1])  # own masks
    dropped = float(np.mean(masks == 0))
    assert abs(dropped - 0.4) < 0.04, dropped  # the rate is honoured
    np.testing.assert_allclose(masks[masks != 0], 1 / 0.6, rtol=1e-6)

    # Layers inside the user's own (type-checked) shard_map: a zero initial state meets
    # per-device inputs; gradients w.r.t. replicated params are summed over devices.
    def local_loss(p, x):
        h = jaxrnn.gru(p, x, return_sequences=True)
        _, ys = jaxrnn.unroll(jaxrnn.gru_step, p, x, jaxrnn.zero_state(p, (x.shape[0],)))
        return jnp.sum(h**2) + jnp.sum(ys**2)

    gp = jaxrnn.init_gru(jax.random.key(1), I, 16)
    sm = jax.jit(
        jax.shard_map(jax.grad(local_loss), mesh=mesh, in_specs=(P(), P("batch")), out_specs=P())
    )
    assert_trees_close(sm(gp, x), jax.grad(local_loss)(gp, x), atol=1e-5)

    # The multi-process placement helpers, in one process over 2 devices: put_global
    # equals shard_batch/replicate, global_batch takes this process's rows (all of them).
    replicated = jax.sharding.NamedSharding(mesh, P())
    gx = put_global(x, batch_sharding(mesh))
    assert [s.data.shape for s in gx.addressable_shards] == [(B // 2, T, I)] * 2
    np.testing.assert_array_equal(gx, shard_batch(x, mesh))
    gk = put_global(jax.random.key(4), replicated)
    assert gk.sharding.num_devices == 2 and gk.sharding.is_fully_replicated
    np.testing.assert_array_equal(jax.random.key_data(gk), [0, 4])
    np.testing.assert_array_equal(global_batch(x, mesh), x)
    try:
        global_batch(x[:31], mesh)
    except ValueError as e:
        assert "global_batch: batch size 31" in str(e), e
        assert "2 devices of this process in the mesh" in str(e), e
    else:
        raise AssertionError("global_batch split 31 rows over 2 devices")
    print("OK")


if __name__ == "__main__":
    main()
