"""jaxrnn.parallel: data parallelism with jax.sharding, checked on 4 virtual CPU devices.

The multi-device checks run in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before JAX is imported
there; the rest runs in-process on the default single device.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

import jaxrnn
from jaxrnn.parallel import batch_sharding, data_mesh, data_parallel_step, replicate, shard_batch

FOUR_DEVICES = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    import jaxrnn
    from jaxrnn.parallel import data_mesh, data_parallel_step, replicate, shard_batch
    from jaxrnn.sweep import grid, sweep

    assert jax.device_count() == 4, jax.devices()
    B, T, I, H, STEPS = 8, 5, 2, 6, 5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = np.sin(x.sum(axis=(1, 2)))[:, None].astype(np.float32)

    def init(key):
        k1, k2 = jax.random.split(key)
        rnn = jaxrnn.init_rnn(k1, I, H, recurrent_init=jax.nn.initializers.normal(0.4))
        return {"rnn": rnn, "w": 0.3 * jax.random.normal(k2, (H, 1)),
                "b": jnp.zeros((1,))}

    def loss_fn(params, x, y):
        h = jaxrnn.simple_rnn(params["rnn"], x)                        # (B, H)
        return jnp.mean((h @ params["w"] + params["b"] - y) ** 2)

    opt = optax.adam(1e-2)

    def step_fn(state, batch):
        params, opt_state, step = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, step + 1), {"loss": loss}

    params = init(jax.random.key(0))
    state0 = (params, opt.init(params), jnp.int32(0))

    # One device: plain jit on the default device.
    single = jax.jit(step_fn)
    state, losses_1 = state0, []
    for _ in range(STEPS):
        state, m = single(state, (x, y))
        losses_1.append(float(m["loss"]))
    params_1 = state[0]

    # Four devices: state replicated, batch split 2 rows per device.
    mesh = data_mesh()
    assert mesh.size == 4
    dp = data_parallel_step(step_fn, mesh, split=True)  # 2 rows per device: forced
    state, losses_4 = state0, []
    for _ in range(STEPS):
        state, m = dp(state, (x, y))
        losses_4.append(float(m["loss"]))
    params_4 = state[0]
    np.testing.assert_allclose(losses_4, losses_1, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 params_4, params_1)
    assert int(state[2]) == STEPS
    assert losses_1[-1] < losses_1[0]

    # The batch really is split: 4 shards of 2 rows on 4 different devices.
    xs, ys = shard_batch((x, y), mesh)
    assert xs.sharding.num_devices == 4 and not xs.sharding.is_fully_replicated
    shards = xs.addressable_shards
    assert len(shards) == 4 and {s.device for s in shards} == set(jax.devices())
    assert all(s.data.shape == (2, T, I) for s in shards)
    np.testing.assert_array_equal(np.concatenate([np.asarray(s.data) for s in shards]), x)
    # The state comes back replicated on all 4 devices.
    kernel = params_4["rnn"].kernel
    assert kernel.sharding.is_fully_replicated and kernel.sharding.num_devices == 4
    assert replicate(params, mesh)["w"].sharding.num_devices == 4
    # XLA's SPMD partitioner inserted the gradient all-reduce (nothing hand-written).
    hlo = dp.jitted.lower(state0, (xs, ys)).compile().as_text()
    assert "all-reduce" in hlo

    # A batch size that does not divide over the devices is refused with advice.
    try:
        shard_batch((x[:6], y[:6]), mesh)
    except ValueError as e:
        msg = str(e)
        assert "batch size 6" in msg and "not divisible by the 4 devices" in msg, msg
        assert "e.g. 4 or 8" in msg, msg
    else:
        raise AssertionError("shard_batch accepted a batch of 6 on 4 devices")
    try:
        dp(state0, (x[:6], y[:6]))
    except ValueError as e:
        assert "data_parallel_step: batch size 6" in str(e), str(e)
    else:
        raise AssertionError("data_parallel_step accepted a batch of 6 on 4 devices")

    # Sweeps sharded over configurations equal the unsharded sweep.
    def train(hp):
        params = init(jax.random.key(hp["seed"]))
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=hp["lr"])

        def step(carry, _):
            params, s = carry
            loss, g = jax.value_and_grad(loss_fn)(params, x, y)
            u, s = tx.update(g, s)
            return (optax.apply_updates(params, u), s), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), length=4)
        return loss_fn(params, x, y), losses

    table = grid(lr=[0.05, 0.2], seed=[0, 1, 2, 3])
    plain = sweep(train, table)
    sharded = sweep(train, table, mesh=mesh)  # 2 configurations per device
    assert sharded.histories.sharding.num_devices == 4
    np.testing.assert_allclose(sharded.histories, plain.histories, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sharded.metrics, plain.metrics, rtol=1e-5, atol=1e-5)
    assert sharded.best.index == plain.best.index
    # 7 configurations in chunks of 1: padded to 8, 2 chunks per device.
    seven = {k: v[:7] for k, v in table.items()}
    chunked = sweep(train, seven, mesh=mesh, chunk_size=1)
    assert len(chunked) == 7
    np.testing.assert_allclose(chunked.histories, plain.histories[:7], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked.metrics, plain.metrics[:7], rtol=1e-5, atol=1e-5)
    print("OK")
    """
)


