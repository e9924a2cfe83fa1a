"""Cross-framework parity: jaxrnn layers against the Keras 3 layers they document.

Every test builds a Keras layer, overwrites its weights with random O(1) values
(non-zero biases, so every term of the equations matters), maps the weights to
jaxrnn's NamedTuples in ``layer.get_weights()`` order and compares outputs and
final states in float32 (atol = rtol = 1e-5). The largest absolute difference
seen in each group is printed at the end of the module.

Mapping (Keras -> jaxrnn):

* SimpleRNN ``[kernel, recurrent_kernel, bias]`` -> ``RNNParams``.
* LSTM ``[kernel, recurrent_kernel, bias]`` (gates i, f, c, o) -> ``LSTMParams``;
  Keras' ``[out, h, c]`` -> ``(out, LSTMState(h, c))``.
* GRU ``reset_after=True``: ``bias (2, 3H)`` -> ``GRUParams(..., bias[0], bias[1])``;
  ``reset_after=False``: ``bias (3H,)`` -> ``GRUParams(..., bias, None)`` and
  ``jaxrnn.gru(..., reset_after=False)``.
"""

from __future__ import annotations

import collections
import functools
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip(
        f"Keras parity tests need the JAX backend, got {keras.backend.backend()!r}",
        allow_module_level=True,
    )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxrnn  # noqa: E402
from jaxrnn import LSTMState  # noqa: E402
from tests.helpers import eager_unless, max_diff_reporter  # noqa: E402

ATOL = RTOL = 1e-5
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before")
GATED = ("lstm", "gru", "gru_reset_before")
MERGE_MODES = ("concat", "sum", "mul", "ave", None)
# One size everywhere it can be: eager op kernels are compiled once per shape.
B, T, F, H = 4, 6, 3, 4

# ---------------------------------------------------------------------------
# max |jaxrnn - keras| per group, reported at module teardown
# ---------------------------------------------------------------------------

MAX_DIFF: dict[str, float] = collections.defaultdict(float)


_report_max_diffs = max_diff_reporter(MAX_DIFF, "keras")

COMPILED_TESTS = {"test_jit_compiled_matches_keras", "test_stacked_simple_rnn_sequential"}
_eager_unless_compiled = eager_unless(COMPILED_TESTS)


def assert_close(group, actual, expected, atol=ATOL, rtol=RTOL):
    a = np.asarray(actual)
    e = np.asarray(expected)
    assert a.shape == e.shape, f"{group}: shape {a.shape} != keras {e.shape}"
    assert a.dtype == np.float32, f"{group}: dtype {a.dtype}"
    diff = float(np.max(np.abs(a.astype(np.float64) - e))) if a.size else 0.0
    MAX_DIFF[group] = max(MAX_DIFF[group], diff)
    np.testing.assert_allclose(a, e, atol=atol, rtol=rtol, err_msg=group)


def assert_state_close(group, kind, state, keras_state):
    if kind == "lstm":
        assert isinstance(state, LSTMState)
        assert_close(group, state.h, keras_state.h)
        assert_close(group, state.c, keras_state.c)
    else:
        assert_close(group, state, keras_state)


# ---------------------------------------------------------------------------
# building matching layers
# ---------------------------------------------------------------------------


ZEROS_INIT = dict(
    kernel_initializer="zeros", recurrent_initializer="zeros", bias_initializer="zeros"
)


def keras_layer(kind, units, *, activation=None, recurrent_activation=None, **kwargs):
    """The Keras layer for ``kind``; kwargs go to the constructor.

    Weights are overwritten by ``randomise``, so they are created with cheap
    "zeros" initialisers (Keras' orthogonal initialiser costs seconds eagerly).
    """
    kwargs = {**ZEROS_INIT, **kwargs}
    if activation is not None:
        kwargs["activation"] = activation
    if kind.startswith("rnn"):
        kwargs.setdefault("activation", "relu" if kind == "rnn_relu" else "tanh")
        return keras.layers.SimpleRNN(units, **kwargs)
    if recurrent_activation is not None:
        kwargs["recurrent_activation"] = recurrent_activation
    if kind == "lstm":
        return keras.layers.LSTM(units, **kwargs)
    if kind == "gru":
        return keras.layers.GRU(units, reset_after=True, **kwargs)
    if kind == "gru_reset_before":
        return keras.layers.GRU(units, reset_after=False, **kwargs)
    raise AssertionError(kind)


