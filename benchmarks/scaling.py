"""Data parallelism over one host's devices: LSTM training step and sweeps, by device count.

    python benchmarks/scaling.py [--quick] [--reps N] [--devices 1,2,4] [--timeout S]
                                 [--out RESULTS.md] [--png scaling.png] [--json raw.json]

A JAX process's device count is fixed when JAX starts, so this script (the
parent) runs one worker process per device count ``n`` (``JAX_NUM_CPU_DEVICES=n``
and ``XLA_FLAGS=--xla_force_host_platform_device_count=n``), reads the records
each worker writes as it goes, and renders the tables. A worker that writes
nothing for ``--timeout`` seconds is killed; its current item is reported as
``hang`` and a fresh worker carries on with the items after it.

In the worker with ``n`` devices, at each shape ``(B, T, I, H)``, one training
step of an LSTM with a ``Dense(1)`` head on all outputs (MSE against a random
target, ``optax.adam(1e-3)``, float32) is compiled and then timed interleaved
(one call of each variant per round, so machine noise hits all alike; each call
ended by ``jax.block_until_ready``; median and min over the rounds):

- ``one``: ``make_train_step(loss_fn, opt)``, plain ``jax.jit`` on one device;
- ``split``: ``make_train_step(..., mesh=data_mesh(n), split=True)``: ``shard_map``,
  per-device gradients, one ``pmean`` (only when ``n`` divides ``B``);
- ``auto``: the same with ``split="auto"`` (``jaxrnn.parallel.split_pays``:
  enough rows and work per device, else the whole batch on the first device);
- ``xla``: ``data_parallel_step(step_fn, data_mesh(n), split=True)``, the same step
  partitioned by XLA's SPMD partitioner (only when ``n`` divides ``B``);
- ``torch`` (in the ``n = 1`` worker only, interleaved with ``one``):
  ``nn.LSTM(I, H, batch_first=True)`` + ``nn.Linear(H, 1)`` + ``torch.optim.Adam``,
  the same weights, PyTorch's default number of threads.

The timed calls take the state that the step's first call returned (placed where
the step leaves it, as in a training loop) and a batch placed beforehand: split
over the devices for a split step, on the default device otherwise (so the time
is the step's, not the host-to-device copy of the batch). The loss of every variant's first step and the loss after it must equal the
one-device values to 1e-4 (relative); PyTorch's first loss too. A mismatch makes
the exit status 1.

Sweeps: ``sweep(train_fn, table, mesh=data_mesh(n))`` against ``sweep(train_fn,
table)`` (one device), 8 configurations (4 learning rates x 2 seeds), 20 SGD steps
of the same model each, compiled first (the program is cached per ``train_fn``),
then timed interleaved. ``train_fn`` builds its parameters from the seed with
jaxrnn's defaults (Keras': an orthogonal recurrent kernel), as the sweep in
docs/scale.md does; jaxrnn's orthogonal initialiser calls no LAPACK kernel, whose batched form
used to stall a sharded sweep on several host devices.

speedup = one-device time / variant time (above 1: the variant is faster).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by path from elsewhere (tests)
    sys.path.insert(0, str(HERE))

from run import SHAPES, fmt_ms, fmt_shape, git_revision, machine_info, versions  # noqa: E402

QUICK_SHAPES = [(8, 10, 4, 16)]
SWEEP_SHAPES = [(10, 10, 1, 100), (32, 100, 32, 128)]
QUICK_SWEEP_SHAPES = [(8, 10, 4, 16)]
SWEEP_LRS = (0.01, 0.03, 0.1, 0.3)  # x SWEEP_SEEDS = 8 configurations
SWEEP_SEEDS = (0, 1)
SWEEP_STEPS = 20
QUICK_SWEEP_STEPS = 5
DEVICES = (1, 2, 4)
VARIANTS = ("one", "split", "auto", "xla")
LABELS = {
    "one": "1 device",
    "split": "split=True",
    "auto": "split='auto'",
    "xla": "XLA partitioner",
    "torch": "PyTorch",
}
TOL = 1e-4  # relative, loss of the first step and after it
SWEEP_TOL = 1e-3  # relative, every step of every configuration's history
SECTION = "## Scaling: devices on one host"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# worker: one process, n devices
# ---------------------------------------------------------------------------


def make_data(B, T, I, seed=0):
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = (0.5 * rng.standard_normal((B, T, 1))).astype(np.float32)
    return x, y


def model_loss(params, x, y):
    """MSE of a Dense(1) head on all LSTM outputs."""
    import jax.numpy as jnp

    import jaxrnn

    h = jaxrnn.lstm(params["lstm"], x, return_sequences=True)  # (B, T, H)
    return jnp.mean((h @ params["w"] + params["b"] - y) ** 2)


def init_model(key, I, H, recurrent_init=None):
    import jax
    import jax.numpy as jnp

    import jaxrnn

    k_lstm, k_w = jax.random.split(key)
    kw = {} if recurrent_init is None else {"recurrent_init": recurrent_init}
    return {
        "lstm": jaxrnn.init_lstm(k_lstm, I, H, **kw),
        "w": jax.nn.initializers.glorot_uniform()(k_w, (H, 1)),
        "b": jnp.zeros((1,)),
    }


def torch_step_fn(params, x, y):
    """PyTorch's training step on the same weights; returns ``step() -> loss (float)``."""
    import torch

    p = {k: np.array(v) for k, v in params["lstm"]._asdict().items()}  # writable copies
    I, H = p["kernel"].shape[0], p["recurrent_kernel"].shape[0]
    lstm = torch.nn.LSTM(I, H, batch_first=True)
    head = torch.nn.Linear(H, 1)
    with torch.no_grad():  # gate order i, f, g, o in both
        lstm.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(p["kernel"].T)))
        lstm.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(p["recurrent_kernel"].T)))
        lstm.bias_ih_l0.copy_(torch.from_numpy(p["bias"]))
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.array(params["w"]).T)))
        head.bias.copy_(torch.from_numpy(np.array(params["b"])))
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((head(lstm(xt)[0]) - yt) ** 2)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def interleave(calls: dict, reps: int, budget_s: float) -> dict:
    """Time each ``call()`` once per round, ``reps`` rounds (at least 3; fewer once
    ``budget_s`` is spent); return ``{name: {median_ms, min_ms, reps}}``."""
    import jax

    times = {k: [] for k in calls}
    start = time.perf_counter()
    for r in range(reps):
        for k, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[k].append(time.perf_counter() - t0)
        if r + 1 >= 3 and time.perf_counter() - start > budget_s:
            break
    return {
        k: {
            "median_ms": 1e3 * float(np.median(v)),
            "min_ms": 1e3 * float(np.min(v)),
            "reps": len(v),
        }
        for k, v in times.items()
    }


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def bench_step(shape, n, reps, budget_s, with_torch):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxrnn import parallel
    from jaxrnn.train import TrainState, make_train_step

    B, T, I, H = shape
    x, y = make_data(B, T, I)
    params = init_model(jax.random.key(0), I, H)

    def loss_fn(p, x, y, key):
        return model_loss(p, x, y)

    opt = optax.adam(1e-3)
    state0 = TrainState.create(params, opt)  # on the default device, as a user makes it
    batch_1 = (jnp.asarray(x), jnp.asarray(y))  # on the default device
    calls = {"one": (make_train_step(loss_fn, opt), batch_1)}
    auto_splits = None
    if n > 1:
        mesh = parallel.data_mesh(n)
        divisible = B % n == 0
        batch_n = jax.device_put((x, y), parallel.batch_sharding(mesh)) if divisible else None
        auto_splits = parallel.split_pays(
            B, n, steps=T, parameters=parallel.parameter_count(params)
        )
        if divisible:
            calls["split"] = (make_train_step(loss_fn, opt, mesh=mesh, split=True), batch_n)
        calls["auto"] = (
            make_train_step(loss_fn, opt, mesh=mesh, split="auto"),
            batch_n if auto_splits else batch_1,
        )
        if divisible:
            whole = make_train_step(loss_fn, opt, jit=False)
            dp = parallel.data_parallel_step(lambda s, b: whole(s, b, None), mesh, split=True)
            calls["xla"] = (lambda s, b, key: dp(s, b), batch_n)

    # The first call (compile + run) starts from state0 and is checked; the timed calls
    # start from the state it returned, placed where the step leaves it (as in a loop).
    eval_loss = jax.jit(model_loss)
    funcs, first_s, losses = {}, {}, {}
    for name, (step, batch) in calls.items():
        t0 = time.perf_counter()
        state1, metrics = jax.block_until_ready(step(state0, batch, None))
        first_s[name] = time.perf_counter() - t0
        after = float(eval_loss(jax.device_get(state1.params), x, y))
        losses[name] = (float(metrics["loss"]), after)
        funcs[name] = lambda step=step, state=state1, batch=batch: step(state, batch, None)
    threads = None
    if with_torch:
        import torch

        threads = torch.get_num_threads()
        tstep = torch_step_fn(params, x, y)
        t0 = time.perf_counter()
        losses["torch"] = (tstep(), None)
        first_s["torch"] = time.perf_counter() - t0
        funcs["torch"] = tstep

    ref = losses["one"]
    checks = {}
    for name, (first, after) in losses.items():
        if name == "one":
            continue
        d = rel(first, ref[0]) if after is None else max(rel(first, ref[0]), rel(after, ref[1]))
        checks[name] = d
    for f in funcs.values():  # warm-up
        jax.block_until_ready(f())
    timing = interleave(funcs, reps, budget_s)
    return {
        "kind": "step",
        "shape": list(shape),
        "n": n,
        "timing": timing,
        "first_s": first_s,
        "losses": losses,
        "checks": checks,
        "auto_splits": auto_splits,
        "torch_threads": threads,
    }


