"""Golden tests of jaxrnn.interop against the real PyTorch, Keras 3, Flax and Haiku.

Random weights (non-zero biases, U(-0.8, 0.8) or 0.5 N(0, 1)) are drawn in the
source framework, converted, and the same inputs run through both; outputs and
final states must agree to 1e-5 in float32. Round trips must give identical
arrays, and every refusal is checked for its message. The largest difference
seen per group is printed when the module finishes (tolerances in the README).
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import BidirectionalParams, GRUParams, LSTMParams, LSTMState, RNNParams
from jaxrnn.interop import (
    Converted,
    from_flax,
    from_flax_carry,
    from_haiku,
    from_keras,
    from_keras_model,
    from_torch,
    from_torch_state,
    set_keras_weights,
    to_flax,
    to_flax_carry,
    to_haiku,
    to_keras,
    to_torch,
    to_torch_state,
)

ATOL = RTOL = 1e-5
B, T, I, H = 3, 5, 3, 4
LENGTHS = [5, 2, 4]
MAX_DIFF: dict[str, float] = collections.defaultdict(float)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print("\nmax |jaxrnn - framework| per group:")
    for k, v in sorted(MAX_DIFF.items()):
        print(f"  {k:32s} {v:.2e}")


def close(group, actual, expected, atol=ATOL):
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{group}: {a.shape} != {e.shape}"
    diff = float(np.max(np.abs(a - e))) if a.size else 0.0
    MAX_DIFF[group] = max(MAX_DIFF[group], diff)
    np.testing.assert_allclose(a, e, atol=atol, rtol=RTOL, err_msg=group)


def identical(a, b):
    assert type(a) is type(b), (type(a), type(b))
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def rand_params(kind, rng, i=I, h=H, *, bias=True, reset_after=True):
    g = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    f = lambda *s: jnp.asarray(rng.uniform(-0.8, 0.8, s).astype(np.float32))  # noqa: E731
    if kind == "gru":
        return GRUParams(
            f(i, 3 * h),
            f(h, 3 * h),
            f(3 * h) if bias else None,
            f(3 * h) if bias and reset_after else None,
        )
    cls = LSTMParams if kind == "lstm" else RNNParams
    return cls(f(i, g * h), f(h, g * h), f(g * h) if bias else None)


# ---------------------------------------------------------------------------
# Framework-free: numpy dict round trips and refusals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_torch_dict_round_trip(kind, bias):
    rng = np.random.default_rng(0)
    params = [
        BidirectionalParams(rand_params(kind, rng, bias=bias), rand_params(kind, rng, bias=bias)),
        BidirectionalParams(
            rand_params(kind, rng, 2 * H, bias=bias), rand_params(kind, rng, 2 * H, bias=bias)
        ),
    ]
    sd = to_torch(params)
    assert ("bias_ih_l1_reverse" in sd) == bias and "weight_hh_l1_reverse" in sd
    conv = from_torch(sd, batch_first=False)
    identical(conv.params, params)
    again = to_torch(conv.params)
    assert sorted(again) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(again[k], sd[k])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_keras_list_round_trip(kind):
    rng = np.random.default_rng(1)
    for p in (
        rand_params(kind, rng),
        rand_params(kind, rng, bias=False),
        BidirectionalParams(rand_params(kind, rng), rand_params(kind, rng)),
    ):
        w = to_keras(p)
        # a GRU list without bias cannot tell its variant: it is given (Keras' default here)
        ra = {"reset_after": True} if kind == "gru" and len(w) == 2 else {}
        identical(from_keras(w, **ra).params, p)
    if kind == "gru":
        p = rand_params("gru", rng, reset_after=False)
        w = to_keras(p)
        assert w[2].shape == (3 * H,)
        conv = from_keras(w)
        identical(conv.params, p)
        assert conv.layer_kwargs == {"reset_after": False}


def test_keras_gru_list_without_bias_needs_reset_after():
    """The two GRU variants have the same kernel shapes; without a bias nothing tells
    them apart, and they compute different values: refused unless ``reset_after`` says."""
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    for reset_after in (True, False):
        layer = keras.layers.GRU(4, use_bias=False, reset_after=reset_after, return_sequences=True)
        want = np.asarray(layer(x))
        w = layer.get_weights()
        with pytest.raises(ValueError, match=r"without bias.*Pass reset_after="):
            from_keras(w)
        conv = from_keras(w, reset_after=reset_after)
        assert conv.layer_kwargs == {"reset_after": reset_after}
        np.testing.assert_allclose(conv(x, return_sequences=True), want, atol=1e-6)
        other = from_keras(w, reset_after=not reset_after)  # what a guess would have given
        assert not np.allclose(other(x, return_sequences=True), want, atol=1e-3)
        np.testing.assert_allclose(from_keras(layer)(x), want, atol=1e-6)  # keeps its options
        with pytest.raises(ValueError, match=f"reset_after={not reset_after} but the layer"):
            from_keras(layer, reset_after=not reset_after)
        bi = from_keras(w + w, reset_after=reset_after)  # a Bidirectional list
        assert bi.layer_kwargs == {"reset_after": reset_after}
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match=r"reset_after=False but the GRU bias has the shape"):
        from_keras(to_keras(rand_params("gru", rng)), reset_after=False)
    with pytest.raises(ValueError, match="reset_after is a GRU option; these weights are a lstm"):
        from_keras(to_keras(rand_params("lstm", rng)), reset_after=True)


def test_torch_refusals():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="reset-before.*PyTorch's nn.GRU is reset-after"):
        to_torch(rand_params("gru", rng, reset_after=False))
    sd = to_torch([rand_params("lstm", rng)])
    with pytest.raises(ValueError, match="proj_size=2.*no projection"):
        from_torch({**sd, "weight_hr_l0": np.zeros((2, H), np.float32)})
    with pytest.raises(ValueError, match="kind='gru' needs 3 gates.*4 gates"):
        from_torch(sd, kind="gru")
    with pytest.raises(ValueError, match="unexpected key 'foo'"):
        from_torch({**sd, "foo": np.zeros(1)})
    with pytest.raises(ValueError, match="some layers have biases and some do not"):
        to_torch([rand_params("rnn", rng), rand_params("rnn", rng, H, bias=False)])
    with pytest.raises(ValueError, match="missing weight_ih_l1"):
        from_torch({**sd, "weight_hh_l2": sd["weight_hh_l0"]})
    with pytest.raises(ValueError, match="nonlinearity applies to nn.RNN only"):
        from_torch(sd, nonlinearity="relu")
    with pytest.raises(ValueError, match="different kinds"):
        to_torch([rand_params("rnn", rng), rand_params("gru", rng, H)])


def _sd(kind="lstm", **extra):
    return {**to_torch([rand_params(kind, np.random.default_rng(20))]), **extra}


Z = np.zeros


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: from_torch(_sd(), kind="lstmx"), "unknown kind='lstmx'"),
        (lambda: from_torch(_sd("rnn"), kind="rnn_relu", nonlinearity="tanh"), "contradicts"),
        (lambda: from_torch({}), "no weights found"),
        (lambda: from_torch({**_sd(), "weight_ih": Z((4 * H, I))}), "mixes cell keys"),
        (
            lambda: from_torch({k: v for k, v in _sd().items() if k != "bias_hh_l0"}),
            "bias_ih_l0 and bias_hh_l0 come together",
        ),
        (
            lambda: from_torch({"weight_ih_l0": Z((5, I)), "weight_hh_l0": Z((5, H))}),
            "are not \\(G\\*H, H\\)",
        ),
        (lambda: from_torch(_sd(), nonlinearity="gelu"), "applies to nn.RNN only"),
        (lambda: from_torch(_sd("rnn"), nonlinearity="gelu"), "must be 'tanh' or 'relu'"),
        (
            lambda: from_torch_state(Z((3, B, H)), num_layers=2, bidirectional=True),
            "3 stacked states, but num_layers=2 x 2 direction",
        ),
        (
            lambda: from_keras(to_keras(rand_params("rnn", np.random.default_rng(0))), "x"),
            "kind='x'",
        ),
        (lambda: from_keras([Z((I, 5)), Z((H, 5))]), "expected kernel \\(I, G\\*H\\) and"),
        (lambda: from_keras([Z((I, 8)), Z((H, 8))]), "are not \\(H, G\\*H\\)"),
        (lambda: from_keras([Z((I, 4 * H)), Z((H, 4 * H)), Z(3)]), "bias must be \\(16,\\)"),
        (
            lambda: from_keras(
                to_keras(rand_params("lstm", np.random.default_rng(0)))
                + to_keras(rand_params("gru", np.random.default_rng(0)))
            ),
            "two halves of the Bidirectional list differ",
        ),
        (lambda: to_keras("nope"), "expected jaxrnn RNNParams"),
        (
            lambda: to_torch(
                [
                    BidirectionalParams(*[rand_params("rnn", np.random.default_rng(0))] * 2),
                    rand_params("rnn", np.random.default_rng(0)),
                ]
            ),
            "some layers are BidirectionalParams",
        ),
        (lambda: to_torch([]), "empty list"),
    ],
)
def test_refusal_messages(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_keras_list_refusals():
    rng = np.random.default_rng(3)
    w = to_keras(rand_params("lstm", rng))
    with pytest.raises(ValueError, match="kind='gru' but recurrent_kernel"):
        from_keras(w, kind="gru")
    with pytest.raises(ValueError, match="2 \\(use_bias=False\\) or 3 weights, got 5"):
        from_keras(w + w[:2])
    with pytest.raises(ValueError, match="GRU bias must be"):
        from_keras([np.zeros((I, 3 * H)), np.zeros((H, 3 * H)), np.zeros((3, 3 * H))])
    with pytest.raises(ValueError, match="reset_after=False but the GRU has a recurrent_bias"):
        to_keras(rand_params("gru", rng), reset_after=False)


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------

TORCH_CASES = [  # (kind, num_layers, bidirectional, bias)
    ("rnn_tanh", 1, False, True),
    ("rnn_relu", 2, True, True),
    ("lstm", 1, True, True),
    ("lstm", 3, False, True),
    ("lstm", 2, True, False),
    ("gru", 1, False, True),
    ("gru", 2, True, True),
    ("gru", 3, False, False),
]


def torch_module(kind, num_layers, bidirectional, bias, seed=0, batch_first=False):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    cls = {
        "rnn_tanh": torch.nn.RNN,
        "rnn_relu": torch.nn.RNN,
        "lstm": torch.nn.LSTM,
        "gru": torch.nn.GRU,
    }[kind]
    kw = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
    mod = cls(
        I,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=batch_first,
        **kw,
    )
    with torch.no_grad():
        for p in mod.parameters():
            p.uniform_(-0.8, 0.8)
    return mod


def run_torch(mod, x, lengths):
    """PyTorch's (output (T, B, D·H), h_n) for time-major ``x``, packed when ``lengths``."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    xt = torch.from_numpy(x)
    with torch.no_grad():
        if lengths is None:
            out, hn = mod(xt)
        else:
            packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
            out, hn = mod(packed)
            out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    hn = tuple(h.numpy() for h in hn) if isinstance(hn, tuple) else hn.numpy()
    return out.numpy(), hn


