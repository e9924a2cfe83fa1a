"""Checkpoints written before the issue-14 restructuring still restore.

``tests/data/checkpoint_682c28f.ckpt`` was written by jaxrnn at 682c28f with
``tests/data/make_checkpoint_682c28f.py``. It holds a functional ``TrainState``
(every cell type, a Bidirectional, a stack, Adam state), an NNX module's state
and Linen variables. Each of them is restored into a target built by today's
code, and is checked against the outputs that the old version computed and
stored beside them.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxrnn
import jaxrnn.linen
import jaxrnn.nnx
from jaxrnn.checkpoint import restore
from jaxrnn.train import TrainState, make_train_step
from tests.data import make_checkpoint_682c28f as writer

PATH = Path(__file__).parent / "data" / "checkpoint_682c28f.ckpt"
# the writer's shapes, inputs, model and loss: the same code computes with today's jaxrnn
B, T, I, H, X, Y = writer.B, writer.T, writer.I, writer.H, writer.X, writer.Y
model, loss_fn = writer.model, writer.loss_fn
OPT = optax.adam(1e-2)


def functional_params():  # the same structure as the writer's, other values
    return writer.functional_params(seed=7, head=0.0)


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-5, atol=1e-6)


def nnx_layer():
    return jaxrnn.nnx.LSTM(I, H, rngs=nnx.Rngs(99), stateful=True, batch_size=B)


def linen_module():
    return jaxrnn.linen.Bidirectional(jaxrnn.linen.GRU(H, return_sequences=True))


@pytest.fixture(scope="module")
def stored():
    """The restored checkpoint: a target of today's types, the old file's values."""
    target = {
        "train_state": TrainState.create(functional_params(), OPT),
        "train_output": jnp.zeros((B, 1)),
        "resumed_output": jnp.zeros((B, 1)),
        "bi_output": jnp.zeros((B, 2 * H)),
        "nnx_state": nnx.state(nnx_layer()),
        "nnx_output_next": jnp.zeros((B, H)),
        "linen_variables": linen_module().init(jax.random.key(99), X),
        "linen_output": jnp.zeros((B, T, 2 * H)),
    }
    return restore(PATH, target)


def test_functional_train_state_restores_and_resumes(stored):
    state = stored["train_state"]
    assert isinstance(state, TrainState)
    p = state.params
    assert isinstance(p["rnn"], jaxrnn.RNNParams) and isinstance(p["lstm"], jaxrnn.LSTMParams)
    assert isinstance(p["bi"], jaxrnn.BidirectionalParams)
    assert p["gru_v1"].recurrent_bias is None and p["gru"].recurrent_bias is not None
    assert int(state.step) == 2 and int(state.opt_state[0].count) == 2
    close(model(p, X), stored["train_output"])
    close(jaxrnn.bidirectional(jaxrnn.lstm, p["bi"], X), stored["bi_output"])
    # Training resumes from the restored Adam moments as the old version did.
    step = make_train_step(loss_fn, OPT)
    for _ in range(3):
        state, _ = step(state, (X, Y), jax.random.key(0))
    assert int(state.step) == 5
    close(model(state.params, X), stored["resumed_output"])


def test_nnx_module_state_restores(stored):
    layer = nnx_layer()
    nnx.update(layer, stored["nnx_state"])
    assert float(jnp.abs(layer.state.h).sum()) > 0  # the kept state came back too
    close(layer(X), stored["nnx_output_next"])


def test_linen_variables_restore(stored):
    variables = stored["linen_variables"]
    close(linen_module().apply(variables, X), stored["linen_output"])
    p = jaxrnn.linen.to_params(variables)
    assert isinstance(p, jaxrnn.BidirectionalParams)