def make_sweep_train(shape, steps):
    import jax
    import jax.numpy as jnp
    import optax

    B, T, I, H = shape
    x, y = (jnp.asarray(a) for a in make_data(B, T, I))

    def train_fn(hp):
        # Parameters from the seed with the default (orthogonal) recurrent initialiser.
        params = init_model(jax.random.key(hp["seed"]), I, H)
        opt = optax.sgd(hp["lr"])

        def step(carry, _):
            p, s = carry
            value, g = jax.value_and_grad(model_loss)(p, x, y)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), value

        (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), length=steps)
        return {"loss": model_loss(params, x, y)}, losses

    return train_fn


def bench_sweep(shape, n, reps, budget_s, steps):
    import jax

    from jaxrnn.parallel import data_mesh
    from jaxrnn.sweep import grid, sweep

    train_fn = make_sweep_train(shape, steps)
    table = grid(lr=list(SWEEP_LRS), seed=list(SWEEP_SEEDS))
    mesh = data_mesh(n)
    runs = {
        "one": lambda: sweep(train_fn, table, metric="loss"),
        "mesh": lambda: sweep(train_fn, table, metric="loss", mesh=mesh),
    }
    first_s, histories = {}, {}
    for name, run in runs.items():
        t0 = time.perf_counter()
        r = run()
        histories[name] = np.asarray(jax.device_get(r.histories))
        first_s[name] = time.perf_counter() - t0
    h1, hn = histories["one"], histories["mesh"]
    diff = float(np.max(np.abs(hn - h1) / np.maximum(np.abs(h1), 1e-30)))
    for run in runs.values():  # warm-up
        jax.block_until_ready(run().histories)
    timing = interleave(
        {k: (lambda run=run: run().histories) for k, run in runs.items()}, reps, budget_s
    )
    return {
        "kind": "sweep",
        "shape": list(shape),
        "n": n,
        "configs": len(table["lr"]),
        "steps": steps,
        "timing": timing,
        "first_s": first_s,
        "check": diff,
        "final_loss": [float(h1[:, -1].min()), float(h1[:, -1].max())],
    }


