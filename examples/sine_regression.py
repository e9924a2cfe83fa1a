"""Sequence regression on a noisy sine: the classic first RNN lesson.

Data: y = sin(x) + 1 + U(-0.15, 0.15) at 150 points on [0, 15]. Each window of
10 consecutive values predicts the next one. Model: SimpleRNN(100, relu) and a
dense head, trained with Adam on the first 80% of windows and validated on the
last 20% (chronological split). Prints train / validation MSE and the MSE of
the naive "repeat the last value" baseline; saves a plot when matplotlib is
installed.

    python examples/sine_regression.py --steps 400 --out examples/figures/sine_regression.png
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn


def make_data(seed: int, n_points: int = 150, window: int = 10):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 15, n_points)
    clean = np.sin(t) + 1
    noisy = clean + rng.uniform(-0.15, 0.15, n_points)
    x = np.stack([noisy[i : i + window] for i in range(n_points - window)])[..., None]  # (N, 10, 1)
    y = noisy[window:, None]  # (N, 1)
    return t, clean, noisy, x.astype(np.float32), y.astype(np.float32)


def init_model(key, units: int):
    k_rnn, k_out = jax.random.split(key)
    return {
        "rnn": jaxrnn.init_rnn(k_rnn, 1, units),
        "w": jax.nn.initializers.glorot_uniform()(k_out, (units, 1)),
        "b": jnp.zeros((1,)),
    }


def predict(params, x, matmul_dtype=None):
    h = jaxrnn.simple_rnn(
        params["rnn"], x, activation="relu", matmul_dtype=matmul_dtype
    )  # (B, units)
    return h @ params["w"] + params["b"]  # (B, 1)


def mse(params, x, y, matmul_dtype=None):
    return jnp.mean((predict(params, x, matmul_dtype) - y) ** 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="full-batch Adam steps")
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=1, help="1: progress bar, 0: none")
    ap.add_argument("--out", default=None, help="where to save the plot (PNG)")
    ap.add_argument(
        "--matmul-dtype", default=None, help="e.g. bfloat16: mixed-precision matmuls, float32 state"
    )
    args = ap.parse_args(argv)
    mse_ = functools.partial(mse, matmul_dtype=args.matmul_dtype)

    t, clean, noisy, x, y = make_data(args.seed)
    n_train = int(0.8 * len(x))
    x_tr, y_tr, x_va, y_va = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    params = init_model(jax.random.key(args.seed), args.units)
    opt = optax.adam(args.lr)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(mse_)(params, x_tr, y_tr)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    try:  # a progress bar when tqdm is installed (pip install 'jaxrnn[examples]')
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(total=args.steps, desc="training", unit="step") if tqdm and args.verbose else None
    say = bar.write if bar is not None else print

    start = time.perf_counter()
    report = max(1, args.steps // 5)
    for step in range(1, args.steps + 1):
        params, opt_state, loss = train_step(params, opt_state)
        if bar is not None:
            bar.update(1)
        if step % report == 0 or step == args.steps:
            say(
                f"step {step:5d}  train MSE {float(loss):.5f}  val MSE {float(mse_(params, x_va, y_va)):.5f}"
            )
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start

    train_mse = float(mse_(params, x_tr, y_tr))
    val_mse = float(mse_(params, x_va, y_va))
    baseline = float(np.mean((x_va[:, -1] - y_va) ** 2))  # repeat the last value
    print(f"\ntrained {args.steps} steps in {elapsed:.1f} s")
    print(f"train MSE            {train_mse:.5f}")
    print(f"validation MSE       {val_mse:.5f}")
    print(f"baseline (last value) {baseline:.5f}")
    print(f"model / baseline     {val_mse / baseline:.2f}")

    if args.out:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: pip install 'jaxrnn[examples]' for the plot")
        else:
            pred = np.asarray(predict(params, x, args.matmul_dtype))[:, 0]
            fig, ax = plt.subplots(figsize=(9, 4))
            ax.plot(t, clean, "k-", lw=1, label="sin(x) + 1")
            ax.plot(t, noisy, ".", color="gray", ms=4, label="noisy data")
            ax.plot(t[10:], pred, "-", color="C1", label="SimpleRNN prediction")
            ax.axvline(t[10 + n_train], ls="--", color="C2", label="train | validation")
            ax.legend()
            ax.set_title(f"validation MSE {val_mse:.4f} vs baseline {baseline:.4f}")
            fig.tight_layout()
            fig.savefig(args.out, dpi=80)
            print(f"saved {args.out}")
    return {"train_mse": train_mse, "val_mse": val_mse, "baseline_mse": baseline}


if __name__ == "__main__":
    main()
