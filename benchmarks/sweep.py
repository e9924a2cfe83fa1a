"""Hyperparameter sweeps: N training runs as one ``jax.vmap``-ed program vs N sequential runs.

    python benchmarks/sweep.py [--quick] [--out benchmarks/RESULTS.md]

A whole training run, ``lax.scan`` over the steps of Adam with
``optax.inject_hyperparams`` (so the learning rate is an array), is one function
``train(lr, seed, x, y) -> losses``. N configurations (learning rates and seeds)
run either as ``jax.jit(jax.vmap(train))`` once, or as N calls of ``jax.jit(train)``
(compiled once). Compile and run times are reported separately; the ratio is
sequential / vmapped run time (above 1: the vmapped sweep is faster), and the
end-to-end ratio includes each side's compile time. Both must give the same losses
over the first steps (later, float32 rounding differences grow with training).

Workloads: the sine example (SimpleRNN(100, relu) and a dense head, 112 windows of
10 steps, 1 feature; full-batch; N = 8 and 32, 200 steps) and an LSTM layer at
(B, T, I, H) = (32, 100, 32, 128) regressing all outputs on a random target
(N = 8, 20 steps). --quick shrinks both. With --out, the table is appended there.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from impls._common import write_report

import jaxrnn

EARLY_STEPS = 10  # vmapped and sequential losses must agree closely over these steps
EARLY_TOL = 1e-4


class Workload(NamedTuple):
    name: str
    init: Callable  # init(key) -> params
    loss: Callable  # loss(params, x, y) -> scalar
    x: jax.Array
    y: jax.Array
    n_configs: int
    steps: int


def sine_data(n_points: int = 150, window: int = 10, n_train: int = 112, seed: int = 0):
    """The sine example's training windows: x (112, 10, 1), y (112, 1)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 15, n_points)
    noisy = np.sin(t) + 1 + rng.uniform(-0.15, 0.15, n_points)
    x = np.stack([noisy[i : i + window] for i in range(n_points - window)])[..., None]
    y = noisy[window:, None]
    return jnp.asarray(x[:n_train], jnp.float32), jnp.asarray(y[:n_train], jnp.float32)


def sine_init(key, units: int = 100):
    k_rnn, k_out = jax.random.split(key)
    return {
        "rnn": jaxrnn.init_rnn(k_rnn, 1, units),
        "w": jax.nn.initializers.glorot_uniform()(k_out, (units, 1)),
        "b": jnp.zeros((1,)),
    }


def sine_loss(params, x, y):
    h = jaxrnn.simple_rnn(params["rnn"], x, activation="relu")  # (B, units)
    return jnp.mean((h @ params["w"] + params["b"] - y) ** 2)


def lstm_workload(B, T, I, H, n_configs, steps) -> Workload:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((B, T, I)), jnp.float32)
    y = jnp.asarray(0.5 * rng.standard_normal((B, T, H)), jnp.float32)

    def init(key):
        return jaxrnn.init_lstm(key, I, H)

    def loss(params, x, y):
        return jnp.mean((jaxrnn.lstm(params, x, return_sequences=True) - y) ** 2)

    return Workload(f"LSTM {B}, {T}, {I}, {H}", init, loss, x, y, n_configs, steps)


def make_train(init, loss, steps: int):
    """``train(lr, seed, x, y) -> losses (steps,)``: a whole Adam run as one function."""

    def train(lr, seed, x, y):
        params = init(jax.random.key(seed))
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=lr)
        opt_state = opt.init(params)

        def step(carry, _):
            params, opt_state = carry
            value, grads = jax.value_and_grad(loss)(params, x, y)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        _, losses = jax.lax.scan(step, (params, opt_state), length=steps)
        return losses

    return train


