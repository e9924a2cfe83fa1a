"""Time jaxrnn's layers against other recurrent-net implementations, on CPU, in float32.

    python benchmarks/run.py [--quick] [--cells lstm,gru,rnn] [--out benchmarks/RESULTS.md]
                             [--png ratios.png] [--json results.json] [--impls scan,torch]
                             [--shapes 1,2]

For each cell (SimpleRNN, LSTM, GRU) and shape (B, T, I, H) two things are timed:

* forward: all outputs ``(B, T, H)`` of one layer (``return_sequences=True``);
* train: the forward, the mean squared error of all outputs against a fixed random
  target, and the gradients with respect to all the layer's weights (nothing else).

JAX implementations are jitted: trace + compile (``jax.jit(f).lower(*args).compile()``)
is timed once, apart from the run time, which is the median (and min, max) over
repeated calls of the compiled function with ``jax.block_until_ready``, after two
warm-up calls. PyTorch runs eagerly (``torch.no_grad()`` forward, autograd training).
Ratios are alternative / jaxrnn, so a ratio above 1 means jaxrnn is faster.

Every implementation that can load the same weights must give the same forward
outputs as jaxrnn (checked at every shape); a mismatch or an error in any
implementation makes the exit status 1. A library that fails to import is skipped.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
from typing import NamedTuple

import jax
import numpy as np

import jaxrnn

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by path from elsewhere (tests)
    sys.path.insert(0, str(HERE))

from impls import load_impls  # noqa: E402

SHAPES = [  # (B, T, I, H)
    (32, 100, 32, 128),
    (64, 100, 128, 256),
    (16, 1000, 16, 64),
    (128, 28, 28, 128),  # row-by-row MNIST
    (10, 10, 1, 100),  # the sine example's size
    (64, 100, 512, 512),  # PyTorch's fastrnns benchmark
    (4, 4000, 8, 32),  # long and small: per-step overhead
]
QUICK_SHAPES = [(4, 8, 3, 8)]  # one tiny shape: a smoke run of every implementation
CELLS = {  # name -> (title, jaxrnn init)
    "rnn": ("SimpleRNN", jaxrnn.init_rnn),
    "lstm": ("LSTM", jaxrnn.init_lstm),
    "gru": ("GRU", jaxrnn.init_gru),
}
MODES = {
    "forward": "forward (all outputs)",
    "train": "training step (forward + MSE + gradients of all weights)",
}
BASELINE = "jaxrnn"
WARMUP = 2
PARITY_TOL = 1e-4  # max |output - jaxrnn output|, float32
VERSIONED = ("jax", "jaxlib", "flax", "keras", "torch", "equinox", "dm-haiku", "optax", "numpy")


class Timing(NamedTuple):
    median_ms: float
    min_ms: float
    max_ms: float
    n: int


class Result(NamedTuple):
    status: str  # "ok", "n/a" or "error"
    timing: Timing | None = None
    trace_s: float | None = None  # JAX only
    compile_s: float | None = None  # JAX only, without the trace
    error: str | None = None


# ---------------------------------------------------------------------------
# data and timing
# ---------------------------------------------------------------------------


def reference_weights(cell: str, I: int, H: int, seed: int = 0):
    """jaxrnn's Keras-default weights as NumPy, with small random biases.

    The biases are non-zero so that the parity check sees every term; the GRU's
    recurrent bias on n stays zero because Flax NNX's GRUCell has none.
    """
    weights = jax.tree.map(np.asarray, CELLS[cell][1](jax.random.key(seed), I, H))
    rng = np.random.default_rng(seed)
    weights = weights._replace(bias=rng.uniform(-0.1, 0.1, weights.bias.shape).astype(np.float32))
    if cell == "gru":
        recurrent_bias = rng.uniform(-0.1, 0.1, 3 * H).astype(np.float32)
        recurrent_bias[2 * H :] = 0
        weights = weights._replace(recurrent_bias=recurrent_bias)
    return weights


def make_data(B: int, T: int, I: int, H: int, seed: int = 0):
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    target = (0.5 * rng.standard_normal((B, T, H))).astype(np.float32)
    return x, target


def measure(call, repeats: int, budget_s: float) -> Timing:
    """Time ``call()`` ``repeats`` times (at least 3; stop early once ``budget_s`` is spent)."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    ms = np.array(times) * 1e3
    return Timing(float(np.median(ms)), float(ms.min()), float(ms.max()), len(ms))