def jax_layer(kind, *, activation=None, recurrent_activation=None):
    """The jaxrnn layer function for ``kind`` with the same activations."""
    kw = {}
    if activation is not None:
        kw["activation"] = activation
    if kind.startswith("rnn"):
        kw.setdefault("activation", "relu" if kind == "rnn_relu" else "tanh")
        return functools.partial(jaxrnn.simple_rnn, **kw)
    if recurrent_activation is not None:
        kw["recurrent_activation"] = recurrent_activation
    if kind == "lstm":
        return functools.partial(jaxrnn.lstm, **kw)
    return functools.partial(jaxrnn.gru, reset_after=(kind == "gru"), **kw)


def randomise(layer, input_shape, rng, scale=0.5):
    """Build ``layer`` and replace every weight by ``scale * N(0, 1)`` (float32)."""
    if not layer.built:
        layer.build(input_shape)
    weights = layer.get_weights()
    assert weights, "layer has no weights"
    layer.set_weights([(scale * rng.standard_normal(w.shape)).astype(np.float32) for w in weights])
    return layer


def to_params(kind, weights):
    """jaxrnn parameters from a Keras recurrent layer's ``get_weights()`` list."""
    w = [jnp.asarray(v) for v in weights]
    bias = w[2] if len(w) > 2 else None
    if kind.startswith("rnn"):
        return jaxrnn.RNNParams(w[0], w[1], bias)
    if kind == "lstm":
        return jaxrnn.LSTMParams(w[0], w[1], bias)
    if kind == "gru":
        if bias is None:
            return jaxrnn.GRUParams(w[0], w[1], None, None)
        assert bias.shape[0] == 2
        return jaxrnn.GRUParams(w[0], w[1], bias[0], bias[1])
    if kind == "gru_reset_before":
        assert bias is None or bias.ndim == 1
        return jaxrnn.GRUParams(w[0], w[1], bias, None)
    raise AssertionError(kind)


def from_keras(kind, result, return_state):
    """Keras' ``out`` / ``[out, *states]`` as jaxrnn's ``out`` / ``(out, state)``."""
    if not return_state:
        return np.asarray(result)
    out, *states = result
    if kind == "lstm":
        assert len(states) == 2
        return np.asarray(out), LSTMState(np.asarray(states[0]), np.asarray(states[1]))
    assert len(states) == 1
    return np.asarray(out), np.asarray(states[0])


def random_state(kind, rng, batch, units):
    h = rng.standard_normal((batch, units)).astype(np.float32)
    if kind == "lstm":
        return LSTMState(h, rng.standard_normal((batch, units)).astype(np.float32))
    return h


def keras_state(kind, state):
    return [state.h, state.c] if kind == "lstm" else [state]


def jax_state(kind, state):
    if kind == "lstm":
        return LSTMState(jnp.asarray(state.h), jnp.asarray(state.c))
    return jnp.asarray(state)