def worker(args) -> int:
    import jax

    out = open(args.records, "a")

    def emit(record):
        out.write(json.dumps(record) + "\n")
        out.flush()

    n = jax.device_count()
    if n != args.worker:
        emit({"kind": "fatal", "message": f"asked for {args.worker} devices, JAX has {n}"})
        return 2
    from jaxrnn import parallel

    emit(
        {
            "kind": "meta",
            "n": n,
            "devices": [str(d) for d in jax.devices()],
            "min_rows": parallel.MIN_ROWS_PER_DEVICE,
            "min_work": parallel.MIN_WORK_PER_DEVICE,
        }
    )
    shapes = QUICK_SHAPES if args.quick else SHAPES
    sweep_shapes = QUICK_SWEEP_SHAPES if args.quick else SWEEP_SHAPES
    steps = QUICK_SWEEP_STEPS if args.quick else SWEEP_STEPS
    for item in args.items.split(","):
        emit({"kind": "start", "item": item})
        what, i = item.split(":")
        try:
            if what == "step":
                shape = shapes[int(i)]
                rec = bench_step(shape, n, args.reps, args.budget, with_torch=n == 1)
                t = rec["timing"]
                log(
                    f"[n={n}] step {fmt_shape(shape)}: "
                    + ", ".join(f"{k} {fmt_ms(v['median_ms'])} ms" for k, v in t.items())
                )
            else:
                shape = sweep_shapes[int(i)]
                rec = bench_sweep(shape, n, args.reps, args.budget, steps)
                t = rec["timing"]
                log(
                    f"[n={n}] sweep {fmt_shape(shape)}: "
                    + ", ".join(f"{k} {fmt_ms(v['median_ms'])} ms" for k, v in t.items())
                )
        except Exception as e:
            message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            log(f"[n={n}] {item}: {message}")
            rec = {"kind": "failed", "message": message}
        rec["item"] = item
        emit(rec)
    return 0


