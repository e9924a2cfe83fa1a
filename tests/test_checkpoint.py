"""jaxrnn.checkpoint: exact round trips, resumed training, clear errors, atomic writes."""

import errno
import hashlib
import os
import struct

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import checkpoint
from jaxrnn.checkpoint import read_header, restore, save

B, T, I, H = 4, 5, 3, 6
_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.standard_normal((B, T, I)), jnp.float32)
Y = jnp.asarray(_rng.standard_normal((B, 1)), jnp.float32)
OPT = optax.adam(1e-2)
NORMAL = jax.nn.initializers.normal(0.4)  # compiles faster than the orthogonal default


def init_params(key, hidden=H):
    k1, k2 = jax.random.split(key)
    return {
        "lstm": jaxrnn.init_lstm(k1, I, hidden, recurrent_init=NORMAL),
        "head": (0.3 * jax.random.normal(k2, (hidden, 1)), jnp.zeros((1,))),
    }


def loss_fn(params, x, y):
    w, b = params["head"]
    return jnp.mean((jaxrnn.lstm(params["lstm"], x) @ w + b - y) ** 2)


@jax.jit
def train_step(state):
    params, opt_state, step = state["params"], state["opt_state"], state["step"]
    loss, grads = jax.value_and_grad(loss_fn)(params, X, Y)
    updates, opt_state = OPT.update(grads, opt_state, params)
    return {
        "params": optax.apply_updates(params, updates),
        "opt_state": opt_state,
        "step": step + 1,
    }, loss


def fresh_state(seed=0, hidden=H):
    params = init_params(jax.random.key(seed), hidden)
    return {"params": params, "opt_state": OPT.init(params), "step": jnp.int32(0)}


def train(state, steps):
    losses = []
    for _ in range(steps):
        state, loss = train_step(state)
        losses.append(float(loss))
    return state, losses


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def trained():
    return train(fresh_state(), 2)[0]  # Adam moments are non-zero now


def test_round_trip_is_exact(tmp_path, trained):
    tree = {
        **trained,
        "gru": jaxrnn.init_gru(
            jax.random.key(1), 2, 3, dtype=jnp.bfloat16, use_bias=False, recurrent_init=NORMAL
        ),
        "key": jax.random.split(jax.random.key(5), 2),
        "counts": np.arange(6, dtype=np.int16).reshape(2, 3),
        "flag": True,
        "lr": 0.5,
        "epoch": np.int64(3),
    }
    path = tmp_path / "run.ckpt"
    save(path, tree)
    target = {  # the same structure, every value different
        **jax.tree.map(jnp.zeros_like, trained),
        "gru": jax.tree.map(jnp.zeros_like, tree["gru"]),
        "key": jax.random.split(jax.random.key(0), 2),
        "counts": np.zeros((2, 3), np.int16),
        "flag": False,
        "lr": 0.0,
        "epoch": np.int64(0),
    }
    restored = restore(path, target)
    assert_trees_equal(restored, tree)
    assert isinstance(restored["params"]["lstm"], jaxrnn.LSTMParams)
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
    assert restored["gru"].bias is None and restored["gru"].kernel.dtype == jnp.bfloat16
    # An abstract target (nothing allocated) works the same.
    abstract = jax.eval_shape(lambda: tree)
    abstract = {
        **abstract,
        "counts": tree["counts"],
        "flag": False,
        "lr": 0.0,
        "epoch": np.int64(0),
    }
    assert_trees_equal(restore(path, abstract), tree)


def test_restore_without_target_and_read_header(tmp_path, trained):
    path = tmp_path / "c.ckpt"
    save(path, trained)
    flat = restore(path)
    assert set(flat) == {e["path"] for e in read_header(path)["leaves"]}
    np.testing.assert_array_equal(
        flat["['params']['lstm'].kernel"], trained["params"]["lstm"].kernel
    )
    assert flat["['step']"].dtype == np.int32 and int(flat["['step']"]) == 2
    header = read_header(path)
    assert header["format"] == checkpoint.FORMAT and header["version"] == checkpoint.VERSION
    assert {
        "path": "['opt_state'][0].mu['head'][0]",
        "shape": (H, 1),
        "dtype": "float32",
    } in header["leaves"]


