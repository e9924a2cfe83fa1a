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
``jaxrnn.sweep.sweep(..., mesh=mesh)``. On CPU, ``JAX_NUM_CPU_DEVICES=4`` (or
``set_cpu_devices(4)`` before JAX computes anything) gives four devices.

Several processes (one per host, or several on one machine) join with
``initialize(...)`` (JAX's distributed runtime; gloo collectives on CPU); a mesh
over ``jax.devices()`` then spans every process's devices and the same steps,
``fit``, ``sweep`` and checkpoints run over all of them. The contract: every
process runs the same program and passes the same values (state, full batch,
key); each process places only the rows its own devices hold (``put_global``,
no communication), or passes only its share (``global_batch``). Results that
are replicated (state, metrics) are complete on every process.

This module needs only JAX; ``import jaxrnn`` does not import it.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._checks import positive_int
from ._context import batch_axes, batch_partitioned

__all__ = [
    "batch_axes",
    "batch_sharding",
    "check_same",
    "data_mesh",
    "data_parallel_step",
    "global_batch",
    "initialize",
    "put_global",
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

    Examples:
        >>> set_cpu_devices(len(jax.devices()))    # a no-op: the count is already so
    """
    where = "set_cpu_devices"
    positive_int(n, where, "n", what=" (devices)")
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


# --- several processes -------------------------------------------------------------------
#
# Measured on XLA:CPU with jax 0.10.2, 2 local processes (see tests/test_multiprocess.py):
# with JAX's default timeouts a failure turns into a wait of 100 s (heartbeat) to 300 s
# (shutdown barrier) before the survivors abort; with the defaults below and the fail-fast
# hook, a process that raises takes its peers down within seconds.
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # JAX's own name (jax.distributed reads it too)
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


def _from_env(value: Any, name: str, where: str, kind: type) -> Any:
    """``value``, or the environment variable ``name`` parsed as ``kind`` when value is None."""
    if value is not None or name not in os.environ:
        return value
    raw = os.environ[name]
    if kind is str:
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{where}: {name}={raw!r} is not an integer.") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_devices: int | None = None,
    initialization_timeout: float = 120,
    heartbeat_timeout: float = 10,
    shutdown_timeout: float = 30,
    cpu_collectives: str | None = "gloo",
    fail_fast: bool = True,
) -> None:
    """Join this process to a multi-process JAX run (``jax.distributed.initialize``).

    Call it in every process, right after the imports, before JAX computes
    anything. Afterwards ``jax.devices()`` lists every process's devices (process
    0's first), ``data_mesh()`` spans them all, and ``fit``/``make_train_step``/
    ``data_parallel_step``/``sweep`` with that mesh run over every process::

        # process i of n (one per host; or n shells on one machine)
        jaxrnn.parallel.initialize("10.0.0.1:1234", num_processes=n, process_id=i)

    It is ``jax.distributed.initialize`` with three things added:

    * CPU collectives: ``jax_cpu_collectives_implementation`` is set to
      ``cpu_collectives`` (``"gloo"``), without which CPU devices of different
      processes cannot all-reduce (it concerns only JAX's CPU backend).
    * Short timeouts. JAX's defaults (heartbeat 100 s, shutdown 300 s) turn a
      crashed process into minutes of waiting before its peers abort. Here a
      process that stops sending heartbeats is declared dead after
      ``heartbeat_timeout`` seconds (heartbeats come from a background thread; a
      long step or compile does not delay them), and at exit a process waits
      ``shutdown_timeout`` seconds for the others to finish too (give it room if
      one process works alone at the end, e.g. process 0 writing reports).
    * ``fail_fast``: an uncaught exception prints its traceback and leaves with
      ``os._exit(1)`` instead of a normal exit, whose shutdown barrier would wait
      for peers that are themselves blocked in a collective with this process
      (then abort both after ``shutdown_timeout``). Leaving at once closes the
      connections, so the peers' pending collectives fail within seconds and
      their own hook ends them. ``atexit`` handlers do not run after such a
      failure.

    Arguments left as None are read from the environment variables
    ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, and
    what is still missing is detected by JAX on clusters it knows (Slurm, Open
    MPI, Kubernetes, Cloud TPU).

    Args:
        coordinator_address: ``"host:port"`` of process 0, where it starts JAX's
            coordination service; every process passes the same one. On one
            machine ``"127.0.0.1:PORT"`` with a free port; across hosts, process
            0's address as the others reach it.
        num_processes: how many processes take part.
        process_id: this process's index, ``0 .. num_processes - 1``.
        local_devices: on CPU, the number of devices of this process (as
            ``set_cpu_devices``); None keeps the default (one, or
            ``JAX_NUM_CPU_DEVICES``).
        initialization_timeout: seconds to wait for all processes to join; a
            process still alone then aborts (JAX ends it, exit code -6).
        heartbeat_timeout: seconds without heartbeats after which a process is
            declared dead and the others abort.
        shutdown_timeout: seconds a finishing process waits for the others.
        cpu_collectives: ``"gloo"`` (default), ``"mpi"``, or None to leave JAX's
            setting as it is.
        fail_fast: install the fail-fast ``sys.excepthook`` described above.

    Raises:
        RuntimeError: JAX has already started (its devices are fixed) or this
            process has already joined a run; the message says what to do.
        ValueError: a bad count or id, or a coordinator address without a port.

    Examples:
        >>> n = jax.device_count()                # JAX has started now, so:
        >>> initialize("127.0.0.1:1234", 2, 0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        RuntimeError: initialize: JAX has already started in this process ...
    """
    where = "initialize"
    from jax._src import distributed, xla_bridge

    coordinator_address = _from_env(coordinator_address, ENV_COORDINATOR, where, str)
    num_processes = _from_env(num_processes, ENV_NUM_PROCESSES, where, int)
    process_id = _from_env(process_id, ENV_PROCESS_ID, where, int)
    if num_processes is not None:
        positive_int(num_processes, where, "num_processes")
    if process_id is not None:
        positive_int(process_id, where, "process_id", minimum=0)
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"{where}: process_id={process_id} but num_processes={num_processes}; ids run from "
            f"0 to {num_processes - 1}."
        )
    if coordinator_address is not None and (
        not isinstance(coordinator_address, str) or ":" not in coordinator_address
    ):
        raise ValueError(
            f"{where}: coordinator_address={coordinator_address!r}; give 'host:port' of process "
            "0, e.g. '127.0.0.1:1234' on one machine or '10.0.0.1:1234' across hosts."
        )
    for name, value in (
        ("initialization_timeout", initialization_timeout),
        ("heartbeat_timeout", heartbeat_timeout),
        ("shutdown_timeout", shutdown_timeout),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{where}: {name}={value!r}; it must be a positive number (seconds).")
    if distributed.global_state.client is not None:
        raise RuntimeError(
            f"{where}: this process has already joined a multi-process run (process "
            f"{jax.process_index()} of {jax.process_count()}); call initialize once per process."
        )
    if xla_bridge.backends_are_initialized():
        raise RuntimeError(
            f"{where}: JAX has already started in this process (something computed, or asked "
            "for jax.devices()), so it cannot join a multi-process run any more. Call "
            "jaxrnn.parallel.initialize(...) right after the imports, before any jax or jaxrnn "
            "computation (also before creating arrays or a mesh)."
        )
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if local_devices is not None:
        set_cpu_devices(local_devices)
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    missing = [name for name, value in given.items() if value is None]
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=None if num_processes is None else int(num_processes),
            process_id=None if process_id is None else int(process_id),
            initialization_timeout=math.ceil(initialization_timeout),
            heartbeat_timeout_seconds=math.ceil(heartbeat_timeout),
            shutdown_timeout_seconds=math.ceil(shutdown_timeout),
        )
    except ValueError as e:
        if not missing:
            raise
        raise ValueError(
            f"{where}: {', '.join(missing)} not given, not in the environment "
            f"({ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}) and not detected by JAX "
            f"({e}). Pass them, e.g. initialize('127.0.0.1:1234', num_processes=2, "
            "process_id=0)."
        ) from e
    if fail_fast:
        sys.excepthook = _fail_fast_hook(sys.excepthook)


def _fail_fast_hook(previous: Callable) -> Callable:
    def hook(kind, value, tb):
        try:
            previous(kind, value, tb)
            print(
                f"[jaxrnn] process {jax.process_index()}: uncaught exception, leaving at once "
                "(os._exit(1)) so that the other processes fail fast.",
                file=sys.stderr,
            )
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(1)

    return hook


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

    Examples:
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


def mesh_axes(mesh: Mesh, axis: str | None, where: str) -> tuple[str, ...]:
    """The mesh axes a batch is split over: ``(axis,)``, or all of them when None
    (used by the training steps too; not in ``__all__``)."""
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

    Examples:
        >>> s = batch_sharding(data_mesh(1))
        >>> s.spec == PartitionSpec("batch"), s.num_devices
        (True, 1)
    """
    return NamedSharding(mesh, PartitionSpec(mesh_axes(mesh, axis, "batch_sharding")))


def devices_on(mesh: Mesh, axes: tuple[str, ...]) -> int:
    """How many devices the mesh ``axes`` span together (the batch's split count)."""
    return int(np.prod([mesh.shape[a] for a in axes]))


def check_divisible_batch(
    batch: Any, n: int, where: str, devices: str = "devices of the mesh"
) -> None:
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
                f"{n} {devices}, so it cannot be split evenly. Use a batch size that "
                f"is a multiple of {n}, {hint} (drop or pad the remainder)."
            )


def shard_batch(batch: Any, mesh: Mesh, *, axis: str | None = None) -> Any:
    """Place a batch on the mesh, split along every leaf's leading axis.

    Each device holds ``B / n`` rows of each leaf (``n`` devices on the axis).
    With a mesh spanning several processes, every process passes the same whole
    batch and copies only its own devices' rows (``put_global``: no
    communication); a process that holds only its rows uses ``global_batch``.

    Args:
        batch: a pytree of arrays (NumPy or JAX), leaves ``(B, ...)``.
        mesh: the device mesh (see ``data_mesh``).
        axis: the mesh axis to split over; None for all of the mesh's axes.

    Returns:
        The batch as ``jax.Array``s sharded with ``batch_sharding(mesh, axis)``.

    Raises:
        ValueError: a leaf's leading size is not divisible by the number of
            devices (the message suggests batch sizes), or a leaf is a scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = shard_batch(jnp.ones((8, 5, 3)), data_mesh(1))
        >>> x.shape, x.sharding.num_devices
        ((8, 5, 3), 1)
    """
    sharding = batch_sharding(mesh, axis)
    check_divisible_batch(
        batch, devices_on(mesh, mesh_axes(mesh, axis, "shard_batch")), "shard_batch"
    )
    if spans_processes(sharding):
        return put_global(batch, sharding)
    return jax.device_put(batch, sharding)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a full copy of every leaf of ``tree`` on every device of ``mesh``.

    With a mesh spanning several processes, every process passes the same tree:
    ``replicate`` compares a 128-bit hash of each process's values (through JAX's
    coordination service, not the values themselves) and raises ``ValueError`` if
    they differ, e.g. parameters initialised from a per-process seed; then each
    process copies the tree to its own devices (``put_global``).

    Args:
        tree: a pytree of arrays (parameters, optimiser state, step counter).
        mesh: the device mesh.

    Returns:
        The tree as ``jax.Array``s with ``NamedSharding(mesh, PartitionSpec())``.

    Examples:
        >>> import jax, jaxrnn
        >>> p = replicate(jaxrnn.init_rnn(jax.random.key(0), 3, 4), data_mesh(1))
        >>> p.kernel.sharding.is_fully_replicated
        True
    """
    mesh_axes(mesh, None, "replicate")
    sharding = NamedSharding(mesh, PartitionSpec())
    if spans_processes(sharding):
        check_same(tree, "values", "replicate")
        return put_global(tree, sharding)
    return jax.device_put(tree, sharding)


def spans_processes(sharding: jax.sharding.Sharding) -> bool:
    """Whether ``sharding`` places data on devices of other processes too."""
    return jax.process_count() > 1 and not sharding.is_fully_addressable


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _put_leaf(leaf: Any, sharding: jax.sharding.Sharding) -> Any:
    if isinstance(leaf, jax.Array):
        if leaf.sharding == sharding:
            return leaf
        if _is_key(leaf):  # typed keys travel as their uint32 data
            data = _put_leaf(jax.random.key_data(leaf), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        if not leaf.is_fully_addressable:  # already global: reshard (a collective)
            return jax.device_put(leaf, sharding)
    host = np.asarray(leaf)
    host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_global(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Place a tree that every process holds in full with ``sharding``, without communication.

    Each process copies to its own devices only the parts the sharding puts
    there (``jax.make_array_from_callback``): its rows of a batch split over the
    devices, a full copy of a replicated value. ``jax.device_put`` does the same
    but, across processes, first checks that every process passed equal values
    by gathering them (a collective over the whole array); this is the
    per-step placement of jaxrnn's data-parallel steps instead. Nothing checks
    that the processes' values agree (see ``replicate`` for a check): a process
    that passes other values trains other rows.

    Leaves: NumPy or JAX arrays, Python scalars and typed PRNG keys (placed as
    their key data). A leaf that already has ``sharding`` is kept; a JAX array
    already spread over several processes is resharded with ``jax.device_put``
    (a collective: every process must call this then).

    Args:
        tree: a pytree of arrays, the same on every process.
        sharding: the target sharding, e.g. ``batch_sharding(mesh)`` or
            ``NamedSharding(mesh, PartitionSpec())``.

    Returns:
        The tree as ``jax.Array``s with ``sharding``.

    Examples:
        >>> x = put_global(np.arange(8.0).reshape(4, 2), batch_sharding(data_mesh()))
        >>> x.shape, x.sharding.spec == PartitionSpec("batch")
        ((4, 2), True)
    """
    return jax.tree.map(functools.partial(_put_leaf, sharding=sharding), tree)


def global_batch(local_batch: Any, mesh: Mesh, *, axis: str | None = None) -> Any:
    """A global batch from each process's own rows (``jax.make_array_from_process_local_data``).

    For data that does not fit on every host: process ``i`` passes only its
    share, the rows its devices hold, and the result is the batch of all
    processes' rows in process order, split over the mesh like ``shard_batch``.
    Every process passes the same number of rows. Nothing is communicated. The
    steps of ``make_train_step``/``data_parallel_step`` take the result as it is.
    In one process it is ``shard_batch``.

    Args:
        local_batch: a pytree of this process's rows, leaves ``(B / P, ...)`` for
            ``P`` processes.
        mesh: the device mesh (see ``data_mesh``), over every process's devices.
        axis: the mesh axis to split over; None for all of the mesh's axes.

    Returns:
        The global batch, leaves ``(B, ...)`` sharded with ``batch_sharding(mesh, axis)``.

    Raises:
        ValueError: a leaf's rows do not divide over this process's devices of
            the mesh, or a leaf is a scalar.

    Examples:
        >>> x = global_batch(np.ones((4, 3), np.float32), data_mesh())  # one process
        >>> x.shape
        (4, 3)
    """
    sharding = batch_sharding(mesh, axis)
    where = "global_batch"
    mine = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    share = devices_on(mesh, mesh_axes(mesh, axis, where)) * mine // mesh.size
    if share < 1:
        raise ValueError(
            f"{where}: the mesh has no device of this process (process {jax.process_index()}); "
            "build it over every process's devices, e.g. data_mesh()."
        )
    check_divisible_batch(local_batch, share, where, "devices of this process in the mesh")
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local_batch
    )


# Agreement between processes goes through JAX's coordination service (its key-value
# store, with a timeout) rather than a collective: a process that never arrives then
# raises a clear error after SYNC_TIMEOUT seconds instead of blocking forever.
SYNC_TIMEOUT = 300.0
_ROUNDS: collections.Counter = collections.Counter()


def exchange(tag: str, value: str, *, where: str, timeout: float | None = None) -> list[str]:
    """Every process's ``value`` (a short string), in process order; ``[value]`` in one process.

    Every process calls it with the same ``tag``, as often and in the same order
    (the n-th call of a tag meets the n-th call of the others). Waits at most
    ``timeout`` seconds (default ``SYNC_TIMEOUT``) for the others.

    Raises:
        TimeoutError: a process did not call it in time (the message names it).
    """
    if jax.process_count() == 1:
        return [value]
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        raise RuntimeError(
            f"{where}: {jax.process_count()} processes, but JAX's distributed runtime is not "
            "initialised here; start every process with jaxrnn.parallel.initialize(...)."
        )
    timeout = SYNC_TIMEOUT if timeout is None else float(timeout)
    rounds = _ROUNDS[tag]
    _ROUNDS[tag] += 1
    base = f"jaxrnn/{tag}/{rounds}"
    client.key_value_set(f"{base}/{jax.process_index()}", value)
    deadline = time.monotonic() + timeout
    values = []
    for i in range(jax.process_count()):
        left = max(1, int((deadline - time.monotonic()) * 1000))
        try:
            values.append(client.blocking_key_value_get(f"{base}/{i}", left))
        except Exception as e:  # DEADLINE_EXCEEDED, or the coordination service is gone
            raise TimeoutError(
                f"{where}: process {i} did not reach this point within {timeout:g} s ({e}). In "
                f"a multi-process run every process calls {where}, the same number of times "
                "and in the same order (each process runs the same program)."
            ) from e
    return values


def _fingerprint(tree: Any) -> str:
    """A 128-bit hash (hex) of ``tree``'s structure, shapes, dtypes and values.

    Leaves spread over several processes count by their local copy if
    replicated and are skipped if sharded (each process holds other rows).

    Examples:
        >>> _fingerprint({"w": np.ones(3)}) == _fingerprint({"w": np.ones(3)})
        True
    """
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                continue
            leaf = leaf.addressable_data(0)
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return h.hexdigest()


def check_same(tree: Any, what: str, where: str) -> None:
    """Raise ``ValueError`` on every process if the processes passed different ``tree``s.

    Compares a 128-bit hash of each process's ``tree`` (structure, shapes, dtypes,
    values; leaves sharded over processes are skipped) through JAX's coordination
    service, waiting at most ``SYNC_TIMEOUT`` seconds for the others; the values
    themselves are not sent. Every process must call it, the same number of
    times. A no-op in one process. The train steps call it on the first state
    they place, ``fit`` on its data and key, ``sweep`` on its table.

    Args:
        tree: a pytree of arrays that every process should hold identically.
        what: what the tree is, for the message (e.g. ``"parameters"``).
        where: the caller's name, for the message.

    Raises:
        ValueError: the trees differ (the message names the processes).
        TimeoutError: a process did not call it within ``SYNC_TIMEOUT`` seconds.

    Examples:
        >>> check_same({"w": np.ones(3)}, "parameters", "my_loop")  # one process: no-op
    """
    if jax.process_count() == 1:
        return
    prints = exchange("same", _fingerprint(tree), where=where)
    differ = [i for i, v in enumerate(prints) if v != prints[0]]
    if differ:
        raise ValueError(
            f"{where}: the processes passed different {what}: process(es) {differ} differ from "
            f"process 0. In a multi-process run every process passes the same {what} (each then "
            "feeds only its own devices); e.g. initialise from the same seed on every process, "
            "not from one that depends on jax.process_index(), and load the same data."
        )


# --- when splitting the batch pays ------------------------------------------------------
#
# Splitting a batch over devices runs one loop per device, concurrently, each over
# fewer rows; every time step still pays the loop's fixed cost, each call pays a
# fixed multi-device cost (about 0.25 ms on 2 host devices), and the devices meet
# once per training step for the gradient all-reduce. A small step loses: at the
# sine example's size, (B, T, I, H) = (10, 10, 1, 100), a 0.5 ms LSTM training step,
# splitting over 2 host devices took 1.4-1.5x the time of one device; one row per
# device lost too, 0.56x at (4, 4000, 8, 32) over 4 devices. Rows per device alone do
# not decide it (2 rows per device at T = 4000 broke even, 5 at T = 10 lost), the
# size of the work does. Measured with `python benchmarks/scaling.py` on a 2-core
# CPU, LSTM training step, 3 runs (speedup of the split step over one device):
#
#   (B, T, I, H), n devices   rows/device  work/device  speedup   rule
#   (10, 10, 1, 100), 2            5         2.0e6       0.65-0.71 no split
#   (4, 4000, 8, 32), 2            2         4.2e7       0.70-1.13 no split (rows)
#   (4, 4000, 8, 32), 4            1         2.1e7       0.56-0.89 no split (rows)
#   (16, 1000, 16, 64), 4          4         8.3e7       1.30-1.43 split
#   (16, 1000, 16, 64), 2          8         1.7e8       1.18-1.56 split
#   (32, 100, 32, 128), 4          8         6.6e7       1.07-1.29 split
#   (32, 100, 32, 128), 2         16         1.3e8       1.38-1.43 split
#   (64, 100, 128, 256), 2        32         1.3e9       0.99-1.05 split (break-even)
#   (128, 28, 28, 128), 2         64         1.4e8       1.39-1.44 split
#
# with work/device = rows per device x time steps x parameters (multiply-adds of the
# recurrence, roughly). The rule: at least MIN_ROWS_PER_DEVICE rows and
# MIN_WORK_PER_DEVICE work per device.
MIN_ROWS_PER_DEVICE = 4
MIN_WORK_PER_DEVICE = 2e7
SPLITS = ("auto", True, False)


def split_pays(rows: int, devices: int, *, steps: int = 1, parameters: int = 0) -> bool:
    """The measured rule: split a batch over ``devices`` only if each gets at least
    ``MIN_ROWS_PER_DEVICE`` rows and ``rows / devices * steps * parameters`` is at
    least ``MIN_WORK_PER_DEVICE`` (see the table in ``jaxrnn/parallel.py``).

    Args:
        rows: the batch size.
        devices: the devices it would be split over.
        steps: time steps per row (the sequence length).
        parameters: floating-point parameters (or state elements) of the model.

    Examples:
        >>> lstm = 4 * 128 * (32 + 128 + 1)             # an LSTM, I = 32, H = 128
        >>> split_pays(32, 2, steps=100, parameters=lstm)
        True
        >>> split_pays(10, 2, steps=10, parameters=4 * 100 * 102)   # the sine example
        False
    """
    per_device = rows // devices
    return (
        devices > 1
        and per_device >= MIN_ROWS_PER_DEVICE
        and per_device * steps * parameters >= MIN_WORK_PER_DEVICE
    )


def batch_steps(batch: Any) -> int:
    """Time steps per row of a batch: the longest second axis of its leaves with
    feature axes (``(B, T, F)``), 1 if none has one."""
    lens = [np.shape(a)[1] for a in jax.tree.leaves(batch) if np.ndim(a) >= 3]
    return int(max(lens, default=1))


def parameter_count(tree: Any) -> int:
    """The number of floating-point elements in ``tree``."""
    return int(
        sum(
            np.size(a)
            for a in jax.tree.leaves(tree)
            if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
        )
    )


def check_split(split: Any, where: str) -> None:
    """Refuse a ``split=`` other than ``'auto'``, True or False, naming the three."""
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
        check_divisible_batch(batch, 1, where)  # names the scalar leaf
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


def place(
    tree: Any, sharding: jax.sharding.Sharding, *, check: str | None = None, where: str = ""
) -> Any:
    """``jax.device_put(tree, sharding)``, skipped when the tree's first and last arrays
    already have that sharding (a state carried from step to step), or when host
    (NumPy) data goes to one device (the jitted call copies it there with its
    committed arguments): for small steps the placement costs more than the step.

    Across processes it is ``put_global`` (no communication); with ``check`` (what
    the tree is, for the message) the processes' values are first compared
    (``check_same``), which every process must then call too."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return tree
    first, last = leaves[0], leaves[-1]
    if (
        isinstance(first, jax.Array)
        and isinstance(last, jax.Array)
        and first.sharding == sharding
        and last.sharding == sharding
    ):
        return tree  # placed as a whole before (by a step): checking two leaves suffices
    if (
        isinstance(sharding, jax.sharding.SingleDeviceSharding)
        and not any(isinstance(a, jax.Array) for a in leaves)
        and not spans_processes(sharding)
    ):
        return tree  # host data: the jitted call copies it next to its committed arguments
    if spans_processes(sharding):
        if check is not None:
            check_same(tree, check, where)
        return put_global(tree, sharding)
    return jax.device_put(tree, sharding)


class SplitDecider:
    """``decide(batch, params) -> bool``: ``split`` (as in ``data_parallel_step``)
    applied to a batch for a model whose parameters (or state) are ``params``.

    The answer depends only on shapes, so it is kept per batch shape and
    parameter structure: a training loop pays the rule once, not at every step
    (for a 0.5 ms step the bookkeeping would otherwise show).
    """

    def __init__(self, split: Any, devices: int, where: str):
        self.split, self.devices, self.where = split, devices, where
        self._known: dict = {}

    def __call__(self, batch: Any, params: Any) -> bool:
        leaves, treedef = jax.tree.flatten(batch)
        key = (treedef, tuple(np.shape(a) for a in leaves), jax.tree.structure(params))
        hit = self._known.get(key)
        if hit is None:
            rows = batch_rows(batch, self.where)
            if self.split == "auto":
                hit = split_pays(
                    rows,
                    self.devices,
                    steps=batch_steps(batch),
                    parameters=parameter_count(params),
                )
            else:
                hit = bool(self.split) and self.devices > 1
            self._known[key] = hit
        return hit


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

    Over several processes (``initialize``), every process calls the step with
    the same state and the same whole batch, and each copies only its own
    devices' rows (``put_global``); the first placement of a state compares the
    processes' states (``check_same``). A batch from ``global_batch`` (each
    process's own rows) is taken as it is. Outputs are replicated: ``float`` and
    ``np.asarray`` read them on every process.

    Splitting pays only with enough rows and work per device (``split_pays``,
    with the state's floating-point elements as the parameter count): with
    ``split="auto"`` a smaller batch runs whole on the mesh's first device
    instead (in a multi-process run: on every device, each with the whole batch),
    so the step is not slower than one device at the shapes measured in
    ``benchmarks/scaling.py``. The state then comes back on that device; the next
    split step replicates it again. For a loss function,
    ``jaxrnn.train.make_train_step(loss_fn, optimizer, mesh=mesh)`` (explicit
    per-device gradients and one ``lax.pmean``) measured the same or faster
    (1.44x vs 1.22x one device at (128, 28, 28, 128) on 2 devices).

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

    Examples:
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
    axes = mesh_axes(mesh, axis, where)
    check_split(split, where)
    n = devices_on(mesh, axes)
    decide = SplitDecider(split, n, where)
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
        if decide(batch, state):
            check_divisible_batch(batch, n, where)
            state = place(state, replicated, check="state", where=where)
            return jitted(state, place(batch, sharded))
        return whole(place(state, one, check="state", where=where), place(batch, one))

    step.jitted = jitted  # type: ignore[attr-defined]
    step.whole = whole  # type: ignore[attr-defined]
    return step
