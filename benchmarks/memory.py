"""Memory of an LSTM training step over long sequences, from XLA's compiled memory analysis.

    python benchmarks/memory.py [--quick] [--out benchmarks/RESULTS.md]

The training step is the one of run.py: forward (all outputs), MSE against a fixed
target, gradients of all weights; B=16, I=16, H=64, T in {1000, 4000, 16000}
(--quick: T in {50, 200}). For each variant, ``jax.jit(step).lower(...).compile()``
gives ``memory_analysis()``: ``temp`` is XLA's scratch memory (the residuals kept
for the backward pass live there), ``args`` and ``output`` the buffers passed in
and returned. Variants:

* ``jaxrnn``: ``jaxrnn.lstm(..., return_sequences=True)``, the public layer;
* ``jaxrnn, remat='step'`` / ``'sqrt'``: the same with its memory options;
* ``scan``: the naive ``lax.scan`` of a hand-written cell (benchmarks/impls/naive_scan.py);
* ``scan, checkpoint(step)``: the same with ``jax.checkpoint`` on each step, which
  keeps only the carries and recomputes each step's gates in the backward pass;
* ``nested scan, checkpoint(k steps)``: an outer scan over T/k chunks of a
  ``jax.checkpoint``-ed inner scan of k ~ sqrt(T) steps: it keeps T/k carries plus
  one chunk's residuals, O(sqrt T) beyond the outputs themselves. This is the
  reference for what a memory option of jaxrnn should achieve.

The outputs ``(B, T, H)`` and their gradient are needed by any variant (the loss
reads all of them), so no variant goes below about 1-2 floats per (b, t, unit);
the column ``temp / BTH`` counts temp floats per (batch, step, unit).
With --out, the table is appended to that file as a section.
"""

from __future__ import annotations

import argparse
import functools
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by path from elsewhere (tests)
    sys.path.insert(0, str(HERE))

from impls._common import write_report  # noqa: E402
from impls.naive_scan import initial_carry, lstm_cell, scan_layer  # noqa: E402

B, I, H = 16, 16, 64
LENGTHS = (1000, 4000, 16000)
QUICK_LENGTHS = (50, 200)
MB = 2**20


def chunk_size(T: int) -> int:
    """The largest divisor of T not above sqrt(T)."""
    return max(k for k in range(1, math.isqrt(T) + 1) if T % k == 0)


def jaxrnn_forward(params, x):
    return jaxrnn.lstm(params, x, return_sequences=True)


def scan_forward(params, x):
    return scan_layer("lstm", params, x)


def checkpointed_step_forward(params, x):
    return scan_layer("lstm", params, x, step=jax.checkpoint(lstm_cell, prevent_cse=False))


def nested_checkpoint_forward(params, x):
    """All outputs of the LSTM by an outer scan over chunks of a checkpointed inner scan."""
    batch, T, _ = x.shape
    k = chunk_size(T)
    xs = jnp.swapaxes(x, 0, 1).reshape(T // k, k, batch, -1)  # (T/k, k, B, I)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def run_chunk(carry, xs_chunk):
        return jax.lax.scan(functools.partial(lstm_cell, params), carry, xs_chunk)

    carry = initial_carry("lstm", batch, params.recurrent_kernel.shape[0])
    _, ys = jax.lax.scan(run_chunk, carry, xs)  # (T/k, k, B, H)
    return jnp.swapaxes(ys.reshape(T, batch, -1), 0, 1)  # (B, T, H)


def jaxrnn_remat_forward(remat):
    def forward(params, x):
        return jaxrnn.lstm(params, x, return_sequences=True, remat=remat)

    return forward


VARIANTS = {
    "jaxrnn": jaxrnn_forward,
    "jaxrnn, remat='step'": jaxrnn_remat_forward("step"),
    "jaxrnn, remat='sqrt'": jaxrnn_remat_forward("sqrt"),
    "scan": scan_forward,
    "scan, checkpoint(step)": checkpointed_step_forward,
    "nested scan, checkpoint(k steps)": nested_checkpoint_forward,
}


def train_step(forward):
    def train(params, x, target):
        return jax.grad(lambda p: jnp.mean((forward(p, x) - target) ** 2))(params)

    return train


def analyse(forward, args, repeats: int) -> dict:
    t0 = time.perf_counter()
    compiled = jax.jit(train_step(forward)).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    stats = compiled.memory_analysis()
    grads = jax.block_until_ready(compiled(*args))  # warm-up, kept for the check
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {
        "temp": None if stats is None else stats.temp_size_in_bytes,
        "args": None if stats is None else stats.argument_size_in_bytes,
        "output": None if stats is None else stats.output_size_in_bytes,
        "compile_s": compile_s,
        "run_ms": 1e3 * float(np.median(times)),
        "grads": grads,
    }


def mb(n) -> str:
    return "?" if n is None else f"{n / MB:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"T in {QUICK_LENGTHS}")
    ap.add_argument("--out", default=None, help="append the table to this Markdown file")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (3; quick: 1)")
    args = ap.parse_args(argv)
    lengths = QUICK_LENGTHS if args.quick else LENGTHS
    repeats = args.repeats or (1 if args.quick else 3)

    params = jaxrnn.init_lstm(jax.random.key(0), I, H)
    rng = np.random.default_rng(0)
    lines = [
        "",
        f"## Memory: LSTM training step (B={B}, I={I}, H={H}), XLA compiled memory analysis",
        "",
        "temp = XLA scratch (residuals for the backward pass); temp / BTH = temp floats "
        "per (batch, step, unit); run = median of "
        f"{repeats} call(s). k = chunk length of the nested scan.",
        "",
        "| T | variant | temp MB | temp / BTH | args MB | output MB | compile s | run ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    problems = []
    for T in lengths:
        x = jnp.asarray(rng.standard_normal((B, T, I)), jnp.float32)
        target = jnp.asarray(0.5 * rng.standard_normal((B, T, H)), jnp.float32)
        reference = None
        for name, forward in VARIANTS.items():
            r = analyse(forward, (params, x, target), repeats)
            label = f"{name}, k={chunk_size(T)}" if name.startswith("nested") else name
            per_float = "?" if r["temp"] is None else f"{r['temp'] / (4 * B * T * H):.1f}"
            row = [str(T), label, mb(r["temp"]), per_float, mb(r["args"]), mb(r["output"])]
            row += [f"{r['compile_s']:.2f}", f"{r['run_ms']:.1f}"]
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], file=sys.stderr, flush=True)
            # Every variant computes the same gradients as jaxrnn.
            if reference is None:
                reference = r["grads"]
            else:
                for a, b in zip(
                    jax.tree.leaves(reference), jax.tree.leaves(r["grads"]), strict=True
                ):
                    scale = float(jnp.max(jnp.abs(a))) + 1e-12
                    if float(jnp.max(jnp.abs(a - b))) > 1e-3 * scale:
                        problems.append(f"T={T}: gradients of {name} differ from jaxrnn's")
                        break
    return write_report(lines, problems, args.out)


if __name__ == "__main__":
    sys.exit(main())