def make_input(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def pair(
    kind,
    in_size,
    units,
    rng,
    *,
    steps=T,
    activation=None,
    recurrent_activation=None,
    **keras_kwargs,
):
    """A randomised Keras layer, the matching jaxrnn function and its params."""
    layer = keras_layer(
        kind,
        units,
        activation=activation,
        recurrent_activation=recurrent_activation,
        **keras_kwargs,
    )
    randomise(layer, (None, steps, in_size), rng)
    fn = jax_layer(kind, activation=activation, recurrent_activation=recurrent_activation)
    return layer, fn, to_params(kind, layer.get_weights())


# ---------------------------------------------------------------------------
# 1. single layers, no mask
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("initial_state", [False, True], ids=["zero_init", "init_state"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "backwards"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_matches_keras(kind, use_bias, return_sequences, go_backwards, initial_state):
    rng = np.random.default_rng(1)
    b, t, i, h = B, T, F, H
    layer, fn, params = pair(
        kind,
        i,
        h,
        rng,
        steps=t,
        use_bias=use_bias,
        return_sequences=return_sequences,
        return_state=True,
        go_backwards=go_backwards,
    )
    assert (params.bias is None) == (not use_bias)
    x = make_input(rng, (b, t, i))
    s0 = random_state(kind, rng, b, h) if initial_state else None
    k_out, k_state = from_keras(
        kind, layer(x, initial_state=None if s0 is None else keras_state(kind, s0)), True
    )
    out, state = fn(
        params,
        jnp.asarray(x),
        return_sequences=return_sequences,
        return_state=True,
        go_backwards=go_backwards,
        initial_state=None if s0 is None else jax_state(kind, s0),
    )
    assert out.shape == ((b, t, h) if return_sequences else (b, h))
    assert_close("layers", out, k_out)
    assert_state_close("layers", kind, state, k_state)
    # the output is the final hidden state (last processed step)
    last = out[:, -1] if return_sequences else out
    assert_close("layers", last, (k_state.h if kind == "lstm" else k_state))


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("kind", KINDS)
def test_return_state_false_returns_only_output(kind, return_sequences):
    rng = np.random.default_rng(2)
    layer, fn, params = pair(kind, F, H, rng, steps=T, return_sequences=return_sequences)
    x = make_input(rng, (B, T, F))
    k_out = from_keras(kind, layer(x), False)
    out = fn(params, jnp.asarray(x), return_sequences=return_sequences)
    assert isinstance(out, jax.Array)
    assert_close("layers", out, k_out)


# Activation pairs by Keras name (activation, recurrent_activation).
ACTIVATION_PAIRS = [
    ("tanh", "hard_sigmoid"),
    ("relu", "hard_sigmoid"),
    ("softsign", "sigmoid"),
    ("elu", "silu"),
    ("selu", "swish"),
    ("tanh", "linear"),
    ("sigmoid", "softsign"),
]


@pytest.mark.parametrize("acts", ACTIVATION_PAIRS, ids=lambda a: f"{a[0]}-{a[1]}")
@pytest.mark.parametrize("kind", GATED)
def test_gated_activations_by_name(kind, acts):
    activation, recurrent_activation = acts
    rng = np.random.default_rng(3)
    layer, fn, params = pair(
        kind,
        F,
        H,
        rng,
        steps=T,
        activation=activation,
        recurrent_activation=recurrent_activation,
        return_sequences=True,
        return_state=True,
    )
    x = make_input(rng, (B, T, F))
    k_out, k_state = from_keras(kind, layer(x), True)
    out, state = fn(params, jnp.asarray(x), return_sequences=True, return_state=True)
    assert_close("activations", out, k_out)
    assert_state_close("activations", kind, state, k_state)


@pytest.mark.parametrize(
    "activation",
    ["sigmoid", "hard_sigmoid", "softsign", "elu", "selu", "silu", "swish", "linear", "gelu"],
)
def test_simple_rnn_activation_by_name(activation):
    rng = np.random.default_rng(4)
    layer, fn, params = pair(
        "rnn_tanh", F, H, rng, steps=T, activation=activation, return_sequences=True
    )
    x = make_input(rng, (B, T, F))
    out = fn(params, jnp.asarray(x), return_sequences=True)
    assert_close("activations", out, np.asarray(layer(x)))


@pytest.mark.parametrize("name", sorted(jaxrnn.ACTIVATIONS))
def test_activation_table_matches_keras(name):
    """Every name jaxrnn accepts means the same function as in Keras."""
    x = jnp.linspace(-6.0, 6.0, 121, dtype=jnp.float32)
    ours = jaxrnn.ACTIVATIONS[name](x)
    theirs = keras.activations.get(name)(x)
    assert_close("activations", ours, np.asarray(theirs))


# ---------------------------------------------------------------------------
# 2. masks
# ---------------------------------------------------------------------------


def _right_padded(lengths, steps):
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def _keras_masked(layer, kind, x, mask, *, return_sequences, zero_output, initial_state=None):
    layer.return_sequences = return_sequences
    layer.return_state = True
    layer.zero_output_for_mask = zero_output
    kw = {} if initial_state is None else {"initial_state": keras_state(kind, initial_state)}
    return from_keras(kind, layer(x, mask=mask, **kw), True)


@pytest.mark.parametrize("via", ["mask", "seq_lengths"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "backwards"])
@pytest.mark.parametrize("kind", KINDS)
def test_right_padded_mask(kind, go_backwards, via):
    rng = np.random.default_rng(5)
    b, t, i, h = B, T, F, H
    lengths = np.array([6, 4, 1, 2], np.int32)
    mask = _right_padded(lengths, t)
    layer, fn, params = pair(kind, i, h, rng, steps=t, go_backwards=go_backwards)
    x = make_input(rng, (b, t, i))
    s0 = random_state(kind, rng, b, h)
    jkw = dict(go_backwards=go_backwards, return_state=True, initial_state=jax_state(kind, s0))
    if via == "mask":
        jkw["mask"] = jnp.asarray(mask)
    else:
        jkw["seq_lengths"] = jnp.asarray(lengths)

    # return_sequences=True: Keras with zero_output_for_mask=True is jaxrnn exactly
    k_seq, k_state = _keras_masked(
        layer, kind, x, mask, return_sequences=True, zero_output=True, initial_state=s0
    )
    seq, state = fn(params, jnp.asarray(x), return_sequences=True, **jkw)
    assert_close("masks", seq, k_seq)
    assert_state_close("masks", kind, state, k_state)
    # outputs are in processing order: masked steps are at the end going forwards
    # and at the start going backwards (Keras reverses the whole padded sequence)
    step_valid = mask[:, ::-1] if go_backwards else mask
    assert np.all(np.asarray(seq)[~step_valid] == 0)

    # Keras' default (repeat the previous output) agrees on every valid step
    k_rep, _ = _keras_masked(
        layer, kind, x, mask, return_sequences=True, zero_output=False, initial_state=s0
    )
    assert_close("masks", np.asarray(seq)[step_valid], k_rep[step_valid])

    # return_sequences=False: the last output (Keras default zero_output_for_mask)
    k_last, k_state2 = _keras_masked(
        layer, kind, x, mask, return_sequences=False, zero_output=False, initial_state=s0
    )
    last, state2 = fn(params, jnp.asarray(x), return_sequences=False, **jkw)
    assert_close("masks", last, k_last)
    assert_state_close("masks", kind, state2, k_state2)
    assert_close("masks", last, state2.h if kind == "lstm" else state2)


ARBITRARY_MASKS = {
    "left_padded": np.array(
        [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1], [0, 1, 1, 1, 1, 1]], bool
    ),
    "holes": np.array(
        [[1, 0, 1, 1, 0, 1], [0, 1, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0], [0, 0, 1, 0, 1, 1]], bool
    ),
}


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "backwards"])
@pytest.mark.parametrize("pattern", sorted(ARBITRARY_MASKS))
@pytest.mark.parametrize("kind", KINDS)
def test_arbitrary_mask(kind, pattern, go_backwards):
    rng = np.random.default_rng(6)
    mask = ARBITRARY_MASKS[pattern]
    b, t = mask.shape
    i, h = F, H
    layer, fn, params = pair(kind, i, h, rng, steps=t, go_backwards=go_backwards)
    x = make_input(rng, (b, t, i))
    s0 = random_state(kind, rng, b, h)
    jkw = dict(
        go_backwards=go_backwards,
        return_state=True,
        mask=jnp.asarray(mask),
        initial_state=jax_state(kind, s0),
    )

    k_seq, k_state = _keras_masked(
        layer, kind, x, mask, return_sequences=True, zero_output=True, initial_state=s0
    )
    seq, state = fn(params, jnp.asarray(x), return_sequences=True, **jkw)
    assert_close("masks", seq, k_seq)
    assert_state_close("masks", kind, state, k_state)

    k_last, k_state2 = _keras_masked(
        layer, kind, x, mask, return_sequences=False, zero_output=False, initial_state=s0
    )
    last, state2 = fn(params, jnp.asarray(x), return_sequences=False, **jkw)
    assert_close("masks", last, k_last)
    assert_state_close("masks", kind, state2, k_state2)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_fully_masked_sequence_zero_initial_state(kind):
    """A row with no valid step: zero outputs, zero state, zero last output."""
    rng = np.random.default_rng(7)
    lengths = np.array([6, 0, 3, 1], np.int32)
    mask = _right_padded(lengths, T)
    layer, fn, params = pair(kind, F, H, rng, steps=T)
    x = make_input(rng, (B, T, F))
    k_seq, k_state = _keras_masked(layer, kind, x, mask, return_sequences=True, zero_output=True)
    seq, state = fn(
        params,
        jnp.asarray(x),
        return_sequences=True,
        return_state=True,
        seq_lengths=jnp.asarray(lengths),
    )
    assert_close("masks", seq, k_seq)
    assert_state_close("masks", kind, state, k_state)
    k_last, _ = _keras_masked(layer, kind, x, mask, return_sequences=False, zero_output=False)
    last = fn(params, jnp.asarray(x), seq_lengths=jnp.asarray(lengths))
    assert_close("masks", last, k_last)
    assert np.all(np.asarray(last)[1] == 0)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_fully_masked_sequence_nonzero_initial_state(kind):
    """return_sequences=False, a row with no valid step and a non-zero initial state.

    Keras (default ``zero_output_for_mask=False``) returns the carried-through
    initial ``h`` for that row: its last output is the last step's output, which
    at a masked step repeats ``states[0]``. jaxrnn's last output is the final
    ``h``, the same thing.
    """
    rng = np.random.default_rng(8)
    lengths = np.array([6, 0, 3, 1], np.int32)
    mask = _right_padded(lengths, T)
    layer, fn, params = pair(kind, F, H, rng, steps=T)
    x = make_input(rng, (B, T, F))
    s0 = random_state(kind, rng, B, H)
    k_last, k_state = _keras_masked(
        layer, kind, x, mask, return_sequences=False, zero_output=False, initial_state=s0
    )
    last, state = fn(
        params,
        jnp.asarray(x),
        return_state=True,
        mask=jnp.asarray(mask),
        initial_state=jax_state(kind, s0),
    )
    assert_state_close("masks", kind, state, k_state)  # state: the initial one, as Keras
    assert_close("masks_empty_row_nonzero_init", last, k_last)


