"""Memory and time of very long sequences, by memory option (one process, interleaved).

    python benchmarks/long_memory.py [--quick] [--cells lstm,rnn,gru] [--reps N] [--out RESULTS.md]

B=16, I=8, H=64, float32. For each cell, three runs of a layer call under
``jax.jit``: the forward pass returning the last output, the forward pass
returning all outputs, and the training step (value and gradients w.r.t. the
parameters of the mean squared output, all outputs). Each is compiled for the
default fused path, ``remat="step"``, ``remat="sqrt"`` and the generic scan
(``impl="scan"``). Memory is XLA's compiled ``memory_analysis()``: ``temp`` is
the scratch memory (for training: what is stored for the backward pass plus the
backward pass's own work arrays); the output itself (``T·B·H`` floats with all
outputs) is not included. At T = 10,000 and 100,000 the variants are also run,
interleaved, and timed (median of ``--reps`` calls after one warm-up call); at
T = 1,000,000 only the memory analysis is made (nothing runs). Every variant's
values and gradients are checked against the default's. ``--quick`` (a smoke
run): B=2, I=2, H=8 at T = 100 and 1,000 (memory only at 10,000).
With ``--out`` the tables replace the section ``## Long sequences: memory and
time by option`` of that file (appended when it has none).
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

TITLE = "## Long sequences: memory and time by option"
MB = 2**20
CELLS = {
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm),
    "rnn": (jaxrnn.init_rnn, jaxrnn.simple_rnn),
    "gru": (jaxrnn.init_gru, jaxrnn.gru),
}
VARIANTS = {
    "default": {},
    "remat='step'": {"remat": "step"},
    "remat='sqrt'": {"remat": "sqrt"},
    "impl='scan'": {"impl": "scan"},
}
RUNS = ("forward, last output", "forward, all outputs", "training step")


def make(layer, run: str, kw: dict):
    """The jittable function of ``run`` for one variant."""
    if run == "training step":
        return jax.value_and_grad(
            lambda p, x: jnp.mean(layer(p, x, return_sequences=True, **kw) ** 2)
        )
    return lambda p, x: layer(p, x, return_sequences=run == "forward, all outputs", **kw)


def check(name: str, got, want) -> None:
    """Values and gradients agree to float32 accumulation error over a long sequence."""
    for u, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        u, w = np.asarray(u), np.asarray(w)
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        np.testing.assert_allclose(u, w, rtol=1e-3, atol=1e-3 * scale + 1e-6, err_msg=name)


def measure(layer, params, run: str, b: int, t: int, i: int, reps: int, timed: bool):
    """``{variant: (temp MiB, output MiB, median ms or None)}`` for one run and length."""
    x_spec = jax.ShapeDtypeStruct((b, t, i), jnp.float32)
    compiled = {n: jax.jit(make(layer, run, kw)).lower(params, x_spec).compile()
                for n, kw in VARIANTS.items()}  # fmt: skip
    mem = {
        n: (
            c.memory_analysis().temp_size_in_bytes / MB,
            c.memory_analysis().output_size_in_bytes / MB,
        )
        for n, c in compiled.items()
    }
    if not timed:
        return {n: (*mem[n], None) for n in compiled}
    x = jax.random.normal(jax.random.key(1), (b, t, i))
    ref = jax.block_until_ready(compiled["default"](params, x))
    for n, c in compiled.items():  # warm-up call and agreement check
        if n != "default":
            check(f"{run}, T={t}, {n}", jax.block_until_ready(c(params, x)), ref)
    del ref
    times = {n: [] for n in compiled}
    for _ in range(reps):
        for n, c in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(params, x))
            times[n].append(time.perf_counter() - t0)
    return {n: (*mem[n], 1e3 * float(np.median(times[n]))) for n in compiled}


def replace_section(path: pathlib.Path, section: list[str]) -> None:
    """Put ``section`` (starting with ``TITLE``) in place of the old one, or append it."""
    old = path.read_text().splitlines() if path.exists() else []
    if TITLE in old:
        start = old.index(TITLE)
        end = next((j for j in range(start + 1, len(old)) if old[j].startswith("## ")), len(old))
        new = old[:start] + section + ([""] if end < len(old) else []) + old[end:]
    else:
        new = old + ([""] if old else []) + section
    path.write_text("\n".join(new) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--cells", default="lstm,rnn,gru")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None, help="replace/append the section in this file")
    args = ap.parse_args(argv)
    b, i, h = (2, 2, 8) if args.quick else (16, 8, 64)
    lengths = [(100, True), (1000, True), (10_000, False)] if args.quick else [
        (10_000, True), (100_000, True), (1_000_000, False)]  # fmt: skip
    m, v = machine_info(), versions()
    names = list(VARIANTS)
    lines = [
        TITLE,
        "",
        f"`python benchmarks/long_memory.py`; {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; "
        f"Python {platform.python_version()}, jax {v['jax']}, jaxlib {v['jaxlib']}. "
        f"B={b}, I={i}, H={h}, float32. MiB = XLA's compiled scratch memory "
        "(`memory_analysis().temp_size_in_bytes`; the output is not included: all outputs "
        "are `out MiB`); ms = median of "
        f"{args.reps} calls, the four variants interleaved in one process (at T = "
        f"{lengths[-1][0]:,} memory only: nothing runs). Training step = value and "
        "gradients w.r.t. the parameters of mean(outputs**2), all outputs.",
        "",
        "| cell | run | T | out MiB | "
        + " | ".join(f"{n} MiB" for n in names)
        + " | "
        + " | ".join(f"{n} ms" for n in names)
        + " |",
        "|---|---|---|---|" + "---|" * (2 * len(names)),
    ]
    for line in lines:
        print(line, flush=True)
    for cell in args.cells.split(","):
        init, layer = CELLS[cell]
        params = init(jax.random.key(0), i, h)
        for run in RUNS:
            for t, timed in lengths:
                res = measure(layer, params, run, b, t, i, args.reps, timed)
                out = res["default"][1] if run == "forward, all outputs" else 0.0
                row = (
                    f"| {cell} | {run} | {t:,} | {out:,.0f} | "
                    + " | ".join(f"{res[n][0]:,.1f}" for n in names)
                    + " | "
                    + " | ".join("–" if res[n][2] is None else f"{res[n][2]:,.1f}" for n in names)
                    + " |"
                )
                print(row, flush=True)
                lines.append(row)
    if args.out:
        replace_section(pathlib.Path(args.out), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