def test_python_scalar_targets_take_any_dtype_of_their_kind(tmp_path):
    path = tmp_path / "s.ckpt"
    save(path, {"step": jnp.int32(12), "loss": jnp.float32(0.25)})
    out = restore(path, {"step": 0, "loss": 0.0})
    assert out == {"step": 12, "loss": 0.25} and type(out["step"]) is int


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    steps = 8
    _, uninterrupted = train(fresh_state(), steps)
    first, losses_a = train(fresh_state(), steps // 2)
    path = tmp_path / "mid.ckpt"
    save(path, first)
    resumed_state = restore(path, fresh_state(seed=123))  # a fresh, different state
    assert int(resumed_state["step"]) == steps // 2
    _, losses_b = train(resumed_state, steps // 2)
    assert losses_a + losses_b == uninterrupted  # bit-identical
    assert uninterrupted[-1] < uninterrupted[0]


def test_wrong_architecture_names_leaves_and_shapes(tmp_path, trained):
    path = tmp_path / "h6.ckpt"
    save(path, trained)
    with pytest.raises(ValueError) as info:
        restore(path, fresh_state(hidden=8))
    msg = str(info.value)
    assert str(path) in msg and "does not fit the target" in msg
    assert (
        "['params']['lstm'].kernel: shape (3, 24) in the checkpoint, (3, 32) in the target" in msg
    )
    assert "['opt_state'][0].mu['lstm'].recurrent_kernel: shape (6, 24) in the checkpoint" in msg
    assert "... and " in msg and "more" in msg  # long listings are cut
    assert "same architecture" in msg


def test_missing_extra_and_dtype_mismatches(tmp_path):
    path = tmp_path / "k.ckpt"
    save(path, {"a": jnp.ones(2), "b": jnp.zeros(3)})
    with pytest.raises(ValueError) as info:
        restore(path, {"a": jnp.ones(2), "c": jnp.zeros(3)})
    msg = str(info.value)
    assert "['c']: in the target, missing from the checkpoint" in msg
    assert "['b']: in the checkpoint, missing from the target" in msg
    with pytest.raises(
        TypeError, match=r"\['a'\]: dtype float32 in the checkpoint, int32 in the target"
    ):
        restore(path, {"a": jnp.ones(2, jnp.int32), "b": jnp.zeros(3)})
    # A GRU checkpoint does not load into LSTM parameters.
    save(path, jaxrnn.init_gru(jax.random.key(0), 3, 4, recurrent_init=NORMAL))
    lstm = jaxrnn.init_lstm(jax.random.key(0), 3, 4, recurrent_init=NORMAL)
    with pytest.raises(ValueError, match=r"\.kernel: shape \(3, 12\) in the checkpoint, \(3, 16\)"):
        restore(path, lstm)
    with pytest.raises(
        ValueError, match=r"\.recurrent_bias: in the checkpoint, missing from the target"
    ):
        restore(path, lstm)


def _saved(tmp_path, tree=None):
    path = tmp_path / "x.ckpt"
    save(
        path, {"w": jnp.arange(12.0).reshape(3, 4), "step": jnp.int32(3)} if tree is None else tree
    )
    return path, path.read_bytes()


TARGET = {"w": jnp.zeros((3, 4)), "step": jnp.int32(0)}


@pytest.mark.parametrize("keep", [0.5, 0.9, 40, 20, 10])
def test_truncated_file(tmp_path, keep):
    path, blob = _saved(tmp_path)
    n = int(len(blob) * keep) if isinstance(keep, float) else keep
    path.write_bytes(blob[:n])
    with pytest.raises(ValueError, match="truncated") as info:
        restore(path, TARGET)
    assert str(path) in str(info.value)


def test_last_byte_missing(tmp_path):
    path, blob = _saved(tmp_path)
    path.write_bytes(blob[:-1])
    with pytest.raises(ValueError, match=r"is truncated: the header promises \d+ bytes"):
        restore(path, TARGET)


def test_empty_random_and_corrupted_files(tmp_path):
    path, blob = _saved(tmp_path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"x.ckpt' is empty \(0 bytes\)"):
        restore(path, TARGET)
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ValueError, match="is not a jaxrnn checkpoint"):
        restore(path, TARGET)
    path.write_bytes(b'{"w": [1, 2, 3]}')
    with pytest.raises(ValueError, match="is not a jaxrnn checkpoint"):
        read_header(path)
    flipped = bytearray(blob)
    flipped[-40] ^= 0x01  # a bit of the payload
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="sha256 checksum does not match"):
        restore(path, TARGET)
    flipped = bytearray(blob)
    flipped[30] ^= 0xFF  # a byte of the header
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupted|truncated"):
        restore(path, TARGET)
    path.write_bytes(blob + b"\0")
    with pytest.raises(ValueError, match="corrupted: 1 bytes more"):
        restore(path, TARGET)


def _forge(path, header, payload=b""):
    """A file with a valid layout and checksum around an arbitrary header."""
    body = checkpoint.MAGIC + struct.pack("<Q", len(h := msgpack.packb(header))) + h + payload
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_forged_headers_are_refused(tmp_path):
    path = tmp_path / "forged.ckpt"
    leaf = {"path": "['w']", "shape": [2], "dtype": "object", "nbytes": 16}
    header = {"format": checkpoint.FORMAT, "version": 1, "byteorder": "little", "payload_size": 16}
    _forge(path, {**header, "leaves": [leaf]}, bytes(16))
    with pytest.raises(ValueError, match="has dtype object"):
        restore(path, {"w": np.zeros(2)})
    _forge(path, {**header, "leaves": [{**leaf, "dtype": "float32", "nbytes": 16}]}, bytes(16))
    with pytest.raises(ValueError, match=r"leaf \['w'\] has an inconsistent size"):
        restore(path, {"w": np.zeros(2, np.float32)})
    _forge(path, {**header, "version": 2, "leaves": []})
    with pytest.raises(ValueError, match="format version 2; this jaxrnn reads version 1"):
        restore(path, {})