# ---------------------------------------------------------------------------
# 3. Bidirectional
# ---------------------------------------------------------------------------


def _keras_bidir_result(kind, res, merge_mode, return_state):
    """Keras' Bidirectional result as jaxrnn's ``out`` / ``(out, (fw_state, bw_state))``."""
    res = list(res) if isinstance(res, (list, tuple)) else [res]
    n_out = 2 if merge_mode is None else 1
    out = tuple(np.asarray(r) for r in res[:n_out])
    out = out if merge_mode is None else out[0]
    if not return_state:
        assert len(res) == n_out
        return out
    states = [np.asarray(s) for s in res[n_out:]]
    if kind == "lstm":
        assert len(states) == 4
        return out, (LSTMState(states[0], states[1]), LSTMState(states[2], states[3]))
    assert len(states) == 2
    return out, (states[0], states[1])


def _check_bidir_out(group, out, k_out, merge_mode):
    if merge_mode is None:
        assert isinstance(out, tuple) and len(out) == 2
        assert_close(group, out[0], k_out[0])
        assert_close(group, out[1], k_out[1])
    else:
        assert_close(group, out, k_out)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=lambda m: str(m))
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_bidirectional(kind, merge_mode, return_sequences, masked):
    rng = np.random.default_rng(9)
    b, t, i, h = B, T, F, H
    bi = keras.layers.Bidirectional(
        keras_layer(kind, h, return_sequences=return_sequences, return_state=True),
        merge_mode=merge_mode,
    )
    randomise(bi, (None, t, i), rng)
    p = jaxrnn.BidirectionalParams(
        to_params(kind, bi.forward_layer.get_weights()),
        to_params(kind, bi.backward_layer.get_weights()),
    )
    x = make_input(rng, (b, t, i))
    lengths = np.array([6, 2, 3, 1], np.int32)
    mask = _right_padded(lengths, t) if masked else None
    k_out, (k_fw, k_bw) = _keras_bidir_result(kind, bi(x, mask=mask), merge_mode, return_state=True)
    out, (fw, bw) = jaxrnn.bidirectional(
        jax_layer(kind),
        p,
        jnp.asarray(x),
        merge_mode=merge_mode,
        return_sequences=return_sequences,
        return_state=True,
        mask=None if mask is None else jnp.asarray(mask),
    )
    _check_bidir_out("bidirectional", out, k_out, merge_mode)
    assert_state_close("bidirectional", kind, fw, k_fw)
    assert_state_close("bidirectional", kind, bw, k_bw)
    if masked and return_sequences:
        # Keras' Bidirectional forces zero outputs at masked steps
        parts = out if merge_mode is None else (out,)
        for part in parts:
            assert np.all(np.asarray(part)[~mask] == 0)
    if masked:
        # the same with seq_lengths, and without return_state
        out2 = jaxrnn.bidirectional(
            jax_layer(kind),
            p,
            jnp.asarray(x),
            merge_mode=merge_mode,
            return_sequences=return_sequences,
            seq_lengths=jnp.asarray(lengths),
        )
        _check_bidir_out("bidirectional", out2, k_out, merge_mode)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_initial_state_and_no_return_state(kind):
    rng = np.random.default_rng(10)
    b, t, i, h = B, T, F, H
    bi = keras.layers.Bidirectional(
        keras_layer(kind, h, return_sequences=True), merge_mode="concat"
    )
    randomise(bi, (None, t, i), rng)
    p = jaxrnn.BidirectionalParams(
        to_params(kind, bi.forward_layer.get_weights()),
        to_params(kind, bi.backward_layer.get_weights()),
    )
    x = make_input(rng, (b, t, i))
    s_fw, s_bw = random_state(kind, rng, b, h), random_state(kind, rng, b, h)
    k_out = np.asarray(bi(x, initial_state=keras_state(kind, s_fw) + keras_state(kind, s_bw)))
    out = jaxrnn.bidirectional(
        jax_layer(kind),
        p,
        jnp.asarray(x),
        return_sequences=True,
        initial_state=(jax_state(kind, s_fw), jax_state(kind, s_bw)),
    )
    assert out.shape == (b, t, 2 * h)
    assert_close("bidirectional", out, k_out)


