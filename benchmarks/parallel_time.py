"""Parallel-in-time evaluation against the sequential scan: iterations, error, time.

    python benchmarks/parallel_time.py [--quick] [--sections newton,stress] [--cells gru,lstm,rnn]
        [--methods quasi_deer,deer] [--steps 1000,10000,100000] [--batches 1,16]
        [--hidden 8,32,64] [--linear auto] [--reps 5] [--budget 20]
        [--memory-gb 6] [--stress-scale 4] [--out RESULTS.md]

One table per section; each section is a function ``(args) -> rows`` in
``SECTIONS`` (add one to benchmark another family of methods).

**stress** (``--stress-scale``, default 4): the layers' Newton methods on a
recurrent kernel scaled far from contraction, with and without the fallback.

**newton** (``jaxrnn._time.newton.solve``, behind ``jaxrnn.unroll(step, ...,
method=...)`` and the layers' ``method=``):
for each cell (``gru_step``, ``lstm_step``, ``rnn_step`` at Keras' initialisation,
input size = H), shape ``(T, B, H)`` and method (``quasi_deer``: diagonal / LSTM
``(h_i, c_i)`` block Jacobians; ``deer``: dense Jacobians), the forward pass of all
outputs ``(B, T, H)`` is compiled and timed against ``method="sequential"`` (the
same step under ``lax.scan``) and against the layer function (``jaxrnn.gru`` …,
its fused sequential path). The Newton calls run with ``fallback=None`` so that
the time is Newton's alone; **conv** says whether it reached the default
tolerance (1e-5 relative) within 100 iterations, **iters** how many it ran,
**err** is ``max|ys − ys_scan|``.

How: ``jax.jit(f).lower(...)`` and ``.compile()`` are timed once (**compile s**,
their sum); run time is the median of ``--reps`` calls of the compiled function,
each ended by ``jax.block_until_ready``, after one warm-up call, stopping early
(after at least one call) once a measurement has spent ``--budget`` seconds.
A shape whose Newton program would need more than ``--memory-gb`` of scratch
memory (estimated before compiling: dense DEER holds ``T·B·(k·H)²`` Jacobians,
``k`` = 2 for the LSTM; checked after compiling with XLA's memory analysis) is
skipped with the reason printed. **ratio** = Newton ms / scan ms (above 1:
slower than the sequential scan).

On a CPU the sequential scan does the least work and is hard to beat: Newton's
methods trade O(T) dependent steps for a few iterations of O(log T) depth each,
which pays on hardware with many parallel lanes (GPU/TPU), not on a few cores.
The table shows the iteration counts and the price per iteration on this machine.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn._cells.spec import spec_of
from jaxrnn._time import newton

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by path from elsewhere (tests)
    sys.path.insert(0, str(HERE))

from run import machine_info, versions  # noqa: E402

CELLS = {  # name: (init, step, layer, state fields k)
    "gru": (jaxrnn.init_gru, jaxrnn.gru_step, jaxrnn.gru, 1),
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm_step, jaxrnn.lstm, 2),
    "rnn": (jaxrnn.init_rnn, jaxrnn.rnn_step, jaxrnn.simple_rnn, 1),
}
GB = 2**30


# --- timing -------------------------------------------------------------------------------


def compile_timed(fn: Callable, *args):
    """``(compiled, seconds)``: ``jax.jit(fn).lower(*args).compile()``, timed."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def run_timed(compiled, *args, reps: int, budget: float):
    """``(result, median seconds)`` over up to ``reps`` calls after one warm-up."""
    out = jax.block_until_ready(compiled(*args))
    times, start = [], time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return out, float(np.median(times))


def scratch_gb(compiled) -> float:
    try:
        return compiled.memory_analysis().temp_size_in_bytes / GB
    except Exception:  # not every backend reports it
        return 0.0


# --- the newton section -----------------------------------------------------------------


def newton_estimate_gb(method: str, steps: int, batch: int, hidden: int, k: int) -> float:
    """A rough scratch-memory bound of one Newton solve, before compiling: the
    iterates, the Jacobians and the associative scan's partial products (~3 copies)."""
    state = steps * batch * k * hidden * 4
    if method == "deer":
        return (10 * state + 3 * steps * batch * (k * hidden) ** 2 * 4) / GB
    return (10 * state + 3 * k * k * steps * batch * hidden * 4) / GB


