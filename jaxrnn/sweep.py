"""Hyperparameter sweeps as one compiled program: ``jax.vmap`` over configurations.

A training run written as a pure function of its scalar hyperparameters,
``train_fn(hparams) -> (result, history)``, is run for every row of a table
at once::

    for i in range(N):                              # what sweep computes ...
        results[i], histories[i] = train_fn({k: table[k][i] for k in table})

    jax.jit(jax.vmap(train_fn))(table)              # ... as one program

Anything that does not change shapes can be swept: learning rate, weight decay,
clip norm, initialisation scale, the seed, and dropout rates (the layers'
``dropout=`` / ``recurrent_dropout=`` accept a traced rate, which always draws
its masks and needs a ``key``; a swept rate of 0 keeps every unit).
``chunk_size`` bounds memory by running ``chunk_size`` configurations at
a time (``lax.map`` over chunks of vmapped configurations, still one
program); ``mesh`` spreads the configurations over devices (``shard_map``).

Learning rates reach optax as arrays, either directly (``optax.adam(lr)``
accepts a traced scalar) or through ``optax.inject_hyperparams``, which also
keeps them in the optimiser state where a schedule or a test can read them.

This module needs only JAX; ``import jaxrnn`` does not import it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import parallel
from ._checks import positive_int

__all__ = ["Best", "SweepResult", "grid", "sweep"]

_KINDS = {"b": "bool", "i": "int", "u": "unsigned int", "f": "float"}


class Best(NamedTuple):
    """The best configuration of a sweep by its metric."""

    index: int  # row of the table
    hparams: dict[str, Any]  # that row, as Python scalars
    value: float  # its metric


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What ``sweep`` returns; N is the number of configurations.

    Attributes:
        table: the hyperparameters, ``{name: (N,) numpy array}`` (row ``i`` is
            configuration ``i``).
        results: ``train_fn``'s first output, every leaf stacked to ``(N, ...)``.
        histories: ``train_fn``'s second output, every leaf stacked to ``(N, ...)``.
        metrics: ``(N,)`` float64 numpy array of the metric per configuration.
        mode: ``"min"`` or ``"max"``, how ``best`` was chosen.
        best: ``Best(index, hparams, value)`` over the configurations whose metric
            is finite; None when none is (every run diverged).
    """

    table: dict[str, np.ndarray]
    results: Any
    histories: Any
    metrics: np.ndarray
    mode: str
    best: Best | None

    def __len__(self) -> int:
        return len(self.metrics)

    def hparams(self, i: int) -> dict[str, Any]:
        """Row ``i`` of the table as a dict of Python scalars.

        Examples:
            >>> r = sweep(lambda hp: (hp["lr"] ** 2, hp["lr"]), {"lr": [0.5, 0.25]})
            >>> r.hparams(1)
            {'lr': 0.25}
        """
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(
                f"SweepResult.hparams: index {i} is out of range for {n} configurations."
            )
        return {k: v[int(i)].item() for k, v in self.table.items()}

    def run(self, i: int) -> tuple[Any, Any]:
        """``(result, history)`` of configuration ``i``, leading axis removed.

        Examples:
            >>> r = sweep(lambda hp: (hp["lr"] ** 2, hp["lr"] * jnp.arange(3.0)),
            ...           {"lr": [0.5, 0.25]})
            >>> result, history = r.run(0)
            >>> float(result), history.tolist()
            (0.25, [0.0, 0.5, 1.0])
        """
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"SweepResult.run: index {i} is out of range for {n} configurations.")
        pick = functools.partial(_take, int(i))
        return jax.tree.map(pick, self.results), jax.tree.map(pick, self.histories)


def _take(i: int, a: Any) -> Any:
    return a[i]