# ---------------------------------------------------------------------------
# 4. dropout: jaxrnn's masks injected into Keras
# ---------------------------------------------------------------------------

RATES = [(0.3, 0.0), (0.0, 0.4), (0.3, 0.4)]
NUM_GATES = {"rnn_tanh": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}


def _keras_mask(m, kind):
    """A jaxrnn mask in the form the Keras cell reads it."""
    if m is None:
        return None
    if m.ndim == 2:  # shared (B, D)
        return m
    if kind.startswith("rnn"):  # SimpleRNNCell always uses one shared mask
        assert m.shape[1] == 1
        return m[:, 0, :]
    return [m[:, g, :] for g in range(m.shape[1])]


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "backwards"])
@pytest.mark.parametrize("rates", RATES, ids=lambda r: f"d{r[0]}-rd{r[1]}")
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru", "gru_reset_before"])
def test_dropout_matches_keras_with_injected_masks(kind, rates, go_backwards):
    dropout, recurrent_dropout = rates
    rng = np.random.default_rng(11)
    b, t, i, h = B, T, F, H
    layer, fn, params = pair(
        kind,
        i,
        h,
        rng,
        steps=t,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
    )
    x = make_input(rng, (b, t, i))
    key = jax.random.key(1234)
    masks = jaxrnn.make_dropout_masks(
        key, (b,), i, h, NUM_GATES[kind], dropout=dropout, recurrent_dropout=recurrent_dropout
    )
    # the documented structure
    g = NUM_GATES[kind]
    if dropout:
        assert masks.input.shape == ((b, g, i) if recurrent_dropout else (b, i))
        assert np.any(np.asarray(masks.input) == 0)
    else:
        assert masks.input is None
    if recurrent_dropout:
        assert masks.recurrent.shape == (b, g, h)
        assert np.any(np.asarray(masks.recurrent) == 0)
    else:
        assert masks.recurrent is None

    cell = layer.cell
    k_in, k_rec = _keras_mask(masks.input, kind), _keras_mask(masks.recurrent, kind)
    calls = collections.Counter()

    def get_dropout_mask(step_input):
        calls["input"] += 1
        return k_in

    def get_recurrent_dropout_mask(step_input):
        calls["recurrent"] += 1
        return k_rec

    cell.get_dropout_mask = get_dropout_mask
    cell.get_recurrent_dropout_mask = get_recurrent_dropout_mask
    k_out, k_state = from_keras(kind, layer(x, training=True), True)
    assert calls["input"] > 0 and calls["recurrent"] > 0  # the patch was used

    out, state = fn(
        params,
        jnp.asarray(x),
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        key=key,
    )
    assert_close("dropout", out, k_out)
    assert_state_close("dropout", kind, state, k_state)

    # not vacuous: dropout changed the result; training=False is Keras' training=False
    plain = fn(
        params,
        jnp.asarray(x),
        return_sequences=True,
        go_backwards=go_backwards,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        key=key,
        training=False,
    )
    assert np.max(np.abs(np.asarray(plain) - np.asarray(out))) > 1e-3
    k_plain = from_keras(kind, layer(x, training=False), True)[0]
    assert_close("dropout", plain, k_plain)


