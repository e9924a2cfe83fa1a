"""Classify digit images row by row with an LSTM: the Keras "RNN on MNIST" tutorial.

Each image is read as a sequence: one row per time step, the row's pixels as
the step's features. The default data ship offline with scikit-learn
(``sklearn.datasets.load_digits``: 1797 images of 8x8 pixels, so 8 steps of 8
features): LSTM(64), dropout 0.2 on its output and a dense softmax head, trained with
``jaxrnn.train.fit`` on a stratified 75% and tested on the other 25%. Prints
the test accuracy and saves the confusion matrix.

``--mnist PATH`` runs the tutorial's own 28x28 MNIST version from a local
``mnist.npz`` (the file ``keras.datasets.mnist.load_data()`` downloads, with
arrays ``x_train, y_train, x_test, y_test``): 28 steps of 28 features, two
stacked LSTM(256) with dropout 0.2 between and after them, and a dense head.

    python examples/digits_rows.py --epochs 30 --out examples/figures/digits_rows.png
    python examples/digits_rows.py --mnist ~/.keras/datasets/mnist.npz --epochs 3
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
from jaxrnn.train import evaluate, fit


def load_sklearn_digits(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # (1797, 8, 8): (examples, rows = time, pixels)
    return train_test_split(
        x, d.target.astype(np.int32), test_size=0.25, random_state=seed, stratify=d.target
    )


def load_mnist(path: str):
    """(x_train, x_test, y_train, y_test) from a Keras-style mnist.npz, pixels scaled to [0, 1]."""
    with np.load(path) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}; found {f.files}.")
        x_tr, y_tr, x_te, y_te = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    if x_tr.ndim != 3:
        raise ValueError(f"{path}: x_train must be (N, rows, cols), got shape {x_tr.shape}.")
    scale = lambda a: a.astype(np.float32) / 255.0  # noqa: E731
    return scale(x_tr), scale(x_te), y_tr.astype(np.int32), y_te.astype(np.int32)


def init_model(key, n_features: int, units: list[int], n_classes: int = 10):
    keys = jax.random.split(key, len(units) + 1)
    sizes = [n_features, *units]
    return {
        "lstm": [
            jaxrnn.init_lstm(k, i, h) for k, i, h in zip(keys[:-1], sizes[:-1], units, strict=True)
        ],
        "w": jax.nn.initializers.glorot_uniform()(keys[-1], (units[-1], n_classes)),
        "b": jnp.zeros((n_classes,)),
    }


def make_apply(dropout: float, matmul_dtype=None):
    def apply(params, x, key=None):  # x: (B, rows, cols) -> logits (B, 10)
        h = x
        n = len(params["lstm"])
        keys = [None] * n if key is None else list(jax.random.split(key, n))
        for i, (p, k) in enumerate(zip(params["lstm"], keys, strict=True)):
            # (B, T, H); the last layer gives (B, H)
            h = jaxrnn.lstm(p, h, return_sequences=i < n - 1, matmul_dtype=matmul_dtype)
            if k is not None and dropout > 0:  # Keras' Dropout layer after each LSTM
                keep = jax.random.bernoulli(k, 1 - dropout, h.shape)
                h = jnp.where(keep, h / (1 - dropout), 0)
        return h @ params["w"] + params["b"]

    return apply


def confusion_matrix(y_true, y_pred, n: int = 10) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm  # rows: true class, columns: predicted


def save_png(fig, path: str, dpi: int = 80) -> None:
    """Save ``fig`` as a small PNG: 64-colour palette (Pillow ships with matplotlib)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    from PIL import Image

    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default 3e-3; 1e-3 for MNIST)"
    )
    ap.add_argument(
        "--units", type=int, default=None, help="LSTM units (default 64; 256 for MNIST)"
    )
    ap.add_argument(
        "--dropout", type=float, default=None, help="dropout after each LSTM (default 0.2)"
    )
    ap.add_argument("--mnist", default=None, help="path to a local mnist.npz (28x28 version)")
    ap.add_argument("--limit", type=int, default=None, help="use only this many training images")
    ap.add_argument(
        "--matmul-dtype", default=None, help="e.g. bfloat16: mixed-precision matmuls, float32 state"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=1, help="fit's verbosity (1: progress bar)")
    ap.add_argument("--out", default=None, help="where to save the confusion matrix (PNG)")
    args = ap.parse_args(argv)

    if args.mnist:
        x_tr, x_te, y_tr, y_te = load_mnist(args.mnist)
        units, lr = [args.units or 256] * 2, args.lr or 1e-3
        name = "MNIST 28x28"
    else:
        x_tr, x_te, y_tr, y_te = load_sklearn_digits(args.seed)
        units, lr = [args.units or 64], args.lr or 3e-3
        name = "sklearn digits 8x8"
    dropout = 0.2 if args.dropout is None else args.dropout
    if args.limit:
        x_tr, y_tr = x_tr[: args.limit], y_tr[: args.limit]
    print(
        f"{name}: {len(x_tr)} train / {len(x_te)} test images, "
        f"{x_tr.shape[1]} steps of {x_tr.shape[2]} features; LSTM{units}, dropout {dropout}"
    )

    apply = make_apply(dropout, args.matmul_dtype)
    params = init_model(jax.random.key(args.seed), x_tr.shape[2], units)

    def loss_fn(p, x, y, key):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, x, key), y))

    def acc(p, x, y):
        return jnp.mean(jnp.argmax(apply(p, x), -1) == y)

    start = time.perf_counter()
    params, history = fit(
        loss_fn,
        params,
        optax.adam(lr),
        x_tr,
        y_tr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        key=jax.random.key(args.seed + 1),
        metrics={"acc": acc},
        verbose=args.verbose,
    )
    train_time = time.perf_counter() - start
    test = evaluate(loss_fn, params, x_te, y_te, batch_size=256, metrics={"acc": acc})
    pred = np.concatenate(
        [
            np.asarray(jnp.argmax(apply(params, x_te[i : i + 512]), -1))
            for i in range(0, len(x_te), 512)
        ]
    )
    cm = confusion_matrix(y_te, pred)
    test_acc = float(np.mean(pred == y_te))
    print(f"\ntrained {args.epochs} epochs in {train_time:.1f} s")
    print(f"train accuracy {history.history['acc'][-1]:.4f}" if args.epochs else "")
    print(f"test loss      {test['loss']:.4f}")
    print(f"test accuracy  {test_acc:.4f}  ({int(np.sum(pred == y_te))}/{len(y_te)})")

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.6, 4))
        im = ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > cm.max() / 2 else "black",
                )
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: test accuracy {test_acc:.3f}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        save_png(fig, args.out)
        print(f"saved {args.out}")
    return {
        "test_accuracy": test_acc,
        "test_loss": float(test["loss"]),
        "train_seconds": train_time,
        "confusion_matrix": cm,
        "lstm_units": units,
        "dropout": dropout,
    }


if __name__ == "__main__":
    main()
