"""jaxrnn.sweep: vmapped sweeps equal sequential runs; chunking, caching, tables, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.sweep import Best, SweepResult, grid, sweep

B, T, I, H, STEPS = 8, 5, 2, 6, 12
_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.standard_normal((B, T, I)), jnp.float32)
Y = jnp.asarray(np.sin(np.asarray(X).sum(axis=(1, 2)))[:, None], jnp.float32)


def make_optimizer(learning_rate, weight_decay, clip):
    return optax.chain(
        optax.clip_by_global_norm(clip),
        optax.adamw(learning_rate, weight_decay=weight_decay),
    )


def predict(params, x, drop_mask=None):
    h = jaxrnn.simple_rnn(params["rnn"], x)  # (B, H)
    if drop_mask is not None:
        h = h * drop_mask
    return h @ params["w"] + params["b"]  # (B, 1)


def train(hp):
    """A whole run: SimpleRNN + dense head, MSE, AdamW with clipping; hp is a dict of scalars."""
    k_rnn, k_w, k_drop = jax.random.split(jax.random.key(hp["seed"]), 3)
    params = {
        "rnn": jaxrnn.init_rnn(k_rnn, I, H, recurrent_init=jax.nn.initializers.normal(0.4)),
        "w": hp["init_scale"] * jax.random.normal(k_w, (H, 1)),
        "b": jnp.zeros((1,)),
    }
    # inject_hyperparams: the learning rate etc. are arrays in the optimiser state.
    opt = optax.inject_hyperparams(make_optimizer)(
        learning_rate=hp["lr"], weight_decay=hp["wd"], clip=hp["clip"]
    )
    keep = 1.0 - hp["dropout"]

    def loss_fn(params, key):
        mask = jax.random.bernoulli(key, keep, (B, H)) / keep  # dropout with a traced rate
        return jnp.mean((predict(params, X, mask) - Y) ** 2)

    def step(carry, t):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, jax.random.fold_in(k_drop, t))
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(STEPS))
    final = jnp.mean((predict(params, X) - Y) ** 2)
    return {"loss": final, "lr": opt_state.hyperparams["learning_rate"]}, losses


TABLE = grid(
    lr=[1e-2, 5e-2], wd=[0.0, 1e-2], dropout=[0.0, 0.3], seed=[0, 1], clip=0.5, init_scale=0.3
)
N = 16


@pytest.fixture(scope="module")
def full():
    return sweep(train, TABLE, metric="loss")


def test_sweep_equals_sequential_runs(full):
    assert isinstance(full, SweepResult) and len(full) == N
    single = jax.jit(train)
    for i in range(N):
        hp = {k: jnp.asarray(v[i]) for k, v in TABLE.items()}
        result, history = single(hp)
        np.testing.assert_allclose(full.histories[i], history, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(full.results["loss"][i], result["loss"], rtol=1e-5, atol=1e-5)
        sweep_result, sweep_history = full.run(i)
        np.testing.assert_allclose(sweep_history, history, rtol=1e-5, atol=1e-5)
        assert float(sweep_result["lr"]) == float(result["lr"])
    # Every configuration trained with its own learning rate, held as an array in the state.
    np.testing.assert_allclose(full.results["lr"], TABLE["lr"].astype(np.float32))
    assert full.histories.shape == (N, STEPS)
    # The configurations really differ (dropout and seeds change the losses).
    assert len({round(float(v), 6) for v in full.histories[:, -1]}) == N


def test_chunked_equals_unchunked(full):
    chunked = sweep(train, TABLE, metric="loss", chunk_size=3)  # 6 chunks, the last padded
    np.testing.assert_allclose(chunked.histories, full.histories, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunked.results["loss"], full.results["loss"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(chunked.metrics, np.asarray(chunked.results["loss"], np.float64))
    assert chunked.best.index == full.best.index


def test_best_is_the_smallest_metric(full):
    i = int(np.argmin(full.results["loss"]))
    assert full.best == Best(i, full.hparams(i), float(full.results["loss"][i]))
    assert full.best.hparams == {k: v[i].item() for k, v in TABLE.items()}


def test_compiles_once_and_reuses_the_program():
    traces = []

    def counted(hp):
        traces.append(1)
        x = hp["a"] * jnp.arange(4.0)
        return jnp.sum(x**2), x

    first = sweep(counted, {"a": np.arange(7.0)}, chunk_size=2)  # 4 chunks, last one padded
    assert len(traces) == 1
    np.testing.assert_array_equal(
        sweep(counted, {"a": np.arange(7.0)}, chunk_size=1).metrics, first.metrics
    )
    assert len(traces) == 2  # another chunking is another program
    second = sweep(counted, {"a": np.arange(7.0) + 1}, chunk_size=2)  # same shapes: no retrace
    assert len(traces) == 2
    np.testing.assert_allclose(first.metrics, 14.0 * np.arange(7.0) ** 2)
    np.testing.assert_allclose(second.metrics, 14.0 * (np.arange(7.0) + 1) ** 2)
    assert first.best.index == 0 and second.best.index == 0


def test_list_of_dicts_equals_dict_table():
    def f(hp):
        return hp["a"] * hp["b"], jnp.stack([hp["a"], hp["b"] * 1.0])

    rows = [{"a": 1.5, "b": 2}, {"a": -1.0, "b": 3}, {"a": 0.5, "b": 0}]
    by_rows = sweep(f, rows)
    by_cols = sweep(f, {"a": [1.5, -1.0, 0.5], "b": [2, 3, 0]})
    np.testing.assert_array_equal(by_rows.histories, by_cols.histories)
    np.testing.assert_array_equal(by_rows.metrics, [3.0, -3.0, 0.0])
    assert by_rows.best.index == 1 and by_rows.hparams(0) == {"a": 1.5, "b": 2}
    assert by_rows.table["b"].dtype.kind == "i"


def test_metric_options_and_mode():
    def f(hp):
        history = hp["a"] * jnp.arange(3.0)
        return {"score": -hp["a"], "other": hp["a"]}, history

    table = {"a": [2.0, 5.0, 1.0]}
    assert sweep(f, table, metric="score").best.index == 1
    assert sweep(f, table, metric="score", mode="max").best.index == 2
    by_history = sweep(f, table, metric=lambda result, history: history[-1], mode="max")
    assert by_history.best == Best(1, {"a": 5.0}, 10.0)
    np.testing.assert_array_equal(by_history.metrics, [4.0, 10.0, 2.0])


def test_non_finite_metrics_never_win():
    def f(hp):
        return jnp.where(hp["a"] > 2, jnp.nan, hp["a"]), hp["a"]

    r = sweep(f, {"a": [2.0, 3.0, 1.0, 4.0]})
    assert r.best.index == 2
    assert sweep(f, {"a": [2.0, 3.0, 1.0, 4.0]}, mode="max").best.index == 0
    assert sweep(f, {"a": [3.0, 4.0]}).best is None


def test_grid_is_the_cartesian_product():
    axes = {"lr": [0.1, 0.01, 0.001], "seed": [0, 1], "wd": [0.0, 0.5]}
    t = grid(**axes)
    expected = list(itertools.product(*axes.values()))
    assert len(t["lr"]) == len(expected) == 12
    assert list(zip(*(t[k].tolist() for k in axes), strict=True)) == expected
    assert t["seed"].dtype.kind == "i" and t["lr"].dtype.kind == "f"
    assert grid(lr=[1.0, 2.0], clip=0.5)["clip"].tolist() == [0.5, 0.5]


def test_grid_errors():
    with pytest.raises(ValueError, match="at least one axis"):
        grid()
    with pytest.raises(ValueError, match="axis 'lr' has no values"):
        grid(lr=[], seed=[0])
    with pytest.raises(ValueError, match=r"axis 'w' must be a 1-D.*\(2, 2\)"):
        grid(w=np.ones((2, 2)))
    with pytest.raises(TypeError, match="axis 'opt' has dtype"):
        grid(opt=["adam", "sgd"])


def _f(hp):
    return jnp.float32(0.0) + sum(hp.values()), jnp.zeros(2)


def test_unequal_lengths_name_the_columns_and_lengths():
    with pytest.raises(ValueError, match=r"unequal lengths \(lr=3, seed=2\)"):
        sweep(_f, {"lr": [1e-3, 1e-2, 1e-1], "seed": [0, 1]})


@pytest.mark.parametrize(
    "table, error, match",
    [
        (
            {"lr": np.ones((3, 2))},
            ValueError,
            r"column 'lr' has shape \(3, 2\); each configuration's value must be a scalar",
        ),
        ({"lr": 0.1}, ValueError, "column 'lr' is a scalar"),
        ([{"lr": 0.1}, {"lr": [0.1, 0.2]}], ValueError, r"row 1, 'lr' has shape \(2,\)"),
        ({}, ValueError, "table is empty"),
        ([], ValueError, "table is empty"),
        ({"lr": []}, ValueError, "no configurations"),
        ([{"lr": 0.1}, {"wd": 0.1}], ValueError, r"row 1 has different keys.*missing \['lr'\]"),
        ({"opt": ["adam", "sgd"]}, TypeError, "column 'opt' has dtype"),
        ("lr", TypeError, "dict of equal-length"),
        ([0.1, 0.2], TypeError, "row 0 is a float"),
    ],
)
def test_table_errors(table, error, match):
    with pytest.raises(error, match=match):
        sweep(_f, table)


def test_argument_errors():
    table = {"a": [1.0, 2.0]}
    with pytest.raises(ValueError, match="chunk_size=0"):
        sweep(_f, table, chunk_size=0)
    with pytest.raises(ValueError, match="mode='best'"):
        sweep(_f, table, mode="best")
    with pytest.raises(ValueError, match=r"metric='loss' is not a field.*leaf shapes \[\(\)\]"):
        sweep(_f, table, metric="loss")
    with pytest.raises(ValueError, match="metric=None .* one scalar; got a dict with keys"):
        sweep(lambda hp: ({"loss": hp["a"]}, hp["a"]), table)
    with pytest.raises(ValueError, match="metric='h' must name a scalar"):
        sweep(lambda hp: ({"h": jnp.ones(3) * hp["a"]}, hp["a"]), table, metric="h")
    with pytest.raises(TypeError, match=r"must return a pair \(result, history\)"):
        sweep(lambda hp: hp["a"], table)
    with pytest.raises(TypeError, match="train_fn must be callable"):
        sweep("train", table)
    with pytest.raises(IndexError, match="out of range for 2"):
        sweep(_f, table).hparams(2)
