"""One process of a 2-process jaxrnn run (run by tests/test_multiprocess.py, never by pytest).

``python -m tests.multiprocess_worker all`` (from the repository root) runs every
scenario below inside one pair of processes (a mesh over both processes' devices)
and compares each with the same computation in one process, on this process's
own first device:

* ``make_train_step(mesh=)``: SGD losses, gradient norms and parameters; Adam's
  gradient norms (Adam's updates hide a wrong gradient scale); a batch built by
  ``global_batch`` from each process's own rows; the unsplit path of a small batch;
* ``data_parallel_step`` (XLA's partitioner) over the processes;
* ``fit(mesh=)`` with an uneven last batch and validation data;
* ``sweep(mesh=)`` with padding, against the unsplit sweep;
* ``checkpoint.save``/``restore``: resuming equals the uninterrupted run bit for
  bit, a sharded leaf is gathered, failures raise on every process;
* the checks that processes pass the same values, and ``initialize``'s errors.

``crash`` and ``killed`` check the failure path: process 1 raises (or is
killed) while process 0 waits in a collective; both must end within seconds
(``initialize``'s fail-fast hook).

Each process prints ``DIFF <name> <max abs difference>`` lines and ``OK`` at the end.
"""

import os
import signal
import sys
import time

from tests.multiprocess_harness import start_worker


