"""One-step-ahead forecast of monthly sea-surface temperature: RNN vs LSTM vs AR(p) vs persistence.

Reproduces the TensorFlow "time series forecasting" tutorial (single-step
models on a weather series, compared against a baseline) on data that ships
offline: statsmodels' El Niño dataset, monthly sea-surface temperatures of
the Niño 1+2 region, 1950-2010 (61 years x 12 months = 732 values, in °C).

A window of the past ``--window`` months predicts the next month. The series
is split chronologically (first 80% train, last 20% test; test windows may
look back into the training months) and normalised with the training mean and
standard deviation only. Models:

- persistence: next month = this month;
- AR(p): a linear least-squares fit on the same window (p = window, with intercept);
- SimpleRNN(32) and LSTM(32), each with a dense head, trained with
  ``jaxrnn.train.fit`` (Adam, MSE).

Prints a table of test RMSE and MAE in °C and saves a forecast plot.

    python examples/temperature_forecast.py --epochs 60 --out examples/figures/temperature_forecast.png
"""

from __future__ import annotations

import argparse
import io
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn.train import fit


def load_series() -> tuple[np.ndarray, np.ndarray]:
    """(732,) monthly temperatures in °C and (732,) fractional years."""
    import statsmodels.api as sm

    df = sm.datasets.elnino.load_pandas().data  # rows: years, columns YEAR, JAN..DEC
    temps = df.drop(columns="YEAR").to_numpy(np.float64).reshape(-1)  # (61 * 12,)
    years = (df["YEAR"].to_numpy()[:, None] + np.arange(12)[None, :] / 12).reshape(-1)
    return temps, years


def make_windows(series: np.ndarray, window: int):
    x = np.stack([series[i : i + window] for i in range(len(series) - window)])  # (N, window)
    y = series[window:]  # (N,)
    return x, y


def init_model(key, cell: str, units: int):
    k_rnn, k_out = jax.random.split(key)
    init = {"rnn": jaxrnn.init_rnn, "lstm": jaxrnn.init_lstm}[cell]
    return {
        "rnn": init(k_rnn, 1, units),
        "w": jax.nn.initializers.glorot_uniform()(k_out, (units, 1)),
        "b": jnp.zeros((1,)),
    }


def make_predict(cell: str):
    layer = {"rnn": jaxrnn.simple_rnn, "lstm": jaxrnn.lstm}[cell]

    def predict(params, x):  # x: (B, window, 1) -> (B, 1)
        return layer(params["rnn"], x) @ params["w"] + params["b"]

    return predict


def save_png(fig, path: str, dpi: int = 80) -> None:
    """Save ``fig`` as a small PNG: 64-colour palette (Pillow ships with matplotlib)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    from PIL import Image

    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--window", type=int, default=24, help="past months per input")
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=1, help="fit's verbosity (1: progress bar)")
    ap.add_argument("--out", default=None, help="where to save the forecast plot (PNG)")
    args = ap.parse_args(argv)

    temps, years = load_series()
    n_train = int(0.8 * len(temps))
    mean, std = temps[:n_train].mean(), temps[:n_train].std()  # training months only
    z = (temps - mean) / std
    x, y = make_windows(z, args.window)  # (N, window), (N,)
    target_index = np.arange(args.window, len(temps))  # month each window predicts
    train = target_index < n_train
    x_tr, y_tr, x_te, y_te = x[train], y[train], x[~train], y[~train]
    print(
        f"{len(temps)} months; {len(x_tr)} training windows, {len(x_te)} test windows "
        f"(test from {years[n_train]:.0f}); train mean {mean:.2f} °C, std {std:.2f} °C"
    )

    def scores(pred_z):
        err = (np.asarray(pred_z).reshape(-1) - y_te) * std  # °C
        return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}

    preds = {"persistence": x_te[:, -1]}
    design = lambda a: np.concatenate([a, np.ones((len(a), 1))], axis=1)  # noqa: E731
    coef, *_ = np.linalg.lstsq(design(x_tr), y_tr, rcond=None)
    preds[f"AR({args.window})"] = design(x_te) @ coef

    times = {}
    for i, (name, cell) in enumerate([("SimpleRNN", "rnn"), ("LSTM", "lstm")]):
        predict = make_predict(cell)

        def loss_fn(p, xb, yb, key, predict=predict):
            return jnp.mean((predict(p, xb) - yb) ** 2)

        params = init_model(jax.random.key(args.seed * 100 + i), cell, args.units)
        start = time.perf_counter()
        params, _ = fit(
            loss_fn,
            params,
            optax.adam(args.lr),
            x_tr[..., None].astype(np.float32),
            y_tr[:, None].astype(np.float32),
            epochs=args.epochs,
            batch_size=args.batch_size,
            key=jax.random.key(args.seed),
            verbose=args.verbose,
        )
        times[name] = time.perf_counter() - start
        preds[name] = np.asarray(predict(params, jnp.asarray(x_te[..., None], jnp.float32)))

    metrics = {name: scores(p) for name, p in preds.items()}
    print(f"\n{'model':<12} {'test RMSE °C':>13} {'test MAE °C':>12}")
    for name, m in metrics.items():
        extra = f"   ({times[name]:.1f} s to train)" if name in times else ""
        print(f"{name:<12} {m['rmse']:13.3f} {m['mae']:12.3f}{extra}")

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t_te = years[target_index[~train]]
        fig, ax = plt.subplots(figsize=(9, 3.6))
        ax.plot(t_te, y_te * std + mean, "k-", lw=1.5, label="observed")
        for name, style in [
            ("persistence", ":"),
            (f"AR({args.window})", "--"),
            ("SimpleRNN", "-"),
            ("LSTM", "-"),
        ]:
            ax.plot(
                t_te,
                np.asarray(preds[name]).reshape(-1) * std + mean,
                style,
                lw=1,
                label=f"{name} (RMSE {metrics[name]['rmse']:.2f})",
            )
        ax.set_xlabel("year")
        ax.set_ylabel("SST, Niño 1+2 (°C)")
        ax.set_title("one-month-ahead forecasts on the test years")
        ax.legend(fontsize=7, ncol=3, loc="upper left")
        fig.tight_layout()
        save_png(fig, args.out)
        print(f"saved {args.out}")
    return metrics


if __name__ == "__main__":
    main()
