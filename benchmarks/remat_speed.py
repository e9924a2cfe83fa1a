"""Training-step time of the memory options, by sequence length (one process, interleaved).

    python benchmarks/remat_speed.py [--quick] [--reps N] [--cells lstm,gru,rnn] [--out RESULTS.md]

For each cell and shape (T, B, I, H) the same training step (all outputs,
sum of squares, value and gradient w.r.t. the parameters and the input) is
compiled for four variants of the layer call and timed interleaved, so that
machine noise hits all of them alike:

- ``default``: ``impl="auto"``, ``remat=None`` (the fused path, every gate stored);
- ``scan``: ``impl="scan"`` (the generic ``lax.scan`` of the step function);
- ``step``: ``remat="step"`` (the generic scan, each step checkpointed: only the
  carries are stored, the gates are recomputed in the backward pass);
- ``sqrt``: ``remat="sqrt"`` (checkpointed chunks of ~sqrt(T) steps, fused inside).

It also reports XLA's scratch memory of each compiled step. Times are medians
(and minima) of ``--reps`` calls, compiled beforehand, blocked on. The table of
memory options in docs/performance.md quotes this script's output. With ``--out`` the table
is appended to that file as a section (``suite.py`` does this).
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

SHAPES = [  # (T, B, I, H)
    (100, 32, 32, 128),
    (1000, 16, 16, 64),
    (4000, 16, 16, 64),
    (20000, 8, 8, 32),
]
QUICK = [(20, 4, 3, 8), (200, 4, 3, 8)]
CELLS = {
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm),
    "gru": (jaxrnn.init_gru, jaxrnn.gru),
    "rnn": (jaxrnn.init_rnn, jaxrnn.simple_rnn),
}
VARIANTS = {
    "default": {},
    "scan": {"impl": "scan"},
    "step": {"remat": "step"},
    "sqrt": {"remat": "sqrt"},
}
MB = 2**20


def compile_step(layer, kw, params, x):
    def loss(p, x):
        return jnp.sum(layer(p, x, return_sequences=True, **kw) ** 2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, x).compile()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two tiny shapes (a smoke run)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--out", default=None, help="append the table to this file")
    args = ap.parse_args(argv)
    m, v = machine_info(), versions()
    names = list(VARIANTS)
    lines = [
        "## Memory options: training-step time by sequence length",
        "",
        f"`python benchmarks/remat_speed.py`; {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; "
        f"Python {platform.python_version()}, jax {v['jax']}, jaxlib {v['jaxlib']}. "
        "Training step = value_and_grad of sum(outputs**2) w.r.t. params and x, float32; "
        "ms: median (min) of the reps, the four variants interleaved; ratio = variant / "
        "default (below 1: faster); MiB = XLA scratch memory. default = fused path, "
        "scan = impl='scan', step = remat='step' (generic scan), sqrt = remat='sqrt'.",
        "",
        "| cell | T, B, I, H | "
        + " | ".join(f"{n} ms" for n in names)
        + " | "
        + " | ".join(f"{n} / default" for n in names[1:])
        + " | "
        + " | ".join(f"{n} MiB" for n in names)
        + " |",
        "|---|---|" + "---|" * (3 * len(names) - 1),
    ]
    for line in lines:
        print(line, flush=True)
    reps = 3 if args.quick else args.reps
    cells = ["lstm"] if args.quick else args.cells.split(",")  # --quick: a smoke run
    for cell in cells:
        init, layer = CELLS[cell]
        for t, b, i, h in QUICK if args.quick else SHAPES:
            params = init(jax.random.key(0), i, h)
            x = jax.random.normal(jax.random.key(1), (b, t, i))
            fns = {n: compile_step(layer, kw, params, x) for n, kw in VARIANTS.items()}
            mem = {n: f.memory_analysis().temp_size_in_bytes / MB for n, f in fns.items()}
            ref = fns["default"](params, x)
            for n, f in fns.items():  # every variant computes the same value and gradients
                for u, w in zip(jax.tree.leaves(f(params, x)), jax.tree.leaves(ref), strict=True):
                    np.testing.assert_allclose(u, w, rtol=1e-3, atol=1e-3, err_msg=n)
            times = {n: [] for n in fns}
            for _ in range(reps):
                for n, f in fns.items():
                    t0 = time.perf_counter()
                    jax.block_until_ready(f(params, x))
                    times[n].append(time.perf_counter() - t0)
            med = {n: 1e3 * float(np.median(s)) for n, s in times.items()}
            low = {n: 1e3 * float(np.min(s)) for n, s in times.items()}
            row = (
                f"| {cell} | {t}, {b}, {i}, {h} | "
                + " | ".join(f"{med[n]:.1f} ({low[n]:.1f})" for n in names)
                + " | "
                + " | ".join(f"{med[n] / med['default']:.2f}" for n in names[1:])
                + " | "
                + " | ".join(f"{mem[n]:.0f}" for n in names)
                + " |"
            )
            print(row, flush=True)
            lines.append(row)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
