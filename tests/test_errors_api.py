"""Bad input across the whole API (modules, losses, training, sweeps, checkpoints, interop).

One row per case: the call, the exception type and the words its message must
contain (the argument, actual vs expected, the fix). tests/test_errors.py holds
the rows of the functional core.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxrnn
import jaxrnn.linen as jl
import jaxrnn.nnx as jn
from jaxrnn import checkpoint, interop, losses, resets, sweep, tbptt, train

K = jax.random.key(0)
LP = jaxrnn.init_lstm(K, 3, 4)
GP = jaxrnn.init_gru(K, 3, 4)
X = np.ones((2, 5, 3), np.float32)
Y3 = jnp.ones((2, 5, 1))


def _loss(p, x, y, key):
    return jnp.mean(p.kernel)


def _fit_small(**kwargs):
    """``fit`` on the small batch ``X`` with two targets and Adam, plus ``kwargs``."""
    return train.fit(_loss, LP, optax.adam(1e-3), X, np.ones((2, 1)), key=K, **kwargs)


def _restore_other_arch(tmp):
    checkpoint.save(tmp / "a.ckpt", LP)
    checkpoint.restore(tmp / "a.ckpt", jaxrnn.init_lstm(K, 3, 5))


def _restore_truncated(tmp):
    checkpoint.save(tmp / "b.ckpt", LP)
    with open(tmp / "b.ckpt", "r+b") as f:
        f.truncate(40)
    checkpoint.restore(tmp / "b.ckpt", LP)


def _restore_corrupted(tmp):
    checkpoint.save(tmp / "c.ckpt", LP)
    data = bytearray((tmp / "c.ckpt").read_bytes())
    data[-40] ^= 0xFF  # one flipped byte in the payload
    (tmp / "c.ckpt").write_bytes(bytes(data))
    checkpoint.restore(tmp / "c.ckpt", LP)


def _restore_foreign(tmp):
    (tmp / "d.ckpt").write_bytes(b"hello world" * 10)
    checkpoint.restore(tmp / "d.ckpt", LP)


def _fit_tiny(x=None, y=None, **kw):
    """fit on two tiny examples; x, y and kw replace the defaults."""
    x = np.ones((2, 3), np.float32) if x is None else x
    y = np.ones((2,), np.float32) if y is None else y
    loss = lambda p, x, y, key: jnp.mean(x @ p - y)  # noqa: E731
    train.fit(loss, jnp.zeros(3), "sgd", x, y, key=K, verbose=0, **kw)


def _save_into_missing_dir(tmp):
    checkpoint.save(tmp / "runs" / "e.ckpt", LP)


def _save_into_a_file(tmp):
    (tmp / "notes.txt").write_text("")
    checkpoint.save(tmp / "notes.txt" / "e.ckpt", LP)


def _restore_missing_file(tmp):
    checkpoint.save(tmp / "run-1.ckpt", LP)
    checkpoint.restore(tmp / "run-2.ckpt", LP)


# (id, call(tmp_path), exception, words that must all appear in the message)
CASES = [
    (
        "nnx-unknown-activation",
        lambda t: jn.LSTM(3, 4, rngs=nnx.Rngs(0), activation="swishy"),
        ValueError,
        ["jaxrnn.nnx.LSTM", "activation='swishy'", "tanh", "callable"],
    ),
    (
        "nnx-dropout-range",
        lambda t: jn.GRU(3, 4, rngs=nnx.Rngs(0), dropout=1.5),
        ValueError,
        ["jaxrnn.nnx.GRU", "dropout=1.5", "[0, 1)"],
    ),
    (
        "nnx-wrong-features",
        lambda t: jn.LSTM(3, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 7))),
        ValueError,
        ["7 features", "(2, 5, 7)", "in_features=3"],
    ),
    (
        "nnx-2d-input",
        lambda t: jn.SimpleRNN(3, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 3))),
        ValueError,
        ["3-D", "x.shape=(2, 3)", "return_sequences=True"],
    ),
    (
        "nnx-stateful-batch",
        lambda t: jn.LSTM(3, 4, rngs=nnx.Rngs(0), stateful=True, batch_size=2)(jnp.ones((3, 5, 3))),
        ValueError,
        ["stateful", "batch_size=2", "batch size 3"],
    ),
    (
        "nnx-merge-mode",
        lambda t: jn.Bidirectional(
            jn.LSTM(3, 4, rngs=nnx.Rngs(0)), merge_mode="max", rngs=nnx.Rngs(1)
        ),
        ValueError,
        ["Bidirectional", "merge_mode='max'", "'concat'"],
    ),
    (
        "linen-dropout-needs-deterministic",
        lambda t: jl.LSTM(4, dropout=0.2).init(K, X),
        ValueError,
        ["jaxrnn.linen.LSTM", "deterministic=True", "rngs={'dropout'"],
    ),
    (
        "linen-stateful-needs-mutable",
        lambda t: (lambda m: m.apply(m.init(K, X), X))(jl.LSTM(4, stateful=True)),
        ValueError,
        ["stateful", "mutable=['state']"],
    ),
    (
        "loss-shapes-differ",
        lambda t: losses.mse(Y3, jnp.ones((2, 5))),
        ValueError,
        ["mse", "y_true.shape=(2, 5)", "y_pred.shape=(2, 5, 1)", "y_true[..., None]"],
    ),
    (
        "loss-lengths-shape",
        lambda t: losses.mse(Y3, Y3, seq_lengths=jnp.ones((3,), int)),
        ValueError,
        ["mse", "seq_lengths.shape=(3,)", "expected (2,)"],
    ),
    (
        "loss-reduction",
        lambda t: losses.mse(Y3, Y3, reduction="avg"),
        ValueError,
        ["reduction='avg'", "'mean'", "'sum'"],
    ),
    (
        "fit-x-y-lengths",
        lambda t: train.fit(_loss, LP, optax.adam(1e-3), X, np.ones((3, 1)), key=K),
        ValueError,
        ["fit", "x has 2", "y has 3", "first axis"],
    ),
    (
        "fit-empty-batch",
        lambda t: train.fit(_loss, LP, optax.adam(1e-3), X[:0], np.ones((0, 1)), key=K),
        ValueError,
        ["fit", "no examples", "(0, 5, 3)", "at least 1", "split"],
    ),
    (
        "fit-empty-validation",
        lambda t: _fit_small(validation_data=(X[:0], np.ones((0, 1)))),
        ValueError,
        ["fit", "val_x and val_y hold no examples"],
    ),
    (
        "fit-batch-size",
        lambda t: train.fit(_loss, LP, optax.adam(1e-3), X, np.ones((2, 1)), key=K, batch_size=0),
        ValueError,
        ["batch_size=0", ">= 1"],
    ),
    (
        "fit-unknown-monitor",
        lambda t: _fit_small(early_stopping=train.EarlyStopping("val_acc")),
        ValueError,
        ["monitor='val_acc'", "available", "validation_data"],
    ),
    (
        "optimizer-name",
        lambda t: train.get_optimizer("adamm"),
        ValueError,
        ["'adamm'", "adam", "optax.adam"],
    ),
    (
        "clipnorm-negative",
        lambda t: train.make_train_step(_loss, optax.adam(1e-3), clipnorm=-1.0),
        ValueError,
        ["clipnorm=-1.0", "positive"],
    ),
    (
        "tbptt-window-divides-T",
        lambda t: tbptt.windows(jnp.ones((2, 10, 1)), 3),
        ValueError,
        ["window=3", "T=10", "[1, 2, 5, 10]", "x[:, :9]"],
    ),
    (
        "resets-shape",
        lambda t: resets.unroll_with_resets(
            jaxrnn.lstm_step,
            LP,
            jnp.ones((2, 5, 3)),
            jaxrnn.zero_state(LP, 2),
            jnp.zeros((2, 4), bool),
        ),
        ValueError,
        ["resets.shape=(2, 4)", "expected (2, 5)"],
    ),
    (
        "sweep-unequal-columns",
        lambda t: sweep.sweep(
            lambda hp: (hp["lr"], hp["lr"]), {"lr": [1e-3, 1e-2], "seed": [0, 1, 2]}
        ),
        ValueError,
        ["unequal lengths", "lr=2", "seed=3", "grid("],
    ),
    (
        "sweep-empty-table",
        lambda t: sweep.sweep(lambda hp: (hp["lr"], hp["lr"]), {}),
        ValueError,
        ["empty"],
    ),
    (
        "sweep-non-scalar",
        lambda t: sweep.sweep(lambda hp: (hp["lr"], hp["lr"]), {"lr": [[1e-3, 1e-2]]}),
        ValueError,
        ["'lr'", "(1, 2)", "1-D"],
    ),
    (
        "checkpoint-other-architecture",
        _restore_other_arch,
        ValueError,
        ["does not fit the target", "recurrent_kernel", "(4, 16)", "(5, 20)"],
    ),
    ("checkpoint-truncated", _restore_truncated, ValueError, ["b.ckpt", "truncated"]),
    ("checkpoint-corrupted", _restore_corrupted, ValueError, ["c.ckpt"]),
    (
        "checkpoint-foreign-file",
        _restore_foreign,
        ValueError,
        ["d.ckpt", "not a jaxrnn checkpoint", "jaxrnn.checkpoint.save"],
    ),
    (
        "torch-lstm-projection",
        lambda t: interop.from_torch(
            {
                "weight_ih_l0": np.ones((16, 3)),
                "weight_hh_l0": np.ones((16, 2)),
                "weight_hr_l0": np.ones((2, 4)),
            }
        ),
        ValueError,
        ["weight_hr_l0", "proj_size=2", "proj_size=0"],
    ),
    (
        "torch-reset-before-gru",
        lambda t: interop.to_torch(GP._replace(recurrent_bias=None), reset_after=False),
        ValueError,
        ["reset-before", "reset-after", "nn.GRU"],
    ),
    (
        "keras-weights-shapes",
        lambda t: interop.from_keras([np.ones((3, 8)), np.ones((5, 8))]),
        ValueError,
        ["from_keras", "(3, 8)", "(5, 8)"],
    ),
    (
        "flax-gru-candidate-bias",
        lambda t: interop.to_flax(GP._replace(recurrent_bias=jnp.ones(12)), "nnx.GRUCell"),
        ValueError,
        ["nnx.GRUCell", "b_hn", "linen.GRUCell"],
    ),
    (
        "haiku-rnn-activation",
        lambda t: interop.to_haiku(jaxrnn.init_rnn(K, 3, 4), name="vanilla_rnn", activation="tanh"),
        ValueError,
        ["hk.VanillaRNN", "relu", "activation='tanh'"],
    ),
    (
        "bidirectional-state-parts",
        lambda t: jaxrnn.bidirectional(
            jaxrnn.lstm,
            jaxrnn.BidirectionalParams(LP, LP),
            X,
            initial_state=(jaxrnn.zero_state(LP, 2),),
        ),
        ValueError,
        ["initial_state", "pair", "1 part"],
    ),
    (
        "fit-loss-without-key",
        lambda t: train.fit(
            lambda p, x, y: jnp.mean(p.kernel), LP, "sgd", X, np.ones((2, 1)), key=K
        ),
        TypeError,
        [
            "fit: loss_fn <lambda>(p, x, y)",
            "3 positional",
            "(params, x, y, key)",
            "None in evaluation",
            "ignore it",
        ],
    ),
    (
        "evaluate-loss-without-key",
        lambda t: train.evaluate(lambda p, x, y: jnp.mean(p.kernel), LP, X, np.ones((2, 1))),
        TypeError,
        ["evaluate: loss_fn", "(params, x, y, key)"],
    ),
    (
        "metric-with-key",
        lambda t: train.make_eval_step(_loss, metrics={"mse": _loss}),
        TypeError,
        [
            "make_eval_step: metric 'mse'",
            "_loss(p, x, y, key)",
            "fn(params, x, y)",
            "without a key",
        ],
    ),
    (
        "fit-ragged-list",
        lambda t: _fit_tiny(x=[np.ones((5, 3)), np.ones((4, 3))]),
        ValueError,
        [
            "fit: x is a list of 2 elements with different shapes",
            "[(5, 3), (4, 3)]",
            "pad",
            "(padded, lengths)",
            "tuple x=(x1, x2)",
        ],
    ),
    (
        "fit-list-of-two-inputs",
        lambda t: _fit_tiny(x=[np.ones((2, 3)), np.ones((2, 3))], y=np.ones(3)),
        ValueError,
        [
            "x has 2 (shape (2, 2, 3)), y has 3",
            "x was a list of 2 elements",
            "use a tuple x=(x1, x2)",
        ],
    ),
    (
        "fit-list-of-strings",
        lambda t: _fit_tiny(y=["cat", "dog"]),
        TypeError,
        ["fit: y is a list of <U3 values", "needs numbers", "integer ids"],
    ),
    (
        "fit-validation-split-range",
        lambda t: _fit_tiny(validation_split=1.0),
        ValueError,
        ["fit: validation_split=1.0", "[0, 1)", "the last ones, before shuffling"],
    ),
    (
        "fit-validation-split-and-data",
        lambda t: _fit_tiny(validation_split=0.5, validation_data=(np.ones((1, 3)), np.ones(1))),
        ValueError,
        ["validation_split=0.5 and validation_data were both given", "pass one"],
    ),
    (
        "fit-validation-split-leaves-none",
        lambda t: _fit_tiny(validation_split=0.9),
        ValueError,
        [
            "validation_split=0.9 of 2 examples leaves 0 for training and 2 for validation",
            "at least 1",
        ],
    ),
    (
        "checkpoint-save-missing-directory",
        _save_into_missing_dir,
        FileNotFoundError,
        ["checkpoint.save", "e.ckpt", "runs' does not exist", "os.makedirs(", "exist_ok=True"],
    ),
    (
        "checkpoint-save-into-a-file",
        _save_into_a_file,
        NotADirectoryError,
        ["checkpoint.save", "notes.txt' is a file, not a directory"],
    ),
    (
        "checkpoint-restore-missing-file",
        _restore_missing_file,
        FileNotFoundError,
        ["checkpoint.restore: no checkpoint file at", "run-2.ckpt", "['run-1.ckpt']"],
    ),
    (
        "checkpoint-restore-a-directory",
        lambda t: checkpoint.restore(t, LP),
        IsADirectoryError,
        ["checkpoint.restore", "is a directory, not a checkpoint file"],
    ),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_answered_clearly(call, exc, words, tmp_path):
    with pytest.raises(exc) as info:
        call(tmp_path)
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"{missing} not in: {message}"


def test_table_is_large_enough():
    assert len(CASES) >= 30