# ---------------------------------------------------------------------------
# parent: one worker per device count
# ---------------------------------------------------------------------------


def worker_env(n: int) -> dict:
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={n}".strip()
    env["JAX_NUM_CPU_DEVICES"] = str(n)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def items_for(n: int, quick: bool) -> list[str]:
    shapes = QUICK_SHAPES if quick else SHAPES
    items = [f"step:{i}" for i in range(len(shapes))]
    if n > 1:  # at n = 1 the sharded sweep is the one-device sweep
        items += [f"sweep:{i}" for i in range(len(QUICK_SWEEP_SHAPES if quick else SWEEP_SHAPES))]
    return items


def run_worker(n, items, args, tmp: pathlib.Path) -> tuple[list[dict], dict]:
    """Run ``items`` in workers with ``n`` devices; return (records, {item: problem})."""
    records, problems = [], {}
    attempt = 0
    while items:
        attempt += 1
        path = tmp / f"records-{n}-{attempt}.jsonl"
        errlog = tmp / f"stderr-{n}-{attempt}.txt"
        cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", str(n)]
        cmd += ["--items", ",".join(items), "--records", str(path)]
        cmd += ["--reps", str(args.reps), "--budget", str(args.budget)]
        cmd += ["--quick"] if args.quick else []
        with open(errlog, "w") as err:
            proc = subprocess.Popen(
                cmd, env=worker_env(n), stdout=err, stderr=err, start_new_session=True
            )
            done, last_change, size, echoed = [], time.monotonic(), -1, 0
            current = None
            stalled = False
            while True:
                rc = proc.poll()
                text = path.read_text() if path.exists() else ""
                if len(text) != size:
                    size, last_change = len(text), time.monotonic()
                lines = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
                log_text = errlog.read_text()
                for line in log_text[echoed:].splitlines(keepends=True):
                    if line.endswith("\n"):
                        echoed += len(line)
                        if line.startswith("[n="):
                            log(line.rstrip())
                if rc is not None:
                    break
                if time.monotonic() - last_change > args.timeout:
                    stalled = True
                    os.killpg(proc.pid, signal.SIGKILL)  # the worker's own process group
                    proc.wait()
                    break
                time.sleep(0.5)
        current = None
        for rec in lines:
            if rec["kind"] == "start":
                current = rec["item"]
            elif rec["kind"] == "fatal":
                problems.update({item: f"error: {rec['message']}" for item in items})
                return records, problems
            elif rec["kind"] != "meta":
                done.append(rec["item"])
                current = None
                if rec["kind"] == "failed":
                    problems[rec["item"]] = f"error: {rec['message']}"
                else:
                    records.append(rec)
            else:
                records.append(rec)
        remaining = [item for item in items if item not in done]
        if not remaining:
            break
        culprit = current or remaining[0]
        if stalled:
            problems[culprit] = f"hang: no progress for {args.timeout:g} s; killed"
        else:
            tail = [s for s in errlog.read_text().splitlines() if s.strip()][-1:]
            problems[culprit] = f"error: worker exited with status {rc}: {' '.join(tail)[:300]}"
        log(f"[n={n}] {culprit}: {problems[culprit]}")
        items = remaining[remaining.index(culprit) + 1 :]
    return records, problems


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def med(rec, name, stat="median_ms"):
    t = rec["timing"].get(name)
    return None if t is None else t[stat]


