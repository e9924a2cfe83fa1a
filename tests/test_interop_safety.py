"""Correctness guards of jaxrnn.interop (issue 12): no silent guesses, no silent casts.

- A PyTorch state dict does not record ``batch_first``: ``from_torch`` requires it
  for nn.RNN/LSTM/GRU weights and refuses it where it cannot apply (cells) or
  contradicts a live module.
- Float64 weights are refused while JAX's 64-bit mode is off (they would become
  float32); with it on (checked in a subprocess) they convert exactly.
- Keras layers keep their ``dropout``/``recurrent_dropout``; a plain call of the
  converted layer is inference, a call with a key trains with dropout.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import BidirectionalParams, LSTMParams
from jaxrnn.interop import (
    from_flax,
    from_haiku,
    from_keras,
    from_keras_model,
    from_torch,
    from_torch_state,
    to_flax,
    to_haiku,
    to_keras,
    to_torch_state,
)

B, T, I, H = 3, 6, 4, 5
ATOL = 1e-6


def _torch():
    return pytest.importorskip("torch")


def _module(cls_name, *, seed=0, **kw):
    torch = _torch()
    torch.manual_seed(seed)
    mod = getattr(torch.nn, cls_name)(I, H, **kw)
    with torch.no_grad():
        for p in mod.parameters():
            p.uniform_(-0.8, 0.8)
    return mod


def _run_torch(mod, x, hx=None):
    torch = _torch()
    with torch.no_grad():
        out, hn = mod(torch.from_numpy(x), hx)
    return out.numpy(), (tuple(h.numpy() for h in hn) if isinstance(hn, tuple) else hn.numpy())


def _saved_and_loaded(mod, tmp_path):
    """The usual path: torch.save(module.state_dict()) ... torch.load(path)."""
    torch = _torch()
    path = tmp_path / "weights.pt"
    torch.save(mod.state_dict(), path)
    return torch.load(path)


def _assert_close(actual, expected, atol=ATOL):
    for a, e in zip(
        jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=atol, rtol=0)


# ---------------------------------------------------------------------------
# batch_first
# ---------------------------------------------------------------------------


def test_lstm_state_dict_time_major_matches_torch(tmp_path):
    """nn.LSTM(4, 5) (PyTorch's default, batch_first=False) fed (T, B, F)."""
    mod = _module("LSTM")
    x = np.random.default_rng(0).uniform(-1, 1, (T, B, I)).astype(np.float32)
    out, hn = _run_torch(mod, x)
    conv = from_torch(_saved_and_loaded(mod, tmp_path), batch_first=False)
    assert conv.layer_kwargs == {"time_major": True}
    y, finals = conv(x, return_sequences=True, return_state=True)
    assert y.shape == out.shape == (T, B, H)
    _assert_close(y, out)
    _assert_close(to_torch_state(finals), hn)
    # why it is required: the same array read batch-major has valid shapes but is wrong
    wrong = conv(x, return_sequences=True, time_major=False)
    assert wrong.shape == (T, B, H)
    assert float(np.max(np.abs(np.asarray(wrong) - out))) > 1e-2


@pytest.mark.parametrize(
    "cls_name,kw",
    [
        ("LSTM", {}),
        ("LSTM", {"num_layers": 2, "bidirectional": True}),
        ("GRU", {"num_layers": 2}),
        ("RNN", {"nonlinearity": "relu", "bidirectional": True}),
    ],
)
@pytest.mark.parametrize("batch_first", [False, True])
def test_state_dict_with_batch_first_matches_torch(cls_name, kw, batch_first):
    mod = _module(cls_name, batch_first=batch_first, **kw)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    out, hn = _run_torch(mod, x)
    nl = kw.get("nonlinearity")
    conv = from_torch(mod.state_dict(), nonlinearity=nl, batch_first=batch_first)
    assert conv.layer_kwargs["time_major"] is (not batch_first)
    y, finals = conv(x, return_sequences=True, return_state=True)
    _assert_close(y, out)
    _assert_close(to_torch_state(finals), hn)
    # the live module gives the same conversion without the argument, and with an agreeing one
    for live in (from_torch(mod), from_torch(mod, batch_first=batch_first)):
        assert live.layer_kwargs == conv.layer_kwargs


def test_state_dict_without_batch_first_is_refused():
    sd = _module("LSTM").state_dict()
    with pytest.raises(
        ValueError,
        match=(
            r"from_torch: batch_first is required for the state dict of an nn.RNN, nn.LSTM or "
            r"nn.GRU.*does not record.*does not guess.*batch_first=False for PyTorch's default "
            r"time-major layout, x of shape \(T, B, F\), or batch_first=True.*\(B, T, F\)"
        ),
    ):
        from_torch(sd)
    # NumPy state dicts (e.g. a loaded .npz) likewise
    with pytest.raises(ValueError, match="batch_first is required"):
        from_torch({k: v.numpy() for k, v in sd.items()}, kind="lstm")


def test_structural_refusals_come_before_the_batch_first_requirement():
    sd = {k: v.numpy() for k, v in _module("LSTM").state_dict().items()}
    with pytest.raises(ValueError, match="proj_size=2.*no projection"):
        from_torch({**sd, "weight_hr_l0": np.zeros((2, H), np.float32)})
    with pytest.raises(ValueError, match="kind='gru' needs 3 gates"):
        from_torch(sd, kind="gru")


def test_batch_first_contradicting_a_live_module_is_refused():
    mod = _module("GRU")  # batch_first=False
    with pytest.raises(
        ValueError,
        match=(
            r"from_torch: batch_first=True but the module was built with batch_first=False; "
            r"a live module's own setting is used, so leave batch_first out.*"
            r"conv\(x, time_major=False\)"
        ),
    ):
        from_torch(mod, batch_first=True)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_take_no_batch_first(name):
    torch = _torch()
    cell = _module(name)
    x = np.random.default_rng(2).uniform(-1, 1, (B, I)).astype(np.float32)
    with torch.no_grad():
        ref = cell(torch.from_numpy(x))
    ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
    conv = from_torch(cell.state_dict())  # no time axis: no batch_first needed
    assert conv.layer_kwargs == {} and isinstance(conv.params, jaxrnn.LSTMParams) == (
        name == "LSTMCell"
    )
    _assert_close(conv(x[:, None, :]), ref)
    _assert_close(conv(x[None], time_major=True), ref)
    for flag in (False, True):
        with pytest.raises(
            ValueError,
            match=(
                rf"from_torch: batch_first={flag} was given, but these are cell weights "
                r"\(keys without _l0.*no time axis. Leave batch_first out"
            ),
        ):
            from_torch(cell.state_dict(), batch_first=flag)
    with pytest.raises(ValueError, match=rf"the module is an nn.{name}, .*no time axis"):
        from_torch(cell, batch_first=False)


def test_batch_first_must_be_a_bool():
    sd = {k: v.numpy() for k, v in _module("LSTM").state_dict().items()}
    with pytest.raises(TypeError, match=r"from_torch: batch_first must be True or False.*'yes'"):
        from_torch(sd, batch_first="yes")
    assert from_torch(sd, batch_first=np.bool_(True)).layer_kwargs == {"time_major": False}


def test_torch_params_is_always_a_list_for_sequence_modules():
    """What users pass around: a list (one entry per layer) even for one layer."""
    one = from_torch(_module("LSTM"))
    assert type(one.params) is list and len(one.params) == 1
    assert isinstance(one.params[0], LSTMParams)
    two = from_torch(_module("LSTM", num_layers=2))
    assert type(two.params) is list and [type(p) for p in two.params] == [LSTMParams] * 2
    bidi = from_torch(_module("LSTM", bidirectional=True))
    assert type(bidi.params) is list and len(bidi.params) == 1
    assert isinstance(bidi.params[0], BidirectionalParams)
    assert isinstance(from_torch(_module("LSTMCell")).params, LSTMParams)


# ---------------------------------------------------------------------------
# float64: exact or not at all
# ---------------------------------------------------------------------------


def test_float64_torch_is_refused_without_x64():
    assert not jax.config.read("jax_enable_x64")  # the test process default
    mod = _module("LSTM").double()
    with pytest.raises(
        TypeError,
        match=(
            r"from_torch: 4 of 4 arrays are float64 \('weight_ih_l0' and 3 more\) but JAX's "
            r"64-bit mode is off, so converting would silently round them to float32.*"
            r'jax.config.update\("jax_enable_x64", True\).*from_torch\(module.float\(\)\)'
        ),
    ):
        from_torch(mod)
    with pytest.raises(TypeError, match=r"float64.*v.float\(\) for k, v in state_dict.items"):
        from_torch(mod.state_dict(), batch_first=False)
    sd = {k: v.numpy() for k, v in mod.state_dict().items()}
    with pytest.raises(TypeError, match=r"float64.*v.astype\(np.float32\)"):
        from_torch(sd, batch_first=False)
    with pytest.raises(TypeError, match="from_torch: 2 of 4 arrays are float64"):
        mixed = {**mod.float().state_dict(), **{k: sd[k] for k in list(sd)[:2]}}
        from_torch(mixed, batch_first=False)
    # the fix on purpose: cast first
    conv = from_torch(mod.float())
    assert conv.params[0].kernel.dtype == jnp.float32
    h = np.zeros((1, B, H))
    with pytest.raises(TypeError, match=r"from_torch_state: 2 of 2 arrays are float64"):
        from_torch_state((h, h))
    with pytest.raises(TypeError, match=r"from_torch_state: 1 of 1 arrays are float64"):
        from_torch_state(h)


def test_float64_keras_flax_haiku_are_refused_without_x64():
    rng = np.random.default_rng(3)
    p = jaxrnn.init_lstm(jax.random.key(0), I, H)
    w64 = [np.asarray(a, np.float64) for a in to_keras(p)]
    with pytest.raises(
        TypeError, match=r"from_keras: 3 of 3 arrays are float64 \('kernel' and 2 more\)"
    ):
        from_keras(w64)
    with pytest.raises(TypeError, match=r"from_keras: .*float64.*astype\(np.float32\)"):
        from_keras(w64 + w64)  # Bidirectional list
    tree = jax.tree.map(lambda a: rng.uniform(-1, 1, np.shape(a)), to_flax(p, "linen.LSTMCell"))
    with pytest.raises(TypeError, match=r"from_flax: 12 of 12 arrays are float64.*jax_enable_x64"):
        from_flax(tree)
    hk = jax.tree.map(lambda a: np.asarray(a, np.float64), to_haiku(p))
    with pytest.raises(TypeError, match=r"from_haiku: 2 of 2 arrays are float64.*jax_enable_x64"):
        from_haiku(hk)
    # float32 still converts, and refusals of bad structure come first
    assert from_flax(jax.tree.map(lambda a: np.asarray(a, np.float32), tree)).params.bias.dtype == (
        jnp.float32
    )
    with pytest.raises(ValueError, match="expected kernel"):
        from_keras([np.zeros((I, 8)), np.zeros((H, 8))])


def test_float64_converts_exactly_with_x64_on():
    """In a fresh process with x64 on (never flipped here): float64 in, float64 out."""
    _torch()
    code = textwrap.dedent(
        """
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np, torch
        from jaxrnn.interop import from_torch, from_torch_state, to_torch_state
        torch.manual_seed(0)
        mod = torch.nn.LSTM(4, 5, num_layers=2).double()
        x = np.random.default_rng(0).uniform(-1, 1, (6, 3, 4))
        h0 = np.random.default_rng(1).uniform(-1, 1, (2, 3, 5))
        with torch.no_grad():
            out, (hn, cn) = mod(torch.from_numpy(x), (torch.from_numpy(h0),) * 2)
        for conv in (from_torch(mod), from_torch(mod.state_dict(), batch_first=False)):
            assert conv.params[0].kernel.dtype == np.float64, conv.params[0].kernel.dtype
            y, fin = conv(x, initial_state=from_torch_state((h0, h0), num_layers=2),
                          return_sequences=True, return_state=True)
            assert y.dtype == np.float64, y.dtype
            h, c = to_torch_state(fin)
            err = max(float(np.max(np.abs(a - b.numpy())))
                      for a, b in ((np.asarray(y), out), (h, hn), (c, cn)))
            assert err < 1e-12, err
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


# ---------------------------------------------------------------------------
# Keras dropout
# ---------------------------------------------------------------------------


def test_keras_model_keeps_dropout_and_runs_inference_by_default():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(4)
    model = keras.Sequential(
        [
            keras.Input((T, I)),
            keras.layers.LSTM(
                H, dropout=0.2, recurrent_dropout=0.1, return_sequences=True, name="rnn"
            ),
            keras.layers.Bidirectional(keras.layers.GRU(H, dropout=0.3), name="bi"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    for layer in model.layers[:2]:
        layer.set_weights(
            [(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in layer.get_weights()]
        )
    layers = from_keras_model(model)
    rnn, bi = layers["rnn"], layers["bi"]
    assert rnn.layer_kwargs["dropout"] == pytest.approx(0.2)
    assert rnn.layer_kwargs["recurrent_dropout"] == pytest.approx(0.1)
    assert bi.layer_kwargs["dropout"] == pytest.approx(0.3)
    assert bi.layer_kwargs["recurrent_dropout"] == 0.0
    x = rng.uniform(-1, 1, (B, T, I)).astype(np.float32)
    w, b = layers["head"]

    # a plain call is inference, as the Keras model called outside fit
    y = rnn(x)
    _assert_close(y, np.asarray(model.get_layer("rnn")(x)), atol=1e-5)
    _assert_close(bi(y) @ w + b, np.asarray(model(x)), atol=1e-5)
    _assert_close(rnn(x, training=False, key=jax.random.key(0)), y)
    _assert_close(rnn(x, key=None), y)  # a loss given key=None for evaluation

    # with a key: training, dropout on with the layer's rates (deterministic per key)
    k = jax.random.key(1)
    yk = rnn(x, key=k)
    assert float(jnp.max(jnp.abs(yk - y))) > 1e-3
    _assert_close(yk, rnn(x, key=k), atol=0)
    ref = jaxrnn.lstm(
        rnn.params, x, return_sequences=True, dropout=0.2, recurrent_dropout=0.1, key=k
    )
    _assert_close(yk, ref, atol=0)
    assert float(jnp.max(jnp.abs(bi(y, key=k) - bi(y)))) > 1e-3
    # overriding the rates at call time follows jaxrnn's own rule (a rate needs a key)
    _assert_close(rnn(x, dropout=0.0, recurrent_dropout=0.0), y)
    with pytest.raises(ValueError, match="lstm: dropout=0.5.*but key is None"):
        rnn(x, dropout=0.5)
    # the raw layer call with these kwargs is jaxrnn's: a rate without a key raises
    with pytest.raises(ValueError, match="key is None.*training=False"):
        rnn.layer(rnn.params, x, **rnn.layer_kwargs)
    _assert_close(rnn.layer(rnn.params, x, **rnn.layer_kwargs, training=False), y)


def test_keras_layer_without_dropout_records_zero_rates():
    keras = pytest.importorskip("keras")
    layer = keras.layers.SimpleRNN(H)
    layer.build((None, T, I))
    conv = from_keras(layer)
    assert conv.layer_kwargs["dropout"] == 0.0 and conv.layer_kwargs["recurrent_dropout"] == 0.0
    x = np.ones((B, T, I), np.float32)
    _assert_close(conv(x), np.asarray(layer(x)), atol=1e-5)
    assert "dropout" not in from_keras(layer.get_weights()).layer_kwargs  # a list records none
