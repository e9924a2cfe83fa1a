"""Long sequences: minGRU and minLSTM against GRU and LSTM on the adding problem.

The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015) at T = 500:
each input step is a pair ``(value, marker)`` with ``value ~ U[0, 1]``; exactly
two markers are 1, one in each half of the sequence, and the target is the sum
of the two marked values. Predicting the mean (1.0) gives MSE 1/6 ≈ 0.167; a
model solves the task when its MSE is far below that. The data is generated
offline (NumPy, fixed seed).

Each model is ``layer(units) -> Dense(1)``, trained with Adam on the MSE of the
last output for ``--steps`` steps, one jitted training step per batch. Every
model's gate biases get the chrono initialisation (``--chrono 1``, the default:
memory timescales up to T; with zero biases no cell here carries a marker 250
steps). Reported
per model: the compile time, the training time (blocked on, compile excluded),
the test MSE and the accuracy (|error| < 0.04, the usual criterion). The min
cells' ``method`` is their default (``'sequential'``, the fastest on CPU).
Saves the test MSE against training time.

    python examples/long_sequences.py --steps 1500 --out examples/figures/long_sequences.png
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn

CELLS = {
    "minGRU": (jaxrnn.init_min_gru, jaxrnn.min_gru),
    "minLSTM": (jaxrnn.init_min_lstm, jaxrnn.min_lstm),
    "GRU": (jaxrnn.init_gru, jaxrnn.gru),
    "LSTM": (jaxrnn.init_lstm, jaxrnn.lstm),
}


def adding_problem(n: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` ``(n, steps, 2)`` (value, marker) and ``y`` ``(n, 1)``, float32."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, (n, steps))
    first = rng.integers(0, steps // 2, n)
    second = rng.integers(steps // 2, steps, n)
    markers = np.zeros((n, steps))
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[np.arange(n), first] + values[np.arange(n), second])[:, None]
    return x, y.astype(np.float32)


def chrono_bias(key, cell: str, params, max_steps: int):
    """Chrono initialisation (Tallec & Ollivier 2018): each unit's gates start with a
    memory timescale ``τ ~ U[1, max_steps]``, i.e. it keeps ``1 − 1/τ`` of its state
    per step, instead of the half that zero biases give. Same idea for every cell:

    - minGRU ``a = 1 − z``: ``b_z = −log τ``;  GRU ``h = z h + (1 − z) n``: ``b_z = log τ``;
    - minLSTM / LSTM: forget bias ``log τ``, input bias ``−log τ``.
    """
    hidden = params.kernel.shape[-1] // {"minGRU": 2, "minLSTM": 3, "GRU": 3, "LSTM": 4}[cell]
    log_tau = jnp.log(jax.random.uniform(key, (hidden,), minval=1.0, maxval=max_steps))
    b = params.bias.reshape(-1, hidden)
    if cell == "minGRU":
        b = b.at[0].set(-log_tau)
    elif cell == "GRU":
        b = b.at[0].set(log_tau)
    elif cell == "minLSTM":
        b = b.at[0].set(log_tau).at[1].set(-log_tau)
    else:  # LSTM gates i, f, c, o
        b = b.at[1].set(log_tau).at[0].set(-log_tau)
    return params._replace(bias=b.reshape(-1))


def init_model(key, cell: str, units: int, chrono: int = 0):
    k_rnn, k_out, k_tau = jax.random.split(key, 3)
    rnn = CELLS[cell][0](k_rnn, 2, units)
    if chrono:
        rnn = chrono_bias(k_tau, cell, rnn, chrono)
    return {
        "rnn": rnn,
        "w": jax.nn.initializers.glorot_uniform()(k_out, (units, 1)),
        "b": jnp.ones((1,)),  # start at the mean target
    }


def make_loss(cell: str):
    layer = CELLS[cell][1]

    def predict(params, x):
        return layer(params["rnn"], x) @ params["w"] + params["b"]

    def loss(params, x, y):
        return jnp.mean((predict(params, x) - y) ** 2)

    return predict, loss


def train(cell: str, data, args) -> dict:
    x_train, y_train, x_test, y_test = data
    predict, loss = make_loss(cell)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.lr))
    params = init_model(jax.random.key(args.seed), cell, args.units, args.chrono * args.time)
    state = opt.init(params)

    @jax.jit
    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    test_mse = jax.jit(loss)
    rng = np.random.default_rng(args.seed)
    batches = [rng.integers(0, len(x_train), args.batch) for _ in range(args.steps)]
    t0 = time.perf_counter()
    compiled = step.lower(params, state, x_train[:1].repeat(args.batch, 0), y_train[: args.batch])
    compiled = compiled.compile()
    compile_s = time.perf_counter() - t0
    curve, elapsed = [], 0.0
    every = max(1, args.steps // 20)
    for i, idx in enumerate(batches):
        t0 = time.perf_counter()
        params, state, _ = compiled(params, state, x_train[idx], y_train[idx])
        jax.block_until_ready(params)
        elapsed += time.perf_counter() - t0
        if (i + 1) % every == 0 or i + 1 == args.steps:
            curve.append((elapsed, float(test_mse(params, x_test, y_test))))
    err = np.asarray(predict(params, x_test)) - y_test
    return {
        "compile_s": compile_s,
        "train_s": elapsed,
        "test_mse": float(np.mean(err**2)),
        "accuracy": float(np.mean(np.abs(err) < 0.04)),
        "curve": curve,
    }


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for cell, r in results.items():
        t, mse = zip(*r["curve"], strict=True)
        ax.plot(t, mse, marker=".", label=f"{cell} ({r['train_s']:.0f} s)")
    ax.axhline(1 / 6, color="gray", linestyle=":", label="predict the mean")
    ax.set_xlabel("training time (s, compile excluded)")
    ax.set_ylabel("test MSE")
    ax.set_yscale("log")
    ax.set_title("Adding problem, T = 500")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=int, default=500, help="sequence length T")
    ap.add_argument("--train", type=int, default=10000, help="training sequences")
    ap.add_argument("--test", type=int, default=1000, help="test sequences")
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--chrono", type=int, default=1, help="1: chrono initialisation of the gate biases"
    )
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--out", default=None, help="save the figure here (needs matplotlib)")
    args = ap.parse_args(argv)
    x_train, y_train = adding_problem(args.train, args.time, args.seed)
    x_test, y_test = adding_problem(args.test, args.time, args.seed + 1)
    data = (x_train, y_train, x_test, y_test)
    print(
        f"adding problem: T={args.time}, {args.train} train / {args.test} test sequences, "
        f"units={args.units}, batch={args.batch}, {args.steps} Adam steps (lr {args.lr}), "
        f"chrono={args.chrono}"
    )
    print("| model | compile s | train s | test MSE | accuracy (|err| < 0.04) |")
    print("|---|---|---|---|---|")
    results = {}
    for cell in args.cells.split(","):
        r = train(cell, data, args)
        results[cell] = r
        print(
            f"| {cell} | {r['compile_s']:.1f} | {r['train_s']:.1f} | {r['test_mse']:.4f} | "
            f"{r['accuracy']:.1%} |",
            flush=True,
        )
    if args.out:
        plot(results, args.out)
        print(f"figure: {args.out}")
    return results


if __name__ == "__main__":
    main()
