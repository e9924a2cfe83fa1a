"""The fused recurrences' chunk size: time by chunk size, against no chunking.

    python benchmarks/chunk_length.py [--quick] [--chunks 128:1048576,default,...]
                                      [--reps N] [--cells lstm,rnn,gru] [--shapes B,T,I,H;...]

The fused SimpleRNN and LSTM project their input one chunk at a time, and the
hand-written backward passes of the GRU and the LSTM run one chunk at a time
(``jaxrnn._fused.common.chunked``): ``max(min_steps, floats // (B·G·H))`` steps per
chunk, by default ``CHUNK_MIN_STEPS:CHUNK_FLOATS`` for the projection and
``BACKWARD_CHUNK`` for the backward passes ('default'; a candidate ``min:floats``
sets both). This script calls
the layers (``run_layer``, as ``jaxrnn.lstm`` / ``jaxrnn.simple_rnn`` do, all outputs)
with each candidate ``min_steps:floats`` and with chunks longer than any sequence ('none'),
which is the unchunked path
(one projection over all ``T`` steps, as before chunking). All variants of a shape
are compiled first and timed interleaved in one process (median of ``--reps``
calls); the table gives each candidate's time / the unchunked time (below 1:
faster) for the forward pass and the training step (value and gradients w.r.t. the
parameters of the mean squared output), and the steps per chunk it makes. Shapes
(B, T, I, H): those of ``run.py`` with T > 64 and of ``remat_speed.py``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn._cells.spec import spec_named
from jaxrnn._fused.common import (
    BACKWARD_CHUNK,
    CHUNK_FLOATS,
    CHUNK_MIN_STEPS,
    DEFAULT_CHUNK,
    LoopOptions,
    chunk_steps,
)
from jaxrnn._layers import run_layer

SHAPES = [  # (B, T, I, H)
    (32, 100, 32, 128),
    (64, 100, 128, 256),
    (64, 100, 512, 512),
    (16, 1000, 16, 64),
    (4, 4000, 8, 32),
    (16, 4000, 16, 64),
    (8, 20000, 8, 32),
]
QUICK = [(2, 10, 2, 4), (4, 300, 3, 8)]
CELLS = {"lstm": jaxrnn.init_lstm, "rnn": jaxrnn.init_rnn, "gru": jaxrnn.init_gru}


def layer(kind: str, chunk: tuple[int, int]):
    """The layer, all outputs, with chunks of ``max(chunk[0], chunk[1] // (B·G·H))`` steps."""
    spec = spec_named(kind)

    def run(params, x):
        return run_layer(
            spec,
            params,
            x,
            return_sequences=True,
            chunk_min_steps=chunk[0],
            chunk_floats=chunk[1],
        )

    return run


def timed(fns: dict, args, reps: int) -> dict:
    times = {n: [] for n in fns}
    for f in fns.values():
        jax.block_until_ready(f(*args))  # warm-up
    for _ in range(reps):
        for n, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[n].append(time.perf_counter() - t0)
    return {n: 1e3 * float(np.median(s)) for n, s in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (a smoke run)")
    ap.add_argument("--chunks", default=None, help="min_steps:floats,...")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--cells", default="lstm,rnn,gru")
    ap.add_argument("--shapes", default=None, help="B,T,I,H;... instead of the default shapes")
    args = ap.parse_args(argv)
    default = "0:128,0:1024" if args.quick else "0:262144,128:262144,128:1048576,128:4194304"
    text = (args.chunks or default).split(",")
    chunks = [(None, None) if c == "default" else tuple(int(v) for v in c.split(":")) for c in text]
    names = ["none", *text]
    print(
        f"`python benchmarks/chunk_length.py`; Python {platform.python_version()}, "
        f"jax {jax.__version__}; default {CHUNK_MIN_STEPS}:{CHUNK_FLOATS} (backward passes "
        f"{BACKWARD_CHUNK[0]}:{BACKWARD_CHUNK[1]}); ms = median of "
        f"{args.reps} calls, interleaved; ratio = chunked / unchunked ('none'); steps = "
        "steps per chunk."
    )
    print("")
    print(
        "| cell | run | B, T, I, H | steps | none ms | "
        + " | ".join(f"{n} ms" for n in names[1:])
        + " | "
        + " | ".join(f"{n} / none" for n in names[1:])
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * (2 * len(chunks)))
    for cell in args.cells.split(","):
        shapes = QUICK if args.quick else SHAPES
        if args.shapes:
            shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
        for b, t, i, h in shapes:
            params = CELLS[cell](jax.random.key(0), i, h)
            x = jax.random.normal(jax.random.key(1), (b, t, i))
            sizes = [(sys.maxsize, 0), *chunks]
            width = spec_named(cell).gates * h
            steps = "/".join(
                str(
                    min(
                        t,
                        chunk_steps(
                            b,
                            width,
                            LoopOptions(chunk_min_steps=c[0], chunk_floats=c[1]),
                            BACKWARD_CHUNK if cell == "gru" else DEFAULT_CHUNK,
                        ),
                    )
                )
                for c in chunks
            )
            for run in ("forward", "training"):
                fns = {}
                for n, k in zip(names, sizes, strict=True):
                    f = layer(cell, k)
                    if run == "training":
                        f = jax.value_and_grad(lambda p, x, f=f: jnp.mean(f(p, x) ** 2))
                    fns[n] = jax.jit(f).lower(params, x).compile()
                ref = fns["none"](params, x)
                for n, f in fns.items():  # every chunk length computes the same
                    for u, w in zip(
                        jax.tree.leaves(f(params, x)), jax.tree.leaves(ref), strict=True
                    ):
                        np.testing.assert_allclose(u, w, rtol=1e-4, atol=1e-5, err_msg=n)
                med = timed(fns, (params, x), 3 if args.quick else args.reps)
                print(
                    f"| {cell} | {run} | {b}, {t}, {i}, {h} | {steps} | {med['none']:.2f} | "
                    + " | ".join(f"{med[n]:.2f}" for n in names[1:])
                    + " | "
                    + " | ".join(f"{med[n] / med['none']:.2f}" for n in names[1:])
                    + " |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
