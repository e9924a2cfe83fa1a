"""jaxrnn.nnx: the NNX modules equal the functional layers on their own parameters."""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxrnn
import jaxrnn.nnx as jn

B, T, F, H = 3, 5, 2, 4
ATOL = 1e-6


def close(a, b, atol=ATOL):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=atol, rtol=0), a, b)


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(1), (B, T, F))


# (module class, functional layer, extra constructor kwargs)
CELLS = {
    "rnn": (jn.SimpleRNN, jaxrnn.simple_rnn, {}),
    "lstm": (jn.LSTM, jaxrnn.lstm, {}),
    "gru": (jn.GRU, jaxrnn.gru, {}),
    "gru_reset_before": (jn.GRU, jaxrnn.gru, {"reset_after": False}),
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


def functional_kwargs(layer):
    """The layer function's keyword arguments for a module's configuration."""
    cfg = layer.get_config()
    keys = ["activation", "return_sequences", "return_state", "go_backwards"]
    keys += ["recurrent_activation", "reset_after"]
    return {k: cfg[k] for k in keys if k in cfg}


# each cell meets each option set at least once across the sweep (kept small for time)
SWEEP = [
    ("rnn", 0),
    ("lstm", 1),
    ("lstm", 2),
    ("gru", 2),
    ("gru_reset_before", 1),
]


@pytest.mark.parametrize("cell, opt", SWEEP)
def test_layer_matches_functional(x, cell, opt):
    cls, fn, extra = CELLS[cell]
    layer = cls(F, H, rngs=nnx.Rngs(0), **extra, **OPTIONS[opt])
    assert (
        type(layer.params)
        is {
            jn.SimpleRNN: jaxrnn.RNNParams,
            jn.LSTM: jaxrnn.LSTMParams,
            jn.GRU: jaxrnn.GRUParams,
        }[cls]
    )
    call = CALL_OPTIONS[opt]
    close(layer(x, **call), fn(layer.params, x, **functional_kwargs(layer), **call))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_initial_state_and_time_major(x, cell):
    cls, fn, _ = CELLS[cell]
    layer = cls(F, H, rngs=nnx.Rngs(0), time_major=True, return_sequences=True)
    xt = jnp.swapaxes(x, 0, 1)
    h = jax.random.normal(jax.random.key(2), (B, H))
    s = jaxrnn.LSTMState(h, -h) if cell == "lstm" else h
    close(
        layer(xt, initial_state=s),
        fn(layer.params, xt, initial_state=s, time_major=True, return_sequences=True),
    )


def test_weights_are_the_functional_initialisers():
    layer = jn.LSTM(F, H, rngs=nnx.Rngs(params=3), unit_forget_bias=False, bias_initializer="ones")
    ref = jaxrnn.init_lstm(
        nnx.Rngs(params=3).params(),
        F,
        H,
        unit_forget_bias=False,
        bias_init=jax.nn.initializers.ones,
    )
    close(layer.params, ref)
    assert set(nnx.state(layer, nnx.Param).keys()) == {"kernel", "recurrent_kernel", "bias"}
    gru = jn.GRU(F, H, rngs=nnx.Rngs(0), reset_after=False)
    assert gru.recurrent_bias is None and gru.params.recurrent_bias is None


def test_dropout_key_matches_functional_masks(x):
    layer = jn.GRU(
        F, H, rngs=nnx.Rngs(0), dropout=0.4, recurrent_dropout=0.3, return_sequences=True
    )
    key = jax.random.key(9)
    got = layer(x, rngs=key)
    ref = jaxrnn.gru(
        layer.params, x, dropout=0.4, recurrent_dropout=0.3, key=key, return_sequences=True
    )
    close(got, ref)
    plain = jaxrnn.gru(layer.params, x, return_sequences=True)
    assert float(jnp.abs(got - plain).max()) > 1e-3
    # the layer's own stream: fresh masks per call; a same-seeded stream repeats them
    a, b = layer(x), layer(x)
    assert float(jnp.abs(a - b).max()) > 1e-3
    again = jn.GRU(
        F, H, rngs=nnx.Rngs(0), dropout=0.4, recurrent_dropout=0.3, return_sequences=True
    )
    close(again(x), a)
    # under nnx.jit the stream advances too
    jitted = nnx.jit(lambda m, x: m(x))
    assert float(jnp.abs(jitted(layer, x) - jitted(layer, x)).max()) > 1e-3


def test_deterministic_switches(x):
    layer = jn.LSTM(F, H, rngs=nnx.Rngs(0), dropout=0.5)
    plain = jaxrnn.lstm(layer.params, x)
    close(layer(x, deterministic=True), plain)
    close(nnx.view(layer, deterministic=True)(x), plain)
    layer.eval()
    assert layer.get_config()["deterministic"] is True
    close(layer(x), plain)
    assert float(jnp.abs(layer(x, deterministic=False) - plain).max()) > 1e-3
    layer.train()
    assert float(jnp.abs(layer(x) - plain).max()) > 1e-3


def test_dropout_without_stream_needs_rngs(x):
    layer = jn.LSTM(F, H, rngs=nnx.Rngs(params=0), dropout=0.5)
    with pytest.raises(ValueError, match="no dropout stream"):
        layer(x)
    close(layer(x, rngs=nnx.Rngs(dropout=1)), layer(x, rngs=nnx.Rngs(dropout=1)))
    close(layer(x, deterministic=True), jaxrnn.lstm(layer.params, x))


def test_bidirectional_every_merge_mode(x):
    fw = jn.LSTM(F, H, rngs=nnx.Rngs(0), return_sequences=True)
    bi = jn.Bidirectional(fw, merge_mode=None, rngs=nnx.Rngs(1))
    assert isinstance(bi.params, jaxrnn.BidirectionalParams)
    assert bi.backward_layer.get_config() == fw.get_config()
    lengths = jnp.array([5, 3, 1])
    fw_out, bw_out = jaxrnn.bidirectional(
        jaxrnn.lstm, bi.params, x, merge_mode=None, return_sequences=True, seq_lengths=lengths
    )
    merged = {
        "concat": jnp.concatenate([fw_out, bw_out], -1),
        "sum": fw_out + bw_out,
        "mul": fw_out * bw_out,
        "ave": (fw_out + bw_out) / 2,
        None: (fw_out, bw_out),
    }
    for mode, want in merged.items():
        layer = jn.Bidirectional(bi.forward_layer, bi.backward_layer, merge_mode=mode)
        close(layer(x, seq_lengths=lengths), want)


def test_bidirectional_own_backward_layer_state_and_dropout(x):
    fw = jn.GRU(F, H, rngs=nnx.Rngs(0), return_state=True, dropout=0.3)
    bw = jn.GRU(F, H, rngs=nnx.Rngs(1), return_state=True, activation="relu", go_backwards=True)
    bi = jn.Bidirectional(fw, bw)
    key = jax.random.key(4)
    out, (s_fw, s_bw) = bi(x, rngs=key)
    assert out.shape == (B, 2 * H)
    k_fw, k_bw = jax.random.split(key)
    ref_fw, ref_sfw = jaxrnn.gru(fw.params, x, dropout=0.3, key=k_fw, return_state=True)
    ref_bw, ref_sbw = jaxrnn.gru(
        bw.params, x, activation="relu", key=k_bw, go_backwards=True, return_state=True
    )
    close(out, jnp.concatenate([ref_fw, ref_bw], -1))
    close((s_fw, s_bw), (ref_sfw, ref_sbw))


def test_stacked_matches_functional(x):
    rngs = nnx.Rngs(0)
    layers = [
        jn.SimpleRNN(F, H, rngs=rngs, dropout=0.2),
        jn.Bidirectional(jn.LSTM(H, H, rngs=rngs), merge_mode="concat", rngs=rngs),
        jn.GRU(2 * H, H, rngs=rngs, recurrent_dropout=0.1),
    ]
    deep = jn.Stacked(layers, return_sequences=True, return_state=True)
    assert len(deep.params) == 3
    key = jax.random.key(3)
    out, finals = deep(x, rngs=key)
    ref, ref_finals = jaxrnn.stacked(
        [
            functools.partial(jaxrnn.simple_rnn, dropout=0.2),
            functools.partial(jaxrnn.bidirectional, jaxrnn.lstm),
            functools.partial(jaxrnn.gru, recurrent_dropout=0.1),
        ],
        deep.params,
        x,
        key=key,
        return_sequences=True,
        return_state=True,
    )
    close(out, ref)
    close(finals, ref_finals)
    # the last layer's own settings apply when the stack sets none
    plain = jn.Stacked([jn.LSTM(F, H, rngs=rngs), jn.LSTM(H, H, rngs=rngs, return_sequences=True)])
    close(plain(x), jaxrnn.stacked(jaxrnn.lstm, plain.params, x, return_sequences=True))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_learnable_initial_state(x, cell):
    cls, fn, _ = CELLS[cell]
    layer = cls(F, H, rngs=nnx.Rngs(0), learnable_initial_state=True)
    layer.h0[...] = jnp.arange(H, dtype=jnp.float32) / H
    s = layer.get_initial_state(B)
    assert all(leaf.shape == (B, H) for leaf in jax.tree.leaves(s))
    close(layer(x), fn(layer.params, x, initial_state=s))
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(layer)
    assert float(jnp.abs(grads.h0[...]).sum()) > 0
    if cell == "lstm":
        assert float(jnp.abs(grads.c0[...]).sum()) > 0


def test_stateful_keeps_and_resets(x):
    layer = jn.LSTM(F, H, rngs=nnx.Rngs(0), stateful=True, batch_size=B, return_sequences=True)
    zero = jaxrnn.zero_state(layer.params, (B,))
    close(layer.state, zero)
    y1 = layer(x)
    _, s1 = jaxrnn.lstm(layer.params, x, return_state=True)
    close(layer.state, s1)
    y2 = nnx.jit(lambda m, x: m(x))(layer, x)  # the update survives nnx.jit
    y2_ref, s2 = jaxrnn.lstm(
        layer.params, x, initial_state=s1, return_sequences=True, return_state=True
    )
    close(y2, y2_ref)
    close(layer.state, s2)
    assert set(nnx.state(layer, jn.RecurrentState).keys()) == {"state_h", "state_c"}
    layer.reset_state()
    close(layer.state, zero)
    close(layer(x), y1)
    with pytest.raises(ValueError, match=r"batch_size=3 .* batch size 2"):
        layer(x[:2])


def test_stateful_inside_bidirectional_and_stacked(x):
    rngs = nnx.Rngs(0)
    bi = jn.Bidirectional(jn.GRU(H, H, rngs=rngs, stateful=True, batch_size=B), rngs=rngs)
    deep = jn.Stacked([jn.SimpleRNN(F, H, rngs=rngs, stateful=True, batch_size=B), bi])
    deep(x)
    _, finals = jaxrnn.stacked(
        [jaxrnn.simple_rnn, functools.partial(jaxrnn.bidirectional, jaxrnn.gru)],
        deep.params,
        x,
        return_state=True,
    )
    close(deep.layers[0].state, finals[0])
    close(bi.backward_layer.state, finals[1][1])
    deep.reset_state()
    assert float(jnp.abs(bi.forward_layer.state).sum()) == 0.0


def test_jit_grad_split_merge(x):
    layer = jn.GRU(F, H, rngs=nnx.Rngs(0), return_sequences=True)
    close(nnx.jit(lambda m, x: m(x))(layer, x), layer(x))

    def loss_fn(m):
        return jnp.mean(m(x) ** 2)

    grads = nnx.grad(loss_fn)(layer)
    ref = jax.grad(lambda p: jnp.mean(jaxrnn.gru(p, x, return_sequences=True) ** 2))(layer.params)
    close(jaxrnn.GRUParams(**{f: grads[f][...] for f in jaxrnn.GRUParams._fields}), ref)
    graphdef, state = nnx.split(layer)
    again = nnx.merge(graphdef, state)
    close(again.params, layer.params)


def test_optimizer_reduces_loss(x):
    model = jn.Stacked(
        [
            jn.LSTM(F, H, rngs=nnx.Rngs(0), learnable_initial_state=True),
            jn.SimpleRNN(H, H, rngs=nnx.Rngs(1)),
        ]
    )
    target = jnp.ones((B, H))
    opt = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

    def loss_fn(m):
        return jnp.mean((m(x) - target) ** 2)

    @nnx.jit
    def step(m, opt):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        opt.update(m, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0]


def test_keras_initialiser_names():
    layer = jn.SimpleRNN(
        F,
        H,
        rngs=nnx.Rngs(0),
        kernel_initializer="zeros",
        recurrent_initializer="ones",
        bias_initializer=jax.nn.initializers.ones,
    )
    close(layer.params, jaxrnn.RNNParams(jnp.zeros((F, H)), jnp.ones((H, H)), jnp.ones(H)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "tanhh"}, "unknown activation='tanhh'"),
        ({"recurrent_activation": 3}, "recurrent_activation must be a callable"),
        ({"dropout": 1.5}, r"dropout=1.5 is outside \[0, 1\)"),
        ({"recurrent_dropout": -0.1}, "recurrent_dropout=-0.1"),
        ({"kernel_initializer": "glorot"}, "unknown kernel_initializer='glorot'"),
        ({"unroll": 0}, "unroll=0"),
        ({"impl": "cuda"}, "unknown impl='cuda'"),
        ({"remat": "all"}, "unknown remat='all'"),
        ({"stateful": True}, "stateful=True needs batch_size"),
        ({"stateful": True, "batch_size": 2, "learnable_initial_state": True}, "together"),
        ({"units": 0}, "units=0"),
        ({"dtype": jnp.int32}, "dtype"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs, match):
    kwargs = {"units": H, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        jn.LSTM(F, rngs=nnx.Rngs(0), **kwargs)


def test_call_and_composition_errors(x):
    layer = jn.LSTM(3, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x has 2 features .* in_features=3"):
        layer(x)
    with pytest.raises(ValueError, match="return_sequences=True"):
        jn.LSTM(F, H, rngs=nnx.Rngs(0))(x[:, 0])
    with pytest.raises(ValueError, match="pass rngs="):
        jn.Bidirectional(jn.LSTM(F, H, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="go_backwards=True"):
        jn.Bidirectional(jn.LSTM(F, H, rngs=nnx.Rngs(0), go_backwards=True), rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="unknown merge_mode='max'"):
        jn.Bidirectional(jn.LSTM(F, H, rngs=nnx.Rngs(0)), merge_mode="max", rngs=nnx.Rngs(1))
    with pytest.raises(TypeError, match="same layer type"):
        jn.Bidirectional(jn.LSTM(F, H, rngs=nnx.Rngs(0)), jn.GRU(F, H, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="return_sequences"):
        jn.Bidirectional(
            jn.GRU(F, H, rngs=nnx.Rngs(0)), jn.GRU(F, H, rngs=nnx.Rngs(0), return_sequences=True)
        )
    with pytest.raises(
        ValueError, match=r"layers\[1\] has in_features=5 but layers\[0\] outputs 4"
    ):
        jn.Stacked([jn.GRU(F, H, rngs=nnx.Rngs(0)), jn.GRU(5, H, rngs=nnx.Rngs(0))])
    with pytest.raises(ValueError, match="merge_mode=None"):
        jn.Stacked(
            [
                jn.Bidirectional(jn.GRU(F, H, rngs=nnx.Rngs(0)), merge_mode=None, rngs=nnx.Rngs(1)),
                jn.GRU(H, H, rngs=nnx.Rngs(0)),
            ]
        )
    with pytest.raises(ValueError, match="reset_state"):
        layer.reset_state()
    with pytest.raises(ValueError, match="layers is empty"):
        jn.Stacked([])


def test_import_jaxrnn_does_not_import_flax():
    code = "import sys, jaxrnn; assert 'flax' not in sys.modules, 'flax imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