def newton_section(args) -> tuple[list[str], list[str]]:
    """Rows of the Newton table, and notes (skips, failures)."""
    header = [
        "## Newton's methods (DEER, quasi-DEER) against the sequential scan: forward pass",
        "",
        "| cell | T, B, H | method | iters | conv | err | compile s | ms | scan ms | "
        "layer ms | ratio to scan |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for line in header:
        print(line, flush=True)
    rows, notes = list(header), []
    for cell in args.cells:
        init, step, layer, k = CELLS[cell]
        for steps in args.steps:
            for batch in args.batches:
                for hidden in args.hidden:
                    rows += _newton_rows(
                        args, cell, init, step, layer, k, steps, batch, hidden, notes
                    )
    return rows, notes


def _newton_rows(args, cell, init, step, layer, k, steps, batch, hidden, notes):
    params = init(jax.random.key(0), hidden, hidden)
    xs = jax.random.normal(jax.random.key(1), (batch, steps, hidden))
    carry = jaxrnn.zero_state(params, batch)
    shape = f"{steps}, {batch}, {hidden}"

    def scan(p, x):
        return jaxrnn.unroll(step, p, x, carry)[1]

    def fused(p, x):
        return layer(p, x, return_sequences=True)

    scan_c, _ = compile_timed(scan, params, xs)
    ys_ref, scan_s = run_timed(scan_c, params, xs, reps=args.reps, budget=args.budget)
    layer_c, _ = compile_timed(fused, params, xs)
    _, layer_s = run_timed(layer_c, params, xs, reps=args.reps, budget=args.budget)
    rows = []
    for method in args.methods:
        for linear in args.linear:
            label = method if len(args.linear) == 1 else f"{method} ({linear})"
            estimate = newton_estimate_gb(method, steps, batch, hidden, k)
            if estimate > args.memory_gb:
                note = (
                    f"{cell} {shape} {label}: skipped, ~{estimate:.1f} GB of scratch memory "
                    f"estimated (> --memory-gb {args.memory_gb:g})"
                )
                print(f"<!-- {note} -->", flush=True)
                notes.append(note)
                continue

            def newton(p, x, method=method, linear=linear):
                return _unroll_newton(step, p, x, carry, method, linear)

            try:
                compiled, compile_s = compile_timed(newton, params, xs)
                if scratch_gb(compiled) > args.memory_gb:
                    note = (
                        f"{cell} {shape} {label}: skipped, XLA needs "
                        f"{scratch_gb(compiled):.1f} GB of scratch (> --memory-gb)"
                    )
                    print(f"<!-- {note} -->", flush=True)
                    notes.append(note)
                    continue
                (ys, info), run_s = run_timed(
                    compiled, params, xs, reps=args.reps, budget=args.budget
                )
            except Exception as e:  # report, keep going
                note = f"{cell} {shape} {label}: error {type(e).__name__}: {e}"[:300]
                print(f"<!-- {note} -->", flush=True)
                notes.append(note)
                continue
            err = float(jnp.max(jnp.abs(ys - ys_ref)))
            row = (
                f"| {cell} | {shape} | {label} | {int(info.iterations)} | "
                f"{'yes' if bool(info.converged) else 'no'} | {err:.1e} | {compile_s:.2f} | "
                f"{1e3 * run_s:.1f} | {1e3 * scan_s:.1f} | {1e3 * layer_s:.1f} | "
                f"{run_s / scan_s:.1f} |"
            )
            print(row, flush=True)
            rows.append(row)
    return rows


def _unroll_newton(step, params, xs, carry, method, linear):
    """``jaxrnn.unroll(..., method=method)`` as ``newton.solve`` (to choose the linear
    solver; ``"auto"``: the default of this backend). Returns ``(ys, info)``."""
    _, ys, info = newton.solve(
        spec_of(params), {}, params, carry, jnp.swapaxes(xs, 0, 1), None, method=method,
        fallback=None, linear_method=None if linear == "auto" else linear,
    )  # fmt: skip
    return jnp.swapaxes(ys, 0, 1), info


# --- the stress section -----------------------------------------------------------------


def stress_section(args) -> tuple[list[str], list[str]]:
    """Far from contraction: Keras' initialisation with the recurrent kernel scaled
    by ``--stress-scale``, T = 1000, B = 4, input size 8, each H of ``--hidden``
    (capped at 32). Newton runs with ``fallback=None`` (the last finite iterate);
    **err** is its max |error| against the step-by-step scan (``impl="scan"``, the
    fallback's algorithm), **with fallback** that of the default
    ``fallback="sequential"``. (Such a recurrence can be chaotic: the fused layer and
    the scan, both exact in float32 arithmetic, may part after a few steps; the
    note under the table gives their distance.)"""
    steps, batch = (200 if args.quick else 1000), 4
    header = [
        f"## Newton's methods far from contraction: recurrent kernel x{args.stress_scale:g}, "
        f"T = {steps}, B = {batch}",
        "",
        "| cell | H | method | iters | conv | final residual | err | err with fallback |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for line in header:
        print(line, flush=True)
    rows, notes = list(header), []
    for cell in args.cells:
        init, _, layer, _ = CELLS[cell]
        for hidden in sorted({min(h, 32) for h in args.hidden}):
            params = init(jax.random.key(0), 8, hidden)
            params = params._replace(recurrent_kernel=args.stress_scale * params.recurrent_kernel)
            xs = jax.random.normal(jax.random.key(1), (batch, steps, 8))
            ref = layer(params, xs, return_sequences=True, impl="scan")
            fused = layer(params, xs, return_sequences=True)
            apart = float(jnp.max(jnp.abs(fused - ref)))
            if apart > 1e-4:
                notes.append(
                    f"{cell} H={hidden}: the fused layer and the scan differ by {apart:.1e} "
                    "(rounding, amplified by a chaotic recurrence)"
                )
            for method in args.methods:
                kw = dict(method=method, return_sequences=True, return_info=True)
                ys, info = layer(params, xs, fallback=None, **kw)
                safe, _ = layer(params, xs, **kw)
                err = float(jnp.max(jnp.abs(ys - ref)))
                safe_err = float(jnp.max(jnp.abs(safe - ref)))
                row = (
                    f"| {cell} | {hidden} | {method} | {int(info.iterations)} | "
                    f"{'yes' if bool(info.converged) else 'no'} | {float(info.residual):.1e} | "
                    f"{err:.1e} | {safe_err:.1e} |"
                )
                print(row, flush=True)
                rows.append(row)
    return rows, notes


SECTIONS = {"newton": newton_section, "stress": stress_section}


# --- main -------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, a smoke run (< 60 s)")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--cells", default="gru,lstm,rnn")
    ap.add_argument("--methods", default="quasi_deer,deer")
    ap.add_argument("--steps", default="1000,10000,100000", help="T values")
    ap.add_argument("--batches", default="1,16", help="B values")
    ap.add_argument("--hidden", default="8,32,64", help="H values")
    ap.add_argument(
        "--linear",
        default="auto",
        help="the Newton iterations' linear solvers: auto (this backend's default), "
        "associative, chunked, or several separated by commas",
    )
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per measurement")
    ap.add_argument("--memory-gb", type=float, default=6.0, help="skip larger programs")
    ap.add_argument("--stress-scale", type=float, default=4.0, help="stress: kernel scale")
    ap.add_argument("--out", default=None, help="append the tables to this file")
    args = ap.parse_args(argv)
    args.cells = args.cells.split(",")
    args.methods = args.methods.split(",")
    args.linear = args.linear.split(",")
    args.steps, args.batches, args.hidden = (
        _ints(args.steps), _ints(args.batches), _ints(args.hidden)
    )  # fmt: skip
    if args.quick:
        args.steps, args.batches, args.hidden, args.reps = [200], [2], [8], 2
    m, v = machine_info(), versions()
    intro = [
        "",
        f"`python benchmarks/parallel_time.py{' --quick' if args.quick else ''}`; "
        f"{platform.platform()}; {m['cpu']}, {m['cores']} cores (os.cpu_count), {m['ram']} "
        f"RAM; Python {platform.python_version()}, jax {v['jax']}, jaxlib {v['jaxlib']}; "
        f"float32; ms = median of up to {args.reps} runs (budget {args.budget:g} s); linear "
        f"solver {', '.join(args.linear)} (auto = {newton.default_linear_method()} here).",
        "",
    ]
    for line in intro:
        print(line, flush=True)
    lines, status = list(intro), 0
    for name in args.sections.split(","):
        rows, notes = SECTIONS[name](args)
        lines += rows
        if notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
            status |= any("error" in n for n in notes)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