@pytest.mark.subprocesses  # a 4-device program: first, one at a time (tests/conftest.py)
def test_four_devices_equal_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stdout + res.stderr


def test_data_mesh_and_placement_on_one_device():
    mesh = data_mesh()
    assert mesh.axis_names == ("batch",) and mesh.size == jax.device_count()
    assert data_mesh([jax.devices()[0]], axis="data").axis_names == ("data",)
    x = shard_batch({"x": np.ones((4, 3), np.float32)}, mesh)["x"]
    assert isinstance(x, jax.Array) and x.sharding == batch_sharding(mesh)
    assert batch_sharding(mesh).spec == PartitionSpec(("batch",))
    p = replicate(jaxrnn.init_gru(jax.random.key(0), 2, 3), mesh)
    assert isinstance(p, jaxrnn.GRUParams) and p.kernel.sharding.is_fully_replicated


def test_data_parallel_step_equals_jit_on_one_device():
    opt = optax.adam(1e-2)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3, 2)), jnp.float32)
    y = jnp.ones((4, 1))

    def step_fn(state, batch):
        params, opt_state = state

        def loss_fn(p):
            return jnp.mean((jaxrnn.simple_rnn(p, batch[0])[:, :1] - batch[1]) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    params = jaxrnn.init_rnn(jax.random.key(0), 2, 3)
    a = b = (params, opt.init(params))
    dp = data_parallel_step(step_fn, data_mesh(), donate_state=True)
    for _ in range(3):
        a, loss_a = jax.jit(step_fn)(a, (x, y))
        b, loss_b = dp(b, (x, y))
        np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), a, b)
    assert dp.__name__ == "step_fn"


def test_errors():
    n = jax.device_count()
    with pytest.raises(ValueError, match=f"devices={n + 4} but {n} device"):
        data_mesh(n + 4)
    with pytest.raises(ValueError, match=f"JAX_NUM_CPU_DEVICES={n + 4}.*set_cpu_devices"):
        data_mesh(n + 4)
    with pytest.raises(ValueError, match="devices is empty"):
        data_mesh([])
    with pytest.raises(ValueError, match="listed twice"):
        data_mesh([jax.devices()[0]] * 2)
    mesh = data_mesh()
    with pytest.raises(ValueError, match=r"batch\[1\] is a scalar"):
        shard_batch((jnp.ones((4, 2)), jnp.float32(1.0)), mesh)
    with pytest.raises(ValueError, match="axis='model' is not an axis of the mesh"):
        shard_batch(jnp.ones((4, 2)), mesh, axis="model")
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        replicate(jnp.ones(2), "cpu")


