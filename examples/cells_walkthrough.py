"""What an RNN layer computes, step by step: the "RNN cells in Keras/TensorFlow" tutorials in jaxrnn.

Reproduces the usual walkthrough of ``SimpleRNNCell`` / ``BasicRNNCell`` /
``SimpleRNN``: no training, only shapes and numbers, printed.

1. A SimpleRNN cell by hand over two time steps (input dim 3, state dim 2,
   no bias): ``h_t = tanh(x_t W + h_{t-1} U)``, printed state by state, and
   the same with ``lax.scan`` over ``jaxrnn.rnn_step`` and with the layer.
2. A ``BasicRNNCell(128)``-style call: one step on ``(32, 100)`` inputs gives
   ``(32, 128)`` (output = new state).
3. A whole sequence: ``return_sequences=True`` gives ``(batch, time, units)``,
   the default the last output ``(batch, units)``, and ``return_state`` the
   final state, which equals the last output.
4. ``return_sequences`` shapes for 3-D inputs ``(2, 1, 3)`` and ``(1, 4, 2)``.
5. The stacked-RNN mistake: forgetting ``return_sequences=True`` on the lower
   layer, and jaxrnn's error message.

    python examples/cells_walkthrough.py
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with np.printoptions(precision=4, suppress=True):  # restored on return
        return walkthrough(args.seed)


def walkthrough(seed: int) -> dict:
    keys = jax.random.split(jax.random.key(seed), 8)
    out = {}

    print("1. SimpleRNN cell by hand: h_t = tanh(x_t W + h_{t-1} U), no bias")
    W = jax.random.normal(keys[0], (3, 2)) * 0.5  # (input 3, state 2)
    U = jax.random.normal(keys[1], (2, 2)) * 0.5  # (state 2, state 2)
    xs = jax.random.normal(keys[2], (2, 3))  # two time steps of 3 features
    h = jnp.zeros(2)  # h_0
    by_hand = []
    for t in range(2):
        h = jnp.tanh(xs[t] @ W + h @ U)
        by_hand.append(h)
        print(f"   t={t}: x_t={np.asarray(xs[t])}  ->  h_t={np.asarray(h)}")
    by_hand = jnp.stack(by_hand)  # (2, 2)

    params = jaxrnn.RNNParams(kernel=W, recurrent_kernel=U, bias=None)
    _, scanned = jax.lax.scan(functools.partial(jaxrnn.rnn_step, params), jnp.zeros(2), xs)
    layer = jaxrnn.simple_rnn(params, xs[None], return_sequences=True)[0]  # (T, 2)
    out["scan_max_diff"] = float(jnp.max(jnp.abs(scanned - by_hand)))
    out["layer_max_diff"] = float(jnp.max(jnp.abs(layer - by_hand)))
    print(f"   lax.scan(rnn_step) states:\n{np.asarray(scanned)}")
    print(f"   max |scan - by hand|  = {out['scan_max_diff']:.2e}")
    print(f"   max |layer - by hand| = {out['layer_max_diff']:.2e}")

    print("\n2. BasicRNNCell(128)-style: one step on a (32, 100) batch")
    cell = jaxrnn.init_rnn(keys[3], 100, 128)
    x = jax.random.normal(keys[4], (32, 100))
    h0 = jaxrnn.zero_state(cell, batch_shape=(32,))  # (32, 128)
    h1, y = jaxrnn.rnn_step(cell, h0, x)
    out["cell_output_shape"] = tuple(y.shape)
    print(
        f"   x {tuple(x.shape)}, h0 {tuple(h0.shape)} -> output {tuple(y.shape)}, "
        f"new state {tuple(h1.shape)}; output is the state: {bool(jnp.all(y == h1))}"
    )

    print("\n3. A whole sequence: outputs at every step vs the final state")
    seq = jax.random.normal(keys[5], (32, 10, 100))  # (batch, time, features)
    ys, final = jaxrnn.simple_rnn(cell, seq, return_sequences=True, return_state=True)
    last = jaxrnn.simple_rnn(cell, seq)
    out["sequence_shape"], out["final_state_shape"] = tuple(ys.shape), tuple(final.shape)
    print(f"   return_sequences=True: {tuple(ys.shape)}  (batch, time, units)")
    print(f"   default (last output): {tuple(last.shape)}  (batch, units)")
    print(
        f"   return_state final h:  {tuple(final.shape)}; equals ys[:, -1]: "
        f"{bool(jnp.allclose(final, ys[:, -1], atol=1e-6))}"
    )

    print("\n4. return_sequences on 3-D inputs (batch, time, features)")
    out["return_sequences_shapes"] = {}
    for shape in [(2, 1, 3), (1, 4, 2)]:
        p = jaxrnn.init_rnn(keys[6], shape[-1], 5)
        xin = jnp.ones(shape)
        s_true = jaxrnn.simple_rnn(p, xin, return_sequences=True).shape
        s_false = jaxrnn.simple_rnn(p, xin).shape
        out["return_sequences_shapes"][shape] = (tuple(s_true), tuple(s_false))
        print(
            f"   input {shape}: return_sequences=True -> {tuple(s_true)}, False -> {tuple(s_false)}"
        )

    print("\n5. Stacking: the lower layer must return sequences")
    p1, p2 = jaxrnn.init_lstm(keys[6], 100, 64), jaxrnn.init_lstm(keys[7], 64, 64)
    good = jaxrnn.lstm(p2, jaxrnn.lstm(p1, seq, return_sequences=True))
    print(f"   LSTM(64, return_sequences=True) -> LSTM(64): {tuple(good.shape)}")
    print("   forgetting return_sequences=True on the first layer:")
    try:
        jaxrnn.lstm(p2, jaxrnn.lstm(p1, seq))
    except ValueError as e:
        out["stacking_error"] = str(e)
        print("   ValueError: " + str(e).replace("\n", "\n   "))
    else:
        raise AssertionError("jaxrnn accepted a 2-D input to a recurrent layer")
    return out


if __name__ == "__main__":
    main()
