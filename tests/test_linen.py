"""jaxrnn.linen: the Linen modules equal the functional layers on their own parameters."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
import jaxrnn._flax_common
import jaxrnn._layers
import jaxrnn.linen as jl
import jaxrnn.nnx

B, T, F, H = 3, 5, 2, 4
ATOL = 1e-6
KEY = jax.random.key(0)


def close(a, b, atol=ATOL):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=atol, rtol=0), a, b)


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(1), (B, T, F))


CELLS = {
    "rnn": (jl.SimpleRNN, jaxrnn.simple_rnn, {}),
    "lstm": (jl.LSTM, jaxrnn.lstm, {}),
    "gru": (jl.GRU, jaxrnn.gru, {}),
    "gru_reset_before": (jl.GRU, jaxrnn.gru, {"reset_after": False}),
}
OPTIONS = [
    {},
    {"return_sequences": True, "go_backwards": True},
    {"return_state": True, "use_bias": False, "activation": "relu"},
]
CALL_OPTIONS = [
    {},
    {"seq_lengths": jnp.array([5, 2, 0])},
    {"mask": jnp.array([[1, 1, 0, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)},
]
SWEEP = [
    ("rnn", 0),
    ("lstm", 1),
    ("lstm", 2),
    ("gru", 2),
    ("gru_reset_before", 1),
]
FUNCTIONAL_ARGS = (
    "activation",
    "recurrent_activation",
    "reset_after",
    "return_sequences",
    "return_state",
    "go_backwards",
)


@pytest.mark.parametrize("cell, opt", SWEEP)
def test_layer_matches_functional(x, cell, opt):
    cls, fn, extra = CELLS[cell]
    layer = cls(H, **extra, **OPTIONS[opt])
    call = CALL_OPTIONS[opt]
    v = layer.init(KEY, x, **call)
    p = jl.to_params(v)
    assert (
        type(p)
        is {jl.SimpleRNN: jaxrnn.RNNParams, jl.LSTM: jaxrnn.LSTMParams, jl.GRU: jaxrnn.GRUParams}[
            cls
        ]
    )
    cfg = layer.get_config()
    kwargs = {k: cfg[k] for k in FUNCTIONAL_ARGS if k in cfg}
    close(layer.apply(v, x, **call), fn(p, x, **kwargs, **call))
    close(jl.from_params(p), v["params"])


def test_initial_state_and_time_major(x):
    layer = jl.LSTM(H, time_major=True, return_sequences=True)
    xt = jnp.swapaxes(x, 0, 1)
    h = jax.random.normal(jax.random.key(2), (B, H))
    s = jaxrnn.LSTMState(h, -h)
    v = layer.init(KEY, xt)
    ref = jaxrnn.lstm(jl.to_params(v), xt, initial_state=s, time_major=True, return_sequences=True)
    close(layer.apply(v, xt, initial_state=s), ref)


def test_init_is_the_functional_initialiser(x):
    v = jl.LSTM(H).init(KEY, x)
    assert set(v["params"]) == {"kernel", "recurrent_kernel", "bias"}
    close(v["params"]["bias"], jnp.repeat(jnp.array([0.0, 1.0, 0.0, 0.0]), H))  # unit forget
    rk = v["params"]["recurrent_kernel"]  # orthogonal rows (H, 4H)
    close(rk @ rk.T, jnp.eye(H), atol=1e-5)
    v = jl.GRU(H, reset_after=False, kernel_initializer="ones").init(KEY, x)
    assert "recurrent_bias" not in v["params"] and jl.to_params(v).recurrent_bias is None
    close(v["params"]["kernel"], jnp.ones((F, 3 * H)))


def capture(monkeypatch, module, name):
    """Record the ``key`` passed to ``module.name`` (a functional layer)."""
    seen = []
    real = getattr(module, name) if not isinstance(module, dict) else module[name]

    def spy(*args, **kwargs):
        seen.append(kwargs.get("key"))
        return real(*args, **kwargs)

    if isinstance(module, dict):
        monkeypatch.setitem(module, name, spy)
    else:
        monkeypatch.setattr(module, name, spy)
    return seen


def test_dropout_masks_match_functional(x, monkeypatch):
    layer = jl.GRU(H, dropout=0.4, recurrent_dropout=0.3, return_sequences=True)
    v = layer.init(KEY, x, deterministic=True)
    p = jl.to_params(v)
    seen = capture(monkeypatch, jaxrnn._layers._LAYERS, "gru")
    y = layer.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(5)})
    (key,) = seen
    assert key is not None
    ref = jaxrnn.gru(p, x, dropout=0.4, recurrent_dropout=0.3, key=key, return_sequences=True)
    close(y, ref)
    plain = jaxrnn.gru(p, x, return_sequences=True)
    assert float(jnp.abs(y - plain).max()) > 1e-3
    other = layer.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(6)})
    assert float(jnp.abs(y - other).max()) > 1e-3
    close(layer.apply(v, x, deterministic=True), plain)
    trained = jl.GRU(
        H, dropout=0.4, recurrent_dropout=0.3, return_sequences=True, deterministic=False
    )
    close(trained.apply(v, x, rngs={"dropout": jax.random.key(5)}), y)
    with pytest.raises(ValueError, match="pass deterministic=True"):
        layer.apply(v, x)


@pytest.fixture(scope="module")
def bi_sequences(x):
    """Forward and backward LSTM parameters and the unmerged functional outputs."""
    layer = jl.Bidirectional(jl.LSTM(H, return_sequences=True), merge_mode=None)
    v = layer.init(KEY, x)
    lengths = jnp.array([5, 3, 1])
    fw, bw = jaxrnn.bidirectional(
        jaxrnn.lstm, jl.to_params(v), x, merge_mode=None, return_sequences=True, seq_lengths=lengths
    )
    return v, lengths, fw, bw


def test_bidirectional_every_merge_mode(x, bi_sequences):
    v, lengths, fw, bw = bi_sequences
    assert set(v["params"]) == {"forward_layer", "backward_layer"}
    assert isinstance(jl.to_params(v), jaxrnn.BidirectionalParams)
    merged = {
        "concat": jnp.concatenate([fw, bw], -1),
        "sum": fw + bw,
        "mul": fw * bw,
        "ave": (fw + bw) / 2,
        None: (fw, bw),
    }
    for mode, want in merged.items():
        layer = jl.Bidirectional(jl.LSTM(H, return_sequences=True), merge_mode=mode)
        close(layer.apply(v, x, seq_lengths=lengths), want)


def test_bidirectional_own_backward_layer_state_and_dropout(x, monkeypatch):
    fw = jl.GRU(H, return_state=True, dropout=0.3)
    bw = jl.GRU(H, return_state=True, activation="relu", go_backwards=True)
    bi = jl.Bidirectional(fw, bw, deterministic=False)
    v = bi.init(KEY, x, deterministic=True)
    seen = capture(monkeypatch, jaxrnn._flax_common, "bidirectional")
    out, (s_fw, s_bw) = bi.apply(v, x, rngs={"dropout": jax.random.key(4)})
    k_fw, k_bw = jax.random.split(seen[0])
    p = jl.to_params(v)
    ref_fw, ref_sfw = jaxrnn.gru(p.forward, x, dropout=0.3, key=k_fw, return_state=True)
    ref_bw, ref_sbw = jaxrnn.gru(
        p.backward, x, activation="relu", key=k_bw, go_backwards=True, return_state=True
    )
    close(out, jnp.concatenate([ref_fw, ref_bw], -1))
    close((s_fw, s_bw), (ref_sfw, ref_sbw))


def test_stacked_matches_functional(x, monkeypatch):
    deep = jl.Stacked(
        [
            jl.SimpleRNN(H, dropout=0.2),
            jl.Bidirectional(jl.LSTM(H)),
            jl.GRU(H, recurrent_dropout=0.1),
        ],
        return_sequences=True,
        return_state=True,
        deterministic=False,
    )
    v = deep.init(KEY, x, deterministic=True)
    assert set(v["params"]) == {"layers_0", "layers_1", "layers_2"}
    p = jl.to_params(v)
    assert len(p) == 3 and isinstance(p[1], jaxrnn.BidirectionalParams)
    seen = capture(monkeypatch, jaxrnn._flax_common, "stacked")
    out, finals = deep.apply(v, x, rngs={"dropout": jax.random.key(3)})
    ref, ref_finals = jaxrnn.stacked(
        [
            functools.partial(jaxrnn.simple_rnn, dropout=0.2),
            functools.partial(jaxrnn.bidirectional, jaxrnn.lstm),
            functools.partial(jaxrnn.gru, recurrent_dropout=0.1),
        ],
        p,
        x,
        key=seen[0],
        return_sequences=True,
        return_state=True,
    )
    close(out, ref)
    close(finals, ref_finals)
    close(jl.from_params(p), v["params"])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_learnable_initial_state(x, cell):
    cls, fn, _ = CELLS[cell]
    layer = cls(H, learnable_initial_state=True)
    v = layer.init(KEY, x)
    names = {"h0", "c0"} if cell == "lstm" else {"h0"}
    assert names <= set(v["params"])
    v["params"]["h0"] = jnp.arange(H, dtype=jnp.float32) / H
    h = jnp.broadcast_to(v["params"]["h0"], (B, H))
    s = jaxrnn.LSTMState(h, jnp.broadcast_to(v["params"]["c0"], (B, H))) if cell == "lstm" else h
    close(layer.apply(v, x), fn(jl.to_params(v), x, initial_state=s))
    grads = jax.grad(lambda v: jnp.sum(layer.apply(v, x) ** 2))(v)
    for name in names:
        assert float(jnp.abs(grads["params"][name]).sum()) > 0


def test_stateful_keeps_and_resets(x):
    layer = jl.LSTM(H, stateful=True, return_sequences=True)
    v = layer.init(KEY, x)
    close(v["state"], {"h": jnp.zeros((B, H)), "c": jnp.zeros((B, H))})  # init stores nothing
    p = jl.to_params(v)
    y1, upd = layer.apply(v, x, mutable=["state"])
    _, s1 = jaxrnn.lstm(p, x, return_state=True)
    close((upd["state"]["h"], upd["state"]["c"]), tuple(s1))
    v = {**v, **upd}
    apply = jax.jit(functools.partial(layer.apply, mutable=["state"]))
    y2, upd = apply(v, x)
    y2_ref, s2 = jaxrnn.lstm(p, x, initial_state=s1, return_sequences=True, return_state=True)
    close(y2, y2_ref)
    close((upd["state"]["h"], upd["state"]["c"]), tuple(s2))
    v = jl.reset_state({**v, **upd})
    close(layer.apply(v, x, mutable=["state"])[0], y1)
    with pytest.raises(ValueError, match=r"batch_size=3 .* batch size 2"):
        layer.apply(v, x[:2], mutable=["state"])
    with pytest.raises(ValueError, match="mutable=\\['state'\\]"):
        layer.apply(v, x)


def test_stateful_inside_bidirectional(x):
    bi = jl.Bidirectional(jl.GRU(H, stateful=True))
    v = bi.init(KEY, x)
    _, upd = bi.apply(v, x, mutable=["state"])
    _, (s_fw, s_bw) = jaxrnn.bidirectional(jaxrnn.gru, jl.to_params(v), x, return_state=True)
    close(upd["state"], {"forward_layer": {"h": s_fw}, "backward_layer": {"h": s_bw}})


def test_jit_and_grad(x):
    layer = jl.GRU(H, return_sequences=True)
    v = layer.init(KEY, x)
    close(jax.jit(layer.apply)(v, x), layer.apply(v, x))
    grads = jax.grad(lambda v: jnp.mean(layer.apply(v, x) ** 2))(v)
    ref = jax.grad(lambda p: jnp.mean(jaxrnn.gru(p, x, return_sequences=True) ** 2))(
        jl.to_params(v)
    )
    close(jl.to_params(grads), ref)


def test_optax_training_reduces_loss(x):
    model = jl.Stacked([jl.LSTM(H, learnable_initial_state=True), jl.SimpleRNN(H)])
    params = model.init(KEY, x)["params"]
    target = jnp.ones((B, H))
    tx = optax.adam(0.05)
    opt_state = tx.init(params)

    def loss_fn(params):
        return jnp.mean((model.apply({"params": params}, x) - target) ** 2)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(8):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "tanhh"}, "unknown activation='tanhh'"),
        ({"dropout": 1.5}, r"dropout=1.5 is outside \[0, 1\)"),
        ({"kernel_initializer": "glorot"}, "unknown kernel_initializer='glorot'"),
        ({"unroll": 0}, "unroll=0"),
        ({"units": 0}, "units=0"),
        ({"stateful": True, "learnable_initial_state": True}, "together"),
    ],
)
def test_constructor_errors_name_the_argument(x, kwargs, match):
    kwargs = {"units": H, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        jl.LSTM(**kwargs).init(KEY, x)


def test_call_and_composition_errors(x):
    layer = jl.LSTM(H)
    v = layer.init(KEY, x)
    with pytest.raises(ValueError, match=r"x has 3 features .* in_features=2"):
        layer.apply(v, jnp.ones((B, T, 3)))
    with pytest.raises(ValueError, match="return_sequences=True"):
        layer.apply(v, x[:, 0])
    with pytest.raises(ValueError, match="go_backwards=True"):
        jl.Bidirectional(jl.LSTM(H, go_backwards=True)).init(KEY, x)
    with pytest.raises(ValueError, match="unknown merge_mode='max'"):
        jl.Bidirectional(jl.LSTM(H), merge_mode="max").init(KEY, x)
    with pytest.raises(TypeError, match="same layer type"):
        jl.Bidirectional(jl.LSTM(H), jl.GRU(H)).init(KEY, x)
    with pytest.raises(ValueError, match="merge_mode=None"):
        jl.Stacked([jl.Bidirectional(jl.GRU(H), merge_mode=None), jl.GRU(H)]).init(KEY, x)
    with pytest.raises(ValueError, match="layers is empty"):
        jl.Stacked([])
    with pytest.raises(ValueError, match="no layer parameters"):
        jl.to_params({"params": {"dense": {}}})
    with pytest.raises(TypeError, match="from_params"):
        jl.from_params({"kernel": 1})
