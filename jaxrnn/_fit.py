"""The Keras-style layer of ``jaxrnn.train``: ``fit``, ``History`` and ``EarlyStopping``.

``fit`` is made of four pieces over the functional core (``jaxrnn._train_core``):

- ``_check_fit_args``: every argument checked, and the data prepared, before
  anything compiles; it returns a ``_Plan``;
- ``_run_epoch``: one epoch, the training steps over the shuffled batches, then
  validation; it returns the new state and the epoch's logs;
- ``EarlyStopping.update``: the stopping rule, a pure function of what it has
  seen so far (an ``EarlyStoppingState``) and the epoch's logs;
- ``_Progress``: a tqdm bar per epoch, or one line per epoch.

The public names are re-exported by ``jaxrnn.train``; import them from there.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp  # noqa: F401  (fit's doctest uses it)
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import parallel
from ._checks import positive_int
from ._train_core import (
    LossFn,
    MetricFn,
    TrainState,
    batch_slices,
    cached_eval_step,
    cached_train_step,
    check_batch_size,
    check_clipnorm,
    check_loss_fn,
    check_metrics,
    check_xy,
    get_optimizer,
    run_eval,
    take,
)

# --- early stopping -------------------------------------------------------------------------


class EarlyStoppingState(NamedTuple):
    """What ``EarlyStopping.update`` has seen so far (``EarlyStopping.start()`` is the first).

    ``best`` is the best monitored value *times the sign of the mode* (``+1`` for
    ``"min"``, ``-1`` for ``"max"``), so that smaller is always better.
    """

    best: float | None = None  # the best signed value so far; None before the first epoch
    best_epoch: int | None = None  # the epoch that gave it
    best_state: Any = None  # the training state after that epoch
    wait: int = 0  # epochs since the last improvement
    stopped_epoch: int | None = None  # the epoch at which to stop, once it is reached


class EarlyStopping(NamedTuple):
    """Stop ``fit`` when a monitored quantity stops improving (Keras' ``EarlyStopping``).

    After each epoch, with ``best`` the best value so far::

        improved = value < best - min_delta     (mode "min"; "max": value > best + min_delta)
        wait = 0 if improved else wait + 1
        stop if wait >= patience and this is not the first epoch

    so ``patience=0`` stops at the first epoch that does not improve (never the
    first epoch). ``restore_best=True`` returns the parameters (and optimizer
    state) of the best epoch at the end of training, whether or not it stopped
    early. ``mode="auto"`` is ``"max"`` when the name contains ``"acc"``, else ``"min"``.

    Examples:
        >>> EarlyStopping(patience=3).monitor
        'val_loss'
    """

    monitor: str = "val_loss"
    patience: int = 0
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = False

    @property
    def resolved_mode(self) -> str:
        """``"min"`` or ``"max"``: ``mode``, with ``"auto"`` resolved from the monitor's name.

        Examples:
            >>> EarlyStopping("val_acc").resolved_mode, EarlyStopping("val_loss").resolved_mode
            ('max', 'min')
        """
        if self.mode != "auto":
            return self.mode
        return "max" if "acc" in self.monitor else "min"

    def start(self) -> EarlyStoppingState:
        """The state before the first epoch: nothing seen yet."""
        return EarlyStoppingState()

    def update(
        self, seen: EarlyStoppingState, epoch: int, logs: Mapping[str, float], state: Any
    ) -> EarlyStoppingState:
        """``seen`` updated with one epoch's ``logs`` (``state``: the training state after it).

        With ``value = sign * logs[monitor]`` (``sign`` ``+1`` for mode ``"min"``,
        ``-1`` for ``"max"``)::

            improved = best is None or value < best - min_delta or (best is nan and value is not)
            if improved: best, best_epoch, best_state, wait = value, epoch, state, 0
            else: wait += 1; stop at this epoch if wait >= patience and epoch > 0

        A pure function: the result's ``stopped_epoch`` is set when training should stop.

        Examples:
            >>> es = EarlyStopping("loss", patience=1)
            >>> seen = es.start()
            >>> for epoch, loss in enumerate([3.0, 2.0, 2.5, 1.0]):
            ...     seen = es.update(seen, epoch, {"loss": loss}, state=f"after epoch {epoch}")
            ...     if seen.stopped_epoch is not None:
            ...         break
            >>> seen.best_epoch, seen.best_state, seen.stopped_epoch
            (1, 'after epoch 1', 2)
        """
        sign = 1.0 if self.resolved_mode == "min" else -1.0
        value, best = sign * logs[self.monitor], seen.best
        if (
            best is None
            or value < best - self.min_delta
            or (math.isnan(best) and not math.isnan(value))
        ):
            return EarlyStoppingState(value, epoch, state, 0, None)
        wait = seen.wait + 1
        stop = wait >= self.patience and epoch > 0
        return seen._replace(wait=wait, stopped_epoch=epoch if stop else None)

    def final_state(self, seen: EarlyStoppingState, state: Any) -> Any:
        """The state ``fit`` returns: the best epoch's when ``restore_best`` (and there was
        one), else ``state``, the last one."""
        if self.restore_best and seen.best_state is not None:
            return seen.best_state
        return state


class History:
    """Per-epoch logs of ``fit``, as Keras' ``History``.

    Attributes:
        history: ``{name: [value per epoch]}`` with ``"loss"``, each metric, and
            ``"val_loss"``/``"val_<metric>"`` when there is validation data.
        epoch: the epoch indices run (0-based).
        stopped_epoch: the epoch at which early stopping stopped training, else None.
        best_epoch: the best epoch of the early-stopping monitor, else None.

    Examples:
        >>> h = History()
        >>> h.append(0, {"loss": 1.0})
        >>> h["loss"], h.epoch
        ([1.0], [0])
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None

    def append(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Record one epoch's logs."""
        self.epoch.append(epoch)
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def plot(self, keys: list[str] | None = None, ax: Any = None) -> Any:
        """Plot the logged curves against the epoch with matplotlib; returns the Axes.

        Args:
            keys: names to plot (default: all).
            ax: a matplotlib Axes to draw on (default: a new figure).

        Raises:
            ImportError: matplotlib is not installed (``pip install matplotlib``).
            KeyError: an unknown key.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError(
                "History.plot needs matplotlib, which is not installed: pip install matplotlib "
                "(or plot history.history yourself)."
            ) from e
        keys = list(self.history) if keys is None else list(keys)
        for k in keys:
            if k not in self.history:
                raise KeyError(f"History.plot: no key {k!r}; recorded: {list(self.history)}.")
        if ax is None:
            _, ax = plt.subplots()
        epochs = [e + 1 for e in self.epoch]
        for k in keys:
            ax.plot(epochs, self.history[k], marker="o", label=k)
        ax.set_xlabel("epoch")
        ax.legend()
        return ax


# --- checking fit's arguments ---------------------------------------------------------------


class _Data(NamedTuple):
    """Examples: ``x`` and ``y`` (NumPy pytrees with a leading example axis) and their count."""

    x: Any
    y: Any
    n: int


class _Plan(NamedTuple):
    """``fit``'s arguments, checked: what the epochs run on."""

    state: TrainState  # the first training state
    return_state: bool  # params was a TrainState, so fit returns one
    metrics: dict[str, MetricFn]
    train: _Data
    val: _Data | None  # validation data (given, or split off the training data), or None
    batches: list[slice]  # one epoch's batches, as slices of the (shuffled) example order
    val_batch_size: int


def _slice(tree: Any, start: int | None, stop: int | None) -> Any:
    return jax.tree.map(lambda a: a[start:stop], tree)


def _check_key(key: Any, where: str) -> None:
    if key is None or not hasattr(key, "dtype"):
        raise TypeError(
            f"{where}: key must be a jax.random key (it drives shuffling and dropout), got "
            f"{type(key).__name__}; e.g. key=jax.random.key(0)."
        )


def _check_verbose(verbose: Any, where: str) -> None:
    if verbose not in (0, 1, 2):
        raise ValueError(f"{where}: verbose={verbose!r}; use 0 (silent), 1 (progress bar) or 2.")


def _check_validation_split(split: Any, has_validation_data: bool, where: str) -> bool:
    """Whether ``split`` asks for a split; raises for a bad value or one given with data."""
    if split is None:  # as in Keras, where only a true value splits
        return False
    if (
        isinstance(split, bool)
        or not isinstance(split, (int, float, np.integer, np.floating))
        or not 0 <= split < 1
    ):
        raise ValueError(
            f"{where}: validation_split={split!r}; it must be a number in [0, 1): the fraction "
            "of the examples held out for validation (the last ones, before shuffling), e.g. "
            "0.2; 0 holds out nothing."
        )
    if split and has_validation_data:
        raise ValueError(
            f"{where}: validation_split={split!r} and validation_data were both given; pass "
            "one: validation_data=(x_val, y_val) for a separate validation set, or "
            f"validation_split to hold out the last {float(split):.0%} of x and y."
        )
    return bool(split)


def _split_index(n: int, split: float, where: str) -> int:
    """Keras' split point: the first ``floor(n * (1 - split))`` examples train."""
    split_at = int(math.floor(n * (1.0 - split)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"{where}: validation_split={split!r} of {n} examples leaves {split_at} for "
            f"training and {n - split_at} for validation (training: floor({n} * (1 - "
            f"{split!r})) = {split_at}); both need at least 1. Use more examples or a "
            + ("smaller" if split_at == 0 else "larger")
            + " validation_split."
        )
    return split_at


def _hold_out(data: _Data, split: float, where: str) -> tuple[_Data, _Data]:
    """``(training, validation)``: the last examples of ``data`` held out (``validation_split``)."""
    at = _split_index(data.n, split, where)
    head = _Data(_slice(data.x, 0, at), _slice(data.y, 0, at), at)
    tail = _Data(_slice(data.x, at, None), _slice(data.y, at, None), data.n - at)
    return head, tail


def _check_batches(n: int, batch_size: int, drop_remainder: bool, where: str) -> list[slice]:
    """One epoch's batches of ``n`` examples; an error when ``drop_remainder`` leaves none."""
    batches = batch_slices(n, batch_size, drop_remainder)
    if not batches:
        raise ValueError(
            f"{where}: batch_size={batch_size} with drop_remainder=True leaves no batch of the "
            f"{n} examples; use a batch_size <= {n} or drop_remainder=False."
        )
    return batches


def _check_validation_data(validation_data: Any, train: _Data, where: str) -> _Data:
    """``validation_data`` as ``_Data``: a pair shaped like the training data per example."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError(
            f"{where}: validation_data must be a pair (x_val, y_val), got "
            f"{type(validation_data).__name__}"
            + (f" of {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else "")
            + "."
        )
    val = _Data(*check_xy(*validation_data, where, prefix="val_"))
    for arg, tr, va in (("x", train.x, val.x), ("y", train.y, val.y)):
        t_shapes = [a.shape[1:] for a in jax.tree.leaves(tr)]
        v_shapes = [a.shape[1:] for a in jax.tree.leaves(va)]
        if jax.tree.structure(tr) != jax.tree.structure(va) or t_shapes != v_shapes:
            raise ValueError(
                f"{where}: validation_data {arg} has per-example shape(s) {v_shapes} but the "
                f"training {arg} has {t_shapes}; they must match (pad or crop the "
                "validation sequences to the training length)."
            )
    return val


def _check_early_stopping(es: Any, logged: list[str], where: str) -> None:
    """``es`` is None or an ``EarlyStopping`` whose monitor is among the ``logged`` names."""
    if es is None:
        return
    if not isinstance(es, EarlyStopping):
        raise TypeError(
            f"{where}: early_stopping must be an EarlyStopping, got {type(es).__name__}."
        )
    if es.monitor not in logged:
        hint = (
            " The val_ quantities need validation_data=(x_val, y_val) or "
            "validation_split=0.2 (say)."
            if es.monitor.startswith("val_") and "val_loss" not in logged
            else ""
        )
        raise ValueError(
            f"{where}: EarlyStopping monitor={es.monitor!r} is not a logged quantity; "
            f"available: {logged}.{hint}"
        )
    if es.mode not in ("auto", "min", "max"):
        raise ValueError(f"{where}: EarlyStopping mode={es.mode!r}; use 'auto', 'min' or 'max'.")
    if es.patience < 0 or es.min_delta < 0:
        raise ValueError(
            f"{where}: EarlyStopping patience={es.patience!r} and min_delta={es.min_delta!r} "
            "must be >= 0."
        )


def _initial_state(params: Any, tx: optax.GradientTransformation, where: str) -> TrainState:
    """``params`` itself when it is a ``TrainState`` of ``tx``'s state, else a fresh state."""
    if not isinstance(params, TrainState):
        return TrainState.create(params, tx)
    want = jax.tree.structure(jax.eval_shape(tx.init, params.params))
    if jax.tree.structure(params.opt_state) != want:
        raise ValueError(
            f"{where}: the TrainState's opt_state does not match the optimizer's state "
            "structure; create it with TrainState.create(params, optimizer) using the same "
            "optimizer you pass to fit."
        )
    return params


def _check_fit_args(
    loss_fn: Any,
    params: Any,
    optimizer: Any,
    x: Any,
    y: Any,
    *,
    key: Any,
    epochs: Any,
    batch_size: Any,
    validation_data: Any,
    validation_split: Any,
    validation_batch_size: Any,
    metrics: Any,
    clipnorm: Any,
    early_stopping: Any,
    drop_remainder: bool,
    verbose: Any,
    where: str = "fit",
) -> _Plan:
    """``fit``'s arguments checked, before anything compiles, and the data prepared.

    The checks run in this order (the first problem is the one reported): the loss
    function, key, ``epochs``, batch sizes, ``verbose``, optimizer, metrics,
    ``clipnorm``, the data, ``validation_split``, the batches, ``validation_data``,
    early stopping, a ``TrainState``'s optimizer state.
    """
    check_loss_fn(loss_fn, where)
    _check_key(key, where)
    positive_int(epochs, where, "epochs", minimum=0)
    batch_size = check_batch_size(batch_size, where)
    if validation_batch_size is not None:
        check_batch_size(validation_batch_size, where, "validation_batch_size")
    _check_verbose(verbose, where)
    tx = get_optimizer(optimizer)
    metrics = check_metrics(metrics, where)
    check_clipnorm(clipnorm, where)
    train, val = _Data(*check_xy(x, y, where)), None
    if _check_validation_split(validation_split, validation_data is not None, where):
        train, val = _hold_out(train, validation_split, where)
    batches = _check_batches(train.n, batch_size, drop_remainder, where)
    if validation_data is not None:
        val = _check_validation_data(validation_data, train, where)
    names = ["loss", *metrics]
    logged = names + ([f"val_{k}" for k in names] if val is not None else [])
    _check_early_stopping(early_stopping, logged, where)
    return _Plan(
        state=_initial_state(params, tx, where),
        return_state=isinstance(params, TrainState),
        metrics=metrics,
        train=train,
        val=val,
        batches=batches,
        val_batch_size=validation_batch_size or batch_size,
    )


def _check_same_on_every_process(mesh: Mesh | None, plan: _Plan, key: Any, where: str) -> None:
    """Over several processes: all must shuffle and batch the same data with the same key."""
    if mesh is not None and parallel.spans_processes(NamedSharding(mesh, PartitionSpec())):
        data = (plan.train.x, plan.train.y, plan.val, key)
        parallel.check_same(data, "x, y, validation data and key", where)


# --- one epoch ------------------------------------------------------------------------------


def _local(tree: Any) -> Any:
    """This process's copy of arrays replicated over several processes (no communication):
    each process then evaluates on its own device, as in a one-process run."""

    def local(a: Any) -> Any:
        if isinstance(a, jax.Array) and not a.is_fully_addressable and a.is_fully_replicated:
            return a.addressable_data(0)
        return a

    return jax.tree.map(local, tree)


def _add_logs(sums: dict[str, float], pending: list[tuple[dict, int]], names: list[str]) -> None:
    """Add the example-weighted step metrics in ``pending`` to ``sums`` (host floats), and
    empty it. (Steps over a mesh and unsplit steps leave their metrics on different
    devices, so they are summed on the host.)"""
    for out, weight in pending:
        for k in names:
            sums[k] += float(out[k]) * weight
    pending.clear()


def _run_epoch(
    train_step: Any,
    eval_step: Any,
    state: TrainState,
    plan: _Plan,
    key: Any,
    *,
    shuffle: bool,
    progress: _Progress,
) -> tuple[TrainState, dict[str, float]]:
    """One epoch: ``(new state, logs)``.

    ::

        k_shuffle, k_steps = split(key)
        order = permutation(k_shuffle, n) if shuffle else arange(n)
        for i, batch in enumerate(batches of order):
            state, m = train_step(state, batch, fold_in(k_steps, i))
        logs = example-weighted means of loss and metrics over the epoch
        logs |= val_loss, val_<metric> on the validation data (key=None)

    A batch that does not divide over a mesh's devices runs whole
    (``train_step.unsplit``). The step metrics are read back to the host only
    when ``progress`` shows them, and at the end.
    """
    names = ["loss", *plan.metrics]
    x, y, n = plan.train
    k_shuffle, k_steps = jax.random.split(key)
    order = np.asarray(jax.random.permutation(k_shuffle, n)) if shuffle else np.arange(n)
    devices = getattr(train_step, "devices", 1)
    sums = dict.fromkeys(names, 0.0)
    pending: list[tuple[dict, int]] = []  # read back only when shown (no sync per step)
    seen = 0
    for i, sl in enumerate(plan.batches):
        idx = order[sl]
        run = train_step if len(idx) % devices == 0 else train_step.unsplit  # uneven: whole
        state, out = run(state, (take(x, idx), take(y, idx)), jax.random.fold_in(k_steps, i))
        seen += len(idx)
        pending.append((out, len(idx)))
        if progress.advance(i):
            _add_logs(sums, pending, names)
            progress.show({k: v / seen for k, v in sums.items()})
    _add_logs(sums, pending, names)
    logs = {k: v / seen for k, v in sums.items()}
    if plan.val is not None:
        vx, vy, vn = plan.val
        v_logs = run_eval(eval_step, _local(state.params), vx, vy, vn, plan.val_batch_size)
        logs.update({f"val_{k}": v for k, v in v_logs.items()})
    return state, logs


# --- progress -------------------------------------------------------------------------------


def _format(logs: Mapping[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4g}" for k, v in logs.items())


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class _Progress:
    """``fit``'s report: ``verbose=1`` a tqdm bar per epoch (on stderr) with the running means,
    refreshed about ten times an epoch; ``verbose=2``, or 1 without tqdm installed, one line
    per epoch on stdout (``Epoch 3/10 - 0.52s - loss: 0.1 - val_loss: 0.2``); 0 nothing.
    Early stopping is reported on stdout unless ``verbose=0``."""

    def __init__(self, verbose: int, epochs: int, steps: int) -> None:
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.tqdm = _tqdm() if verbose == 1 else None
        self.every = max(1, steps // 10)  # batches between refreshes of the bar's means
        self.bar: Any = None
        self.start = 0.0

    def begin(self, epoch: int) -> None:
        """Start timing epoch ``epoch`` (0-based) and open its bar."""
        self.start = time.perf_counter()
        if self.tqdm is not None:
            desc = f"Epoch {epoch + 1}/{self.epochs}"
            self.bar = self.tqdm(total=self.steps, desc=desc, leave=True, unit="batch")

    def advance(self, i: int) -> bool:
        """Batch ``i`` is done; whether to ``show`` the running means now (only with a bar)."""
        if self.bar is None:
            return False
        self.bar.update(1)
        return (i + 1) % self.every == 0 or i + 1 == self.steps

    def show(self, logs: Mapping[str, float]) -> None:
        """Put ``logs`` on the bar."""
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})

    def end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Close the epoch's bar with its logs, or print its line."""
        if self.bar is not None:
            self.show(logs)
            self.bar.close()
            self.bar = None
        elif self.verbose:
            print(
                f"Epoch {epoch + 1}/{self.epochs} - {time.perf_counter() - self.start:.2f}s - "
                f"{_format(logs)}",
                file=sys.stdout,
                flush=True,
            )

    def stopped(self, monitor: str, seen: EarlyStoppingState) -> None:
        """Report that early stopping stopped training."""
        if self.verbose:
            print(
                f"Early stopping at epoch {seen.stopped_epoch + 1}: {monitor} has not improved "
                f"for {seen.wait} epoch(s); best epoch {seen.best_epoch + 1}.",
                file=sys.stdout,
            )


# --- fit ------------------------------------------------------------------------------------


def fit(
    loss_fn: LossFn,
    params: Any,
    optimizer: optax.GradientTransformation | str,
    x: Any,
    y: Any,
    *,
    key: Any,
    epochs: int = 1,
    batch_size: int = 32,
    validation_data: tuple[Any, Any] | None = None,
    validation_split: float = 0.0,
    validation_batch_size: int | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    clipnorm: float | None = None,
    early_stopping: EarlyStopping | None = None,
    shuffle: bool = True,
    drop_remainder: bool = False,
    verbose: int = 1,
    mesh: Mesh | None = None,
    split: bool | str = "auto",
) -> tuple[Any, History]:
    """Train ``params`` on ``(x, y)`` with an optax optimizer, as Keras' ``model.fit``.

    The loop, with ``step = make_train_step(loss_fn, optimizer, clipnorm=...)``::

        if validation_split:                    # the last examples, before any shuffling
            m = floor(n * (1 - validation_split))
            validation_data = (x[m:], y[m:]); x, y, n = x[:m], y[:m], m
        for epoch in range(epochs):
            k = fold_in(key, epoch); k_shuffle, k_steps = split(k)
            order = permutation(k_shuffle, n) if shuffle else arange(n)
            for i, batch in enumerate(batches of order):      # batch_size examples each
                state, m = step(state, batch, fold_in(k_steps, i))
            logs = example-weighted means of loss and metrics over the epoch
            logs |= val_loss, val_<metric> on validation_data (key=None)
            history.append(logs); early stopping may stop here

    Batches: the last partial batch (``n % batch_size`` examples) is **kept** as
    its own, smaller batch (as Keras), so each epoch sees every example once.
    Its shape is the same every epoch, so the step compiles at most twice in
    total (full batches and the remainder), never once per epoch;
    ``drop_remainder=True`` drops it (one compile, ``n // batch_size`` steps).
    The same ``key`` gives bit-identical results.

    Compiled steps are reused across calls: a later ``fit`` (or ``evaluate``) with
    the same ``loss_fn`` object, optimizer (the same optax object, or the same
    name), ``clipnorm`` and metric functions runs the already compiled step for
    batch shapes it has seen, so a loop of one ``fit`` call per epoch compiles
    once. The last 16 such setups are kept (``jax.clear_caches()`` drops their
    compiled programs too). As with any ``jax.jit`` function, Python values that
    ``loss_fn`` reads from outside (a global, a closed-over constant) are fixed
    when it is first traced; to change one, pass it in ``params`` or ``x``, or
    define a new ``loss_fn``.

    Data: each array's first axis indexes the examples. ``x`` and ``y`` may be
    pytrees: a tuple such as ``(inputs, lengths)`` or a dict holds several arrays,
    batched together. A Python list is one array (``np.asarray``, so a list of
    per-example arrays or nested lists of numbers works); a list whose elements
    differ in shape (ragged sequences, or several inputs) is an error: pad
    sequences to one length and pass ``(padded, lengths)``, and pass several
    inputs as a tuple.

    Args:
        loss_fn: ``loss_fn(params, x, y, key) -> scalar``; ``key`` is a per-step key
            in training (for dropout), ``None`` in evaluation.
        params: the initial parameter pytree, or a ``TrainState`` to resume from
            (its ``opt_state`` must come from the same optimizer).
        optimizer: an optax optimizer or a Keras name (``"adam"``, ``"sgd"``, ...).
        x: a NumPy (or JAX) array, or a pytree (tuple, dict) of them, with a leading
            example axis; a Python list is read as one array (see Data above).
        y: the targets, as ``x``.
        key: a ``jax.random`` key for shuffling and the per-step keys (required).
        epochs: passes over the data.
        batch_size: examples per step.
        validation_data: ``(x_val, y_val)``, evaluated after every epoch.
        validation_split: a fraction in ``[0, 1)`` of the examples held out for
            validation (Keras' ``validation_split``): the **last**
            ``n - floor(n * (1 - validation_split))`` examples of ``x`` and ``y``,
            taken before any shuffling, logged as ``val_*`` like ``validation_data``
            (which it cannot be combined with). ``0`` (default) or None holds out nothing.
        validation_batch_size: defaults to ``batch_size``.
        metrics: ``{name: fn(params, x, y) -> scalar}``, logged as ``name`` and ``val_name``.
        clipnorm: clip gradients to this global norm (``optax.clip_by_global_norm``).
        early_stopping: an ``EarlyStopping``.
        shuffle: reshuffle the examples every epoch.
        drop_remainder: drop the last partial batch.
        verbose: 0 silent; 1 a tqdm progress bar per epoch with loss and metrics
            (one line per epoch if tqdm is not installed); 2 one line per epoch.
        mesh: a ``jax.sharding.Mesh`` (e.g. ``jaxrnn.parallel.data_mesh()``): train
            data parallel over its devices with ``make_train_step(..., mesh=mesh)``
            (each batch split over the devices when ``split`` says it pays; the
            same values as one device without dropout). A last partial batch that
            does not divide by the number of devices runs whole on one device
            (nothing is dropped or padded, so the epoch equals one device's).
            Evaluation runs whole. None: one device. A mesh over several
            processes (``jaxrnn.parallel.initialize``): every process calls
            ``fit`` with the same arguments, data and key (checked by a hash at
            the start) and feeds only its own devices' rows of each batch;
            validation runs on each process's first device; every process
            returns the same parameters and history.
        split: with a mesh: ``"auto"`` (``jaxrnn.parallel.split_pays``), True or False.

    Returns:
        ``(params, history)``; ``(TrainState, history)`` when ``params`` was a ``TrainState``.

    Raises:
        ValueError: mismatched example counts, bad ``batch_size``/``epochs``/``clipnorm``,
            an unknown early-stopping monitor, validation data shaped unlike ``x``/``y``,
            a ``validation_split`` outside ``[0, 1)``, given with ``validation_data`` or
            leaving no training or no validation example, a ragged list.
        TypeError: a missing key, a bad optimizer or metrics, a ``loss_fn`` that cannot
            be called as ``loss_fn(params, x, y, key)``.

    Examples:
        >>> loss = lambda p, x, y, key: jnp.mean((x @ p - y) ** 2)
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = x @ np.array([1.0, -2.0, 0.5], np.float32)
        >>> w, hist = fit(loss, jnp.zeros(3), optax.adam(0.1), x, y, epochs=20,
        ...               batch_size=16, key=jax.random.key(0), verbose=0)
        >>> hist.history["loss"][-1] < 0.01 * hist.history["loss"][0]
        True

        Lists are arrays; ``validation_split`` holds out the last examples (here 16):

        >>> w, hist = fit(loss, w, "adam", x.tolist(), list(y), validation_split=0.25,
        ...               key=jax.random.key(1), verbose=0)
        >>> sorted(hist.history)
        ['loss', 'val_loss']
    """
    plan = _check_fit_args(
        loss_fn,
        params,
        optimizer,
        x,
        y,
        key=key,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation_data,
        validation_split=validation_split,
        validation_batch_size=validation_batch_size,
        metrics=metrics,
        clipnorm=clipnorm,
        early_stopping=early_stopping,
        drop_remainder=drop_remainder,
        verbose=verbose,
    )
    train_step = cached_train_step(loss_fn, optimizer, plan.metrics, clipnorm, mesh, split)
    _check_same_on_every_process(mesh, plan, key, "fit")
    eval_step = cached_eval_step(loss_fn, plan.metrics) if plan.val is not None else None
    progress = _Progress(verbose, epochs, len(plan.batches))
    state, history, seen = plan.state, History(), EarlyStoppingState()
    for epoch in range(epochs):
        progress.begin(epoch)
        epoch_key = jax.random.fold_in(key, epoch)
        state, logs = _run_epoch(
            train_step, eval_step, state, plan, epoch_key, shuffle=shuffle, progress=progress
        )
        history.append(epoch, logs)
        progress.end(epoch, logs)
        if early_stopping is not None:
            seen = early_stopping.update(seen, epoch, logs, state)
            if seen.stopped_epoch is not None:
                progress.stopped(early_stopping.monitor, seen)
                break
    history.best_epoch, history.stopped_epoch = seen.best_epoch, seen.stopped_epoch
    if early_stopping is not None:
        state = early_stopping.final_state(seen, state)
    return (state if plan.return_state else state.params), history