def run_jax(fn, args, repeats, budget_s):
    """Trace, compile and time a JAX function; return ``(first output, Result)``."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    def call():
        return jax.block_until_ready(compiled(*args))

    out = call()
    for _ in range(WARMUP - 1):
        call()
    timing = measure(call, repeats, budget_s)
    return out, Result("ok", timing, trace_s=t1 - t0, compile_s=t2 - t1)


def run_eager(fn, args, repeats, budget_s):
    """Time an eager (PyTorch) function; return ``(first output, Result)``."""
    out = fn(*args)
    for _ in range(WARMUP - 1):
        fn(*args)
    return out, Result("ok", measure(lambda: fn(*args), repeats, budget_s))


def to_numpy(out) -> np.ndarray:
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)


# ---------------------------------------------------------------------------
# the benchmark loop
# ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_shape(cell, shape, impls, repeats, budget_s):
    """Build, check and time every implementation at one shape.

    Returns ``(results, diffs)``: ``results[(mode, label)]`` is a ``Result``;
    ``diffs[label]`` the max |forward output - jaxrnn's| (None: not comparable).
    """
    B, T, I, H = shape
    weights = reference_weights(cell, I, H)
    x, target = make_data(B, T, I, H)
    results, diffs, built = {}, {}, {}
    for label, build in impls.items():
        try:
            built[label] = build(cell, weights, x, target)
        except Exception as e:
            built[label] = None
            results["forward", label] = results["train", label] = error_result(e)
            continue
        if built[label] is None:
            results["forward", label] = results["train", label] = Result("n/a")

    reference = None
    for mode in MODES:
        for label, b in built.items():
            if b is None:
                continue
            fn, args = (b.forward, b.forward_args) if mode == "forward" else (b.train, b.train_args)
            runner = run_jax if b.framework == "jax" else run_eager
            try:
                out, result = runner(fn, args, repeats, budget_s)
                if mode == "train":
                    check_gradients(out)
                elif label == BASELINE:
                    reference = check_outputs(out, (B, T, H))
                else:
                    y = check_outputs(out, (B, T, H))
                    comparable = b.shares_weights and reference is not None
                    diffs[label] = float(np.max(np.abs(y - reference))) if comparable else None
            except Exception as e:
                result = error_result(e)
            results[mode, label] = result
            log(f"{cell:4s} {fmt_shape(shape):18s} {mode:7s} {label:10s} {describe(result)}")
    return results, diffs


def check_outputs(out, shape) -> np.ndarray:
    y = to_numpy(out)
    if y.shape != shape:
        raise ValueError(f"forward output shape {y.shape}, expected {shape}")
    return y


def check_gradients(grads) -> None:
    leaves = [to_numpy(g) for g in jax.tree.leaves(grads)]
    if not leaves or not all(np.isfinite(g).all() for g in leaves):
        raise ValueError("the training step gave no gradients or non-finite ones")


def error_result(e: Exception) -> Result:
    message = f"{type(e).__name__}: {e}".splitlines()[0][:200]
    return Result("error", error=message)


def describe(result: Result) -> str:
    if result.status != "ok":
        return result.error or result.status
    text = f"{fmt_ms(result.timing.median_ms)} ms"
    if result.compile_s is not None:
        text += f"  (trace {result.trace_s:.2f} s, compile {result.compile_s:.2f} s)"
    return text


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def fmt_shape(shape) -> str:
    return ", ".join(str(n) for n in shape)


def fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.3g}"


def cell_text(result: Result | None, base: Result | None) -> str:
    if result is None:
        return "–"
    if result.status != "ok":
        return "err" if result.status == "error" else "n/a"
    text = f"{fmt_ms(result.timing.median_ms)}"
    if base is not None and base.status == "ok":
        text += f" ({result.timing.median_ms / base.timing.median_ms:.2f}×)"
    return text


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    ram = "?"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram": ram}


def versions() -> dict:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def torch_threads(requested: int | None) -> str:
    try:
        import torch
    except Exception:
        return "PyTorch not importable"
    default = torch.get_num_threads()
    if requested:
        torch.set_num_threads(requested)
        return f"{torch.get_num_threads()} (set by --torch-threads; default {default})"
    return f"{default} (PyTorch's default, left unchanged)"


def git(*cmd: str) -> str:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # read only: never touch the index
    return subprocess.run(
        ["git", *cmd], cwd=HERE, capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


def git_revision() -> str:
    """The commit of the jaxrnn checkout, and whether it has uncommitted changes."""
    try:
        revision = f"git {git('rev-parse', '--short', 'HEAD')}"
        if git("status", "--porcelain", "--untracked-files=no"):
            revision += " + uncommitted changes"
        return revision
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"


def header(args, threads: str, shapes) -> list[str]:
    m = machine_info()
    v = versions()
    return [
        "# jaxrnn benchmarks",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- command: `{shlex.join(['python', 'benchmarks/run.py', *args.argv])}`",
        f"- jaxrnn {jaxrnn.__version__}, {git_revision()}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; "
        f"JAX devices: {', '.join(str(d) for d in jax.devices())}",
        f"- Python {platform.python_version()}; " + ", ".join(f"{k} {v[k]}" for k in VERSIONED),
        f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '')}`"
        if os.environ.get("XLA_FLAGS")
        else "- XLA_FLAGS: not set",
        f"- PyTorch intra-op threads: {threads}",
        f"- timing: float32; median (min–max) ms over {args.repeats} calls after {WARMUP} "
        f"warm-up calls (at least 3 if a measurement exceeds {args.budget:g} s); "
        "compile = trace + XLA compile, in seconds, once per function",
        f"- shapes (B, T, I, H): {'; '.join(fmt_shape(s) for s in shapes)}",
        "- ratio = alternative / jaxrnn median: above 1, jaxrnn is faster",
    ]


def render(args, threads, shapes, cells, labels, results, diffs, notes) -> str:
    lines = header(args, threads, shapes)
    alternatives = [label for label in labels if label != BASELINE]
    for cell in cells:
        for mode, title in MODES.items():
            lines += ["", f"## {CELLS[cell][0]} — {title}", ""]
            cols = ["B, T, I, H", "jaxrnn ms (min–max)", "compile s", *alternatives]
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for shape in shapes:
                base = results.get((cell, shape, mode, BASELINE))
                if base is not None and base.status == "ok":
                    t = base.timing
                    row = [
                        f"{fmt_ms(t.median_ms)} ({fmt_ms(t.min_ms)}–{fmt_ms(t.max_ms)})",
                        f"{base.trace_s + base.compile_s:.2f}",
                    ]
                else:
                    row = [cell_text(base, None), "–"]
                row += [
                    cell_text(results.get((cell, shape, mode, label)), base)
                    for label in alternatives
                ]
                lines.append("| " + " | ".join([fmt_shape(shape), *row]) + " |")
        lines += ["", f"Trace + compile seconds, {CELLS[cell][0]} (forward / train):", ""]
        jax_labels = [label for label in labels if label != "torch"]
        lines += ["| B, T, I, H | " + " | ".join(jax_labels) + " |"]
        lines += ["|" + "---|" * (len(jax_labels) + 1)]
        for shape in shapes:
            row = []
            for label in jax_labels:
                pair = [results.get((cell, shape, mode, label)) for mode in MODES]
                statuses = {r.status for r in pair if r is not None}
                if statuses == {"ok"}:
                    row.append(" / ".join(f"{r.trace_s + r.compile_s:.2f}" for r in pair))
                elif "error" in statuses:
                    row.append("err")
                else:
                    row.append("n/a" if "n/a" in statuses else "–")
            lines.append("| " + " | ".join([fmt_shape(shape), *row]) + " |")

    lines += ["", "## Checks", ""]
    lines.append(
        f"Forward outputs of the implementations that load the same weights, against "
        f"jaxrnn's (max |difference|, tolerance {PARITY_TOL:g}):"
    )
    lines.append("")
    for (cell, shape), d in diffs.items():
        compared = {k: v for k, v in d.items() if v is not None}
        worst = max(compared.values(), default=0.0)
        bad = [k for k, v in compared.items() if v > PARITY_TOL]
        other = [k for k, v in d.items() if v is None]
        line = f"- {CELLS[cell][0]} {fmt_shape(shape)}: max {worst:.1e} over {len(compared)}"
        line += " implementations" + (f"; MISMATCH: {', '.join(bad)}" if bad else "")
        line += f"; not comparable: {', '.join(other)}" if other else ""
        lines.append(line)

    lines += ["", "## Notes", ""]
    lines += [
        "- n/a: the library has no such cell (Equinox: no simple RNN; OptimizedLSTMCell: "
        "LSTM only).",
        "- not comparable: Haiku's VanillaRNN is ReLU and its GRU reset-before; Flax NNX's "
        "GRUCell has no recurrent bias on n (comparable only when that bias is zero).",
        "- JAX implementations run with functional parameters under `jax.jit` "
        "(Flax NNX via split/merge, Keras via `stateless_call`).",
    ]
    lines += [f"- {note}" for note in notes]
    errors = {}  # (label, cell, shape, message) -> modes; a failed build fails both modes
    for (cell, shape, mode, label), r in results.items():
        if r.status == "error":
            errors.setdefault((label, cell, shape, r.error), []).append(mode)
    for (label, cell, shape, message), modes in errors.items():
        where = f"{label}, {cell}, {fmt_shape(shape)}, {' and '.join(modes)}"
        lines.append(f"- error: {where}: {message}")
    return "\n".join(lines) + "\n"


def write_png(path, cells, shapes, labels, results) -> str:
    """Bar chart of training-step ratios (alternative / jaxrnn), one panel per cell."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        return f"--png {path}: matplotlib is not installed, no chart written"
    alternatives = [label for label in labels if label != BASELINE]
    colors = {label: f"C{k % 10}" for k, label in enumerate(alternatives)}
    width = 0.8 / max(1, len(alternatives))
    fig, axes = plt.subplots(len(cells), 1, figsize=(12, 3.5 * len(cells)), squeeze=False)
    for ax, cell in zip(axes[:, 0], cells, strict=True):
        for k, label in enumerate(alternatives):
            offset = (k - (len(alternatives) - 1) / 2) * width
            for i, shape in enumerate(shapes):
                base = results.get((cell, shape, "train", BASELINE))
                r = results.get((cell, shape, "train", label))
                if base and r and base.status == r.status == "ok":
                    ratio = r.timing.median_ms / base.timing.median_ms
                    ax.bar(i + offset, ratio, width, color=colors[label])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set_xticks(range(len(shapes)), [fmt_shape(s) for s in shapes])
        ax.set_ylabel("time / jaxrnn")
        ax.set_title(f"{CELLS[cell][0]} training step (above 1: jaxrnn faster)")
    axes[-1, 0].set_xlabel("B, T, I, H")
    handles = [Patch(color=colors[label], label=label) for label in alternatives]
    fig.legend(handles=handles, loc="upper center", ncol=len(alternatives))
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    return f"wrote {path}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, 3 repeats (CI smoke run)")
    ap.add_argument("--cells", default="rnn,lstm,gru", help="comma list of rnn, lstm, gru")
    ap.add_argument("--impls", default=None, help="comma list of alternatives (default: all)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="Markdown report path")
    ap.add_argument("--png", default=None, help="bar chart of training-step ratios")
    ap.add_argument("--json", default=None, help="also write the raw results as JSON")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls (20; quick: 3)")
    ap.add_argument("--budget", type=float, default=None, help="s per measurement (10; quick: 1)")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument(
        "--shapes", default=None, help="1-based indices into the shape list, e.g. 1,2,4"
    )
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.repeats = args.repeats or (3 if args.quick else 20)
    args.budget = args.budget or (1.0 if args.quick else 10.0)

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        ap.error(f"unknown cells {unknown}; choose from {list(CELLS)}")
    only = None
    if args.impls:
        only = {BASELINE, *(s.strip() for s in args.impls.split(","))}
    impls, notes = load_impls(only)
    if BASELINE not in impls:
        ap.error(f"the {BASELINE} implementation failed to import: {notes}")
    if only is not None and only - set(impls):
        notes.append(f"--impls: not available: {', '.join(sorted(only - set(impls)))}")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        try:
            shapes = [shapes[int(i) - 1] for i in args.shapes.split(",")]
        except (ValueError, IndexError):
            ap.error(f"--shapes takes indices from 1 to {len(shapes)}, got {args.shapes!r}")
    threads = torch_threads(args.torch_threads)
    for note in notes:
        log(note)

    start = time.perf_counter()
    results, diffs = {}, {}
    for cell in cells:
        for shape in shapes:
            shape_results, diffs[cell, shape] = bench_shape(
                cell, shape, impls, args.repeats, args.budget
            )
            for (mode, label), result in shape_results.items():
                results[cell, shape, mode, label] = result
    elapsed = time.perf_counter() - start

    report = render(args, threads, shapes, cells, list(impls), results, diffs, notes)
    report += f"\nTotal benchmark time: {elapsed:.0f} s.\n"
    print(report)
    if args.out:
        pathlib.Path(args.out).write_text(report)
        log(f"wrote {args.out}")
    if args.png:
        log(write_png(args.png, cells, shapes, list(impls), results))
    if args.json:
        records = [
            {
                "cell": c,
                "shape": s,
                "mode": m,
                "impl": label,
                **r._asdict(),
                "timing": r.timing._asdict() if r.timing else None,
            }
            for (c, s, m, label), r in results.items()
        ]
        pathlib.Path(args.json).write_text(json.dumps(records, indent=1))
        log(f"wrote {args.json}")

    failed = any(r.status == "error" for r in results.values())
    mismatched = any(v is not None and v > PARITY_TOL for d in diffs.values() for v in d.values())
    return 1 if failed or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