def test_failed_write_leaves_the_old_checkpoint_untouched(tmp_path, monkeypatch):
    path, old = _saved(tmp_path)
    calls = []
    real = checkpoint._leaf_bytes

    def failing(data):
        calls.append(1)
        if len(calls) == 2:  # the first leaf is already written
            raise OSError("disk full (simulated)")
        return real(data)

    monkeypatch.setattr(checkpoint, "_leaf_bytes", failing)
    with pytest.raises(OSError, match="simulated"):
        save(path, {"w": jnp.ones((3, 4)), "step": jnp.int32(9)})
    assert len(calls) == 2
    assert path.read_bytes() == old  # byte-identical
    assert os.listdir(tmp_path) == ["x.ckpt"]  # the temporary file is gone
    monkeypatch.setattr(checkpoint, "_leaf_bytes", real)
    assert int(restore(path, TARGET)["step"]) == 3

    def failing_replace(src, dst):
        raise OSError("rename failed (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        save(path, {"w": jnp.ones((3, 4)), "step": jnp.int32(9)})
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["x.ckpt"]


def test_overwrite_and_save_errors(tmp_path):
    path, _ = _saved(tmp_path)
    save(path, {"w": jnp.ones((3, 4)), "step": jnp.int32(4)})
    assert int(restore(path, TARGET)["step"]) == 4
    with pytest.raises(TypeError, match=r"leaf tree\['name'\] has dtype <U4"):
        save(tmp_path / "bad.ckpt", {"name": "lstm"})
    assert not (tmp_path / "bad.ckpt").exists()
    with pytest.raises(FileNotFoundError):
        save(tmp_path / "missing" / "c.ckpt", {"w": jnp.ones(2)})


def test_save_into_a_missing_directory_names_it_and_creates_nothing(tmp_path, monkeypatch):
    path = tmp_path / "runs" / "exp1" / "c.ckpt"
    with pytest.raises(FileNotFoundError) as info:
        save(path, {"w": jnp.ones(2)})
    msg = str(info.value)
    for words in (
        f"checkpoint.save: cannot write {str(path)!r}",
        f"its directory {str(path.parent)!r} does not exist",
        f"nearest existing parent: {str(tmp_path)!r}",
        f"os.makedirs({str(path.parent)!r}, exist_ok=True)",
        "does not create directories",
    ):
        assert words in msg, msg
    assert ".tmp" not in msg and info.value.errno == errno.ENOENT
    assert os.listdir(tmp_path) == []  # nothing created
    os.makedirs(path.parent, exist_ok=True)  # the fix the message gives
    save(path, {"w": jnp.ones(2)})
    assert os.listdir(path.parent) == ["c.ckpt"]
    # a relative path: the hint uses it as written, the absolute directory is shown too
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        save(os.path.join("new", "c.ckpt"), {"w": jnp.ones(2)})
    msg = str(info.value)
    assert "os.makedirs('new', exist_ok=True)" in msg and str(tmp_path / "new") in msg
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(NotADirectoryError, match=r"'notes.txt' .* is a file, not a directory"):
        save(os.path.join("notes.txt", "c.ckpt"), {"w": jnp.ones(2)})


def test_save_errors_name_the_path_not_the_temporary_file(tmp_path, monkeypatch):
    def refuse(name, *args):
        raise PermissionError(errno.EACCES, "Permission denied", name)

    monkeypatch.setattr(checkpoint.os, "open", refuse)
    with pytest.raises(PermissionError) as info:
        save(tmp_path / "p.ckpt", {"w": jnp.ones(2)})
    msg = str(info.value)
    assert f"cannot create a file in {str(tmp_path)!r} to write" in msg and "p.ckpt" in msg
    assert "Permission denied" in msg and ".tmp" not in msg
    assert info.value.errno == errno.EACCES


def test_restore_of_a_missing_file_names_it(tmp_path):
    save(tmp_path / "run-1.ckpt", {"w": jnp.ones(2)})
    path = tmp_path / "run-2.ckpt"
    with pytest.raises(FileNotFoundError) as info:
        restore(path, {"w": jnp.ones(2)})
    msg = str(info.value)
    assert f"checkpoint.restore: no checkpoint file at {str(path)!r}" in msg
    assert "holds 1 file(s) ending in .ckpt: ['run-1.ckpt']" in msg and "Check the path" in msg
    assert info.value.errno == errno.ENOENT
    with pytest.raises(
        FileNotFoundError, match=r"checkpoint.read_header: .* does not exist either"
    ):
        read_header(tmp_path / "gone" / "a.ckpt")
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a checkpoint file"):
        restore(tmp_path)
