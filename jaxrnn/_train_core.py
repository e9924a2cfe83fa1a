"""The functional core of ``jaxrnn.train``: the training state, pure train and eval steps.

``TrainState``, ``get_optimizer``, ``apply_gradients``, ``make_train_step``,
``make_eval_step`` and ``evaluate``, with the checks and data helpers they share
with ``fit`` (``jaxrnn._fit``) and ``jaxrnn.tbptt``. The public names are
re-exported by ``jaxrnn.train``; import them from there. Imports optax.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import parallel
from ._checks import positive_int
from ._context import batch_axes

LossFn = Callable[[Any, Any, Any, Any], jax.Array]
MetricFn = Callable[[Any, Any, Any], jax.Array]

# Keras' default learning rates for the optimizers it names the same way.
KERAS_DEFAULTS = {
    "adam": 1e-3,
    "adamw": 1e-3,
    "adamax": 1e-3,
    "nadam": 1e-3,
    "adagrad": 1e-3,
    "rmsprop": 1e-3,
    "lion": 1e-3,
    "sgd": 1e-2,
}


class TrainState(NamedTuple):
    """Everything a training step changes, as one pytree."""

    params: Any  # the model's parameter pytree
    opt_state: Any  # the optimizer's state (an optax state pytree)
    step: jax.Array  # shape=(), dtype=int32: updates applied so far

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation | str) -> TrainState:
        """A fresh state: ``TrainState(params, optimizer.init(params), 0)``.

        Examples:
            >>> s = TrainState.create({"w": jnp.zeros(3)}, "sgd")
            >>> int(s.step)
            0
        """
        tx = get_optimizer(optimizer)
        return cls(params, tx.init(params), jnp.zeros((), jnp.int32))


def get_optimizer(optimizer: optax.GradientTransformation | str) -> optax.GradientTransformation:
    """An optax optimizer, given as itself or by a Keras name with Keras' default learning rate.

    Names: ``"adam"``, ``"adamw"``, ``"adamax"``, ``"nadam"``, ``"adagrad"``,
    ``"rmsprop"``, ``"lion"`` (learning rate ``1e-3``) and ``"sgd"`` (``1e-2``),
    i.e. ``getattr(optax, name)(learning_rate)``.

    Raises:
        ValueError: an unknown name. TypeError: neither a name nor an optax transformation.

    Examples:
        >>> tx = get_optimizer("adam")
        >>> type(tx).__name__
        'GradientTransformationExtraArgs'
    """
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name not in KERAS_DEFAULTS:
            raise ValueError(
                f"get_optimizer: unknown optimizer name {optimizer!r}; known names: "
                f"{sorted(KERAS_DEFAULTS)}. For other settings pass an optax optimizer, "
                "e.g. optax.adam(3e-4)."
            )
        return getattr(optax, name)(KERAS_DEFAULTS[name])
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            "get_optimizer: optimizer must be an optax GradientTransformation (e.g. "
            f"optax.adam(1e-3)) or a name such as 'adam', got {type(optimizer).__name__}."
        )
    return optimizer


def _signature_problem(fn: Callable, n_args: int) -> tuple[str, str] | None:
    """``(signature text, reason)`` if ``fn`` cannot be called with ``n_args`` positional
    arguments, else None (also None when the signature cannot be inspected: builtins, some
    C extensions; those are left to fail, if at all, when called)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*range(n_args))
    except TypeError:
        pass
    else:
        return None
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    required = [p.name for p in positional if p.default is p.empty]
    required_kw = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if len(positional) < n_args and not varargs:
        reason = f"it takes {len(positional)} positional argument(s), not {n_args}"
    elif len(required) > n_args:
        reason = (
            f"it requires {len(required)} arguments; give {required[n_args:]} a default or bind "
            "them with functools.partial"
        )
    elif required_kw:
        reason = (
            f"keyword-only {required_kw} without a default; give one or bind it with "
            f"functools.partial(fn, {required_kw[0]}=...)"
        )
    else:  # not reached for ordinary signatures; kept so a message is always produced
        reason = f"its signature does not accept {n_args} positional arguments"
    return str(sig), reason