def _run_devices(script: str, devices: int, timeout: int = 600) -> None:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stdout + res.stderr


@pytest.mark.subprocesses
def test_two_devices_train_step_fit_dropout_and_shard_map():
    script = (pathlib.Path(__file__).parent / "multidevice_two.py").read_text()
    _run_devices(script, 2)


def test_set_cpu_devices():
    from jaxrnn.parallel import set_cpu_devices

    set_cpu_devices(jax.device_count())  # already so: fine
    with pytest.raises(RuntimeError, match=r"already started with 1 cpu.*JAX_NUM_CPU_DEVICES=3"):
        set_cpu_devices(3)
    with pytest.raises(ValueError, match=r"n=0; it must be an integer >= 1 \(devices\)"):
        set_cpu_devices(0)
    script = "from jaxrnn.parallel import set_cpu_devices\nimport jax\nset_cpu_devices(3)\n"
    script += "assert jax.device_count() == 3\nprint('OK')"
    _run_devices(script, 1, timeout=120)


def test_initialize_checks_its_arguments_and_when_it_is_called(monkeypatch):
    from jaxrnn.parallel import initialize

    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="num_processes=0; it must be an integer >= 1"):
        initialize("127.0.0.1:1234", 0, 0)
    with pytest.raises(ValueError, match="process_id=2 but num_processes=2; ids run from 0 to 1"):
        initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="coordinator_address='localhost'; give 'host:port'"):
        initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="heartbeat_timeout=0; it must be a positive number"):
        initialize("127.0.0.1:1234", 2, 0, heartbeat_timeout=0)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two' is not an integer"):
        initialize("127.0.0.1:1234", process_id=0)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")  # read from the environment, then checked
    with pytest.raises(ValueError, match="process_id=3 but num_processes=2"):
        initialize("127.0.0.1:1234")
    jax.devices()  # JAX has started: too late to join a run, and the message says when to call
    with pytest.raises(RuntimeError, match="already started.*right after the imports"):
        initialize("127.0.0.1:1234", 2, 0)


def test_multi_process_helpers_in_one_process():
    from jaxrnn.parallel import _fingerprint, check_same, exchange, global_batch, put_global

    mesh = data_mesh()
    replicated = jax.sharding.NamedSharding(mesh, PartitionSpec())
    x = np.arange(12.0).reshape(4, 3)  # float64: placed as float32, as jax.device_put does
    gx = put_global(x, batch_sharding(mesh))
    assert gx.dtype == jnp.float32 and gx.sharding == batch_sharding(mesh)
    np.testing.assert_array_equal(gx, x)
    tree = put_global({"key": jax.random.key(3), "step": 2, "x": gx}, replicated)
    assert jax.dtypes.issubdtype(tree["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(tree["key"]), [0, 3])
    assert tree["key"].sharding == replicated and int(tree["step"]) == 2
    gb = global_batch({"x": x}, mesh)["x"]  # one process: its rows are the whole batch
    np.testing.assert_array_equal(gb, shard_batch(x, mesh))
    assert gb.sharding == batch_sharding(mesh)
    assert exchange("test", "value", where="test") == ["value"]
    check_same({"w": jnp.ones(2)}, "values", "test")  # one process: nothing to compare
    a = _fingerprint({"w": np.ones(3, np.float32), "k": jax.random.key(0)})
    assert a == _fingerprint({"w": jnp.ones(3), "k": jax.random.key(0)})
    assert a != _fingerprint({"w": np.ones(3, np.float32), "k": jax.random.key(1)})
    assert a != _fingerprint({"v": np.ones(3, np.float32), "k": jax.random.key(0)})
    assert _fingerprint(np.ones(3)) != _fingerprint(np.ones(3, np.float32))