@pytest.mark.parametrize("kind,num_layers,bidi,bias", TORCH_CASES)
@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_from_torch_module_matches_torch(kind, num_layers, bidi, bias, lengths):
    mod = torch_module(kind, num_layers, bidi, bias)
    x = np.random.default_rng(4).uniform(-1, 1, (T, B, I)).astype(np.float32)
    out, hn = run_torch(mod, x, lengths)
    conv = from_torch(mod)
    assert conv.layer_kwargs.get("time_major") is True
    assert conv.layer_kwargs.get("activation") == ("relu" if kind == "rnn_relu" else None)
    sl = None if lengths is None else jnp.asarray(lengths)
    y, finals = conv(x, return_sequences=True, return_state=True, seq_lengths=sl)
    group = f"torch {kind}"
    close(group, y, out)
    ref = from_torch_state(hn, num_layers=num_layers, bidirectional=bidi)
    for a, e in zip(jax.tree_util.tree_leaves(finals), jax.tree_util.tree_leaves(ref), strict=True):
        close(group, a, e)
    mine = to_torch_state(finals)
    for a, e in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(hn), strict=True):
        close(group, a, e)
    # the state dict alone (NumPy arrays) gives the same parameters
    sd = {k: v.detach().numpy() for k, v in mod.state_dict().items()}
    conv2 = from_torch(
        sd, nonlinearity="relu" if kind == "rnn_relu" else None, batch_first=mod.batch_first
    )
    identical(conv2.params, conv.params)
    assert conv2.layer_kwargs == conv.layer_kwargs


