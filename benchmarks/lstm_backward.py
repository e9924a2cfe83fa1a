"""Which backward pass the fused LSTM should use, by batch size (one process, interleaved).

    python benchmarks/lstm_backward.py [--quick] [--reps N]

The fused LSTM always runs its forward pass with the input projection hoisted
out of the loop. For the gradient it has two options, timed here on the same
training step (all outputs, sum of squares, gradient w.r.t. the parameters):

- ``hand``: the hand-written backward pass (``jaxrnn/_fused/lstm.py: lstm_recurrence``),
  which forms the gate gradients one chunk of steps at a time and ``dU``, ``dW``,
  ``dx`` and ``db`` after each chunk's loop;
- ``autodiff``: JAX's VJP of a loop that projects ``x_t W`` inside it
  (``lstm_layer``), which accumulates them step by step;

next to the generic ``lax.scan`` of ``jaxrnn.lstm_step`` (``impl="scan"``). The
layers use ``autodiff`` from ``B >= AUTODIFF_MIN_BATCH`` on; this script forces
each choice at every batch size to show where the switch belongs. Times are
medians (and minima) of ``--reps`` calls, compiled beforehand, blocked on.
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
from jaxrnn._cells.spec import spec_named
from jaxrnn._fused.lstm import AUTODIFF_MIN_BATCH
from jaxrnn._layers import run_layer

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by path from elsewhere (tests)
    sys.path.insert(0, str(HERE))

from run import machine_info, versions  # noqa: E402

SHAPES = [  # (B, T, I, H)
    (16, 200, 8, 64),
    (32, 100, 32, 128),
    (64, 28, 28, 128),
    (64, 100, 128, 256),
    (128, 28, 28, 128),
    (128, 100, 32, 64),
    (256, 28, 28, 64),
]
QUICK = [(8, 10, 4, 16), (64, 10, 4, 16)]


def _compile(impl: str, min_batch: int, params, x):
    def loss(p, x):  # jaxrnn.lstm with the internal choice of backward pass
        ys = run_layer(
            spec_named("lstm"), p, x, impl=impl, return_sequences=True, autodiff_min_batch=min_batch
        )
        return jnp.sum(ys**2)

    return jax.jit(jax.value_and_grad(loss)).lower(params, x).compile()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two tiny shapes (a smoke run)")
    ap.add_argument("--reps", type=int, default=25)
    args = ap.parse_args(argv)
    default = AUTODIFF_MIN_BATCH
    m, v = machine_info(), versions()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, JAX devices: "
        f"{', '.join(str(d) for d in jax.devices())}; Python {platform.python_version()}, "
        f"jax {v['jax']}, jaxlib {v['jaxlib']}, jaxrnn {jaxrnn.__version__}; "
        f"AUTODIFF_MIN_BATCH = {default}"
    )
    print("LSTM training step (value_and_grad), float32, ms: median (min)")
    print("| B, T, I, H | hand | autodiff | impl='scan' | autodiff / hand | layer uses |")
    print("|---|---|---|---|---|---|")
    reps = 3 if args.quick else args.reps
    for b, t, i, h in QUICK if args.quick else SHAPES:
        params = jaxrnn.init_lstm(jax.random.key(0), i, h)
        x = jax.random.normal(jax.random.key(1), (b, t, i))
        fns = {
            "hand": _compile("fast", 10**9, params, x),
            "autodiff": _compile("fast", 1, params, x),
            "scan": _compile("scan", default, params, x),
        }
        grads = {k: f(params, x)[1] for k, f in fns.items()}
        for u, v in zip(
            jax.tree.leaves(grads["hand"]), jax.tree.leaves(grads["autodiff"]), strict=True
        ):
            np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-3)  # the same gradient
        times = {k: [] for k in fns}
        for _ in range(reps):  # interleaved, so that machine noise hits all three alike
            for k, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(params, x))
                times[k].append(time.perf_counter() - t0)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        low = {k: 1e3 * float(np.min(v)) for k, v in times.items()}
        cells = [f"{med[k]:.2f} ({low[k]:.2f})" for k in fns]
        uses = "autodiff" if b >= default else "hand"
        print(
            f"| {b}, {t}, {i}, {h} | "
            + " | ".join(cells)
            + f" | {med['autodiff'] / med['hand']:.2f} | {uses} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