def grid(**axes: Any) -> dict[str, np.ndarray]:
    """The cartesian product of hyperparameter axes, as a sweep table.

    The first axis varies slowest, as in ``itertools.product``: row ``i`` is
    ``product(*axes.values())[i]``. A scalar is an axis with one value.

    Args:
        **axes: ``name=values``, each a 1-D sequence (or scalar) of numbers.

    Returns:
        ``{name: (N,) numpy array}`` with ``N`` the product of the axis lengths.

    Raises:
        ValueError: no axes, an empty axis, or an axis that is not 1-D.
        TypeError: an axis of non-numeric values.

    Examples:
        >>> t = grid(lr=[0.1, 0.01], seed=[0, 1, 2])
        >>> t["lr"].tolist()
        [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
        >>> t["seed"].tolist()
        [0, 1, 2, 0, 1, 2]
    """
    if not axes:
        raise ValueError("grid: give at least one axis, e.g. grid(lr=[1e-3, 1e-2], seed=[0, 1]).")
    values = {}
    for name, v in axes.items():
        a = np.asarray(v)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim != 1:
            raise ValueError(
                f"grid: axis {name!r} must be a 1-D sequence of values, got shape {a.shape}."
            )
        if a.size == 0:
            raise ValueError(f"grid: axis {name!r} has no values; the product would be empty.")
        _check_kind(a, f"grid: axis {name!r}")
        values[name] = a
    mesh = np.meshgrid(*values.values(), indexing="ij")
    return {name: m.ravel() for name, m in zip(values, mesh, strict=True)}


def _check_kind(a: np.ndarray, what: str) -> None:
    if a.dtype.kind not in _KINDS:
        raise TypeError(
            f"{what} has dtype {a.dtype}; hyperparameters must be numbers (bool, int or "
            "float). A choice that changes the program (optimiser, architecture, activation) "
            "cannot be vmapped: run one sweep per choice."
        )


def _columns(table: Any, where: str) -> dict[str, np.ndarray]:
    """Validate a table (dict of columns or list of rows); return its columns."""
    if isinstance(table, Mapping):
        if not table:
            raise ValueError(
                f"{where}: the table is empty (no columns); e.g. {{'lr': [1e-3, 1e-2]}}."
            )
        cols = {}
        for name, col in table.items():
            if not isinstance(name, str):
                raise TypeError(f"{where}: column names must be strings, got {name!r}.")
            a = np.asarray(col)
            if a.ndim == 0:
                raise ValueError(
                    f"{where}: column {name!r} is a scalar ({col!r}); give one value per "
                    f"configuration, e.g. [{col!r}], or build the table with grid()."
                )
            if a.ndim != 1:
                raise ValueError(
                    f"{where}: column {name!r} has shape {a.shape}; each configuration's value "
                    "must be a scalar, so a column must be 1-D (one value per configuration). "
                    "Hyperparameters that change shapes cannot be vmapped."
                )
            _check_kind(a, f"{where}: column {name!r}")
            cols[name] = a
        lengths = {name: len(a) for name, a in cols.items()}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"{name}={n}" for name, n in lengths.items())
            raise ValueError(
                f"{where}: the table's columns have unequal lengths ({listing}); every column "
                "needs one value per configuration. Use grid(...) for a cartesian product."
            )
        if next(iter(lengths.values())) == 0:
            raise ValueError(f"{where}: the table has no configurations (its columns are empty).")
        return cols
    if isinstance(table, Sequence) and not isinstance(table, (str, bytes)):
        if len(table) == 0:
            raise ValueError(f"{where}: the table is empty (an empty list of configurations).")
        rows = list(table)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(
                    f"{where}: a list table must hold dicts (one per configuration); row {i} is "
                    f"a {type(row).__name__}."
                )
        keys = list(rows[0])
        for i, row in enumerate(rows[1:], start=1):
            if set(row) != set(keys):
                missing = sorted(set(keys) - set(row))
                extra = sorted(set(row) - set(keys))
                raise ValueError(
                    f"{where}: row {i} has different keys from row 0 (missing {missing}, "
                    f"extra {extra}); every configuration must set the same hyperparameters."
                )
        for i, row in enumerate(rows):
            for k, v in row.items():
                if np.ndim(v) != 0:
                    raise ValueError(
                        f"{where}: row {i}, {k!r} has shape {np.shape(v)}; hyperparameters must "
                        "be scalars."
                    )
        return _columns({k: [row[k] for row in rows] for k in keys}, where)
    raise TypeError(
        f"{where}: table must be a dict of equal-length 1-D sequences or a list of dicts, got "
        f"{type(table).__name__}."
    )