def cell(rec, name) -> str:
    t = rec["timing"].get(name)
    return "–" if t is None else f"{fmt_ms(t['median_ms'])} ({fmt_ms(t['min_ms'])})"


def speedup(rec, name, base="one", stat="median_ms") -> float | None:
    a, b = med(rec, base, stat), med(rec, name, stat)
    return None if a is None or b is None else a / b


def fmt_speedup(rec, name) -> str:
    """Speedup of medians, and of minima in parentheses (less sensitive to other load)."""
    r = speedup(rec, name)
    return "–" if r is None else f"{r:.2f} ({speedup(rec, name, stat='min_ms'):.2f})"


def suggestion(steps: dict) -> list[str]:
    """From the explicit split's speedups: where splitting started to pay, per device count."""
    lines = []
    for n in sorted({k[1] for k in steps}):
        if n == 1:
            continue
        points = []  # (rows per device, speedup, speedup of minima, shape)
        for (shape, m), rec in steps.items():
            s = speedup(rec, "split") if m == n else None
            if s is not None:
                points.append((shape[0] // n, s, speedup(rec, "split", stat="min_ms"), shape))
        if not points:
            continue
        won = sorted(r for r, s, _, _ in points if s > 1)
        lost = sorted(r for r, s, _, _ in points if s <= 1)
        text = f"- suggestion (n={n}, split=True vs 1 device): "
        text += f"smallest B/n where split was faster: {won[0] if won else 'none'}; "
        text += f"largest B/n where it was slower: {lost[-1] if lost else 'none'}"
        if won and (not lost or lost[-1] < won[0]):
            text += f" -> rows per device alone separate them here ({lost[-1] if lost else 0}, {won[0]}]"
        elif won:
            text += " -> rows per device alone do not separate them (the work per device does)"
        detail = "; ".join(
            f"{fmt_shape(shape)}: B/n={r}, {s:.2f}x ({s_min:.2f}x)"
            for r, s, s_min, shape in sorted(points)
        )
        lines += [text, f"  ({detail})"]
    return lines


def render(args, meta, steps, sweeps, problems, load_before, load_after, elapsed) -> str:
    m, v = machine_info(), versions()
    min_rows = next((mt["min_rows"] for mt in meta.values()), "?")
    min_work = next((mt.get("min_work", float("nan")) for mt in meta.values()), float("nan"))
    threads = next(
        (rec["torch_threads"] for rec in steps.values() if rec.get("torch_threads")), None
    )
    shapes = QUICK_SHAPES if args.quick else SHAPES
    devices = args.devices
    lines = [
        SECTION,
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; "
        f"command: `{shlex.join(['python', 'benchmarks/scaling.py', *args.argv])}`; "
        f"{git_revision()}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; load average "
        f"(1, 5, 15 min) {load_before} at the start, {load_after} at the end",
        f"- Python {platform.python_version()}; "
        + ", ".join(f"{k} {v[k]}" for k in ("jax", "jaxlib", "optax", "torch", "numpy")),
        f"- one worker process per device count {', '.join(map(str, devices))}: "
        "`JAX_NUM_CPU_DEVICES=n`, `XLA_FLAGS=--xla_force_host_platform_device_count=n` "
        "(host devices share the machine's cores)",
        f"- the rule of split='auto' (`jaxrnn.parallel.split_pays`): at least "
        f"MIN_ROWS_PER_DEVICE = {min_rows} rows and MIN_WORK_PER_DEVICE = {min_work:g} "
        "(rows x steps x parameters) per device",
        f"- PyTorch intra-op threads: {threads if threads else '–'} (its default), "
        "timed in the n=1 worker, interleaved with the one-device JAX step",
        f"- LSTM + Dense(1) on all outputs, MSE, Adam(1e-3), float32; ms: median (min) over "
        f"up to {args.reps} interleaved rounds (at least 3; fewer once {args.budget:g} s "
        "are spent), after a compile call and a warm-up call",
        "- speedup = 1-device ms / variant ms, both in the same worker (above 1: faster), "
        "of the medians (of the minima in parentheses: less sensitive to other load on the "
        "machine); B/n = rows per device",
    ]

    lines += ["", "### Training step by device count", ""]
    cols = [
        "B, T, I, H",
        "n",
        "B/n",
        "1 device ms",
        "split=True ms",
        "split='auto' ms",
        "XLA partitioner ms",
        "speedup split",
        "speedup auto",
        "speedup XLA",
        "auto splits",
    ]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for shape in shapes:
        for n in devices:
            key = (tuple(shape), n)
            if key in steps:
                rec = steps[key]
                row = [fmt_shape(shape), str(n), f"{shape[0] / n:g}", cell(rec, "one")]
                row += [cell(rec, k) for k in ("split", "auto", "xla")]
                row += [fmt_speedup(rec, k) for k in ("split", "auto", "xla")]
                row.append({None: "–", True: "yes", False: "no"}[rec["auto_splits"]])
            elif key in problems:
                row = [fmt_shape(shape), str(n), f"{shape[0] / n:g}"]
                row += [problems[key].split(":")[0]] + ["–"] * (len(cols) - 4)
            else:
                continue
            lines.append("| " + " | ".join(row) + " |")

    lines += ["", "### Against PyTorch (CPU, eager)", ""]
    lines += [
        "Ratio = jaxrnn / PyTorch (below 1: jaxrnn faster). PyTorch and the first jaxrnn "
        "column are interleaved in the n=1 worker; PyTorch's OpenMP threads spin-wait after "
        "each call by default and can slow the JAX step that follows, so the one-device time "
        "of the n=2 worker (no PyTorch in that process) is shown too. jaxrnn best = the "
        "fastest jaxrnn median at that shape over every variant and device count.",
        "",
    ]
    cols = [
        "B, T, I, H",
        "PyTorch ms",
        "jaxrnn 1 device ms (n=1 worker)",
        "/ PyTorch",
        "1 device ms (n=2 worker)",
        "/ PyTorch",
        "jaxrnn best ms",
        "best is",
        "best / PyTorch",
    ]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for shape in shapes:
        rec1 = steps.get((tuple(shape), 1))
        if rec1 is None or "torch" not in rec1["timing"]:
            continue
        t = med(rec1, "torch")
        rec2 = steps.get((tuple(shape), 2))
        best = min(
            (med(rec, k), f"{LABELS[k]}, n={n}")
            for (s, n), rec in steps.items()
            if s == tuple(shape)
            for k in VARIANTS
            if med(rec, k) is not None
        )
        row = [
            fmt_shape(shape),
            cell(rec1, "torch"),
            cell(rec1, "one"),
            f"{med(rec1, 'one') / t:.2f}",
            cell(rec2, "one") if rec2 else "–",
            f"{med(rec2, 'one') / t:.2f}" if rec2 else "–",
            fmt_ms(best[0]),
            best[1],
            f"{best[0] / t:.2f}",
        ]
        lines.append("| " + " | ".join(row) + " |")

    if sweeps or any(k[0] == "sweep" for k in problems):
        lines += ["", "### Sweeps: `sweep(..., mesh=data_mesh(n))` vs one device", ""]
        lines += [
            f"{len(SWEEP_LRS) * len(SWEEP_SEEDS)} configurations (lr {', '.join(map(str, SWEEP_LRS))}"
            f" x seed {', '.join(map(str, SWEEP_SEEDS))}), SGD; run ms: median (min) of whole "
            "sweeps after a compile call; Δ = max relative difference of the loss histories, "
            "mesh vs one device.",
            "",
        ]
        cols = [
            "B, T, I, H",
            "steps",
            "n",
            "1 device ms",
            "mesh ms",
            "speedup",
            "compile + first run s (1 device / mesh)",
            "Δ",
        ]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for shape in QUICK_SWEEP_SHAPES if args.quick else SWEEP_SHAPES:
            for n in devices:
                key = ("sweep", tuple(shape), n)
                if key in sweeps:
                    rec = sweeps[key]
                    f = rec["first_s"]
                    row = [
                        fmt_shape(shape),
                        str(rec["steps"]),
                        str(n),
                        cell(rec, "one"),
                        cell(rec, "mesh"),
                        fmt_speedup(rec, "mesh"),
                        f"{f['one']:.1f} / {f['mesh']:.1f}",
                        f"{rec['check']:.1e}",
                    ]
                elif key in problems:
                    row = [fmt_shape(shape), "–", str(n), problems[key].split(":")[0]]
                    row += ["–"] * (len(cols) - 4)
                else:
                    continue
                lines.append("| " + " | ".join(row) + " |")

    lines += ["", "### Compile + first call, s", ""]
    names = [*VARIANTS, "torch"]
    cols = ["B, T, I, H", "n", *(LABELS[k] for k in names)]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for shape in shapes:
        for n in devices:
            rec = steps.get((tuple(shape), n))
            if rec is not None:
                f = rec["first_s"]
                row = [fmt_shape(shape), str(n)]
                row += [f"{f[k]:.2f}" if k in f else "–" for k in names]
                lines.append("| " + " | ".join(row) + " |")

    lines += ["", "### Checks and notes", ""]
    worst = max((d for rec in steps.values() for d in rec["checks"].values()), default=0.0)
    bad = [
        f"{fmt_shape(s)}, n={n}, {LABELS[k]}: {d:.1e}"
        for (s, n), rec in steps.items()
        for k, d in rec["checks"].items()
        if d > TOL
    ]
    lines.append(
        f"- loss of the first step and after it, every variant vs 1 device (PyTorch: first "
        f"loss): max relative difference {worst:.1e} (tolerance {TOL:g})"
        + (f"; MISMATCH: {'; '.join(bad)}" if bad else "")
    )
    if sweeps:
        worst_sweep = max(rec["check"] for rec in sweeps.values())
        bad_sweep = [
            f"{fmt_shape(s)}, n={n}: {rec['check']:.1e}"
            for (_, s, n), rec in sweeps.items()
            if rec["check"] > SWEEP_TOL
        ]
        lines.append(
            f"- sweep loss histories, mesh vs 1 device: max relative difference "
            f"{worst_sweep:.1e} (tolerance {SWEEP_TOL:g})"
            + (f"; MISMATCH: {'; '.join(bad_sweep)}" if bad_sweep else "")
        )
    lines.append(
        "- sweeps build their parameters inside `train_fn` from the seed with jaxrnn's "
        "default (orthogonal, LAPACK-free) recurrent initialiser"
    )
    for key, problem in problems.items():
        what = "sweep " if key[0] == "sweep" else ""
        shape, n = (key[1], key[2]) if key[0] == "sweep" else key
        lines.append(
            f"- {problem.split(':')[0]}: {what}{fmt_shape(shape)}, n={n}: "
            f"{problem.split(':', 1)[1].strip()}"
        )
    unsplit = [
        f"{fmt_shape(s)}, n={n}: {fmt_speedup(rec, 'auto')}"
        for (s, n), rec in steps.items()
        if rec["auto_splits"] is False
    ]
    if unsplit:
        lines.append(
            "- split='auto' where it does not split (the whole batch, as jaxrnn.train runs "
            "it unsplit) vs 1 device, speedup of medians (of minima): " + "; ".join(unsplit)
        )
    lines += suggestion(steps)
    lines.append(f"- total time: {elapsed:.0f} s")
    return "\n".join(lines) + "\n"


def write_png(path, args, steps, sweeps) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter, ScalarFormatter
    except ImportError:
        return f"--png {path}: matplotlib is not installed, no figure written"
    shapes = QUICK_SHAPES if args.quick else SHAPES
    sweep_shapes = QUICK_SWEEP_SHAPES if args.quick else SWEEP_SHAPES
    devices = args.devices
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
    panels = [("split", "make_train_step(split=True)"), ("xla", "data_parallel_step (XLA)")]
    for ax, (name, title) in zip(axes[:2], panels, strict=True):
        for k, shape in enumerate(shapes):
            xs, ys = [], []
            for n in devices:
                rec = steps.get((tuple(shape), n))
                s = 1.0 if n == 1 and rec else (speedup(rec, name) if rec else None)
                if s is not None:
                    xs.append(n)
                    ys.append(s)
            if xs:
                ax.plot(xs, ys, "o-", color=f"C{k % 10}", label=fmt_shape(shape))
        ax.set_title(f"training step: {title}")
    for k, shape in enumerate(sweep_shapes):
        xs, ys = [], []
        for n in devices:
            rec = sweeps.get(("sweep", tuple(shape), n))
            s = 1.0 if n == 1 else (speedup(rec, "mesh") if rec else None)
            if s is not None:
                xs.append(n)
                ys.append(s)
        if len(xs) > 1:
            axes[2].plot(xs, ys, "s-", color=f"C{k % 10}", label=fmt_shape(shape))
    axes[2].set_title(f"sweep of {len(SWEEP_LRS) * len(SWEEP_SEEDS)} configurations")
    for ax in axes:
        ax.plot(devices, devices, ":", color="gray", label="ideal")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(devices, [str(d) for d in devices])
        ax.set_yticks([0.5, 0.75, 1, 1.5, 2, 3, 4])
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("host devices")
        ax.legend(fontsize=8, title="B, T, I, H", title_fontsize=8)
    axes[0].set_ylabel("speedup over 1 device (above 1: faster)")
    fig.suptitle(f"LSTM data parallelism over host devices, {os.cpu_count()} CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"wrote {path}"


def parent(args) -> int:
    import tempfile

    load_before = load_average()
    start = time.perf_counter()
    meta, steps, sweeps, problems = {}, {}, {}, {}
    shapes = QUICK_SHAPES if args.quick else SHAPES
    sweep_shapes = QUICK_SWEEP_SHAPES if args.quick else SWEEP_SHAPES
    with tempfile.TemporaryDirectory(prefix="jaxrnn-scaling-") as tmp:
        for n in args.devices:
            log(f"worker with {n} device(s) ...")
            records, worker_problems = run_worker(
                n, items_for(n, args.quick), args, pathlib.Path(tmp)
            )
            for rec in records:
                if rec["kind"] == "meta":
                    meta[n] = rec
                elif rec["kind"] == "step":
                    steps[tuple(rec["shape"]), n] = rec
                elif rec["kind"] == "sweep":
                    sweeps["sweep", tuple(rec["shape"]), n] = rec
            for item, problem in worker_problems.items():
                what, i = item.split(":")
                if what == "step":
                    problems[tuple(shapes[int(i)]), n] = problem
                else:
                    problems["sweep", tuple(sweep_shapes[int(i)]), n] = problem
    elapsed = time.perf_counter() - start
    report = render(args, meta, steps, sweeps, problems, load_before, load_average(), elapsed)
    print(report)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + report)
        log(f"appended to {args.out}")
    if args.png:
        log(write_png(args.png, args, steps, sweeps))
    if args.json:
        pathlib.Path(args.json).write_text(
            json.dumps(
                {
                    "steps": list(steps.values()),
                    "sweeps": list(sweeps.values()),
                    "problems": {repr(k): v for k, v in problems.items()},
                },
                indent=1,
            )
        )
    mismatch = any(d > TOL for rec in steps.values() for d in rec["checks"].values())
    mismatch |= any(rec["check"] > SWEEP_TOL for rec in sweeps.values())
    if mismatch:
        log("MISMATCH: a variant's loss differs from the one-device step (see Checks)")
    return 1 if mismatch or problems else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (a smoke run)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved rounds (15; quick: 3)")
    ap.add_argument(
        "--budget", type=float, default=None, help="s of rounds per item (60; quick: 2)"
    )
    ap.add_argument("--devices", default="1,2,4", help="device counts, one worker each")
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="kill a worker silent this long, s (400; quick: 60)",
    )
    ap.add_argument("--out", default=None, help="append the section to this Markdown file")
    ap.add_argument("--png", default=str(HERE / "scaling.png"), help="speedup figure")
    ap.add_argument("--json", default=None, help="also write the raw records as JSON")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--items", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--records", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.reps = args.reps or (3 if args.quick else 15)
    args.budget = args.budget or (2.0 if args.quick else 60.0)
    args.timeout = args.timeout or (60.0 if args.quick else 400.0)
    if args.worker is not None:
        return worker(args)
    try:
        args.devices = [int(d) for d in args.devices.split(",")]
    except ValueError:
        ap.error(f"--devices takes a comma list of device counts, got {args.devices!r}")
    if 1 not in args.devices:
        ap.error("--devices must include 1 (the baseline of PyTorch's comparison)")
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
