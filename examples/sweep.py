"""A learning-rate x seed sweep trained as one compiled program (``jaxrnn.sweep``), timed against a loop.

The Keras tutorials tune hyperparameters with KerasTuner, one training run
after another. Here a whole training run is a pure function of its
hyperparameters, ``train(hp) -> (result, history)``, and
``jaxrnn.sweep.sweep`` trains every configuration at once (``jax.vmap``
inside one ``jax.jit``). Model: the sine-regression SimpleRNN of
``sine_regression.py`` (noisy sine, windows of 10 predict the next value)
with ``--units`` tanh units, full-batch Adam for ``--steps`` steps inside a
``lax.scan``; the grid is 4 learning rates x 3 seeds = 12 configurations.

Timing (wall clock, ``block_until_ready`` on the outputs):

- sweep: the first call compiles and runs; a second call of the same table
  reuses the cached program, so it is the run time; compile = first - second;
- one by one: ``jax.jit(train)`` compiled once (``.lower().compile()``, timed),
  then the 12 configurations run in a Python loop.

Also compares the final losses of both: equal to float32 rounding at the
small learning rates; at the large ones training is sensitive enough that
rounding differences between the batched and the single program grow over
the run (a few percent at lr 3e-2), so the table prints the difference of each. Saves the 12 training
curves in one plot.

    python examples/sweep.py --steps 300 --out examples/figures/sweep.png
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
from jaxrnn.sweep import grid, sweep


def make_data(seed: int = 0, n_points: int = 150, window: int = 10):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 15, n_points)
    noisy = np.sin(t) + 1 + rng.uniform(-0.15, 0.15, n_points)
    x = np.stack([noisy[i : i + window] for i in range(n_points - window)])[..., None]  # (N, 10, 1)
    y = noisy[window:, None]  # (N, 1)
    n_train = int(0.8 * len(x))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return f32(x[:n_train]), f32(y[:n_train]), f32(x[n_train:]), f32(y[n_train:])


def make_train(data, steps: int, units: int):
    x_tr, y_tr, x_va, y_va = data

    def mse(p, x, y):
        return jnp.mean((jaxrnn.simple_rnn(p["rnn"], x) @ p["w"] + p["b"] - y) ** 2)

    def train(hp):  # hp: {"lr": 0-d float, "seed": 0-d int}, possibly traced
        k1, k2 = jax.random.split(jax.random.key(hp["seed"]))
        params = {
            "rnn": jaxrnn.init_rnn(k1, 1, units),
            "w": jax.nn.initializers.glorot_uniform()(k2, (units, 1)),
            "b": jnp.zeros((1,)),
        }
        opt = optax.adam(hp["lr"])

        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(mse)(p, x_tr, y_tr)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), length=steps)
        return {"train_mse": mse(params, x_tr, y_tr), "val_mse": mse(params, x_va, y_va)}, losses

    return train


def save_png(fig, path: str, dpi: int = 80) -> None:
    """Save ``fig`` as a small PNG: 64-colour palette (Pillow ships with matplotlib)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    from PIL import Image

    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--steps", type=int, default=300, help="full-batch Adam steps per configuration"
    )
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0 .. n-1 (offset by --seed)")
    ap.add_argument("--seed", type=int, default=0, help="data seed and first model seed")
    ap.add_argument("--out", default=None, help="where to save the curves (PNG)")
    args = ap.parse_args(argv)

    train = make_train(make_data(args.seed), args.steps, args.units)
    table = grid(lr=args.lrs, seed=[args.seed + i for i in range(args.seeds)])
    n = len(table["lr"])
    print(
        f"{n} configurations ({len(args.lrs)} learning rates x {args.seeds} seeds), "
        f"{args.steps} steps each; {jax.device_count()} {jax.devices()[0].platform} device(s)"
    )

    # one program: the first call compiles and runs, the second reuses the compiled program
    t0 = time.perf_counter()
    r = sweep(train, table, metric="val_mse")
    jax.block_until_ready((r.results, r.histories))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = sweep(train, table, metric="val_mse")
    jax.block_until_ready((r.results, r.histories))
    t_sweep = time.perf_counter() - t0

    # one by one: one compiled run, called n times
    rows = [r.hparams(i) for i in range(n)]
    as_args = lambda hp: {"lr": jnp.float32(hp["lr"]), "seed": jnp.int32(hp["seed"])}  # noqa: E731
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(as_args(rows[0])).compile()
    t_compile_loop = time.perf_counter() - t0
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is optional
        tqdm = None
    t0 = time.perf_counter()
    loop_out = []
    for hp in tqdm(rows, desc="one by one", unit="run") if tqdm else rows:
        loop_out.append(jax.block_until_ready(compiled(as_args(hp))))
    t_loop = time.perf_counter() - t0

    val = np.asarray(r.results["val_mse"])
    loop_val = np.array([float(o[0]["val_mse"]) for o in loop_out])
    rel = np.abs(val - loop_val) / np.maximum(np.abs(loop_val), 1e-12)  # (n,)
    max_diff = float(np.max(rel))

    print(f"\n{'lr':>8} {'seed':>5} {'train MSE':>10} {'val MSE':>10} {'|sweep-loop|/loop':>18}")
    for i, hp in enumerate(rows):
        print(
            f"{hp['lr']:8.0e} {hp['seed']:5d} {float(r.results['train_mse'][i]):10.5f} "
            f"{val[i]:10.5f} {rel[i]:18.1e}"
        )
    print(f"best: {r.best.hparams}, val MSE {r.best.value:.5f}")
    print(f"\nwall time, {n} configurations:")
    print(f"  sweep (one program):  compile {t_first - t_sweep:6.2f} s   run {t_sweep:6.2f} s")
    print(f"  one by one (jit loop): compile {t_compile_loop:6.2f} s   run {t_loop:6.2f} s")
    print(f"  run-time speed-up of the sweep: {t_loop / t_sweep:.2f}x")
    print(
        f"  val MSE, sweep vs loop: median relative difference {np.median(rel):.1e}, "
        f"max {max_diff:.1e}"
    )
    print(
        "  (float32 rounding differs between the batched and the single program; over "
        f"{args.steps} steps\n   large learning rates amplify it, small ones keep it near 1e-6)"
    )

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        hist = np.asarray(r.histories)  # (n, steps)
        for i, hp in enumerate(rows):
            j = args.lrs.index(hp["lr"])
            ax.semilogy(
                hist[i],
                color=f"C{j}",
                lw=1,
                alpha=0.8,
                label=f"lr {hp['lr']:g}" if hp["seed"] == args.seed else None,
            )
        ax.set_xlabel("Adam step")
        ax.set_ylabel("training MSE")
        ax.set_title(
            f"{n} runs in one program ({t_sweep:.2f} s) vs one by one ({t_loop:.2f} s)", fontsize=10
        )
        ax.legend(title=f"{args.seeds} seeds each", fontsize=8)
        fig.tight_layout()
        save_png(fig, args.out)
        print(f"saved {args.out}")
    return {
        "n_configs": n,
        "best": r.best.hparams,
        "best_val_mse": r.best.value,
        "val_mse": val,
        "sweep_compile_s": t_first - t_sweep,
        "sweep_run_s": t_sweep,
        "loop_compile_s": t_compile_loop,
        "loop_run_s": t_loop,
        "rel_diff": rel,
        "max_rel_diff": max_diff,
    }


if __name__ == "__main__":
    main()