def _body(train_fn: Callable, chunk: int | None, table: dict[str, jax.Array]):
    """Run ``train_fn`` over the (local) rows of ``table``: vmap, or lax.map of vmapped chunks."""
    run = jax.vmap(train_fn)
    if chunk is None:
        return run(table)
    rows = next(iter(table.values())).shape[0]
    chunks = {k: v.reshape(rows // chunk, chunk) for k, v in table.items()}
    out = jax.lax.map(run, chunks)  # leaves (rows // chunk, chunk, ...)
    return jax.tree.map(lambda a: a.reshape(rows, *a.shape[2:]), out)


def _program(
    train_ref: Callable, chunk: int | None, mesh: Mesh | None, table: dict[str, jax.Array]
):
    body = functools.partial(_body, train_ref(), chunk)
    if mesh is not None:
        # Each device trains its own configurations; nothing is communicated. No
        # varying-axis checks: train_fn may freely mix per-configuration values with
        # closed-over (replicated) ones, e.g. a scan carry that starts from fixed params.
        spec = PartitionSpec(tuple(mesh.axis_names))
        body = jax.shard_map(body, mesh=mesh, in_specs=(spec,), out_specs=spec, check_vma=False)
    return body(table)


# One jitted program per train_fn, held weakly: a sweep does not keep train_fn
# (and the data it closes over) alive, and the same train_fn reuses its program.
_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jitted(train_fn: Callable) -> Callable:
    try:
        return _PROGRAMS[train_fn]
    except (KeyError, TypeError):
        pass
    try:
        ref = weakref.ref(train_fn)
    except TypeError:  # not weak-referenceable: a program per call
        return jax.jit(functools.partial(_program, lambda: train_fn), static_argnums=(0, 1))
    # The program holds train_fn only weakly, or the entry would never be freed.
    jitted = jax.jit(functools.partial(_program, ref), static_argnums=(0, 1))
    _PROGRAMS[train_fn] = jitted
    return jitted


@functools.partial(jax.jit, static_argnums=(0, 1))
def _replicated(n: int, mesh: Mesh, out: Any) -> Any:
    """The first ``n`` rows of every leaf, replicated on every device of ``mesh``."""
    everywhere = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a[:n], everywhere), out)


def _place_table(cols, n, devices, per_device, chunk, mesh, processes):
    """``(pad, args)``: the table padded to whole chunks per device, placed on the mesh."""
    rows = per_device if chunk is None else math.ceil(per_device / chunk) * chunk
    pad = devices * rows - n
    padded = {k: np.concatenate([a, np.repeat(a[-1:], pad)]) for k, a in cols.items()}
    if mesh is None:
        return pad, {k: jnp.asarray(a) for k, a in padded.items()}
    sharding = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    if processes:
        return pad, parallel.put_global(padded, sharding)
    return pad, jax.device_put({k: jnp.asarray(a) for k, a in padded.items()}, sharding)


def _batched_lapack(program, chunk, mesh, args) -> bool:
    """Whether the sweep's program calls a LAPACK kernel (QR, eigh, Cholesky, solve, ...).

    Under ``vmap`` such a call is batched, and jaxlib's LAPACK kernels may then
    split the batch over XLA:CPU's worker pool, which deadlocks when several
    host devices do so at once. Read from the lowered program (no compilation).
    """
    try:
        text = program.trace(chunk, mesh, args).lower().as_text()
    except Exception:  # noqa: BLE001 - the real call below reports any error itself
        return False
    return "lapack_" in text


def _metric_leaf(out: Any, metric: str | None, where: str) -> Any:
    """The (stacked) result leaf that a None/str metric names; raise if there is none."""
    result = out[0]
    if metric is None:
        if not hasattr(result, "ndim") or result.ndim != 1:
            raise ValueError(
                f"{where}: metric=None ranks configurations by train_fn's result, which must "
                f"then be one scalar; got {_describe(result)}. Pass metric='name' for a field "
                "of the result, or a callable metric(result, history) -> scalar."
            )
        return result
    if isinstance(result, Mapping) and metric in result:
        leaf = result[metric]
    elif not isinstance(result, Mapping) and hasattr(result, metric):
        leaf = getattr(result, metric)
    else:
        raise ValueError(
            f"{where}: metric={metric!r} is not a field of train_fn's result "
            f"({_describe(result)}). Pass one of its fields, or a callable "
            "metric(result, history) -> scalar."
        )
    if not hasattr(leaf, "ndim") or leaf.ndim != 1:
        raise ValueError(
            f"{where}: metric={metric!r} must name a scalar per configuration; got "
            f"{_describe(leaf)}."
        )
    return leaf