def compile_timed(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def bench(w: Workload, repeats: int) -> dict:
    train = make_train(w.init, w.loss, w.steps)
    lrs = jnp.geomspace(3e-4, 3e-3, w.n_configs).astype(jnp.float32)
    seeds = jnp.arange(w.n_configs, dtype=jnp.int32)

    vmapped, vmap_compile = compile_timed(
        jax.vmap(train, in_axes=(0, 0, None, None)), lrs, seeds, w.x, w.y
    )
    single, single_compile = compile_timed(train, lrs[0], seeds[0], w.x, w.y)

    def run_vmapped():
        return jax.block_until_ready(vmapped(lrs, seeds, w.x, w.y))

    def run_sequential():
        return jax.block_until_ready(
            [single(lrs[i], seeds[i], w.x, w.y) for i in range(w.n_configs)]
        )

    losses_vmapped, losses_sequential = run_vmapped(), jnp.stack(run_sequential())  # warm-up
    vmap_ms, seq_ms = median_ms(run_vmapped, repeats), median_ms(run_sequential, repeats)
    rel = np.abs(np.asarray(losses_vmapped - losses_sequential) / losses_sequential)
    return {
        "vmap_compile": vmap_compile,
        "vmap_ms": vmap_ms,
        "seq_compile": single_compile,
        "seq_ms": seq_ms,
        # float32 rounding differs between the two and training amplifies it, so only
        # the first steps must agree closely (a wrong lr or seed shows at once).
        "early_diff": float(rel[:, :EARLY_STEPS].max()),
        "final_diff": float(rel[:, -1].max()),
        "final_loss_range": (
            float(losses_sequential[:, -1].min()),
            float(losses_sequential[:, -1].max()),
        ),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer configurations and steps")
    ap.add_argument("--out", default=None, help="append the table to this Markdown file")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (5; quick: 1)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)

    x, y = sine_data()
    sine_sizes = [(2, 10)] if args.quick else [(8, 200), (32, 200)]
    workloads = [
        Workload("sine SimpleRNN(100, relu) + dense", sine_init, sine_loss, x, y, n, steps)
        for n, steps in sine_sizes
    ]
    if args.quick:
        workloads.append(lstm_workload(4, 8, 3, 8, n_configs=2, steps=5))
    else:
        workloads.append(lstm_workload(32, 100, 32, 128, n_configs=8, steps=20))

    lines = [
        "",
        "## Sweeps: N configurations vmapped in one jit vs N sequential calls",
        "",
        "Each configuration is a whole training run (lax.scan over Adam steps, "
        "learning rate via optax.inject_hyperparams; lr log-spaced in [3e-4, 3e-3], "
        f"seed = 0..N-1). Run = median of {repeats} sweep(s); ratio = sequential / vmapped "
        "(above 1: vmap faster); end-to-end ratio includes compile time. Δ = max relative "
        f"difference of the losses, vmapped vs sequential, over the first {EARLY_STEPS} steps "
        "and at the last one (float32 rounding, amplified by training; "
        "it vanishes in float64).",
        "",
        "| workload | N | steps | vmap compile s | vmap run ms | seq compile s | seq run ms "
        "| run ratio | end-to-end ratio | final losses | Δ early | Δ final |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    problems = []
    for w in workloads:
        r = bench(w, repeats)
        ratio = r["seq_ms"] / r["vmap_ms"]
        end_to_end = (r["seq_compile"] + r["seq_ms"] / 1e3) / (
            r["vmap_compile"] + r["vmap_ms"] / 1e3
        )
        lo, hi = r["final_loss_range"]
        row = [w.name, str(w.n_configs), str(w.steps), f"{r['vmap_compile']:.2f}"]
        row += [f"{r['vmap_ms']:.1f}", f"{r['seq_compile']:.2f}", f"{r['seq_ms']:.1f}"]
        row += [f"{ratio:.2f}", f"{end_to_end:.2f}", f"{lo:.3g}–{hi:.3g}"]
        row += [f"{r['early_diff']:.1e}", f"{r['final_diff']:.1e}"]
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
        if not r["early_diff"] < EARLY_TOL:
            problems.append(f"{w.name}, N={w.n_configs}: vmapped and sequential losses differ")
    return write_report(lines, problems, args.out)


if __name__ == "__main__":
    sys.exit(main())
