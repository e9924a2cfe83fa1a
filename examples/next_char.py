"""Character-level language model: the Keras/TensorFlow "text generation with an RNN" tutorial.

The tutorial trains on Shakespeare, which needs a download. This example uses
English text that ships with every CPython: the help topics of the Python
documentation in the standard library's ``pydoc_data.topics`` (the text
``help("if")`` prints; all topics concatenated in sorted order, with runs of
spaces -- table padding and indentation -- collapsed to one, about 400,000
characters). The first 90% is training text, the last 10% held out.

Model: a character embedding, one LSTM (or GRU, ``--cell gru``) layer and a
dense softmax over the characters, trained with ``jaxrnn.train.fit`` on
random windows of ``--seq-len`` characters (the loss scores every step with
``jaxrnn.losses.softmax_cross_entropy``). Reports bits per character on the
held-out text (cross-entropy in nats / ln 2; a uniform guess over the
vocabulary would give log2(vocab)) and samples text at a temperature.

    python examples/next_char.py --steps 1500 --temperature 0.6
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn import losses
from jaxrnn.train import evaluate, fit

LAYERS = {
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm, jaxrnn.lstm_step),
    "gru": (jaxrnn.init_gru, jaxrnn.gru, jaxrnn.gru_step),
}


def load_text() -> str:
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    return re.sub(" {2,}", " ", text)  # collapse table padding and indentation


def init_model(key, cell: str, vocab: int, embed: int, units: int):
    k_e, k_rnn, k_out = jax.random.split(key, 3)
    return {
        "embed": jax.random.normal(k_e, (vocab, embed)) * 0.1,
        "rnn": LAYERS[cell][0](k_rnn, embed, units),
        "w": jax.nn.initializers.glorot_uniform()(k_out, (units, vocab)),
        "b": jnp.zeros((vocab,)),
    }


def logits_fn(cell, params, ids):  # ids: (B, T) ints -> (B, T, vocab)
    h = LAYERS[cell][1](params["rnn"], params["embed"][ids], return_sequences=True)  # (B, T, H)
    return h @ params["w"] + params["b"]


@functools.partial(jax.jit, static_argnames=("cell", "length"))
def sample(params, prime_ids, key, temperature, *, cell: str, length: int):
    """Feed ``prime_ids`` (P,), then draw ``length`` characters at ``temperature``."""
    _, layer, step = LAYERS[cell]
    x = params["embed"][prime_ids][None]  # (1, P, E)
    h_last, carry = layer(params["rnn"], x, return_state=True)  # (1, H)

    def body(c, k):
        carry, h = c
        char = jax.random.categorical(k, (h @ params["w"] + params["b"]) / temperature)  # (1,)
        carry, h = step(params["rnn"], carry, params["embed"][char])
        return (carry, h), char[0]

    _, chars = jax.lax.scan(body, (carry, h_last), jax.random.split(key, length))
    return chars  # (length,)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500, help="training steps (batches)")
    ap.add_argument("--cell", choices=sorted(LAYERS), default="lstm")
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--sample-len", type=int, default=300)
    ap.add_argument("--prime", default="The ")
    ap.add_argument(
        "--eval-chars",
        type=int,
        default=None,
        help="score only this many held-out characters (default: all)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=1, help="fit's verbosity (1: progress bar)")
    args = ap.parse_args(argv)

    text = load_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], np.int32)
    split = int(0.9 * len(ids))
    train_ids, test_ids = ids[:split], ids[split:]
    if args.eval_chars:
        test_ids = test_ids[: args.eval_chars + 1]
    T = args.seq_len
    print(
        f"pydoc_data.topics: {len(text):,} characters, vocabulary {len(chars)} "
        f"(uniform guess: {math.log2(len(chars)):.2f} bits/char); "
        f"{len(train_ids):,} train, {len(test_ids):,} held out"
    )

    # training windows at random offsets: steps * batch_size of them, one epoch
    rng = np.random.default_rng(args.seed)
    starts = rng.integers(0, len(train_ids) - T - 1, args.steps * args.batch_size)
    windows = train_ids[starts[:, None] + np.arange(T + 1)]  # (N, T + 1)
    # held-out text cut into consecutive windows (every character scored once)
    n_test = (len(test_ids) - 1) // T
    x_te = test_ids[: n_test * T].reshape(n_test, T)  # (n_test, T)
    y_te = test_ids[1 : n_test * T + 1].reshape(n_test, T)

    cell = args.cell
    params = init_model(jax.random.key(args.seed), cell, len(chars), args.embed, args.units)

    def loss_fn(p, x, y, key):  # mean cross-entropy in nats per character
        return losses.softmax_cross_entropy(logits_fn(cell, p, x), y)

    start = time.perf_counter()
    params, history = fit(
        loss_fn,
        params,
        optax.adam(args.lr),
        windows[:, :-1],
        windows[:, 1:],
        epochs=1,
        batch_size=args.batch_size,
        key=jax.random.key(args.seed),
        clipnorm=1.0,
        verbose=args.verbose,
    )
    train_time = time.perf_counter() - start
    test_nats = evaluate(loss_fn, params, x_te, y_te, batch_size=256)["loss"]
    bpc = test_nats / math.log(2)
    train_bpc = history.history["loss"][-1] / math.log(2) if args.steps else float("nan")

    prime = np.array([index.get(c, 0) for c in args.prime], np.int32)
    out = sample(
        params,
        prime,
        jax.random.key(args.seed + 1),
        args.temperature,
        cell=cell,
        length=args.sample_len,
    )
    text_out = args.prime + "".join(chars[i] for i in np.asarray(out))
    print(f"\ntrained {args.steps} steps ({cell.upper()}({args.units})) in {train_time:.1f} s")
    print(f"train bits/char (epoch mean) {train_bpc:.3f}")
    print(f"held-out bits/char           {bpc:.3f}")
    print(f"\nsample at temperature {args.temperature}:\n{text_out}")
    return {
        "test_bpc": bpc,
        "train_bpc": train_bpc,
        "sample": text_out,
        "vocab": len(chars),
        "train_seconds": train_time,
    }


if __name__ == "__main__":
    main()