def _describe(tree: Any) -> str:
    """Shapes of one configuration's outputs (leading config axis dropped)."""
    if isinstance(tree, Mapping):
        return "a dict with keys " + str(sorted(tree))
    leaves = jax.tree.leaves(tree)
    shapes = [tuple(leaf.shape[1:]) for leaf in leaves if hasattr(leaf, "shape")]
    return f"a {type(tree).__name__} with leaf shapes {shapes}"


def sweep(
    train_fn: Callable[[dict[str, jax.Array]], tuple[Any, Any]],
    table: Mapping[str, Sequence] | Sequence[Mapping[str, Any]],
    *,
    chunk_size: int | None = None,
    metric: str | Callable[[Any, Any], Any] | None = None,
    mode: str = "min",
    mesh: Mesh | None = None,
) -> SweepResult:
    """Train every configuration of ``table`` at once: ``jax.vmap`` inside one ``jax.jit``.

    Semantics, for ``N`` configurations::

        for i in range(N):
            results[i], histories[i] = train_fn({k: table[k][i] for k in table})

    computed as one compiled program (equal to the loop up to float32 rounding;
    tested to 1e-5). ``train_fn`` is traced once per table size and chunking, and
    the compiled program is cached: a second sweep with the same ``train_fn`` and
    table shapes reuses it.

    Args:
        train_fn: a pure function ``hparams -> (result, history)``; ``hparams``
            maps each column name to a 0-d array (float32 for floats, int32 for
            ints, bool) and may be traced, so use ``jnp`` (not Python ``if``) on
            it. Close over data, or bind it with ``functools.partial``; the same
            function object reuses the compiled program. Each output is any
            pytree of arrays with the same shapes for every configuration.
        table: ``{name: (N,) sequence}`` of equal lengths (e.g. from ``grid``), or
            a list of ``N`` dicts with the same keys. Values are scalar numbers.
        chunk_size: run at most this many configurations at once (per device
            with a mesh), to bound memory: ``lax.map`` over chunks of vmapped
            configurations, one program, no recompile per chunk. The last chunk
            is padded with copies of the last configuration, whose outputs are
            dropped. None runs all at once.
        metric: how to rank configurations for ``best``: None (the result itself
            is the scalar), the name of a scalar field of the result (dict key or
            attribute), or a callable ``metric(result, history) -> scalar`` called
            on each configuration's outputs (numpy, leading axis removed).
        mode: ``"min"`` or ``"max"``: whether a smaller or larger metric is better.
            Non-finite metrics (diverged runs) never win.
        mesh: a ``jax.sharding.Mesh`` (e.g. ``jaxrnn.parallel.data_mesh()``): the
            configurations are split over all of its devices with
            ``jax.shard_map`` (padded to a multiple of the device count); each
            device trains its share, with no communication. A mesh over several
            processes (``jaxrnn.parallel.initialize``): every process calls
            ``sweep`` with the same ``train_fn`` and table (the table is checked
            by a hash), each process's devices train their share, and the
            outputs are then gathered so that every process returns the whole
            result (results and histories replicated; ``metrics`` and ``best``
            the same everywhere).

    Returns:
        A ``SweepResult`` with ``table``, ``results`` and ``histories`` (leaves
        ``(N, ...)``), ``metrics`` ``(N,)`` and ``best = Best(index, hparams, value)``.

    Raises:
        ValueError: an empty table, columns of unequal lengths (named with their
            lengths), non-scalar values, a bad ``chunk_size`` or ``mode``, or a
            metric that does not name a scalar of the result.
        TypeError: non-numeric hyperparameters, or ``train_fn`` not returning a
            pair.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> x = jnp.linspace(-1.0, 1.0, 16)
        >>> y = 3.0 * x - 0.5
        >>> def train(hp):
        ...     # inject_hyperparams: the learning rate is an array in the state
        ...     opt = optax.inject_hyperparams(optax.sgd)(learning_rate=hp["lr"])
        ...     w = hp["init_scale"] * jax.random.normal(jax.random.key(hp["seed"]), (2,))
        ...     loss = lambda w: jnp.mean((w[0] * x + w[1] - y) ** 2)
        ...     def step(carry, _):
        ...         w, s = carry
        ...         value, g = jax.value_and_grad(loss)(w)
        ...         u, s = opt.update(g, s)
        ...         return (optax.apply_updates(w, u), s), value
        ...     (w, _), losses = jax.lax.scan(step, (w, opt.init(w)), length=50)
        ...     return {"loss": loss(w), "w": w}, losses
        >>> r = sweep(train, grid(lr=[0.01, 0.1, 0.5], seed=[0, 1], init_scale=0.1),
        ...           metric="loss", chunk_size=4)
        >>> len(r), r.histories.shape, r.results["w"].shape
        (6, (6, 50), (6, 2))
        >>> r.best.hparams["lr"]
        0.5
    """
    where = "sweep"
    if not callable(train_fn):
        raise TypeError(f"{where}: train_fn must be callable, got {type(train_fn).__name__}.")
    if mode not in ("min", "max"):
        raise ValueError(f"{where}: mode={mode!r}; use 'min' (smaller is better) or 'max'.")
    if chunk_size is not None:
        what = " (configurations at once) or None (all at once)"
        positive_int(chunk_size, where, "chunk_size", what=what)
    if metric is not None and not isinstance(metric, str) and not callable(metric):
        raise TypeError(
            f"{where}: metric must be None, a field name or a callable, got {type(metric).__name__}."
        )
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(f"{where}: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    cols = _columns(table, where)
    n = len(next(iter(cols.values())))

    devices = 1 if mesh is None else mesh.size
    per_device = math.ceil(n / devices)
    chunk = None if chunk_size is None or chunk_size >= per_device else int(chunk_size)
    processes = mesh is not None and parallel.spans_processes(
        NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    )
    if processes:  # every process holds the table; each places its own rows
        parallel.check_same(cols, "table", where)
    program = _jitted(train_fn)
    pad, args = _place_table(cols, n, devices, per_device, chunk, mesh, processes)
    if (
        devices > 1
        and chunk != 1
        and per_device > 1
        and _batched_lapack(program, chunk, mesh, args)
    ):
        # A batched LAPACK call (e.g. a QR under vmap) on several host devices can
        # deadlock XLA:CPU's shared worker pool (see jaxrnn/_cells/orthogonal.py); one
        # configuration at a time per device makes every such call unbatched.
        chunk = 1
        pad, args = _place_table(cols, n, devices, per_device, chunk, mesh, processes)

    # Trace first (the trace is cached for the call below) to check the outputs'
    # structure before spending time on training.
    out_info = program.trace(chunk, mesh, args).out_info
    if not isinstance(out_info, tuple) or len(out_info) != 2:
        raise TypeError(
            f"{where}: train_fn must return a pair (result, history), got "
            f"{type(out_info).__name__}. Return e.g. (final_loss, losses_per_step)."
        )
    if not callable(metric):
        _metric_leaf(out_info, metric, where)

    out = program(chunk, mesh, args)
    if processes:  # each process trained its share; every process gets all (all-gather)
        out = _replicated(n, mesh, out)
    elif pad:
        out = jax.tree.map(lambda a: a[:n], out)
    results, histories = out

    if callable(metric):
        host_r, host_h = jax.device_get((results, histories))
        values = np.array(
            [
                float(
                    metric(
                        jax.tree.map(functools.partial(_take, i), host_r),
                        jax.tree.map(functools.partial(_take, i), host_h),
                    )
                )
                for i in range(n)
            ],
            dtype=np.float64,
        )
    else:
        values = np.asarray(jax.device_get(_metric_leaf(out, metric, where)), dtype=np.float64)

    finite = np.isfinite(values)
    best = None
    if finite.any():
        score = np.where(finite, values, np.inf if mode == "min" else -np.inf)
        i = int(np.argmin(score) if mode == "min" else np.argmax(score))
        best = Best(i, {k: v[i].item() for k, v in cols.items()}, float(values[i]))
    return SweepResult(cols, results, histories, values, mode, best)
