"""Checkpoints of training state (parameters, optimiser state, step) that never run code on load.

``save(path, tree)`` writes any pytree of arrays: jaxrnn's NamedTuple
parameters, optax states (NamedTuples, dicts, ``EmptyState``), step counters,
PRNG keys. ``restore(path, target)`` reads it back into the structure of
``target`` (a freshly initialised state, or ``jax.eval_shape`` of one), checking
every leaf's path, shape and dtype first.

File layout (all integers little-endian)::

    magic        16 bytes  b"\\x89jaxrnn-ckpt\\r\\n\\x1a\\n"
    header_size   8 bytes  uint64
    header       msgpack map: format, version, byteorder, payload_size and per
                 leaf {path, shape, dtype, nbytes} (plus key_impl, data_shape,
                 data_dtype for PRNG keys)
    payload      the leaves' raw bytes, in the order of the header
    sha256       32 bytes  digest of everything before it

Loading parses msgpack (data only, no pickle) and raw bytes whose dtypes come
from a fixed set of numeric types, so a file can never execute code. The
trailing checksum catches truncated and corrupted files, and writes are atomic:
the file is written to a temporary file in the same directory, flushed with
``fsync`` and moved into place with ``os.replace``, so an interrupted or failed
write leaves an existing checkpoint as it was.

This module needs ``msgpack`` (a dependency of flax); ``import jaxrnn`` does not
import it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import struct
import sys
import uuid
from typing import Any

import jax
import jax.numpy as jnp
import msgpack
import numpy as np

from . import parallel

__all__ = ["FORMAT", "VERSION", "read_header", "restore", "save"]

FORMAT = "jaxrnn-checkpoint"
VERSION = 1
MAGIC = b"\x89jaxrnn-ckpt\r\n\x1a\n"  # 16 bytes; the PNG trick: binary, not text
_SIZE = struct.Struct("<Q")
_DIGEST = 32  # sha256
_MAX_LISTED = 10  # mismatches listed in one error message


# ---------------------------------------------------------------------------- write


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode(tree: Any) -> tuple[list[dict], list[np.ndarray]]:
    """Header entries and host arrays for the leaves of ``tree`` (no file touched yet)."""
    entries, arrays = [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(path)
        entry: dict[str, Any] = {"path": name, "shape": list(np.shape(leaf))}
        if _is_key(leaf):
            data = np.asarray(jax.random.key_data(leaf))
            entry.update(
                dtype=str(leaf.dtype),
                key_impl=str(jax.random.key_impl(leaf)),
                data_shape=list(data.shape),
                data_dtype=data.dtype.name,
            )
        else:
            try:
                data = np.asarray(leaf)
            except Exception as e:  # e.g. a leaf that is not an array at all
                raise TypeError(
                    f"checkpoint.save: leaf tree{name} ({type(leaf).__name__}) cannot be "
                    f"converted to an array: {e}"
                ) from e
            _check_dtype(data.dtype, f"checkpoint.save: leaf tree{name}", TypeError)
            entry["dtype"] = data.dtype.name
        data = np.ascontiguousarray(data)
        if sys.byteorder != "little":
            data = data.byteswap()
        entry["nbytes"] = int(data.nbytes)
        entries.append(entry)
        arrays.append(data)
    return entries, arrays


def _leaf_bytes(data: np.ndarray) -> memoryview:
    """The raw bytes of one leaf, as written to the payload."""
    return memoryview(data.reshape(-1).view(np.uint8))


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error(e: OSError, message: str) -> OSError:
    """An error of ``e``'s type (``FileNotFoundError``, ``PermissionError``, ...) with our
    message; ``errno`` is kept so code that checks it still works."""
    new = type(e)(message)
    new.errno = e.errno
    return new


def _existing_parent(directory: str) -> str:
    while directory and not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def _check_directory(path: str, directory: str) -> None:
    """``save`` writes into an existing directory only; say which one is missing and how to
    create it (rather than an error naming the temporary file)."""
    if os.path.isdir(directory):
        return
    user_dir = os.path.dirname(path) or "."
    shown = repr(user_dir) + (f" ({directory})" if os.path.abspath(user_dir) != user_dir else "")
    if os.path.exists(directory):
        e: OSError = NotADirectoryError(
            f"checkpoint.save: cannot write {path!r}: {shown} is a file, not a directory."
        )
        e.errno = errno.ENOTDIR
        raise e
    e = FileNotFoundError(
        f"checkpoint.save: cannot write {path!r}: its directory {shown} does not exist (nearest "
        f"existing parent: {_existing_parent(directory)!r}). Create it first: "
        f"os.makedirs({user_dir!r}, exist_ok=True); save does not create directories."
    )
    e.errno = errno.ENOENT
    raise e


def save(path: str | os.PathLike, tree: Any, *, timeout: float | None = None) -> None:
    """Write a pytree of arrays to ``path``, atomically.

    The tree may hold any mix of JAX and NumPy arrays, Python and NumPy scalars
    and typed PRNG keys in NamedTuples, dicts (string keys), lists and tuples:
    parameters, optax states and a step counter together. Arrays are copied to
    the host first. The file is written next to ``path`` under a temporary name,
    ``fsync``-ed and renamed over ``path``; if anything fails the temporary file
    is removed and an existing ``path`` is untouched.

    In a multi-process run (``jaxrnn.parallel.initialize``) every process calls
    ``save`` with the same path and tree: process 0 writes the file, and ``save``
    returns on every process only once the file is complete (a barrier through
    JAX's coordination service), so a ``restore`` right after never reads early.
    If process 0 cannot write, every process raises (process 0 its own error, the
    others ``RuntimeError`` quoting it). Leaves replicated over the processes (a
    training state) are read from the local copy; leaves sharded over processes
    (a global batch, a sweep's per-device outputs) are gathered first
    (``process_allgather``, a collective), so the file always holds whole arrays.
    The path is process 0's; to ``restore`` on every process, it must be on a
    filesystem that every process reads (or copied to each host).

    Args:
        path: the checkpoint file; its directory must exist (``save`` does not
            create directories, as ``np.save`` and ``torch.save`` do not; call
            ``os.makedirs(directory, exist_ok=True)`` first).
        tree: the pytree to save.
        timeout: multi-process only: seconds to wait for the other processes
            (process 0's write included); None for
            ``jaxrnn.parallel.SYNC_TIMEOUT`` (300 s).

    Raises:
        TypeError: a leaf that is not a numeric array or scalar (a string, an
            object array).
        FileNotFoundError: the directory of ``path`` does not exist (the message
            names it and the nearest existing parent).
        OSError: the file cannot be written (the old file, if any, is kept).
        RuntimeError: (multi-process, processes other than 0) process 0 could not
            write the file.
        TimeoutError: (multi-process) a process did not call ``save`` within
            ``timeout``, e.g. ``save`` called on process 0 only.

    Examples:
        >>> import os, tempfile, jax, jax.numpy as jnp, optax, jaxrnn
        >>> params = jaxrnn.init_lstm(jax.random.key(0), 3, 4)
        >>> opt_state = optax.adam(1e-3).init(params)
        >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
        >>> save(path, {"params": params, "opt_state": opt_state, "step": 10})
        >>> state = restore(path, {"params": params, "opt_state": opt_state, "step": 0})
        >>> state["step"], bool(jnp.all(state["params"].kernel == params.kernel))
        (10, True)
    """
    path = os.fspath(path)
    several = jax.process_count() > 1
    if several:
        tree = _whole_arrays(tree)
    entries, arrays = _encode(tree)
    header = msgpack.packb(
        {
            "format": FORMAT,
            "version": VERSION,
            "byteorder": "little",
            "payload_size": sum(e["nbytes"] for e in entries),
            "leaves": entries,
        },
        use_bin_type=True,
    )
    if not several:
        _write(path, header, arrays)
        return
    status, error = "ok", None
    if jax.process_index() == 0:
        try:
            _write(path, header, arrays)
        except Exception as e:
            status, error = f"{type(e).__name__}: {e}", e
    # every process waits here for process 0's outcome (and for each other)
    statuses = parallel.exchange(
        "checkpoint.save", status, where="checkpoint.save", timeout=timeout
    )
    if error is not None:
        raise error
    if statuses[0] != "ok":
        raise RuntimeError(
            f"checkpoint.save: process 0 could not write {path!r}, so no process continues: "
            f"{statuses[0]}"
        )


def _whole_arrays(tree: Any) -> Any:
    """Leaves sharded over several processes, gathered to host arrays (a collective)."""
    from jax.experimental import multihost_utils

    def whole(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return leaf
        if leaf.is_fully_replicated:
            return leaf.addressable_data(0)
        if _is_key(leaf):
            data = multihost_utils.process_allgather(jax.random.key_data(leaf), tiled=True)
            return jax.random.wrap_key_data(jnp.asarray(data), impl=jax.random.key_impl(leaf))
        return multihost_utils.process_allgather(leaf, tiled=True)

    return jax.tree.map(whole, tree)


def _write(path: str, header: bytes, arrays: list[np.ndarray]) -> None:
    """Write the file atomically: a temporary file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    _check_directory(path, directory)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:  # e.g. no permission: name the user's path, not the temporary file
        raise _os_error(
            e,
            f"checkpoint.save: cannot create a file in {directory!r} to write {path!r} "
            f"({e.strerror or e}).",
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            digest = hashlib.sha256()
            for chunk in (MAGIC, _SIZE.pack(len(header)), header):
                f.write(chunk)
                digest.update(chunk)
            for data in arrays:
                chunk = _leaf_bytes(data)
                f.write(chunk)
                digest.update(chunk)
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


# ----------------------------------------------------------------------------- read


def _check_dtype(dtype: np.dtype, what: str, error: type[Exception]) -> None:
    if (
        dtype.hasobject
        or dtype.fields is not None
        or dtype.kind not in "biufcV"
        or dtype.itemsize == 0
    ):
        raise error(
            f"{what} has dtype {dtype}; checkpoints hold numeric arrays (bool, int, float, "
            "complex, bfloat16, ...) only."
        )


def _dtype(name: Any, where: str) -> np.dtype:
    """A numeric dtype from its name in a header (never anything that can hold objects)."""
    if not isinstance(name, str):
        raise ValueError(f"{where}: corrupted header (dtype {name!r} is not a name).")
    try:
        dtype = np.dtype(jnp.dtype(name))
    except Exception as e:
        raise ValueError(f"{where}: corrupted header (unknown dtype {name!r}).") from e
    if dtype.name != name:
        raise ValueError(f"{where}: corrupted header (dtype {name!r} is not canonical).")
    _check_dtype(dtype, f"{where}: header leaf", ValueError)
    return dtype


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value):
        raise ValueError(f"{where}: corrupted header (shape {value!r}).")
    return tuple(value)


def _look_around(path: str) -> str:
    """What is near a missing file: its directory's files with the same extension, or the
    nearest existing parent of a missing directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return (
            f"its directory {directory!r} does not exist either (nearest existing parent: "
            f"{_existing_parent(directory)!r})"
        )
    ext = os.path.splitext(path)[1]
    if not ext:
        return f"its directory {directory!r} exists"
    near = sorted(n for n in os.listdir(directory) if n.endswith(ext))
    if not near:
        return f"{directory!r} holds no file ending in {ext}"
    more = " ..." if len(near) > _MAX_LISTED else ""
    return f"{directory!r} holds {len(near)} file(s) ending in {ext}: {near[:_MAX_LISTED]}{more}"


def _read(path: str | os.PathLike, where: str) -> tuple[dict, list[np.ndarray], bytes]:
    """Read and fully validate a checkpoint file: its header, host arrays and sha256."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError as e:
        raise _os_error(
            e, f"{where}: no checkpoint file at {path!r}; {_look_around(path)}. Check the path."
        ) from None
    except IsADirectoryError as e:
        raise _os_error(
            e, f"{where}: {path!r} is a directory, not a checkpoint file; pass the file's path."
        ) from None
    at = f"{where}: {path!r}"
    size = len(blob)
    if size == 0:
        raise ValueError(f"{at} is empty (0 bytes), not a checkpoint. Was the save interrupted?")
    if not blob.startswith(MAGIC[: min(size, len(MAGIC))]):
        raise ValueError(
            f"{at} is not a jaxrnn checkpoint: it starts with {blob[:16]!r} instead of "
            f"{MAGIC!r}. Was it written by jaxrnn.checkpoint.save?"
        )
    fixed = len(MAGIC) + _SIZE.size
    if size < fixed + _DIGEST:
        raise ValueError(f"{at} is truncated: {size} bytes, shorter than an empty checkpoint.")
    (header_size,) = _SIZE.unpack_from(blob, len(MAGIC))
    if fixed + header_size + _DIGEST > size:
        raise ValueError(
            f"{at} is truncated or corrupted: its header claims {header_size} bytes but the file "
            f"has only {size} bytes."
        )
    try:
        header = msgpack.unpackb(blob[fixed : fixed + header_size], raw=False, strict_map_key=True)
    except Exception as e:
        raise ValueError(f"{at} is corrupted: its header cannot be parsed ({e}).") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{at} is corrupted: its header does not name the {FORMAT!r} format.")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise ValueError(
            f"{at} has format version {version!r}; this jaxrnn reads version {VERSION}. "
            "Was it written by a newer jaxrnn?"
        )
    payload_size, leaves = header.get("payload_size"), header.get("leaves")
    if not isinstance(payload_size, int) or not isinstance(leaves, list) or payload_size < 0:
        raise ValueError(f"{at} is corrupted: its header lacks payload_size or leaves.")
    expected = fixed + header_size + payload_size + _DIGEST
    if size < expected:
        raise ValueError(
            f"{at} is truncated: the header promises {expected} bytes, the file has {size}. "
            "Was the copy or the save interrupted?"
        )
    if size > expected:
        raise ValueError(
            f"{at} is corrupted: {size - expected} bytes more than its header describes."
        )
    if hashlib.sha256(memoryview(blob)[: size - _DIGEST]).digest() != blob[size - _DIGEST :]:
        raise ValueError(f"{at} is corrupted: its sha256 checksum does not match the contents.")

    offset = fixed + header_size
    arrays = []
    for entry in leaves:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ValueError(f"{at} is corrupted: a leaf entry is malformed.")
        shape = _shape(entry.get("shape"), at)
        if "key_impl" in entry:
            data_shape = _shape(entry.get("data_shape"), at)
            data_dtype = _dtype(entry.get("data_dtype"), at)
        else:
            data_shape, data_dtype = shape, _dtype(entry.get("dtype"), at)
        nbytes = int(np.prod(data_shape, dtype=np.int64)) * data_dtype.itemsize
        if entry.get("nbytes") != nbytes or offset + nbytes > size - _DIGEST:
            raise ValueError(f"{at} is corrupted: leaf {entry['path']} has an inconsistent size.")
        data = np.frombuffer(
            blob, dtype=data_dtype, count=nbytes // data_dtype.itemsize, offset=offset
        )
        if sys.byteorder != "little":
            data = data.byteswap()
        arrays.append(data.reshape(data_shape).copy())
        offset += nbytes
    if offset != size - _DIGEST:
        raise ValueError(f"{at} is corrupted: the leaves do not fill the payload.")
    return header, arrays, blob[size - _DIGEST :]


def read_header(path: str | os.PathLike) -> dict:
    """What a checkpoint holds, without a target: format, version and leaves.

    The whole file is read and verified (checksum, sizes).

    Returns:
        ``{"format": str, "version": int, "leaves": [{"path", "shape", "dtype"}, ...]}``
        with ``path`` as ``jax.tree_util.keystr`` prints it, ``shape`` a tuple.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it and what is nearby).
        ValueError: the file is empty, truncated, corrupted or not a checkpoint.

    Examples:
        >>> import os, tempfile, jax, jaxrnn
        >>> path = os.path.join(tempfile.mkdtemp(), "p.ckpt")
        >>> save(path, jaxrnn.init_rnn(jax.random.key(0), 3, 4))
        >>> [(leaf["path"], leaf["shape"]) for leaf in read_header(path)["leaves"]]
        [('.kernel', (3, 4)), ('.recurrent_kernel', (4, 4)), ('.bias', (4,))]
    """
    header, _, _ = _read(path, "checkpoint.read_header")
    return {
        "format": header["format"],
        "version": header["version"],
        "leaves": [
            {"path": e["path"], "shape": tuple(e["shape"]), "dtype": e["dtype"]}
            for e in header["leaves"]
        ],
    }


def _target_spec(leaf: Any) -> tuple[tuple[int, ...], str]:
    if isinstance(leaf, (bool, int, float, complex)):
        return (), type(leaf).__name__
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(leaf.shape), str(leaf.dtype) if _is_key(leaf) else np.dtype(leaf.dtype).name
    return tuple(np.shape(leaf)), np.asarray(leaf).dtype.name


_PY_KINDS = {"bool": "b", "int": "iub", "float": "f", "complex": "c"}


def _compatible(stored_dtype: str, target_dtype: str) -> bool:
    if target_dtype in _PY_KINDS:  # a Python scalar target takes any dtype of its kind
        return (
            not stored_dtype.startswith("key<")
            and np.dtype(jnp.dtype(stored_dtype)).kind in _PY_KINDS[target_dtype]
        )
    return stored_dtype == target_dtype


def spans_processes(leaf: Any) -> bool:
    sharding = getattr(leaf, "sharding", None)
    return sharding is not None and parallel.spans_processes(sharding)


def _put(value: Any, sharding: Any) -> Any:
    """``jax.device_put``; across processes, each process's own devices only (every
    process read the same file, compared by ``restore``, so nothing is communicated)."""
    if parallel.spans_processes(sharding):
        return parallel.put_global(value, sharding)
    return jax.device_put(value, sharding)


def _rebuild(leaf: Any, entry: dict, data: np.ndarray) -> Any:
    """One restored leaf, with the type (and device placement) of the target's leaf."""
    if "key_impl" in entry:
        key = jax.random.wrap_key_data(jnp.asarray(data), impl=entry["key_impl"])
        sharding = getattr(leaf, "sharding", None)
        return key if sharding is None else _put(key, sharding)
    if isinstance(leaf, (bool, int, float, complex)):
        return type(leaf)(data.item())
    if isinstance(leaf, np.ndarray):
        return data
    if isinstance(leaf, np.generic):
        return data[()]
    sharding = getattr(leaf, "sharding", None)  # jax.Array, or ShapeDtypeStruct (maybe None)
    return jnp.asarray(data) if sharding is None else _put(data, sharding)


def _read_on_every_process(
    path: str | os.PathLike, where: str, timeout: float | None
) -> tuple[dict, list[np.ndarray]]:
    """``_read`` on every process; all raise if one fails or the files differ."""
    status, error, header, arrays = "", None, {}, []
    try:
        header, arrays, digest = _read(path, where)
        status = "ok " + digest.hex()
    except Exception as e:
        status, error = f"{type(e).__name__}: {e}", e
    statuses = parallel.exchange("checkpoint.restore", status, where=where, timeout=timeout)
    if error is not None:
        raise error
    failed = [i for i, s in enumerate(statuses) if not s.startswith("ok ")]
    if failed:
        raise RuntimeError(
            f"{where}: process {failed[0]} could not read {os.fspath(path)!r}, so no process "
            f"continues: {statuses[failed[0]]}"
        )
    if len(set(statuses)) > 1:
        groups = {s[3:15]: [i for i, t in enumerate(statuses) if t == s] for s in statuses}
        listing = "; ".join(f"processes {ids}: sha256 {h}..." for h, ids in groups.items())
        raise ValueError(
            f"{where}: the processes read different files at {os.fspath(path)!r} ({listing}). "
            "Every process must restore the same checkpoint: keep it on a filesystem that all "
            "hosts share, or copy the same file to each host."
        )
    return header, arrays


def restore(path: str | os.PathLike, target: Any = None, *, timeout: float | None = None) -> Any:
    """Read a checkpoint into the structure of ``target``.

    ``target`` is a pytree of the same structure as the saved one: a freshly
    initialised state, or ``jax.eval_shape`` of its initialiser (nothing is
    allocated then). Every leaf path, shape and dtype is checked before anything
    is returned. Restored leaves take the type of the target's leaves: JAX arrays
    on the target leaf's devices and sharding (or the default device), NumPy
    arrays, Python scalars (any stored dtype of the same kind; an int step may be
    saved as int32 and restored into ``0``).

    In a multi-process run, a target whose arrays span the processes (a state
    replicated over a mesh of every process's devices) makes ``restore`` a step
    that every process takes together: each reads the file, the processes compare
    the files' sha256 (through JAX's coordination service) and all raise if any
    process could not read it or read a different file (no shared filesystem, a
    stale copy); then each places the values on its own devices (no other
    communication). Other targets are restored by each process on its own.

    Args:
        path: a file written by ``save``.
        target: the pytree to fill; None returns ``{path: numpy array}`` with the
            paths of ``read_header``.
        timeout: multi-process only: seconds to wait for the other processes;
            None for ``jaxrnn.parallel.SYNC_TIMEOUT`` (300 s).

    Returns:
        A pytree like ``target`` holding the saved values.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it, and the files
            with the same extension in its directory, or the missing directory).
        ValueError: the file is empty, truncated, corrupted (checksum) or not a
            checkpoint (the message names the file and the problem); or its
            leaves do not fit ``target``: the message lists each leaf path with
            both shapes, and the paths missing from or extra in the checkpoint.
        TypeError: the shapes fit but a dtype differs (both named).
        RuntimeError: (multi-process) another process could not read the file
            (its error is quoted).

    Examples:
        >>> import os, tempfile, jax, jaxrnn
        >>> path = os.path.join(tempfile.mkdtemp(), "p.ckpt")
        >>> save(path, jaxrnn.init_gru(jax.random.key(0), 3, 4))
        >>> target = jax.eval_shape(lambda: jaxrnn.init_gru(jax.random.key(1), 3, 4))
        >>> restore(path, target).kernel.shape
        (3, 12)
        >>> restore(path, jaxrnn.init_gru(jax.random.key(1), 3, 8))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: checkpoint.restore: ... does not fit the target (4 problems):
          .kernel: shape (3, 12) in the checkpoint, (3, 24) in the target
          .recurrent_kernel: shape (4, 12) in the checkpoint, (8, 24) in the target
        ...
    """
    where = "checkpoint.restore"
    if jax.process_count() > 1 and any(map(spans_processes, jax.tree.leaves(target))):
        header, arrays = _read_on_every_process(path, where, timeout)
    else:
        header, arrays, _ = _read(path, where)
    entries = header["leaves"]
    if target is None:
        return {e["path"]: a for e, a in zip(entries, arrays, strict=True)}
    flat, treedef = jax.tree_util.tree_flatten_with_path(target)
    stored = {e["path"]: (e, a) for e, a in zip(entries, arrays, strict=True)}
    wanted = {jax.tree_util.keystr(p): leaf for p, leaf in flat}

    shape_problems, dtype_problems = [], []
    for name, leaf in wanted.items():
        if name not in stored:
            shape_problems.append(f"{name}: in the target, missing from the checkpoint")
            continue
        entry = stored[name][0]
        shape, dtype = _target_spec(leaf)
        if tuple(entry["shape"]) != shape:
            shape_problems.append(
                f"{name}: shape {tuple(entry['shape'])} in the checkpoint, {shape} in the target"
            )
        elif not _compatible(entry["dtype"], dtype):
            dtype_problems.append(
                f"{name}: dtype {entry['dtype']} in the checkpoint, {dtype} in the target"
            )
    for name in stored:
        if name not in wanted:
            shape_problems.append(f"{name}: in the checkpoint, missing from the target")
    problems = shape_problems + dtype_problems
    if problems:
        listing = "\n  ".join(problems[:_MAX_LISTED])
        if len(problems) > _MAX_LISTED:
            listing += f"\n  ... and {len(problems) - _MAX_LISTED} more"
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        hint = (
            "Was the target built with the same architecture (sizes, layers) and optimiser as "
            "the saved run? checkpoint.read_header(path) lists what the file holds."
            if shape_problems
            else "Cast the target (or the saved tree) to the same dtypes."
        )
        raise (ValueError if shape_problems else TypeError)(
            f"{where}: {os.fspath(path)!r} does not fit the target ({count}):\n  {listing}\n{hint}"
        )
    leaves = [_rebuild(leaf, *stored[name]) for name, leaf in wanted.items()]
    return jax.tree_util.tree_unflatten(treedef, leaves)
