"""Data-parallel training on several devices with JAX's own SPMD (``jax.sharding``).

The training step is written for one device, ``step(state, batch) -> (state,
metrics)``, and jitted with the state replicated on every device and the batch
split along its leading axis::

    mesh = data_mesh()                          # Mesh over all devices, axis 'batch'
    step = data_parallel_step(step_fn, mesh)    # jit: state replicated, batch sharded
    state, metrics = step(state, batch)         # same values as one device

XLA's SPMD partitioner splits the forward and backward passes over the devices
and inserts the all-reduce that sums the gradients (a mean over the global batch
is a mean over the device shards); nothing here communicates by hand. The result
equals the one-device step up to float32 summation order.

Sweeps over hyperparameters spread their configurations over a mesh with
``jaxrnn.sweep.sweep(..., mesh=mesh)``. Single-process only (one host's devices).
On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX is
imported) gives four devices for testing.

This module needs only JAX; ``import jaxrnn`` does not import it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._context import batch_axes, batch_partitioned

__all__ = [
    "batch_axes",
    "batch_sharding",
    "data_mesh",
    "data_parallel_step",
    "replicate",
    "set_cpu_devices",
    "shard_batch",
    "split_pays",
]


def set_cpu_devices(n: int) -> None:
    """Give this process ``n`` CPU devices, so that one host's cores run in parallel.

    On a CPU, one jitted program runs its recurrent loop on about one core; ``n``
    host devices run ``n`` programs (the shards of a data-parallel step, the
    chunks of a sweep) at once. This must run before JAX computes anything (JAX
    fixes its devices then); the environment variable ``JAX_NUM_CPU_DEVICES=n``
    does the same from outside Python. It calls
    ``jax.config.update("jax_num_cpu_devices", n)``.

    Raises:
        RuntimeError: JAX has already started (its devices are fixed), with how to
            set the count instead.
        ValueError: ``n`` is not a positive integer.

    Example:
        >>> set_cpu_devices(len(jax.devices()))    # a no-op: the count is already so
    """
    where = "set_cpu_devices"
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{where}: n={n!r}; it must be a positive integer (devices).")
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError as e:
        have = jax.devices()
        if len(have) == n and have[0].platform == "cpu":
            return  # already so
        raise RuntimeError(
            f"{where}: JAX has already started with {len(have)} {have[0].platform} device(s), "
            f"so it cannot get {n} now: the device count is fixed when JAX first computes "
            "something. Call jaxrnn.parallel.set_cpu_devices(n) right after the imports, "
            f"before any jax or jaxrnn computation, or start Python with JAX_NUM_CPU_DEVICES={n} "
            f"set (e.g. `JAX_NUM_CPU_DEVICES={n} python train.py`)."
        ) from e


def data_mesh(devices: int | Sequence[jax.Device] | None = None, *, axis: str = "batch") -> Mesh:
    """A one-axis ``Mesh`` over devices, for data parallelism.

    Args:
        devices: None for all devices (``jax.devices()``), an int ``n`` for the
            first ``n`` of them, or a sequence of devices.
        axis: the mesh axis name.

    Returns:
        ``Mesh`` of shape ``{axis: number of devices}``.

    Raises:
        ValueError: no devices, more devices requested than exist, or a device
            listed twice.

    Example:
        >>> mesh = data_mesh(1)
        >>> mesh.axis_names, mesh.size
        (('batch',), 1)
    """
    available = jax.devices()
    if devices is None:
        devs = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"data_mesh: devices={devices} but {len(available)} device(s) are available "
                f"({available[0].platform}). On CPU, start Python with "
                f"JAX_NUM_CPU_DEVICES={max(int(devices), 1)} or call "
                f"jaxrnn.parallel.set_cpu_devices({max(int(devices), 1)}) before JAX computes "
                "anything."
            )
        devs = list(available[: int(devices)])
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("data_mesh: devices is empty; pass None for all devices.")
        if len({d.id for d in devs}) != len(devs):
            raise ValueError(f"data_mesh: a device is listed twice in {devs}.")
    return Mesh(np.array(devs), (axis,))


def _axes(mesh: Mesh, axis: str | None, where: str) -> tuple[str, ...]:
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{where}: mesh must be a jax.sharding.Mesh (see data_mesh), got {type(mesh).__name__}."
        )
    if axis is None:
        return tuple(mesh.axis_names)
    if axis not in mesh.axis_names:
        raise ValueError(f"{where}: axis={axis!r} is not an axis of the mesh {mesh.axis_names}.")
    return (axis,)


def batch_sharding(mesh: Mesh, axis: str | None = None) -> NamedSharding:
    """The sharding that splits an array's leading (batch) axis over ``mesh``.

    Args:
        mesh: the device mesh.
        axis: the mesh axis to split over; None for all of the mesh's axes.

    Returns:
        ``NamedSharding(mesh, PartitionSpec(axes))``.

    Example:
        >>> s = batch_sharding(data_mesh(1))
        >>> s.spec == PartitionSpec("batch"), s.num_devices
        (True, 1)
    """
    return NamedSharding(mesh, PartitionSpec(_axes(mesh, axis, "batch_sharding")))


def _devices_on(mesh: Mesh, axes: tuple[str, ...]) -> int:
    return int(np.prod([mesh.shape[a] for a in axes]))


def _check_batch(batch: Any, n: int, where: str) -> None:
    """Every leaf needs a leading axis divisible by the number of devices ``n``."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        name = "batch" + jax.tree_util.keystr(path)
        shape = tuple(np.shape(leaf))
        if not shape:
            raise ValueError(
                f"{where}: {name} is a scalar, but every batch leaf is split along its leading "
                "(batch) axis. Put per-step constants in the state or close over them."
            )
        size = shape[0]
        if size % n:
            lower, upper = (size // n) * n, (size // n + 1) * n
            hint = f"e.g. {lower} or {upper}" if lower else f"e.g. {upper}"
            raise ValueError(
                f"{where}: batch size {size} ({name}.shape={shape}) is not divisible by the "
                f"{n} devices of the mesh, so it cannot be split evenly. Use a batch size that "
                f"is a multiple of {n}, {hint} (drop or pad the remainder)."
            )


def shard_batch(batch: Any, mesh: Mesh, *, axis: str | None = None) -> Any:
    """Place a batch on the mesh, split along every leaf's leading axis.

    Each device holds ``B / n`` rows of each leaf (``n`` devices on the axis).

    Args:
        batch: a pytree of arrays (NumPy or JAX), leaves ``(B, ...)``.
        mesh: the device mesh (see ``data_mesh``).
        axis: the mesh axis to split over; None for all of the mesh's axes.

    Returns:
        The batch as ``jax.Array``s sharded with ``batch_sharding(mesh, axis)``.

    Raises:
        ValueError: a leaf's leading size is not divisible by the number of
            devices (the message suggests batch sizes), or a leaf is a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> x = shard_batch(jnp.ones((8, 5, 3)), data_mesh(1))
        >>> x.shape, x.sharding.num_devices
        ((8, 5, 3), 1)
    """
    sharding = batch_sharding(mesh, axis)
    _check_batch(batch, _devices_on(mesh, _axes(mesh, axis, "shard_batch")), "shard_batch")
    return jax.device_put(batch, sharding)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a full copy of every leaf of ``tree`` on every device of ``mesh``.

    Args:
        tree: a pytree of arrays (parameters, optimiser state, step counter).
        mesh: the device mesh.

    Returns:
        The tree as ``jax.Array``s with ``NamedSharding(mesh, PartitionSpec())``.

    Example:
        >>> import jax, jaxrnn
        >>> p = replicate(jaxrnn.init_rnn(jax.random.key(0), 3, 4), data_mesh(1))
        >>> p.kernel.sharding.is_fully_replicated
        True
    """
    _axes(mesh, None, "replicate")
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


# --- when splitting the batch pays ------------------------------------------------------
#
# Splitting a batch over devices runs one loop per device, concurrently, each over
# fewer rows; every step still pays the loop's fixed per-step cost, and the devices
# meet once per training step for the gradient all-reduce. With too few rows per
# device the step is loop-bound and splitting is slower than one device (at the sine
# example's size, (B, T, I, H) = (10, 10, 1, 100), an LSTM training step split over 2
# host devices took 1.3-1.4x the time of one device). Measured with
# `python benchmarks/scaling.py` on a 2-core CPU (2 host devices, LSTM training step):
# see MIN_ROWS_PER_DEVICE below and benchmarks/RESULTS.md.
MIN_ROWS_PER_DEVICE = 16
SPLITS = ("auto", True, False)


def split_pays(rows: int, devices: int) -> bool:
    """The measured rule: split a batch of ``rows`` over ``devices`` only if each gets
    at least ``MIN_ROWS_PER_DEVICE`` rows.

    Example:
        >>> split_pays(32, 2), split_pays(10, 2), split_pays(128, 1)
        (True, False, False)
    """
    return devices > 1 and rows // devices >= MIN_ROWS_PER_DEVICE


def _check_split(split: Any, where: str) -> None:
    if not any(split is s or (isinstance(split, str) and split == s) for s in SPLITS):
        raise ValueError(
            f"{where}: split={split!r}; use 'auto' (split the batch when the measured rule "
            "says it pays, see jaxrnn.parallel.split_pays), True (always split) or False "
            "(never split: one device runs the whole batch)."
        )


def batch_rows(batch: Any, where: str) -> int:
    """The common leading size of every leaf of ``batch`` (its number of rows)."""
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(batch)}
    if not sizes or None in sizes:
        _check_batch(batch, 1, where)  # names the scalar leaf
        raise ValueError(f"{where}: the batch holds no arrays.")
    if len(sizes) != 1:
        shapes = [tuple(np.shape(leaf)) for leaf in jax.tree.leaves(batch)]
        raise ValueError(
            f"{where}: the batch's arrays have different leading sizes, shapes {shapes}; every "
            "leaf is split along its leading (batch) axis, so they must agree."
        )
    return sizes.pop()


def whole_sharding(mesh: Mesh) -> jax.sharding.Sharding:
    """Where an unsplit batch runs: the mesh's first device (one process), or every
    device of the mesh, each with the whole batch (several processes, which all hold
    the same state; no communication either way)."""
    if jax.process_count() == 1:
        return jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
    return NamedSharding(mesh, PartitionSpec())


def place(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """``jax.device_put(tree, sharding)``, skipped when the tree's first array already
    has that sharding (a state carried from step to step): for small steps the
    placement of every leaf costs more than the step."""
    leaves = jax.tree.leaves(tree)
    first = leaves[0] if leaves else None
    if isinstance(first, jax.Array) and first.sharding == sharding:
        if all(isinstance(a, jax.Array) and a.sharding == sharding for a in leaves):
            return tree
    return jax.device_put(tree, sharding)


def decide_split(split: Any, rows: int, devices: int) -> bool:
    """Whether to split a batch of ``rows`` over ``devices`` (``split`` as in
    ``data_parallel_step``)."""
    if split == "auto":
        return split_pays(rows, devices)
    return bool(split) and devices > 1


def data_parallel_step(
    step_fn: Callable[[Any, Any], tuple[Any, Any]],
    mesh: Mesh,
    *,
    axis: str | None = None,
    donate_state: bool = False,
    split: bool | str = "auto",
) -> Callable[[Any, Any], tuple[Any, Any]]:
    """Jit a training step for data parallelism: state replicated, batch sharded.

    ``step_fn(state, batch) -> (state, metrics)`` is written as for one device
    (e.g. a mean loss over the batch, ``jax.grad``, an optax update). The
    returned function places ``state`` replicated and ``batch`` split along its
    leading axis over the mesh (``shard_batch``), and runs
    ``jax.jit(step_fn, in_shardings=(replicated, sharded),
    out_shardings=(replicated, replicated))``: XLA partitions the computation
    and all-reduces the gradients. The values equal ``jax.jit(step_fn)`` on one
    device up to float32 summation order (tested to 1e-5). Inside it, the fused
    LSTM takes its hand-written backward pass, whose weight gradients the
    partitioner all-reduces once per step rather than at every time step.

    Splitting pays only with enough rows per device (``split_pays``): with
    ``split="auto"`` a smaller batch runs whole on the mesh's first device
    instead (in a multi-process run: on every device, each with the whole batch),
    so the step is never slower than one device at the shapes measured in
    ``benchmarks/scaling.py``. The state then comes back on that device; the next
    split step replicates it again. For a loss
    function, ``jaxrnn.train.make_train_step(loss_fn, optimizer, mesh=mesh)``
    (explicit per-device gradients and one ``lax.pmean``) is faster still.

    Args:
        step_fn: the pure step; collectives over named axes (``lax.pmean``) are
            neither needed nor available inside it.
        mesh: the device mesh (see ``data_mesh``).
        axis: the mesh axis to split the batch over; None for all axes.
        donate_state: donate the input state's buffers to the output (saves
            memory; the state passed in must not be used afterwards).
        split: ``"auto"`` (the measured rule), True (always split the batch) or
            False (never split: one device runs the whole batch).

    Returns:
        ``step(state, batch) -> (state, metrics)``, both outputs replicated. Its
        attribute ``jitted`` is the underlying ``jax.jit`` function of the split
        step (for ``.lower(...)`` and cost analysis), ``whole`` the one that runs
        the whole batch on one device.

    Raises:
        ValueError: (when called) a batch that is split but whose size is not
            divisible by the number of devices.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> opt = optax.sgd(0.1)
        >>> def step_fn(state, batch):
        ...     w, opt_state = state
        ...     x, y = batch
        ...     loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(w)
        ...     u, opt_state = opt.update(g, opt_state)
        ...     return (optax.apply_updates(w, u), opt_state), loss
        >>> step = data_parallel_step(step_fn, data_mesh())
        >>> w = jnp.zeros(3)
        >>> state = (w, opt.init(w))
        >>> x, y = jnp.ones((8, 3)), jnp.ones(8)
        >>> losses = []
        >>> for _ in range(3):
        ...     state, loss = step(state, (x, y))
        ...     losses.append(round(float(loss), 4))
        >>> losses
        [1.0, 0.16, 0.0256]
    """
    where = "data_parallel_step"
    axes = _axes(mesh, axis, where)
    _check_split(split, where)
    n = _devices_on(mesh, axes)
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec(axes))
    donate = (0,) if donate_state else ()

    def partitioned_step(state, batch):
        with batch_partitioned():  # traced for XLA's batch partitioning
            return step_fn(state, batch)

    jitted = jax.jit(
        partitioned_step,
        in_shardings=(replicated, sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=donate,
    )
    one = whole_sharding(mesh)
    whole = jax.jit(step_fn, donate_argnums=donate)

    @functools.wraps(step_fn)
    def step(state, batch):
        if decide_split(split, batch_rows(batch, where), n):
            _check_batch(batch, n, where)
            return jitted(place(state, replicated), jax.device_put(batch, sharded))
        return whole(place(state, one), place(batch, one))

    step.jitted = jitted  # type: ignore[attr-defined]
    step.whole = whole  # type: ignore[attr-defined]
    return step