# ---------------------------------------------------------------------------
# 5. stacked models
# ---------------------------------------------------------------------------


def _dense(x, w, b):
    return x @ w + b


def test_stacked_simple_rnn_sequential():
    rng = np.random.default_rng(12)
    model = keras.Sequential(
        [
            keras.Input((7, 1)),
            keras.layers.SimpleRNN(20, return_sequences=True, **ZEROS_INIT),
            keras.layers.SimpleRNN(20, return_sequences=True, **ZEROS_INIT),
            keras.layers.SimpleRNN(20, **ZEROS_INIT),
            keras.layers.Dense(1, kernel_initializer="zeros"),
        ]
    )
    layers = model.layers
    for layer in layers:
        weights = layer.get_weights()
        layer.set_weights(
            [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in weights]
        )
    x = make_input(rng, (4, 7, 1))
    k_out = np.asarray(model(x))
    params = [to_params("rnn_tanh", layer.get_weights()) for layer in layers[:3]]
    w, b = (jnp.asarray(v) for v in layers[3].get_weights())
    feats, finals = jaxrnn.stacked(jaxrnn.simple_rnn, params, jnp.asarray(x), return_state=True)
    out = _dense(feats, w, b)
    assert out.shape == (4, 1)
    assert_close("stacked", out, k_out)
    assert len(finals) == 3
    assert_close("stacked", finals[-1], feats)


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_stacked_lstm_two_layers(return_sequences):
    rng = np.random.default_rng(13)
    l1 = keras_layer("lstm", H, return_sequences=True, return_state=True)
    l2 = keras_layer("lstm", H, return_sequences=return_sequences, return_state=True)
    randomise(l1, (None, T, F), rng)
    randomise(l2, (None, T, H), rng)
    x = make_input(rng, (B, T, F))
    s1 = random_state("lstm", rng, B, H)
    s2 = random_state("lstm", rng, B, H)
    y1, h1, c1 = l1(x, initial_state=keras_state("lstm", s1))
    y2, h2, c2 = l2(y1, initial_state=keras_state("lstm", s2))
    params = [to_params("lstm", l1.get_weights()), to_params("lstm", l2.get_weights())]
    out, finals = jaxrnn.stacked(
        jaxrnn.lstm,
        params,
        jnp.asarray(x),
        return_sequences=return_sequences,
        return_state=True,
        initial_state=[jax_state("lstm", s1), jax_state("lstm", s2)],
    )
    assert_close("stacked", out, np.asarray(y2))
    assert_state_close("stacked", "lstm", finals[0], LSTMState(np.asarray(h1), np.asarray(c1)))
    assert_state_close("stacked", "lstm", finals[1], LSTMState(np.asarray(h2), np.asarray(c2)))


