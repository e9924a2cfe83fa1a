"""Writes ``checkpoint_682c28f.ckpt``: checkpoints of jaxrnn as it was at 682c28f,
before the issue-14 restructuring, which ``tests/test_checkpoint_compat.py``
restores with today's code.

Run once against that version (it is kept for provenance, not run by the tests)::

    git worktree add /tmp/old682 682c28f
    cd /tmp/old682 && python /path/to/tests/data/make_checkpoint_682c28f.py OUT.ckpt

The file holds a ``jaxrnn.train.TrainState`` (functional params of every cell
type, a Bidirectional and a stack, Adam state after two ``make_train_step``
steps), the ``nnx.state`` of a stateful NNX LSTM after one call, the variables
of a Linen bidirectional GRU, and each model's output on ``X`` computed by that
version (for the training state also after three more steps, and for the NNX
layer on its next call, which starts from the kept state).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxrnn
import jaxrnn.linen
import jaxrnn.nnx
from jaxrnn.checkpoint import save
from jaxrnn.train import TrainState, make_train_step

B, T, I, H = 3, 6, 4, 5
X = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, I)), jnp.float32)
Y = jnp.asarray(np.random.default_rng(1).standard_normal((B, 1)), jnp.float32)


def functional_params(seed=0, head=1 / H):
    k = jax.random.split(jax.random.key(seed), 6)
    return {
        "rnn": jaxrnn.init_rnn(k[0], I, H),
        "lstm": jaxrnn.init_lstm(k[1], I, H),
        "gru": jaxrnn.init_gru(k[2], I, H),
        "gru_v1": jaxrnn.init_gru(k[3], I, H, reset_after=False),
        "bi": jaxrnn.BidirectionalParams(
            jaxrnn.init_lstm(k[4], I, H), jaxrnn.init_lstm(k[5], I, H)
        ),
        "stack": [jaxrnn.init_gru(k[0], I, H), jaxrnn.init_rnn(k[1], H, H)],
        "head": jnp.full((5 * H, 1), head, jnp.float32),
    }


def model(p, x):
    feats = [
        jaxrnn.simple_rnn(p["rnn"], x),
        jaxrnn.lstm(p["lstm"], x),
        jaxrnn.gru(p["gru"], x),
        jaxrnn.gru(p["gru_v1"], x),
        jaxrnn.stacked([jaxrnn.gru, jaxrnn.simple_rnn], p["stack"], x),
    ]
    return jnp.concatenate(feats, -1) @ p["head"]


def loss_fn(p, x, y, key):
    del key
    return jnp.mean((model(p, x) - y) ** 2)


def main(out):
    opt = optax.adam(1e-2)
    state = TrainState.create(functional_params(), opt)
    step = make_train_step(loss_fn, opt)
    for _ in range(2):
        state, _ = step(state, (X, Y), jax.random.key(0))
    resumed = state
    for _ in range(3):
        resumed, _ = step(resumed, (X, Y), jax.random.key(0))

    layer = jaxrnn.nnx.LSTM(I, H, rngs=nnx.Rngs(3), stateful=True, batch_size=B)
    layer(X)  # the kept state is now non-zero
    nnx_state = jax.tree.map(np.array, nnx.state(layer))  # a copy, before the next call
    nnx_out = layer(X)  # starts from the kept state

    linen = jaxrnn.linen.Bidirectional(jaxrnn.linen.GRU(H, return_sequences=True))
    variables = linen.init(jax.random.key(4), X)

    save(
        out,
        {
            "train_state": state,
            "train_output": model(state.params, X),
            "resumed_output": model(resumed.params, X),  # after 3 more steps
            "bi_output": jaxrnn.bidirectional(jaxrnn.lstm, state.params["bi"], X),
            "nnx_state": nnx_state,
            "nnx_output_next": nnx_out,
            "linen_variables": variables,
            "linen_output": linen.apply(variables, X),
        },
    )


if __name__ == "__main__":
    main(sys.argv[1])