@pytest.mark.parametrize("kind", ["rnn_relu", "lstm", "gru"])
def test_to_torch_loads_module(kind):
    """jaxrnn params -> a fresh torch module; both compute the same; and back exactly."""
    rng = np.random.default_rng(5)
    base = kind[:3] if kind.startswith("rnn") else kind
    params = [
        BidirectionalParams(rand_params(base, rng), rand_params(base, rng)),
        BidirectionalParams(rand_params(base, rng, 2 * H), rand_params(base, rng, 2 * H)),
    ]
    mod = torch_module(kind, 2, True, True, seed=1, batch_first=True)
    to_torch(params, module=mod)
    x = rng.uniform(-1, 1, (B, T, I)).astype(np.float32)
    out, hn = run_torch(mod, x, None)  # batch_first
    conv = from_torch(mod)
    assert conv.layer_kwargs["time_major"] is False
    identical(conv.params, params)
    y, finals = conv(x, return_sequences=True, return_state=True)
    close(f"torch {kind}", y, out)
    # a non-zero initial state, PyTorch's (h0, c0) layout
    torch = pytest.importorskip("torch")
    h0 = rng.uniform(-1, 1, (4, B, H)).astype(np.float32)
    hx = (h0, h0[::-1].copy()) if kind == "lstm" else h0
    with torch.no_grad():
        thx = tuple(map(torch.from_numpy, hx)) if kind == "lstm" else torch.from_numpy(hx)
        out0, hn0 = mod(torch.from_numpy(x), thx)
    init = from_torch_state(hx, num_layers=2, bidirectional=True)
    y0, finals0 = conv(x, initial_state=init, return_sequences=True, return_state=True)
    close(f"torch {kind}", y0, out0.numpy())
    hn0 = tuple(h.numpy() for h in hn0) if kind == "lstm" else hn0.numpy()
    for a, e in zip(
        jax.tree_util.tree_leaves(to_torch_state(finals0)),
        jax.tree_util.tree_leaves(hn0),
        strict=True,
    ):
        close(f"torch {kind}", a, e)
    for a, e in zip(
        jax.tree_util.tree_leaves(to_torch_state(finals)),
        jax.tree_util.tree_leaves(hn),
        strict=True,
    ):
        close(f"torch {kind}", a, e)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_torch_cells(name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cell = getattr(torch.nn, name)(I, H)
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-0.8, 0.8)
    x = np.random.default_rng(6).uniform(-1, 1, (B, I)).astype(np.float32)
    with torch.no_grad():
        ref = cell(torch.from_numpy(x))
    ref = ref[0] if isinstance(ref, tuple) else ref
    conv = from_torch(cell)
    assert not isinstance(conv.params, list)
    close(f"torch {name}", conv(x[:, None, :]), ref.numpy())
    sd = to_torch(conv.params, module=cell)
    assert "weight_ih" in sd