def test_stacked_lstm_sequential_with_masking_layer():
    """Keras' Masking layer propagates the mask through both LSTMs."""
    rng = np.random.default_rng(14)
    model = keras.Sequential(
        [
            keras.Input((T, F)),
            keras.layers.Masking(mask_value=0.0),
            keras_layer("lstm", H, return_sequences=True),
            keras_layer("lstm", H),
            keras.layers.Dense(2, kernel_initializer="zeros"),
        ]
    )
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights(
                [(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in weights]
            )
    lengths = np.array([6, 3, 1, 5], np.int32)
    x = make_input(rng, (B, T, F)) * _right_padded(lengths, T)[..., None]
    k_out = np.asarray(model(x))
    l1, l2, dense = model.layers[1:]
    params = [to_params("lstm", l1.get_weights()), to_params("lstm", l2.get_weights())]
    feats = jaxrnn.stacked(jaxrnn.lstm, params, jnp.asarray(x), seq_lengths=jnp.asarray(lengths))
    out = _dense(feats, *(jnp.asarray(v) for v in dense.get_weights()))
    assert_close("stacked", out, k_out)


# ---------------------------------------------------------------------------
# 6. tutorial shapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("shape", [(2, 1, 3), (1, 4, 2)], ids=["2x1x3", "1x4x2"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_tutorial_shapes(kind, shape, return_sequences):
    rng = np.random.default_rng(15)
    b, t, i = shape
    h = H
    layer, fn, params = pair(kind, i, h, rng, steps=t, return_sequences=return_sequences)
    x = make_input(rng, shape)
    k_out = np.asarray(layer(x))
    out = fn(params, jnp.asarray(x), return_sequences=return_sequences)
    assert out.shape == k_out.shape == ((b, t, h) if return_sequences else (b, h))
    assert_close("tutorial_shapes", out, k_out)


# ---------------------------------------------------------------------------
# 7. gradients: jax.grad through jaxrnn vs through Keras' stateless_call
# ---------------------------------------------------------------------------


def _params_to_keras_order(kind, g):
    """jaxrnn parameter gradients in the order of ``layer.trainable_variables``."""
    out = [g.kernel, g.recurrent_kernel]
    if kind == "gru":
        if g.bias is not None:
            out.append(jnp.stack([g.bias, g.recurrent_bias]))
    elif g.bias is not None:
        out.append(g.bias)
    return out


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before"])
def test_gradients_match_keras(kind, masked):
    rng = np.random.default_rng(16)
    b, t, i, h = B, T, F, H
    layer, fn, params = pair(kind, i, h, rng, steps=t, return_sequences=True)
    x = jnp.asarray(make_input(rng, (b, t, i)))
    weights = jnp.asarray(make_input(rng, (b, t, h)))
    mask = jnp.asarray(_right_padded([6, 3, 1, 4], t)) if masked else None
    names = [v.path.split("/")[-1] for v in layer.trainable_variables]
    assert names == ["kernel", "recurrent_kernel", "bias"]
    layer.zero_output_for_mask = True

    def keras_loss(tv, x):
        out, _ = layer.stateless_call(
            tv, [v.value for v in layer.non_trainable_variables], x, mask=mask
        )
        return jnp.sum(jnp.tanh(out) * weights)

    def jax_loss(p, x):
        out = fn(p, x, return_sequences=True, mask=mask)
        return jnp.sum(jnp.tanh(out) * weights)

    tv = [v.value for v in layer.trainable_variables]
    k_val, (k_gw, k_gx) = jax.value_and_grad(keras_loss, argnums=(0, 1))(tv, x)
    val, (gp, gx) = jax.value_and_grad(jax_loss, argnums=(0, 1))(params, x)
    assert_close("gradients", val, k_val)
    for ours, theirs in zip(_params_to_keras_order(kind, gp), k_gw, strict=True):
        assert_close("gradients", ours, np.asarray(theirs))
    assert_close("gradients", gx, np.asarray(k_gx))
    assert float(jnp.max(jnp.abs(gp.recurrent_kernel))) > 0


# ---------------------------------------------------------------------------
# the compiled path (no jax.disable_jit): jitted jaxrnn vs Keras' compiled scan
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_jit_compiled_matches_keras(kind):
    assert jax.config.jax_disable_jit is False
    rng = np.random.default_rng(17)
    b, t, i, h = B, T, F, H
    mask = _right_padded([6, 3, 2, 1], t)
    layer, fn, params = pair(kind, i, h, rng, steps=t, go_backwards=True)
    x = make_input(rng, (b, t, i))
    s0 = random_state(kind, rng, b, h)
    k_seq, k_state = _keras_masked(
        layer, kind, x, mask, return_sequences=True, zero_output=True, initial_state=s0
    )

    @jax.jit
    def run(p, x, m, s):
        return fn(
            p,
            x,
            return_sequences=True,
            return_state=True,
            go_backwards=True,
            mask=m,
            initial_state=s,
        )

    seq, state = run(params, jnp.asarray(x), jnp.asarray(mask), jax_state(kind, s0))
    assert_close("compiled", seq, k_seq)
    assert_state_close("compiled", kind, state, k_state)

    if kind in ("lstm", "gru"):
        weights = jnp.asarray(make_input(rng, (b, t, h)))

        @jax.jit
        def keras_grad(tv, x):
            def loss(tv):
                out, _ = layer.stateless_call(tv, ntv, x)
                return jnp.sum(out * weights)

            return jax.grad(loss)(tv)

        @jax.jit
        def jax_grad(p, x):
            def loss(p):
                out = fn(p, x, return_sequences=True, go_backwards=True)
                return jnp.sum(out * weights)

            return jax.grad(loss)(p)

        layer.return_state = False
        ntv = [v.value for v in layer.non_trainable_variables]
        k_g = keras_grad([v.value for v in layer.trainable_variables], jnp.asarray(x))
        g = jax_grad(params, jnp.asarray(x))
        for ours, theirs in zip(_params_to_keras_order(kind, g), k_g, strict=True):
            assert_close("compiled", ours, np.asarray(theirs))