def _name(fn: Any) -> str:
    """``fn``'s qualified name without ``<locals>`` prefixes (``Model.loss``, ``<lambda>``)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name.rsplit("<locals>.", 1)[-1] if isinstance(name, str) else type(fn).__name__


def _check_signature(fn: Callable, where: str, metric: str | None = None) -> None:
    """Refuse (``TypeError``) a loss function that cannot be called as
    ``loss_fn(params, x, y, key)`` or, given its name ``metric``, a metric that cannot
    be called as ``fn(params, x, y)``; the message shows ``fn``'s signature and why."""
    problem = _signature_problem(fn, 4 if metric is None else 3)
    if problem is None:
        return
    sig, reason = problem
    shown = f"{_name(fn)}{sig}"
    if metric is None:
        raise TypeError(
            f"{where}: loss_fn {shown} cannot be called as loss_fn(params, x, y, key) "
            f"({reason}). The expected signature is (params, x, y, key): key is a jax.random "
            "key per training step (for dropout) and None in evaluation; a loss without "
            "dropout can ignore it, e.g. def loss_fn(params, x, y, key): ..."
        )
    raise TypeError(
        f"{where}: metric {metric!r} ({shown}) cannot be called as fn(params, x, y) ({reason}). "
        "Metrics take (params, x, y), without a key (they run in inference mode); e.g. to log "
        "a loss, metrics={'mse': lambda p, x, y: loss_fn(p, x, y, None)}."
    )


def check_loss_fn(loss_fn: Any, where: str) -> None:
    """``loss_fn`` is callable as ``loss_fn(params, x, y, key)``, checked before any tracing."""
    if not callable(loss_fn):
        raise TypeError(
            f"{where}: loss_fn must be a function loss_fn(params, x, y, key) -> scalar, got "
            f"{type(loss_fn).__name__}."
        )
    _check_signature(loss_fn, where)


def check_metrics(metrics: Mapping[str, MetricFn] | None, where: str) -> dict[str, MetricFn]:
    """``metrics`` as a dict (``{}`` for None), each ``name: fn(params, x, y)`` checked.

    Refuses non-string names, non-callables, the reserved names (``"loss"``,
    ``"grad_norm"``, the ``"val_"`` prefix) and functions that cannot be called
    with three positional arguments, before any tracing.
    """
    metrics = dict(metrics or {})
    for name, fn in metrics.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(
                f"{where}: metrics must map names to functions fn(params, x, y) -> scalar, got "
                f"{name!r}: {type(fn).__name__}."
            )
        if name in ("loss", "grad_norm") or name.startswith("val_"):
            raise ValueError(
                f"{where}: metric name {name!r} is reserved ('loss', 'grad_norm' and the "
                "'val_' prefix are fit's own); rename it."
            )
        _check_signature(fn, where, metric=name)
    return metrics


def check_clipnorm(clipnorm: float | None, where: str) -> None:
    """Refuse a ``clipnorm`` that is neither None nor a positive number (``ValueError``)."""
    if clipnorm is not None and not (isinstance(clipnorm, (int, float)) and clipnorm > 0):
        raise ValueError(
            f"{where}: clipnorm={clipnorm!r}; it must be a positive number (the largest "
            "global gradient norm kept), or None for no clipping."
        )


def _scalar(value: Any, what: str, where: str) -> jax.Array:
    if np.shape(value) != ():
        raise ValueError(
            f"{where}: {what} must return a scalar, got shape {tuple(np.shape(value))}. Reduce "
            "it, e.g. with .mean() or jaxrnn.losses.mse(..., reduction='mean')."
        )
    return value


def _global_norm(tree: Any) -> jax.Array:
    """``sqrt(sum of squares of every leaf)``, the norm ``clip_by_global_norm`` uses."""
    leaves = jax.tree.leaves(tree)
    return (
        jnp.sqrt(sum(jnp.sum(jnp.square(jnp.abs(g))) for g in leaves)) if leaves else jnp.zeros(())
    )