def main(argv):
    start_worker()  # before anything computes

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.experimental.multihost_utils import process_allgather

    import jaxrnn
    import jaxrnn.losses
    from jaxrnn import checkpoint
    from jaxrnn.parallel import (
        batch_sharding,
        data_mesh,
        data_parallel_step,
        global_batch,
        initialize,
        replicate,
        shard_batch,
    )
    from jaxrnn.sweep import grid, sweep
    from jaxrnn.train import TrainState, fit, make_train_step

    pid, nproc = jax.process_index(), jax.process_count()
    assert nproc == 2, nproc
    local = jax.local_device_count()
    mesh = data_mesh()
    assert mesh.size == 2 * local and mesh.devices.flat[0].process_index == 0
    me = jax.local_devices()[0]  # the one-process reference runs here

    def diff(name, a, b, tol):
        """Max |a - b| over two trees; printed, and asserted <= tol."""
        d = max(
            float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )
        print(f"DIFF {name} {d:.3g}", flush=True)
        assert d <= tol, (name, d, tol)

    clock = [time.perf_counter()]

    def lap(section):
        """Print the seconds the section took (shown by pytest -s)."""
        now = time.perf_counter()
        print(f"TIME {section} {now - clock[0]:.1f}s", flush=True)
        clock[0] = now

    def expect(error, match, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except error as e:
            assert match in str(e), (match, str(e))
            return str(e)
        raise AssertionError(f"expected {error.__name__} with {match!r}")

    if argv[0] in ("crash", "killed"):
        x = jax.device_put(np.ones((2 * local, 3), np.float32), batch_sharding(mesh))
        total = jax.jit(jnp.sum)
        float(total(x))  # both processes reach one collective
        if pid == 1 and argv[0] == "crash":
            raise RuntimeError("process 1 fails on purpose")
        if pid == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        float(total(x))  # process 0 waits in a collective its peer never joins
        raise AssertionError("process 0 passed a collective without its peer")

    B, T, I, H = 32, 10, 4, 16
    rng = np.random.default_rng(0)  # the same data on every process
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = np.sin(np.cumsum(x[..., :1], axis=1) / 3).astype(np.float32)
    lengths = rng.integers(2, T + 1, B).astype(np.int32)
    normal = jax.nn.initializers.normal(0.3)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "rnn": jaxrnn.init_lstm(k1, I, H, kernel_init=normal, recurrent_init=normal),
            "w": 0.2 * jax.random.normal(k2, (H, 1)),
        }

    def loss_fn(p, xl, y, key):
        x, sl = xl
        h = jaxrnn.lstm(p["rnn"], x, seq_lengths=sl, return_sequences=True)
        return jaxrnn.losses.mse(h @ p["w"], y, seq_lengths=sl)  # mean over valid steps

    params = jax.device_get(init(jax.random.key(0)))
    batch = ((x, lengths), y)

    # --- make_train_step over the processes == one process -------------------------------
    steps = {}  # name: (optimizer, one-process step, step over the mesh), reused below
    for name, opt, tol in (("sgd", optax.sgd(0.1), 1e-6), ("adam", optax.adam(1e-2), 1e-4)):
        one = make_train_step(loss_fn, opt)
        two = make_train_step(loss_fn, opt, mesh=mesh, split=True)
        s1 = jax.device_put(TrainState.create(params, opt), me)
        s2 = TrainState.create(params, opt)
        m1s, m2s = [], []
        for _ in range(4):
            s1, m1 = one(s1, batch, None)
            s2, m2 = two(s2, batch, None)
            m1s.append({k: float(v) for k, v in m1.items()})
            m2s.append({k: float(v) for k, v in m2.items()})  # replicated: float() works
        diff(f"step_{name}_loss", [m["loss"] for m in m2s], [m["loss"] for m in m1s], 1e-6)
        # the gradient itself: a wrong scale (a sum over devices) would show here
        g1, g2 = [m["grad_norm"] for m in m1s], [m["grad_norm"] for m in m2s]
        diff(f"step_{name}_grad_norm_rel", np.divide(g2, g1) - 1, 0.0, 1e-5)
        diff(f"step_{name}_params", s2.params, s1.params, tol)
        kernel = s2.params["rnn"].kernel
        assert kernel.sharding.is_fully_replicated and not kernel.is_fully_addressable
        assert int(s2.step) == 4
        steps[name] = (opt, one, two)
        if name == "sgd":
            sgd_state, sgd_metrics = s2, m2s

    lap("make_train_step")

    # a batch from each process's own rows (global_batch) is the same batch
    rows = B // nproc
    mine = jax.tree.map(lambda a: a[pid * rows : (pid + 1) * rows], batch)
    gb = global_batch(mine, mesh)
    assert gb[1].shape == (B, T, 1) and not gb[1].is_fully_addressable
    sgd, one, two = steps["sgd"]  # already compiled for these shapes
    s3 = TrainState.create(params, sgd)
    for _ in range(4):
        s3, m3 = two(s3, gb, None)
    diff("global_batch_vs_whole_batch", s3.params, sgd_state.params, 0.0)  # bit-identical
    assert float(m3["loss"]) == sgd_metrics[-1]["loss"]
    # each process's devices hold its own rows
    for shard in gb[1].addressable_shards:
        start = shard.index[0].start
        np.testing.assert_array_equal(
            np.asarray(shard.data), y[start : start + shard.data.shape[0]]
        )
        assert pid * rows <= start < (pid + 1) * rows

    # the unsplit path: a small batch runs whole on every device
    small = jax.tree.map(lambda a: a[:6], batch)
    auto = make_train_step(loss_fn, sgd, mesh=mesh)  # split="auto": 3 rows/device is too few
    sa, ma = auto(TrainState.create(params, sgd), small, None)
    sb, mb = one(jax.device_put(TrainState.create(params, sgd), me), small, None)
    diff("unsplit_small_batch_params", sa.params, sb.params, 1e-6)
    assert auto.split_step._cache_size() == 0

    # processes passing different parameters fail together, before any training
    other = jax.device_get(init(jax.random.key(10 + pid)))
    expect(
        ValueError,
        "the processes passed different state: process(es) [1] differ from process 0",
        auto,
        TrainState.create(other, sgd),
        small,
        None,
    )
    expect(ValueError, "passed different values", replicate, other, mesh)

    lap("global_batch_unsplit_checks")

    # --- data_parallel_step (XLA's partitioner) over the processes ----------------------
    opt = optax.sgd(0.1)

    def step_fn(state, b):
        p, s = state
        loss, g = jax.value_and_grad(loss_fn)(p, *b, None)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss

    dp = data_parallel_step(step_fn, mesh, split=True)
    a = jax.device_put((params, opt.init(params)), me)
    b = (params, opt.init(params))
    for _ in range(3):
        a, la = jax.jit(step_fn)(a, batch)
        b, lb = dp(b, batch)
        diff("data_parallel_step_loss", float(lb), float(la), 1e-6)
    diff("data_parallel_step_params", b[0], a[0], 1e-6)
    xs = shard_batch(x, mesh)
    assert xs.shape == x.shape and len(xs.addressable_shards) == local

    lap("data_parallel_step")

    # --- fit over the processes == fit in one process ------------------------------------
    n_ex = 50  # 32 + 18: the last batch splits over 2 devices, runs whole on 4
    xx = np.concatenate([x, x])[:n_ex]
    yy = np.concatenate([y, y])[:n_ex]
    ll = np.concatenate([lengths, lengths])[:n_ex]
    val = ((x[:8], lengths[:8]), y[:8])
    kw = dict(
        epochs=2, batch_size=32, key=jax.random.key(3), verbose=0, validation_data=val, split=True
    )
    opt = optax.sgd(0.05)
    with jax.default_device(me):
        p_one, h_one = fit(loss_fn, params, opt, (xx, ll), yy, **kw)
    p_two, h_two = fit(loss_fn, params, opt, (xx, ll), yy, mesh=mesh, **kw)
    for k in ("loss", "val_loss"):
        diff(f"fit_{k}", h_two.history[k], h_one.history[k], 1e-6)
    diff("fit_params", p_two, p_one, 1e-6)
    assert h_two.history["loss"][-1] < h_two.history["loss"][0]
    expect(
        ValueError,
        "passed different x, y, validation data and key",
        fit,
        loss_fn,
        params,
        opt,
        (xx + pid, ll),
        yy,
        mesh=mesh,
        **kw,
    )

    lap("fit")

    # --- sweep over the processes == the unsplit sweep ------------------------------------
    def sweep_loss(p, x, y):
        return jnp.mean((jaxrnn.simple_rnn(p["rnn"], x) @ p["w"] - y[:, -1]) ** 2)

    def train(hp):
        k1, k2 = jax.random.split(jax.random.key(hp["seed"]))
        p = {
            "rnn": jaxrnn.init_rnn(k1, I, 8, kernel_init=normal, recurrent_init=normal),
            "w": 0.3 * jax.random.normal(k2, (8, 1)),
        }
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=hp["lr"])

        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(sweep_loss)(p, x, y)
            u, s = tx.update(g, s)
            return (optax.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), length=5)
        return {"loss": sweep_loss(p, x, y), "w": p["w"]}, losses

    table = {k: v[:5] for k, v in grid(seed=[0, 1], lr=[0.02, 0.1, 0.3]).items()}
    with jax.default_device(me):
        plain = sweep(train, table, metric="loss")
    spread = sweep(train, table, metric="loss", mesh=mesh)  # 5: padded to 6 (8) configurations
    assert len(spread) == 5 and spread.histories.shape == (5, 5)
    assert spread.histories.sharding.is_fully_replicated
    diff("sweep_histories", spread.histories, plain.histories, 1e-6)
    diff("sweep_results", spread.results, plain.results, 1e-6)
    diff("sweep_metrics", spread.metrics, plain.metrics, 1e-6)
    assert spread.best.index == plain.best.index and spread.best.hparams == plain.best.hparams
    ranked = sweep(train, table, metric=lambda r, h: h[-1], mesh=mesh)  # metric on host values
    diff("sweep_callable_metric", ranked.metrics, plain.histories[:, -1], 1e-6)
    print(f"SWEEP_BEST {plain.best.index} {plain.best.value:.6f}", flush=True)

    lap("sweep")

    # --- checkpoints: save from process 0, restore everywhere, resume == uninterrupted ----
    tmp = os.environ["MP_TMP"]
    path = os.path.join(tmp, "run.ckpt")
    opt, _, step = steps["adam"]  # already compiled
    s = TrainState.create(params, opt)
    for _ in range(3):
        s, _ = step(s, batch, None)
    checkpoint.save(path, {"state": s, "key": jax.random.key(7), "batch": gb})
    assert os.path.exists(path)  # every process sees it once save has returned
    s_direct = s
    for _ in range(2):
        s_direct, m_direct = step(s_direct, batch, None)
    # a fresh target from another seed, replicated over the mesh: restore on every process
    fresh = replicate(TrainState.create(jax.device_get(init(jax.random.key(5))), opt), mesh)
    target = {"state": fresh, "key": jax.random.key(0), "batch": gb}
    back = checkpoint.restore(path, target)
    assert back["state"].params["w"].sharding == fresh.params["w"].sharding
    assert int(back["state"].step) == 3
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), [0, 7])
    assert back["batch"][1].sharding == gb[1].sharding  # sharded again, as the target
    diff("checkpoint_sharded_leaf", process_allgather(back["batch"], tiled=True), batch, 0.0)
    s_resumed = back["state"]
    for _ in range(2):
        s_resumed, m_resumed = step(s_resumed, batch, None)
    diff("checkpoint_resume_params", s_resumed, s_direct, 0.0)  # bit-identical
    assert float(m_resumed["loss"]) == float(m_direct["loss"])
    host = checkpoint.restore(path)  # no target: each process on its own
    np.testing.assert_array_equal(host["['batch'][1]"], y)

    # failures raise on every process, none waits
    missing = os.path.join(tmp, "no-such-dir", "run.ckpt")
    if pid == 0:
        expect(FileNotFoundError, "does not exist", checkpoint.save, missing, s)
    else:
        expect(RuntimeError, "process 0 could not write", checkpoint.save, missing, s)
    checkpoint.save(os.path.join(tmp, "a.ckpt"), {"state": s})
    checkpoint.save(os.path.join(tmp, "b.ckpt"), {"state": s_direct})
    expect(
        ValueError,
        "the processes read different files",
        checkpoint.restore,
        os.path.join(tmp, "a.ckpt" if pid == 0 else "b.ckpt"),
        {"state": fresh},
    )
    expect(RuntimeError, "already joined a multi-process run", initialize)
    # the torch habit, `if rank == 0: save(...)`: a clear error after the timeout, no hang
    if pid == 0:
        expect(
            TimeoutError,
            "process 1 did not reach this point within 1 s",
            checkpoint.save,
            os.path.join(tmp, "alone.ckpt"),
            {"state": s},
            timeout=1,
        )
    from jaxrnn.parallel import exchange

    assert exchange("done", "bye", where="worker") == ["bye", "bye"]
    lap("checkpoint")
    jax.distributed.shutdown()
    print("OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["all"])
