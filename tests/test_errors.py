"""Every bad input gets a clear error: type, key words of the message, under jit too."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import pytest

import jaxrnn
from jaxrnn import BidirectionalParams, LSTMState

K = jax.random.key(0)
LP = jaxrnn.init_lstm(K, 3, 4)
GP = jaxrnn.init_gru(K, 3, 4)
RP = jaxrnn.init_rnn(K, 3, 4)
X = jnp.ones((2, 5, 3))
S = jaxrnn.zero_state(LP, (2,))

# (id, call, exception, words that must all appear in the message)
CASES = [
    (
        "2d-input-stacking-hint",
        lambda: jaxrnn.lstm(LP, jnp.ones((2, 3))),
        ValueError,
        ["lstm", "(batch, time, features)", "x.shape=(2, 3)", "return_sequences=True"],
    ),
    (
        "1d-input",
        lambda: jaxrnn.simple_rnn(RP, jnp.ones(3)),
        ValueError,
        ["simple_rnn", "3-D", "x.shape=(3,)", "reshape(1, -1, 1)"],
    ),
    (
        "4d-input",
        lambda: jaxrnn.gru(GP, jnp.ones((2, 2, 5, 3))),
        ValueError,
        ["gru", "3-D", "(2, 2, 5, 3)", "vmap"],
    ),
    (
        "features-mismatch-layer",
        lambda: jaxrnn.lstm(LP, jnp.ones((2, 5, 7))),
        ValueError,
        ["lstm", "7 features", "(2, 5, 7)", "expects 3", "kernel.shape=(3, 16)", "input_size=7"],
    ),
    (
        "features-mismatch-step",
        lambda: jaxrnn.lstm_step(LP, S, jnp.ones((2, 5))),
        ValueError,
        ["lstm_step", "5 features", "expects 3"],
    ),
    (
        "hidden-mismatch-step",
        lambda: jaxrnn.gru_step(GP, jnp.zeros((2, 6)), jnp.ones((2, 3))),
        ValueError,
        ["gru_step", "carry.shape=(2, 6)", "hidden_size=4", "zero_state"],
    ),
    (
        "lstm-carry-tuple",
        lambda: jaxrnn.lstm_step(LP, (S.h, S.c), jnp.ones((2, 3))),
        TypeError,
        ["lstm_step", "LSTMState(h, c)", "tuple", "(c, h)"],
    ),
    (
        "lstm-initial-state-list",
        lambda: jaxrnn.lstm(LP, X, initial_state=[S.h, S.c]),
        TypeError,
        ["lstm", "initial_state", "LSTMState", "list"],
    ),
    (
        "gru-initial-state-tuple",
        lambda: jaxrnn.gru(GP, X, initial_state=(S.h,)),
        TypeError,
        ["gru", "initial_state", "one array", "(2, 4)"],
    ),
    (
        "initial-state-batch",
        lambda: jaxrnn.gru(GP, X, initial_state=jnp.zeros((3, 4))),
        ValueError,
        ["gru", "initial_state.shape=(3, 4)", "(2, 4)"],
    ),
    (
        "initial-state-hidden",
        lambda: jaxrnn.lstm(LP, X, initial_state=LSTMState(jnp.zeros((2, 5)), S.c)),
        ValueError,
        ["lstm", "initial_state.h.shape=(2, 5)", "hidden_size=4"],
    ),
    (
        "carry-dtype",
        lambda: jaxrnn.rnn_step(RP, jnp.zeros(4, jnp.bfloat16), jnp.ones(3)),
        TypeError,
        ["rnn_step", "carry", "bfloat16", "float32", "astype"],
    ),
    (
        "int-input",
        lambda: jaxrnn.lstm(LP, jnp.ones((2, 5, 3), jnp.int32)),
        TypeError,
        ["lstm", "int32", "floating-point", "one_hot"],
    ),
    (
        "bool-input-step",
        lambda: jaxrnn.rnn_step(RP, jnp.zeros(4), jnp.ones(3, bool)),
        TypeError,
        ["rnn_step", "bool", "floating-point"],
    ),
    (
        "mixed-param-dtypes",
        lambda: jaxrnn.lstm(LP._replace(bias=LP.bias.astype(jnp.bfloat16)), X),
        TypeError,
        ["lstm", "mix dtypes", "bias=bfloat16", "kernel=float32"],
    ),
    (
        "int-params",
        lambda: jaxrnn.rnn_step(
            jax.tree.map(lambda a: a.astype(jnp.int32), RP), jnp.zeros(4), jnp.ones(3)
        ),
        TypeError,
        ["rnn_step", "params.kernel", "int32", "floating point"],
    ),
    (
        "transposed-kernel",
        lambda: jaxrnn.lstm(LP._replace(recurrent_kernel=LP.recurrent_kernel.T), X),
        ValueError,
        ["lstm", "recurrent_kernel", "(16, 4)"],
    ),
    (
        "bias-shape",
        lambda: jaxrnn.gru(GP._replace(recurrent_bias=jnp.zeros((2, 12))), X),
        ValueError,
        ["gru", "params.recurrent_bias.shape=(2, 12)", "(12,)"],
    ),
    (
        "lengths-float",
        lambda: jaxrnn.lstm(LP, X, seq_lengths=jnp.array([1.0, 2.0])),
        TypeError,
        ["lstm", "seq_lengths", "float32", "integer"],
    ),
    (
        "lengths-shape",
        lambda: jaxrnn.lstm(LP, X, seq_lengths=jnp.array([1, 2, 3])),
        ValueError,
        ["lstm", "seq_lengths.shape=(3,)", "(2,)", "one length per sequence"],
    ),
    (
        "mask-dtype",
        lambda: jaxrnn.gru(GP, X, mask=jnp.ones((2, 5))),
        TypeError,
        ["gru", "mask", "float32", "boolean"],
    ),
    (
        "mask-shape",
        lambda: jaxrnn.gru(GP, X, mask=jnp.ones((5, 2), bool)),
        ValueError,
        ["gru", "mask.shape=(5, 2)", "(2, 5)", "(batch, time)"],
    ),
    (
        "mask-and-lengths",
        lambda: jaxrnn.gru(GP, X, mask=jnp.ones((2, 5), bool), seq_lengths=jnp.array([1, 2])),
        ValueError,
        ["gru", "seq_lengths or mask, not both"],
    ),
    ("unroll-zero", lambda: jaxrnn.lstm(LP, X, unroll=0), ValueError, ["lstm", "unroll=0", ">= 1"]),
    (
        "unroll-driver",
        lambda: jaxrnn.unroll(jaxrnn.lstm_step, LP, X, S, unroll=-2),
        ValueError,
        ["unroll=-2"],
    ),
    (
        "unknown-activation",
        lambda: jaxrnn.simple_rnn(RP, X, activation="tanhh"),
        ValueError,
        ["simple_rnn", "activation='tanhh'", "tanh", "callable"],
    ),
    (
        "unknown-recurrent-activation",
        lambda: jaxrnn.lstm_step(LP, S, X[:, 0], recurrent_activation="sigmod"),
        ValueError,
        ["lstm_step", "recurrent_activation='sigmod'", "sigmoid"],
    ),
    (
        "unknown-merge-mode",
        lambda: jaxrnn.bidirectional(jaxrnn.lstm, BidirectionalParams(LP, LP), X, merge_mode="avg"),
        ValueError,
        ["bidirectional", "merge_mode='avg'", "'ave'", "None"],
    ),
    (
        "bidirectional-params",
        lambda: jaxrnn.bidirectional(jaxrnn.lstm, (LP, LP), X),
        TypeError,
        ["bidirectional", "BidirectionalParams"],
    ),
    (
        "bidirectional-state-parts",
        lambda: jaxrnn.bidirectional(jaxrnn.lstm, BidirectionalParams(LP, LP), X, initial_state=S),
        ValueError,
        ["bidirectional", "pair", "LSTMState"],
    ),
    (
        "dropout-range",
        lambda: jaxrnn.lstm(LP, X, dropout=1.0, key=K),
        ValueError,
        ["lstm", "dropout=1.0", "[0, 1)"],
    ),
    (
        "recurrent-dropout-range",
        lambda: jaxrnn.gru(GP, X, recurrent_dropout=-0.1),
        ValueError,
        ["gru", "recurrent_dropout=-0.1", "[0, 1)"],
    ),
    (
        "dropout-without-key",
        lambda: jaxrnn.lstm(LP, X, dropout=0.2),
        ValueError,
        ["lstm", "dropout=0.2", "key is None", "key=jax.random.key", "training=False"],
    ),
    (
        "recurrent-dropout-without-key-training",
        lambda: jaxrnn.gru(GP, X, recurrent_dropout=0.3, training=True),
        ValueError,
        ["gru", "recurrent_dropout=0.3", "key is None", "training=key is not None"],
    ),
    (
        "stacked-dropout-without-key",
        lambda: jaxrnn.stacked(jaxrnn.simple_rnn, [RP], X, dropout=0.1),
        ValueError,
        ["simple_rnn", "dropout=0.1", "key is None"],
    ),
    (
        "training-not-bool",
        lambda: jaxrnn.lstm(LP, X, training="yes"),
        TypeError,
        ["lstm", "training must be True, False or None", "str"],
    ),
    (
        "stacked-states",
        lambda: jaxrnn.stacked(jaxrnn.lstm, [LP], X, initial_state=[S, S]),
        ValueError,
        ["stacked", "2 entries", "1 layers"],
    ),
    (
        "stacked-second-layer-size",
        lambda: jaxrnn.stacked(jaxrnn.lstm, [LP, LP], X),
        ValueError,
        ["lstm", "4 features", "expects 3"],
    ),
    ("stacked-empty", lambda: jaxrnn.stacked(jaxrnn.lstm, [], X), ValueError, ["stacked", "empty"]),
    (
        "zero-state-type",
        lambda: jaxrnn.zero_state({"w": 1}, (2,)),
        TypeError,
        ["zero_state", "dict", "jnp.zeros"],
    ),
    (
        "unroll-rank",
        lambda: jaxrnn.unroll(jaxrnn.lstm_step, LP, jnp.ones((5, 3)), S),
        ValueError,
        ["unroll", "(5, 3)", "time_major"],
    ),
    # params that are not the cell's NamedTuple: say what it is and how to get the NamedTuple
    (
        "params-nnx-module",
        lambda: jaxrnn.lstm(_nnx_lstm(), X),
        TypeError,
        ["lstm", "params must be jaxrnn.LSTMParams", "module LSTM", "module.params"],
    ),
    (
        "params-nnx-state",
        lambda: jaxrnn.lstm(_nnx_state(), X),
        TypeError,
        ["lstm", "nnx.State", "model.params"],
    ),
    (
        "params-linen-variables",
        lambda: jaxrnn.gru(_linen_variables(), X),
        TypeError,
        [
            "gru",
            "params must be jaxrnn.GRUParams",
            "Linen variables",
            "jaxrnn.linen.to_params(variables)",
        ],
    ),
    (
        "params-linen-params-entry",
        lambda: jaxrnn.gru(_linen_variables()["params"], X),
        TypeError,
        ["gru", "jaxrnn.linen.to_params"],
    ),
    (
        "params-torch-list",
        lambda: jaxrnn.lstm(_torch_params(), X),
        TypeError,
        ["lstm", "list of one parameter set", "conv.params[0]", "conv(x)"],
    ),
    (
        "params-list-of-layers",
        lambda: jaxrnn.lstm([LP, LP], X),
        TypeError,
        ["lstm", "list of 2 entries", "jaxrnn.stacked(jaxrnn.lstm, params, x)"],
    ),
    (
        "params-keras-weights-list",
        lambda: jaxrnn.lstm([LP.kernel, LP.recurrent_kernel, LP.bias], X),
        TypeError,
        ["lstm", "list of 3 arrays", "from_keras(weights)"],
    ),
    (
        "params-bidirectional",
        lambda: jaxrnn.lstm(BidirectionalParams(LP, LP), X),
        TypeError,
        ["lstm", "bidirectional parameters", "jaxrnn.bidirectional(jaxrnn.lstm, params, x)"],
    ),
    (
        "params-other-cell",
        lambda: jaxrnn.lstm(GP, X),
        TypeError,
        ["lstm", "params is GRUParams", "jaxrnn.gru", "init_lstm"],
    ),
    (
        "params-step-module",
        lambda: jaxrnn.lstm_step(_nnx_lstm(), S, X[:, 0]),
        TypeError,
        ["lstm_step", "module.params"],
    ),
    (
        "stacked-single-params",
        lambda: jaxrnn.stacked(jaxrnn.lstm, LP, X),
        TypeError,
        ["stacked", "one parameter set per layer", "single LSTMParams", "[params]"],
    ),
    # integer input of any rank is token ids: the embedding / one_hot hint, not the rank hint
    (
        "int-input-2d-tokens",
        lambda: jaxrnn.lstm(LP, jnp.ones((2, 5), jnp.int32)),
        TypeError,
        [
            "lstm",
            "integer dtype int32",
            "shape (2, 5)",
            "token ids",
            "E[x]",
            "jax.nn.one_hot(x, vocab_size)",
        ],
    ),
    (
        "int-input-step",
        lambda: jaxrnn.gru_step(GP, jnp.zeros((2, 4)), jnp.ones((2,), jnp.int32)),
        TypeError,
        ["gru_step", "integer dtype", "one_hot"],
    ),
    # switches must be booleans: the string "False" is truthy
    (
        "return-sequences-string",
        lambda: jaxrnn.lstm(LP, X, return_sequences="False"),
        TypeError,
        ["lstm", "return_sequences must be True or False", "'False'", "str"],
    ),
    (
        "return-state-int",
        lambda: jaxrnn.gru(GP, X, return_state=1),
        TypeError,
        ["gru", "return_state must be True or False", "int"],
    ),
    (
        "go-backwards-string",
        lambda: jaxrnn.simple_rnn(RP, X, go_backwards="True"),
        TypeError,
        ["simple_rnn", "go_backwards must be True or False"],
    ),
    (
        "bidirectional-return-sequences-string",
        lambda: jaxrnn.bidirectional(
            jaxrnn.gru, BidirectionalParams(GP, GP), X, return_sequences="no"
        ),
        TypeError,
        ["gru", "return_sequences must be True or False"],
    ),
    # the carry of unroll must have the inputs' batch
    (
        "unroll-carry-batch",
        lambda: jaxrnn.unroll(jaxrnn.lstm_step, LP, X, jaxrnn.zero_state(LP, 4)),
        ValueError,
        [
            "unroll",
            "carry.h.shape=(4, 4)",
            "batch shape (2,)",
            "expected (2, 4)",
            "zero_state(params, (2,))",
        ],
    ),
    (
        "unroll-carry-unbatched",
        lambda: jaxrnn.unroll(jaxrnn.gru_step, GP, X, jaxrnn.zero_state(GP)),
        ValueError,
        ["unroll", "carry.shape=(4,)", "batch shape (2,)", "zero_state(params, (2,))"],
    ),
    (
        "unroll-carry-batch-own-step",
        lambda: jaxrnn.unroll(lambda p, c, x: (c, x), None, X, {"m": jnp.zeros((3, 7))}),
        ValueError,
        ["unroll", "carry['m'].shape=(3, 7)", "expected (2, 7)"],
    ),
    (
        "impl-fast-forward-mode",
        lambda: jax.jvp(lambda x: jaxrnn.gru(GP, x, impl="fast"), (X,), (X,)),
        ValueError,
        ["gru", "impl='fast'", "forward-mode autodiff", "impl='scan'"],
    ),
]


def _nnx_lstm():
    from flax import nnx

    import jaxrnn.nnx

    return jaxrnn.nnx.LSTM(3, 4, rngs=nnx.Rngs(0))


def _nnx_state():
    from flax import nnx

    return nnx.state(_nnx_lstm())


def _linen_variables():
    import jaxrnn.linen

    return jaxrnn.linen.GRU(4).init(K, X)


def _torch_params():
    import torch

    from jaxrnn.interop import from_torch

    return from_torch(torch.nn.LSTM(3, 4, batch_first=True)).params


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_message(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"


def test_errors_raise_at_trace_time_under_jit():
    """Shape checks use static shapes: under jit the same clear error, before any XLA work."""
    f = jax.jit(functools.partial(jaxrnn.lstm, return_sequences=True))
    with pytest.raises(ValueError, match=re.escape("return_sequences=True")):
        f(LP, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="5 features"):
        jax.jit(jaxrnn.lstm_step)(LP, S, jnp.ones((2, 5)))