def test_torch_module_refusals():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    proj = torch.nn.LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match="proj_size=2.*no projection"):
        from_torch(proj)
    with pytest.raises(ValueError, match="proj_size=2"):
        to_torch(rand_params("lstm", rng), module=proj)
    with pytest.raises(ValueError, match="cannot hold lstm weights"):
        to_torch(rand_params("lstm", rng), module=torch.nn.GRU(I, H))
    with pytest.raises(ValueError, match="keys .* differ"):
        to_torch(rand_params("lstm", rng), module=torch.nn.LSTM(I, H, num_layers=2))
    with pytest.raises(ValueError, match="weight_ih_l0 has shape"):
        to_torch(rand_params("lstm", rng), module=torch.nn.LSTM(I + 1, H))
    with pytest.raises(ValueError, match="kind='gru' but the module is LSTM"):
        from_torch(torch.nn.LSTM(I, H), kind="gru")
    with pytest.raises(ValueError, match="a cell module holds one direction of one layer"):
        to_torch([rand_params("lstm", rng)] * 2, module=torch.nn.LSTMCell(I, H))
    with pytest.raises(TypeError, match="Linear is not nn.RNN"):
        from_torch(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------
# Keras 3
# ---------------------------------------------------------------------------


def keras_mod():
    return pytest.importorskip("keras")


def randomise(layer, rng):
    layer.set_weights(
        [(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in layer.get_weights()]
    )


def keras_outputs(res, kind, bidi):
    """Keras' [out, states...] as (out, flat list of states in jaxrnn leaf order)."""
    res = [np.asarray(r) for r in res]
    return res[0], res[1:]


KERAS_CASES = [  # (name, layer factory)
    (
        "simple_rnn_relu",
        lambda k: k.layers.SimpleRNN(
            H, activation="relu", return_sequences=True, return_state=True
        ),
    ),
    (
        "lstm_backwards",
        lambda k: k.layers.LSTM(H, return_sequences=True, return_state=True, go_backwards=True),
    ),
    ("gru_reset_after", lambda k: k.layers.GRU(H, return_sequences=True, return_state=True)),
    ("gru_reset_before", lambda k: k.layers.GRU(H, reset_after=False, return_state=True)),
    (
        "bidi_lstm",
        lambda k: k.layers.Bidirectional(
            k.layers.LSTM(H, return_sequences=True, return_state=True)
        ),
    ),
    (
        "bidi_gru_sum",
        lambda k: k.layers.Bidirectional(
            k.layers.GRU(H, return_sequences=True, return_state=True, reset_after=False),
            merge_mode="sum",
        ),
    ),
]


@pytest.mark.parametrize("name,factory", KERAS_CASES)
def test_from_keras_layer_matches_keras(name, factory):
    keras = keras_mod()
    rng = np.random.default_rng(8)
    layer = factory(keras)
    x = rng.uniform(-1, 1, (B, T, I)).astype(np.float32)
    layer(x)
    randomise(layer, rng)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    conv = from_keras(layer)
    bidi = name.startswith("bidi")
    assert isinstance(conv.params, BidirectionalParams) == bidi
    for use_mask in (False, True):
        res = layer(x, mask=mask) if use_mask else layer(x)
        out, states = keras_outputs(res, name, bidi)
        sl = jnp.asarray(LENGTHS) if use_mask else None
        y, finals = conv(x, seq_lengths=sl)
        if use_mask and not bidi and conv.layer_kwargs["return_sequences"]:
            # Keras repeats the previous output at masked steps, jaxrnn outputs zeros;
            # go_backwards outputs are in processing order (padding read first)
            out = out * (
                mask[:, ::-1, None] if conv.layer_kwargs["go_backwards"] else mask[..., None]
            )
        close(f"keras {name}", y, out)
        close(
            f"keras {name}",
            jnp.concatenate([jnp.ravel(a) for a in _keras_order(finals)]),
            np.concatenate([s.ravel() for s in states]),
        )
    # the weights list alone converts to the same parameters; and back exactly
    identical(from_keras(layer.get_weights()).params, conv.params)
    for a, b in zip(to_keras(conv.params), layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _keras_order(finals):
    """jaxrnn finals flattened in Keras' return_state order ([h, c] per direction)."""
    out = []
    for s in finals if isinstance(finals, tuple) and not hasattr(finals, "_fields") else (finals,):
        out.extend([s.h, s.c] if isinstance(s, LSTMState) else [s])
    return out


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_set_keras_weights_and_model_file(kind, tmp_path):
    """jaxrnn params -> a Keras model (set_keras_weights) -> .weights.h5 -> a fresh model
    (from_keras_model) -> identical params and equal outputs, Dense layer included."""
    keras = keras_mod()
    rng = np.random.default_rng(9)
    p1 = BidirectionalParams(rand_params(kind, rng), rand_params(kind, rng))
    p2 = rand_params(kind, rng, 2 * H)
    cls = getattr(keras.layers, kind.upper())

    def build():
        return keras.Sequential(
            [
                keras.Input((T, I)),
                keras.layers.Bidirectional(cls(H, return_sequences=True), name="bi"),
                cls(H, name="rnn"),
                keras.layers.Dense(2, name="head"),
            ]
        )

    model = build()
    set_keras_weights(model.get_layer("bi"), p1)
    set_keras_weights(model.get_layer("rnn"), p2)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    layers = from_keras_model(build(), path)
    assert list(layers) == ["bi", "rnn", "head"]
    c1, c2 = layers["bi"], layers["rnn"]
    identical(c1.params, p1)
    identical(c2.params, p2)
    w, b = layers["head"]
    x = rng.uniform(-1, 1, (B, T, I)).astype(np.float32)
    ref = np.asarray(model(x))
    close(f"keras {kind} model", c2(c1(x)) @ w + b, ref)
    fns = [functools.partial(jaxrnn.bidirectional, c1.layer.args[0]), c2.layer]
    close(f"keras {kind} model", jaxrnn.stacked(fns, [p1, p2], x) @ w + b, ref)


def test_keras_refusals():
    keras = keras_mod()
    rng = np.random.default_rng(10)
    with pytest.raises(ValueError, match="reset_after=False: n = tanh"):
        set_keras_weights(keras.layers.GRU(H, reset_after=False), rand_params("gru", rng))
    with pytest.raises(ValueError, match="reset-before.*reset_after=True"):
        set_keras_weights(keras.layers.GRU(H), rand_params("gru", rng, reset_after=False))
    with pytest.raises(ValueError, match="cannot go into a Keras GRU"):
        set_keras_weights(keras.layers.GRU(H), rand_params("lstm", rng))
    with pytest.raises(ValueError, match="non-zero biases but the layer has use_bias=False"):
        set_keras_weights(keras.layers.LSTM(H, use_bias=False), rand_params("lstm", rng))
    with pytest.raises(ValueError, match="weight shapes .* units differ"):
        set_keras_weights(keras.layers.LSTM(H + 1), rand_params("lstm", rng))
    with pytest.raises(ValueError, match="needs BidirectionalParams"):
        set_keras_weights(
            keras.layers.Bidirectional(keras.layers.LSTM(H)), rand_params("lstm", rng)
        )
    with pytest.raises(TypeError, match="Dense is not a Keras SimpleRNN"):
        from_keras(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="not built"):
        from_keras(keras.layers.LSTM(H))
    # no bias into a use_bias layer: zeros
    layer = set_keras_weights(keras.layers.SimpleRNN(H), rand_params("rnn", rng, bias=False))
    np.testing.assert_array_equal(layer.get_weights()[2], np.zeros(H, np.float32))


def test_imports_no_framework():
    """``import jaxrnn`` and ``import jaxrnn.interop`` load none of the frameworks."""
    import subprocess
    import sys

    code = (
        "import sys, jaxrnn, jaxrnn.interop; "
        "print([m for m in ('torch', 'keras', 'flax', 'haiku') if m in sys.modules])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_converted_is_a_namedtuple():
    conv = from_keras(to_keras(rand_params("rnn", np.random.default_rng(11))))
    assert isinstance(conv, Converted) and conv.layer is jaxrnn.simple_rnn


# ---------------------------------------------------------------------------
# Flax (NNX and Linen)
# ---------------------------------------------------------------------------

FLAX_CELLS = ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell"]


def _randomise_tree(tree, rng):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.uniform(-0.8, 0.8, np.shape(a)).astype(np.float32)), tree
    )


def _flax_vs_jaxrnn(conv, cell_fn, carry0, x, lengths, group):
    """Compare a Python loop of the Flax cell (masked by lengths) with the converted layer."""
    carry, ys = carry0, []
    for t in range(T):
        new, y = cell_fn(carry, x[:, t])
        valid = jnp.asarray(np.array(lengths) > t)[:, None]
        carry = jax.tree_util.tree_map(lambda n, o, v=valid: jnp.where(v, n, o), new, carry)
        ys.append(jnp.where(valid, y, 0.0))
    init = from_flax_carry(carry0)
    out, final = conv(
        x,
        initial_state=init,
        seq_lengths=jnp.asarray(lengths),
        return_sequences=True,
        return_state=True,
    )
    close(group, out, jnp.stack(ys, 1))
    for a, e in zip(
        jax.tree_util.tree_leaves(to_flax_carry(final)),
        jax.tree_util.tree_leaves(carry),
        strict=True,
    ):
        close(group, a, e)


@pytest.mark.parametrize("name", FLAX_CELLS)
def test_flax_nnx(name):
    nnx = pytest.importorskip("flax.nnx")
    rng = np.random.default_rng(12)
    cell = getattr(nnx, name)(I, H, rngs=nnx.Rngs(0))
    state = nnx.state(cell, nnx.Param)
    nnx.replace_by_pure_dict(state, _randomise_tree(state.to_pure_dict(), rng))
    nnx.update(cell, state)
    x = jnp.asarray(rng.uniform(-1, 1, (B, T, I)).astype(np.float32))
    carry0 = _randomise_tree(cell.initialize_carry((B, I), nnx.Rngs(1)), rng)
    conv = from_flax(cell)
    for lengths in ([T] * B, LENGTHS):
        _flax_vs_jaxrnn(conv, cell, carry0, x, lengths, f"flax nnx.{name}")
    # the library's own RNN with seq_lengths: same final carry
    carry, _ = nnx.RNN(cell, return_carry=True)(
        x, initial_carry=carry0, seq_lengths=jnp.asarray(LENGTHS)
    )
    _, final = conv(
        x,
        initial_state=from_flax_carry(carry0),
        seq_lengths=jnp.asarray(LENGTHS),
        return_state=True,
    )
    for a, e in zip(
        jax.tree_util.tree_leaves(to_flax_carry(final)),
        jax.tree_util.tree_leaves(carry),
        strict=True,
    ):
        close(f"flax nnx.{name}", a, e)
    # round trip: Flax -> jaxrnn -> Flax is identical; writing into a fresh cell works
    tree = to_flax(conv.params, f"nnx.{name}")
    identical(
        jax.tree_util.tree_map(np.asarray, tree),
        jax.tree_util.tree_map(np.asarray, state.to_pure_dict()),
    )
    with pytest.raises(ValueError, match="module's parameters .* differ"):
        to_flax(conv.params, module=getattr(nnx, name)(I + 1, H, rngs=nnx.Rngs(5)))
    fresh = getattr(nnx, name)(I, H, rngs=nnx.Rngs(5))
    to_flax(conv.params, module=fresh)
    identical(from_flax(fresh).params, conv.params)


@pytest.mark.parametrize("name", FLAX_CELLS)
def test_flax_linen(name):
    nn = pytest.importorskip("flax.linen")
    rng = np.random.default_rng(13)
    cell = getattr(nn, name)(H)
    x = jnp.asarray(rng.uniform(-1, 1, (B, T, I)).astype(np.float32))
    carry0 = _randomise_tree(cell.initialize_carry(jax.random.key(0), (B, I)), rng)
    variables = _randomise_tree(cell.init(jax.random.key(0), carry0, x[:, 0]), rng)
    conv = from_flax(variables)
    _flax_vs_jaxrnn(
        conv, functools.partial(cell.apply, variables), carry0, x, LENGTHS, f"flax linen.{name}"
    )
    identical(
        jax.tree_util.tree_map(np.asarray, to_flax(conv.params, f"linen.{name}")),
        jax.tree_util.tree_map(np.asarray, variables),
    )


def test_flax_gru_from_jaxrnn_and_refusals():
    """A reset-after jaxrnn GRU (all biases non-zero) into Linen: same function.
    Into NNX it must be refused (no b_hn), and a reset-before GRU everywhere."""
    nn = pytest.importorskip("flax.linen")
    rng = np.random.default_rng(14)
    p = rand_params("gru", rng)
    variables = to_flax(p, "linen.GRUCell")
    x = jnp.asarray(rng.uniform(-1, 1, (B, T, I)).astype(np.float32))
    h0 = jnp.asarray(rng.uniform(-1, 1, (B, H)).astype(np.float32))
    conv = Converted(p, jaxrnn.gru, {})
    _flax_vs_jaxrnn(
        conv,
        functools.partial(nn.GRUCell(H).apply, variables),
        h0,
        x,
        LENGTHS,
        "flax linen.GRUCell from jaxrnn",
    )
    with pytest.raises(ValueError, match="nnx.GRUCell has no recurrent candidate bias"):
        to_flax(p, "nnx.GRUCell")
    zero_n = p._replace(recurrent_bias=p.recurrent_bias.at[2 * H :].set(0.0))
    tree = to_flax(zero_n, "nnx.GRUCell")  # representable: b_hr, b_hz fold into dense_i.bias
    out = from_flax(tree)(x)
    close("flax nnx.GRUCell from jaxrnn", out, jaxrnn.gru(zero_n, x))
    with pytest.raises(ValueError, match="reset-before.*Flax's GRUCell is reset-after"):
        to_flax(rand_params("gru", rng, reset_after=False), "linen.GRUCell")
    with pytest.raises(ValueError, match="cannot go into a Flax LSTMCell"):
        to_flax(p, "nnx.LSTMCell")
    with pytest.raises(ValueError, match="unknown target='nnx.LSTM'"):
        to_flax(p, "nnx.LSTM")
    with pytest.raises(ValueError, match="not those of a Flax LSTMCell"):
        from_flax({"foo": {"kernel": np.zeros((2, 2))}})


# ---------------------------------------------------------------------------
# Haiku
# ---------------------------------------------------------------------------


def _haiku_unroll(core_name, params, x_tm, state0):
    hk = pytest.importorskip("haiku")

    def f(x, s):
        core = getattr(hk, core_name)(H)
        return hk.dynamic_unroll(core, x, s)

    return hk.without_apply_rng(hk.transform(f)).apply(params, x_tm, state0)


@pytest.mark.parametrize("core_name", ["LSTM", "GRU", "VanillaRNN"])
def test_haiku(core_name):
    hk = pytest.importorskip("haiku")
    rng = np.random.default_rng(15)
    x = rng.uniform(-1, 1, (B, T, I)).astype(np.float32)
    x_tm = jnp.asarray(np.swapaxes(x, 0, 1))
    init = hk.transform(
        lambda x: hk.dynamic_unroll(
            getattr(hk, core_name)(H), x, getattr(hk, core_name)(H).initial_state(B)
        )
    )
    params = _randomise_tree(init.init(jax.random.key(0), x_tm), rng)
    if core_name == "LSTM":
        s0 = hk.LSTMState(
            *(jnp.asarray(rng.uniform(-1, 1, (B, H)).astype(np.float32)) for _ in range(2))
        )
    else:
        s0 = jnp.asarray(rng.uniform(-1, 1, (B, H)).astype(np.float32))
    ys, final = _haiku_unroll(core_name, params, x_tm, s0)
    conv = from_haiku(params)
    j0 = LSTMState(s0.hidden, s0.cell) if core_name == "LSTM" else s0
    out, jfinal = conv(x, initial_state=j0, return_sequences=True, return_state=True)
    group = f"haiku {core_name}"
    close(group, out, np.swapaxes(np.asarray(ys), 0, 1))
    for a, e in zip(
        jax.tree_util.tree_leaves(jfinal), jax.tree_util.tree_leaves(final), strict=True
    ):
        close(group, a, e)
    # jaxrnn -> Haiku -> jaxrnn: identical except the LSTM forget bias ((b - 1) + 1)
    back = from_haiku(
        to_haiku(conv.params, activation="relu" if core_name == "VanillaRNN" else None)
    ).params
    if core_name == "LSTM":
        identical(back._replace(bias=None), conv.params._replace(bias=None))
        np.testing.assert_allclose(back.bias, conv.params.bias, atol=2e-7, rtol=0)
    else:
        identical(back, conv.params)
    # and jaxrnn params written into Haiku compute the same
    p = rand_params(
        {"LSTM": "lstm", "GRU": "gru", "VanillaRNN": "rnn"}[core_name], rng, reset_after=False
    )
    kw = {"activation": "relu"} if core_name == "VanillaRNN" else {}
    ys2, _ = _haiku_unroll(core_name, to_haiku(p, **kw), x_tm, s0)
    close(
        group + " from jaxrnn",
        from_haiku(to_haiku(p, **kw))(x, initial_state=j0, return_sequences=True),
        np.swapaxes(np.asarray(ys2), 0, 1),
    )
    close(
        group + " from jaxrnn",
        jaxrnn.stacked(
            conv.layer, [p], x, initial_state=[j0], return_sequences=True, **conv.layer_kwargs
        ),
        np.swapaxes(np.asarray(ys2), 0, 1),
    )


def test_haiku_refusals():
    rng = np.random.default_rng(16)
    with pytest.raises(ValueError, match="hk.GRU is reset-before.*different function"):
        to_haiku(rand_params("gru", rng))
    with pytest.raises(ValueError, match="hk.GRU is reset-before"):
        to_haiku(rand_params("gru", rng, bias=False))
    assert "gru" in to_haiku(rand_params("gru", rng, bias=False), reset_after=False)
    with pytest.raises(ValueError, match="VanillaRNN computes.*activation=None is not relu"):
        to_haiku(rand_params("rnn", rng))
    both = {
        **to_haiku(rand_params("lstm", rng), name="a"),
        **to_haiku(rand_params("lstm", rng), name="b"),
    }
    p = rand_params("rnn", rng)
    tree = to_haiku(p, activation="relu", double_bias=False)
    assert set(tree["vanilla_rnn/linear_1"]) == {"w"}
    identical(from_haiku(tree).params, p)
    with pytest.raises(ValueError, match="found 2 Haiku recurrent cores.*pass name="):
        from_haiku(both)
    assert from_haiku(both, name="b").params.kernel.shape == (I, 4 * H)
    with pytest.raises(ValueError, match="no Haiku core named 'c'"):
        from_haiku(both, name="c")
    with pytest.raises(ValueError, match="no hk.LSTM, hk.GRU or hk.VanillaRNN"):
        from_haiku({"mlp/linear": {"w": np.zeros((2, 2))}})