def apply_gradients(
    tx: optax.GradientTransformation, state: TrainState, grads: Any, clipnorm: float | None
) -> tuple[TrainState, jax.Array]:
    """One optimizer update; returns the new state and the *unclipped* global gradient norm."""
    grad_norm = _global_norm(grads)
    if clipnorm is not None:  # the same as optax.chain(optax.clip_by_global_norm(c), tx)
        grads, _ = optax.clip_by_global_norm(clipnorm).update(grads, optax.EmptyState())
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state, state.step + 1), grad_norm


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation | str,
    *,
    metrics: Mapping[str, MetricFn] | None = None,
    clipnorm: float | None = None,
    jit: bool = True,
    mesh: Mesh | None = None,
    split: bool | str = "auto",
) -> Callable[[TrainState, Any, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """A pure training step ``step(state, batch, key) -> (state, metrics)``.

    With ``(x, y) = batch``::

        loss, g = value_and_grad(loss_fn)(state.params, x, y, key)
        g = g * min(1, clipnorm / ||g||)          # only if clipnorm (global norm)
        updates, opt_state = optimizer.update(g, state.opt_state, state.params)
        state = TrainState(params + updates, opt_state, state.step + 1)
        metrics = {"loss": loss, "grad_norm": ||g|| (before clipping),
                   name: fn(old params, x, y) for each metric}

    Clipping is ``optax.clip_by_global_norm(clipnorm)`` applied before the
    optimizer, so the state (and ``opt_state``) is the optimizer's own whether or
    not you clip. Metrics see the parameters the loss saw (before the update).

    With a ``mesh`` the step is data parallel (``jax.shard_map``): the state is
    replicated, the batch split along its leading axis over the mesh's devices,
    each device takes the gradient of the loss on its rows, and one
    ``lax.pmean`` averages loss, gradients and metrics before the same update
    runs on every device. A mean loss over equal shards is the mean over the
    batch, so without dropout the result equals the one-device step up to
    float32 rounding. With dropout, device ``d`` draws its masks from
    ``fold_in(key, d)``: the same rate, other masks than one device draws. The
    batch is split only when it pays (``jaxrnn.parallel.split_pays``: enough rows
    and work per device, measured) unless ``split=True``; a batch that
    is split must divide by the number of devices (the error says so); an
    unsplit batch runs whole on the mesh's first device (in a multi-process run,
    on every device, each with the whole batch).

    Over several processes (``jaxrnn.parallel.initialize``, a mesh over
    ``jax.devices()``), every process calls the step with the same state, key and
    whole batch; each copies only the rows of its own devices
    (``jaxrnn.parallel.put_global``: no communication but the ``pmean``). A
    batch made by ``jaxrnn.parallel.global_batch`` from each process's own rows
    is taken as it is. The first time a state is placed on the mesh, the
    processes' states are compared (a hash, ``jaxrnn.parallel.check_same``) so
    that processes that would train different parameters fail at once. The new
    state and the metrics are replicated: ``float(metrics["loss"])`` and
    ``np.asarray`` work on every process.

    Args:
        loss_fn: ``loss_fn(params, x, y, key) -> scalar``.
        optimizer: an optax optimizer or a Keras name (see ``get_optimizer``).
        metrics: ``{name: fn(params, x, y) -> scalar}``.
        clipnorm: clip gradients to this global norm (Keras' ``clipnorm``).
        jit: compile the step with ``jax.jit`` (default; always with a mesh).
        mesh: a ``jax.sharding.Mesh`` (e.g. ``jaxrnn.parallel.data_mesh()``) for
            data parallelism over its devices; None for one device.
        split: with a mesh: ``"auto"`` (the measured rule), True (always split)
            or False (never).

    Returns:
        The step function; ``TrainState.create(params, optimizer)`` makes its first state.

    Examples:
        >>> loss = lambda p, x, y, key: jnp.mean((x * p - y) ** 2)
        >>> step = make_train_step(loss, optax.sgd(0.1))
        >>> s = TrainState.create(jnp.array(0.0), optax.sgd(0.1))
        >>> for _ in range(50):
        ...     s, m = step(s, (jnp.arange(4.0), 2 * jnp.arange(4.0)), None)
        >>> round(float(s.params), 3), int(s.step)
        (2.0, 50)
    """
    where = "make_train_step"
    check_loss_fn(loss_fn, where)
    tx = get_optimizer(optimizer)
    metrics = check_metrics(metrics, where)
    check_clipnorm(clipnorm, where)

    def step(state: TrainState, batch: Any, key: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        x, y = batch

        def loss(params):
            return _scalar(loss_fn(params, x, y, key), "loss_fn", "train step")

        value, grads = jax.value_and_grad(loss)(state.params)
        out = {"loss": value}
        for name, fn in metrics.items():
            out[name] = _scalar(fn(state.params, x, y), f"metric {name!r}", "train step")
        new_state, out["grad_norm"] = apply_gradients(tx, state, grads, clipnorm)
        return new_state, out

    if mesh is not None:
        return _data_parallel(step, loss_fn, tx, metrics, clipnorm, mesh, split, where)
    return jax.jit(step) if jit else step


def _data_parallel(whole_step, loss_fn, tx, metrics, clipnorm, mesh, split, where):
    """``make_train_step``'s step over a mesh: explicit per-device gradients, one pmean."""
    axes = parallel.mesh_axes(mesh, None, where)
    parallel.check_split(split, where)
    n = parallel.devices_on(mesh, axes)
    decide = parallel.SplitDecider(split, n, where)
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec(axes))

    def local_step(state: TrainState, batch: Any, key: Any):
        x, y = batch  # this device's rows
        if key is not None:  # each device its own dropout masks
            key = jax.random.fold_in(key, jax.lax.axis_index(axes))
        # per-device parameters: their gradient is this device's alone (no implicit sum)
        params = jax.lax.pcast(state.params, axes, to="varying")

        def loss(p):
            return _scalar(loss_fn(p, x, y, key), "loss_fn", "train step")

        with batch_axes(axes):  # jaxrnn.losses: each device's share of the batch mean
            value, grads = jax.value_and_grad(loss)(params)
            out = {"loss": value}
            for name, fn in metrics.items():
                out[name] = _scalar(fn(params, x, y), f"metric {name!r}", "train step")
        grads, out = jax.lax.pmean((grads, out), axes)  # mean over equal shards = batch mean
        new_state, out["grad_norm"] = apply_gradients(tx, state, grads, clipnorm)
        return new_state, out

    split_step = jax.jit(
        jax.shard_map(
            local_step,
            mesh=mesh,
            in_specs=(PartitionSpec(), PartitionSpec(axes), PartitionSpec()),
            out_specs=(PartitionSpec(), PartitionSpec()),
        )
    )
    one = parallel.whole_sharding(mesh)
    whole = jax.jit(whole_step)

    def unsplit(state: TrainState, batch: Any, key: Any):
        state = parallel.place(state, one, check="state", where=where)
        return whole(state, parallel.place(batch, one), _put(key, one))

    def step(state: TrainState, batch: Any, key: Any):
        if decide(batch, state.params):
            parallel.check_divisible_batch(batch, n, where)
            state = parallel.place(state, replicated, check="state", where=where)
            batch = parallel.place(batch, sharded)
            return split_step(state, batch, _put(key, replicated))
        return unsplit(state, batch, key)

    step.split_step = split_step  # type: ignore[attr-defined]
    step.unsplit = unsplit  # type: ignore[attr-defined]  (the whole batch on one device)
    step.devices = n  # type: ignore[attr-defined]
    return step


def _put(key: Any, sharding: Any) -> Any:
    return None if key is None else parallel.place(key, sharding)


def make_eval_step(
    loss_fn: LossFn, *, metrics: Mapping[str, MetricFn] | None = None, jit: bool = True
) -> Callable[[Any, Any], dict[str, jax.Array]]:
    """A pure evaluation step ``eval_step(params, (x, y)) -> {"loss": ..., name: ...}``.

    The loss is called with ``key=None`` (inference: a layer with dropout takes
    ``training=key is not None``).

    Examples:
        >>> ev = make_eval_step(lambda p, x, y, key: jnp.mean((x * p - y) ** 2))
        >>> float(ev(jnp.array(2.0), (jnp.ones(3), jnp.ones(3)))["loss"])
        1.0
    """
    check_loss_fn(loss_fn, "make_eval_step")
    metrics = check_metrics(metrics, "make_eval_step")

    def eval_step(params: Any, batch: Any) -> dict[str, jax.Array]:
        x, y = batch
        out = {"loss": _scalar(loss_fn(params, x, y, None), "loss_fn", "eval step")}
        for name, fn in metrics.items():
            out[name] = _scalar(fn(params, x, y), f"metric {name!r}", "eval step")
        return out

    return jax.jit(eval_step) if jit else eval_step


# --- compiled steps reused across fit/evaluate calls -----------------------------------------
#
# jax.jit caches compiled programs per jitted function object, so a fresh make_train_step in
# every fit call retraces and recompiles (a second or more per batch shape), which a loop of
# one fit call per epoch pays every time. fit and evaluate therefore keep their jitted steps in a small LRU keyed
# by everything that defines the computation: the identity of loss_fn, of the optimizer (or its
# Keras name and learning rate), of each metric function, and clipnorm. JAX's own cache inside
# each step then keys on shapes, dtypes and tree structure. The key holds ids and numbers only;
# each entry keeps the keyed objects alive (so an id cannot be reused while its entry exists)
# but no data or parameters; at most _STEP_CACHE_SIZE entries are kept.

_STEP_CACHE: collections.OrderedDict[Hashable, tuple[tuple, Callable]] = collections.OrderedDict()
_STEP_CACHE_SIZE = 16
_STEP_CACHE_LOCK = threading.Lock()


def _identity(obj: Any) -> Hashable:
    """A key for ``obj`` by identity; a bound method by its object and function (``model.loss``
    is a new bound-method object at every attribute access)."""
    if inspect.ismethod(obj):
        return ("method", id(obj.__self__), id(obj.__func__))
    return ("id", id(obj))


def _optimizer_key(optimizer: optax.GradientTransformation | str) -> Hashable:
    if isinstance(optimizer, str):  # a name makes a fresh but identical optimizer every time
        name = optimizer.lower()
        return ("name", name, KERAS_DEFAULTS.get(name))
    return _identity(optimizer)


def _cached(key: Hashable, keep: tuple, build: Callable[[], Callable]) -> Callable:
    with _STEP_CACHE_LOCK:
        hit = _STEP_CACHE.get(key)
        if hit is not None:
            _STEP_CACHE.move_to_end(key)
            return hit[1]
    fn = build()
    with _STEP_CACHE_LOCK:
        _STEP_CACHE[key] = (keep, fn)
        _STEP_CACHE.move_to_end(key)
        while len(_STEP_CACHE) > _STEP_CACHE_SIZE:
            _STEP_CACHE.popitem(last=False)
    return fn


def cached_train_step(loss_fn, optimizer, metrics, clipnorm, mesh=None, split="auto"):
    """``make_train_step(loss_fn, optimizer, metrics=..., clipnorm=..., mesh=..., split=...)``,
    reused when it exists."""
    key = (
        "train",
        _identity(loss_fn),
        _optimizer_key(optimizer),
        tuple((name, _identity(fn)) for name, fn in metrics.items()),
        clipnorm,
        None if mesh is None else _identity(mesh),
        split,
    )
    keep = (loss_fn, optimizer, tuple(metrics.values()), mesh)
    return _cached(
        key,
        keep,
        lambda: make_train_step(
            loss_fn, optimizer, metrics=metrics, clipnorm=clipnorm, mesh=mesh, split=split
        ),
    )


def cached_eval_step(loss_fn, metrics):
    """``make_eval_step(loss_fn, metrics=...)``, reused when it exists."""
    key = ("eval", _identity(loss_fn), tuple((n, _identity(f)) for n, f in metrics.items()))
    keep = (loss_fn, tuple(metrics.values()))
    return _cached(key, keep, lambda: make_eval_step(loss_fn, metrics=metrics))


# --- data ---------------------------------------------------------------------------------


def _element_shapes(items: list) -> str:
    """The shapes of a list's elements, for a message: all of them, or the distinct ones."""

    def shape(v: Any) -> str:
        try:
            return str(np.shape(v))
        except ValueError:
            return "ragged"

    shapes = [shape(v) for v in items]
    if len(shapes) <= 6:
        return f"element shapes [{', '.join(shapes)}]"
    first = {}
    for i, s in enumerate(shapes):
        first.setdefault(s, i)
    counts = collections.Counter(shapes)
    listed = [f"{s} x{counts[s]} (first at index {i})" for s, i in list(first.items())[:5]]
    more = f", and {len(first) - 5} more" if len(first) > 5 else ""
    return f"{len(first)} distinct element shapes: {', '.join(listed)}{more}"


def _list_to_array(items: list, arg: str, where: str) -> np.ndarray:
    """A Python list read as one array (``np.asarray``), or a clear error if it is not one."""
    try:
        array = np.asarray(items)
    except ValueError:  # ragged nesting (NumPy >= 1.24 refuses it rather than make objects)
        lengths = []
        for v in items:
            with contextlib.suppress(ValueError, TypeError):
                lengths.append(len(v))
        longest = max(lengths, default=0)
        raise ValueError(
            f"{where}: {arg} is a list of {len(items)} elements with different shapes "
            f"({_element_shapes(items)}), so it is not one array. A list is read as one array "
            "(np.asarray) whose first axis indexes the examples. If the elements are sequences "
            f"of different lengths, pad them to one length (the longest is {longest}) into an "
            f"array (examples, time, features) and pass the lengths too, as a tuple "
            f"{arg}=(padded, lengths), masking the padded steps in the loss (seq_lengths=); if "
            f"they are several inputs, pass them as a tuple {arg}=(x1, x2)."
        ) from None
    if array.dtype.kind not in "biufc":
        raise TypeError(
            f"{where}: {arg} is a list of {array.dtype} values (read with np.asarray: shape "
            f"{array.shape}); {where} needs numbers (bool, int, float). Encode them first, e.g. "
            "tokens as integer ids."
        )
    return array


def _as_numpy(tree: Any, arg: str, where: str) -> tuple[Any, int]:
    """Leaves as NumPy arrays; returns the tree and the common number of examples.

    A Python list anywhere in ``tree`` is one array (``np.asarray``); tuples, dicts and
    NamedTuples are containers of several arrays.
    """

    def leaf(path, v):
        if isinstance(v, list):
            return _list_to_array(v, f"{arg}{jax.tree_util.keystr(path)}", where)
        return np.asarray(v)

    tree = jax.tree_util.tree_map_with_path(leaf, tree, is_leaf=lambda v: isinstance(v, list))
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{where}: {arg} holds no arrays.")
    sizes = set()
    for a in leaves:
        if a.ndim == 0:
            raise ValueError(
                f"{where}: {arg} has a 0-d array; every array needs a leading example axis, "
                "e.g. (examples, time, features)."
            )
        sizes.add(a.shape[0])
    if len(sizes) > 1:
        shapes = [a.shape for a in leaves]
        raise ValueError(
            f"{where}: the arrays in {arg} have different numbers of examples: shapes {shapes}. "
            "They must agree on the first (example) axis."
        )
    return tree, sizes.pop()


def _from_list_hint(tree: Any, arg: str) -> str:
    """A hint for an example-count mismatch when ``arg`` was a list read as one array."""
    if not isinstance(tree, list):
        return ""
    return (
        f" ({arg} was a list of {len(tree)} elements, read as one array of {len(tree)} examples; "
        f"to pass several inputs, use a tuple {arg}=(x1, x2) instead of a list.)"
    )


def check_xy(x: Any, y: Any, where: str, prefix: str = "") -> tuple[Any, Any, int]:
    """``(x, y, n)``: both pytrees as NumPy arrays, with their common example count ``n``.

    A Python list is one array. Raises ``ValueError`` when ``x`` and ``y`` differ in
    examples or hold none; ``prefix`` (e.g. ``"val_"``) names them in messages.
    """
    x_in, y_in = x, y
    x, n = _as_numpy(x, f"{prefix}x", where)
    y, m = _as_numpy(y, f"{prefix}y", where)
    if n != m:
        xs = [leaf.shape for leaf in jax.tree.leaves(x)]
        ys = [leaf.shape for leaf in jax.tree.leaves(y)]
        raise ValueError(
            f"{where}: {prefix}x and {prefix}y have different numbers of examples: {prefix}x "
            f"has {n} (shape {xs[0] if len(xs) == 1 else xs}), {prefix}y has {m} (shape "
            f"{ys[0] if len(ys) == 1 else ys}). They must agree on the first axis: one target "
            "per input sequence."
            + _from_list_hint(x_in, f"{prefix}x")
            + _from_list_hint(y_in, f"{prefix}y")
        )
    if n == 0:
        shape = [leaf.shape for leaf in jax.tree.leaves(x)]
        raise ValueError(
            f"{where}: {prefix}x and {prefix}y hold no examples: {prefix}x has shape "
            f"{shape[0] if len(shape) == 1 else shape}, expected at least 1 on the first axis. "
            "Check the slicing or train/validation split that produced them."
        )
    return x, y, n


def take(tree: Any, idx: np.ndarray) -> Any:
    """The examples ``idx`` (first axis) of every leaf of ``tree``."""
    return jax.tree.map(lambda a: a[idx], tree)


def check_batch_size(batch_size: Any, where: str, arg: str = "batch_size") -> int:
    """``batch_size`` as an int, or ``ValueError: ... it must be an integer >= 1 (examples
    per step), e.g. 32.`` (see ``_checks.positive_int``)."""
    return positive_int(batch_size, where, arg, what=" (examples per step), e.g. 32")


def batch_slices(n: int, batch_size: int, drop_remainder: bool) -> list[slice]:
    """Consecutive slices of ``batch_size`` over ``range(n)``; the last, shorter one is kept
    unless ``drop_remainder``.

    Examples:
        >>> [(s.start, s.stop) for s in batch_slices(5, 2, drop_remainder=False)]
        [(0, 2), (2, 4), (4, 5)]
    """
    stop = (n // batch_size) * batch_size if drop_remainder else n
    return [slice(i, min(i + batch_size, stop)) for i in range(0, stop, batch_size)]


def run_eval(eval_step, params, x, y, n, batch_size) -> dict[str, float]:
    """``eval_step`` over ``n`` examples in batches: the example-weighted mean of each value,
    ``sum_batches |batch| value(batch) / n``, as Python floats."""
    sums: dict[str, Any] = {}
    for sl in batch_slices(n, batch_size, False):
        idx = np.arange(n)[sl]
        out = eval_step(params, (take(x, idx), take(y, idx)))
        w = len(idx)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + v * w
    return {k: float(v) / n for k, v in sums.items()}


def evaluate(
    loss_fn: LossFn,
    params: Any,
    x: Any,
    y: Any,
    *,
    batch_size: int = 32,
    metrics: Mapping[str, MetricFn] | None = None,
) -> dict[str, float]:
    """The loss and metrics over a data set, in batches, in inference mode (``key=None``).

    Each value is the example-weighted mean of the per-batch values,
    ``sum_batches |batch| value(batch) / n``: exact for per-example means (the
    last, smaller batch gets its true weight).

    The jitted evaluation step is reused by later calls with the same ``loss_fn``
    and metric functions (see ``fit``).

    Args:
        loss_fn: ``loss_fn(params, x, y, key) -> scalar``.
        params: parameters (or a ``TrainState``).
        x: array (or pytree of arrays) with a leading example axis; a Python
            list is one array, as in ``fit``.
        y: the targets, as ``x``.
        batch_size: examples per evaluation step.
        metrics: ``{name: fn(params, x, y) -> scalar}``.

    Returns:
        ``{"loss": ..., name: ...}`` as Python floats.

    Raises:
        TypeError: ``loss_fn`` or a metric has the wrong signature.
        ValueError: mismatched example counts, a ragged list, a bad ``batch_size``.

    Examples:
        >>> loss = lambda p, x, y, key: jnp.mean((x * p - y) ** 2)
        >>> evaluate(loss, jnp.array(1.0), np.ones((5, 2)), np.zeros((5, 2)), batch_size=2)
        {'loss': 1.0}
    """
    where = "evaluate"
    check_loss_fn(loss_fn, where)
    metrics = check_metrics(metrics, where)
    check_batch_size(batch_size, where)
    x, y, n = check_xy(x, y, where)
    if isinstance(params, TrainState):
        params = params.params
    return run_eval(cached_eval_step(loss_fn, metrics), params, x, y, n, batch_size)
