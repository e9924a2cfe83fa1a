"""Training step of minGRU/minLSTM (each time method) against GRU/LSTM, one process, interleaved.

    python benchmarks/min_cells.py [--quick] [--reps N] [--out RESULTS.md]

For each shape (B, T, I, H) one training step — value and gradient of the mean
squared error of the last output w.r.t. the parameters, then an SGD update — is
compiled (timed separately) for:

- ``gru``, ``lstm``: ``jaxrnn.gru`` / ``jaxrnn.lstm`` (their default fused path);
- ``min_gru[m]``, ``min_lstm[m]``: ``jaxrnn.min_gru`` / ``jaxrnn.min_lstm`` with
  ``method=m`` for m in sequential (the default), associative and chunked;
- ``naive``: minGRU as a JAX user would write it from the paper, the step under
  ``lax.scan`` with ``jax.grad`` (``jaxrnn.min_gru(..., impl="scan")``, the
  generic scan of ``jaxrnn.min_gru_step``).

and run interleaved (so that machine noise hits all alike); times are medians
(and minima) of ``--reps`` calls, blocked on. Every min-cell variant is checked
to give the same loss and gradients as the sequential method (1e-4) before it is
timed. The ratio column is GRU (or LSTM) time / min cell time: above 1 the min
cell is faster. With ``--out`` the table is appended to that file.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by path from elsewhere (tests)
    sys.path.insert(0, str(HERE))

from run import machine_info, versions  # noqa: E402

SHAPES = [  # (B, T, I, H): the two target shapes, then longer sequences
    (16, 1000, 16, 64),
    (32, 100, 32, 128),
    (1, 1000, 8, 32),
    (16, 10000, 16, 64),
]
QUICK = [(4, 50, 3, 8)]
METHODS = ("sequential", "associative", "chunked")


def variants() -> dict:
    """name -> (init, layer, keyword options)."""
    out = {"gru": (jaxrnn.init_gru, jaxrnn.gru, {}), "lstm": (jaxrnn.init_lstm, jaxrnn.lstm, {})}
    for cell, init, layer in (
        ("min_gru", jaxrnn.init_min_gru, jaxrnn.min_gru),
        ("min_lstm", jaxrnn.init_min_lstm, jaxrnn.min_lstm),
    ):
        for m in METHODS:
            out[f"{cell}[{m}]"] = (init, layer, {"method": m})
    out["naive"] = (jaxrnn.init_min_gru, jaxrnn.min_gru, {"impl": "scan"})
    return out


def compile_step(layer, kw, params, x, y):
    def loss(p):
        return jnp.mean((layer(p, x, **kw) - y) ** 2)

    def step(p):
        value, g = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda a, b: a - 0.01 * b, p, g), value, g

    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(params).compile()
    return compiled, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one tiny shape (a smoke run)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", default=None, help="append the table to this file")
    args = ap.parse_args(argv)
    m, v = machine_info(), versions()
    specs = variants()
    names = list(specs)
    lines = [
        "## Min cells: training-step time against GRU and LSTM",
        "",
        f"`python benchmarks/min_cells.py`; {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; "
        f"Python {platform.python_version()}, jax {v['jax']}, jaxlib {v['jaxlib']}. "
        "Training step = value_and_grad of the MSE of the last output w.r.t. the parameters "
        "plus an SGD update, float32, jitted; ms: median (min) of the reps, all variants "
        "interleaved; compile: seconds; gru/x = GRU time / min-cell time (above 1: faster); "
        "naive = the minGRU step under a plain lax.scan with autodiff (impl='scan').",
        "",
        "| B, T, I, H | variant | ms | compile s | gru / x | lstm / x |",
        "|---|---|---|---|---|---|",
    ]
    for line in lines:
        print(line, flush=True)
    reps = 3 if args.quick else args.reps
    for b, t, i, h in QUICK if args.quick else SHAPES:
        x = jax.random.normal(jax.random.key(1), (b, t, i))
        y = jax.random.normal(jax.random.key(2), (b, h))
        fns, params, compile_s = {}, {}, {}
        for n, (init, layer, kw) in specs.items():
            params[n] = init(jax.random.key(0), i, h)
            fns[n], compile_s[n] = compile_step(layer, kw, params[n], x, y)
        # every min-cell variant computes what the sequential method computes
        for cell in ("min_gru", "min_lstm"):
            ref = fns[f"{cell}[sequential]"](params[f"{cell}[sequential]"])
            others = [f"{cell}[{m}]" for m in METHODS[1:]] + (
                ["naive"] if cell == "min_gru" else []
            )
            for n in others:
                got = fns[n](params[n])
                for u, w in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
                    np.testing.assert_allclose(u, w, rtol=1e-4, atol=1e-6, err_msg=n)
        times = {n: [] for n in fns}
        for _ in range(reps):
            for n, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(params[n]))
                times[n].append(time.perf_counter() - t0)
        med = {n: 1e3 * float(np.median(s)) for n, s in times.items()}
        low = {n: 1e3 * float(np.min(s)) for n, s in times.items()}
        for n in names:
            row = (
                f"| {b}, {t}, {i}, {h} | {n} | {med[n]:.2f} ({low[n]:.2f}) | "
                f"{compile_s[n]:.2f} | {med['gru'] / med[n]:.1f} | {med['lstm'] / med[n]:.1f} |"
            )
            print(row, flush=True)
            lines.append(row)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
