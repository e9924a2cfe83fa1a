"""Sequence losses against float64 NumPy loops written from the equations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import losses

B, T, F, C = 3, 5, 2, 4


def _valid_ref(lengths, mask, b, t):
    v = np.ones((b, t), bool)
    for i in range(b):
        for s in range(t):
            if lengths is not None and not s < lengths[i]:
                v[i, s] = False
            if mask is not None and not mask[i][s]:
                v[i, s] = False
    return v


def _reduce_ref(l, v, reduction):
    """The module docstring's reductions, as loops."""
    b = l.shape[0]
    total, count = 0.0, 0
    out = np.zeros_like(l)
    for idx in np.ndindex(*l.shape):
        if v[idx]:
            total += l[idx]
            count += 1
            out[idx] = l[idx]
    if reduction == "none":
        return out
    if reduction == "mean":
        return total / max(count, 1)
    return total / b


def _step_ref(kind, p, y):
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    e = (p - y) ** 2 if kind == "mse" else np.abs(p - y)
    return e.reshape(-1).mean() if e.ndim else float(e)


def _pointwise_ref(kind, yp, yt, lengths, mask, reduction, last_step):
    b, t = yp.shape[:2]
    v = _valid_ref(lengths, mask, b, t)
    if last_step:
        l, vl = np.zeros(b), np.zeros(b, bool)
        for i in range(b):
            steps = [s for s in range(t) if v[i, s]]
            if steps:
                l[i] = _step_ref(kind, yp[i, steps[-1]], yt[i])
                vl[i] = True
        return _reduce_ref(l, vl, reduction)
    l = np.zeros((b, t))
    for i in range(b):
        for s in range(t):
            l[i, s] = _step_ref(kind, yp[i, s], yt[i, s])
    return _reduce_ref(l, v, reduction)


def _ce_ref(logits, labels, lengths, mask, reduction, last_step):
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    b, t = logits.shape[:2]
    v = _valid_ref(lengths, mask, b, t)

    def one(z, y):
        logp = z - np.log(np.exp(z - z.max()).sum()) - z.max()
        if labels.dtype.kind in "iu":
            return -logp[int(y)]
        return -(np.asarray(y, np.float64) * logp).sum()

    if last_step:
        l, vl = np.zeros(b), np.zeros(b, bool)
        for i in range(b):
            steps = [s for s in range(t) if v[i, s]]
            if steps:
                l[i] = one(logits[i, steps[-1]], labels[i])
                vl[i] = True
        return _reduce_ref(l, vl, reduction)
    l = np.zeros((b, t))
    for i in range(b):
        for s in range(t):
            if v[i, s]:
                l[i, s] = one(logits[i, s], labels[i, s])
    return _reduce_ref(l, v, reduction)


LENGTHS = [None, [5, 2, 0], [0, 0, 0]]
MASK = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)  # scores only some steps


def _data(seed=0, features=(F,)):
    rng = np.random.default_rng(seed)
    yp = rng.normal(size=(B, T, *features)).astype(np.float32)
    yt = rng.normal(size=(B, T, *features)).astype(np.float32)
    return yp, yt


@pytest.mark.parametrize("kind", ["mse", "mae"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("use_mask", [False, True])
def test_pointwise_matches_numpy(kind, reduction, lengths, use_mask):
    yp, yt = _data()
    mask = MASK if use_mask else None
    fn = getattr(losses, kind)
    sl = None if lengths is None else jnp.array(lengths)
    got = fn(yp, yt, seq_lengths=sl, mask=mask, reduction=reduction)
    want = _pointwise_ref(kind, yp, yt, lengths, mask, reduction, False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if lengths == [0, 0, 0] and reduction != "none":
        assert float(got) == 0.0  # defined as zero, not NaN


@pytest.mark.parametrize("kind", ["mse", "mae"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_pointwise_last_step_matches_numpy(kind, reduction, lengths):
    yp, _ = _data(1)
    yt = np.random.default_rng(2).normal(size=(B, F)).astype(np.float32)
    sl = None if lengths is None else jnp.array(lengths)
    got = getattr(losses, kind)(yp, yt, seq_lengths=sl, reduction=reduction, last_step=True)
    want = _pointwise_ref(kind, yp, yt, lengths, None, reduction, True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_last_step_with_mask_uses_last_true_step():
    yp, _ = _data(3)
    yt = np.zeros((B, F), np.float32)
    got = losses.mse(yp, yt, mask=MASK, reduction="none", last_step=True)
    want = [np.mean(yp[0, 3] ** 2), np.mean(yp[1, 2] ** 2), np.mean(yp[2, 4] ** 2)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_pointwise_without_feature_axis_and_with_two_feature_axes():
    yp, yt = _data(4, features=())
    np.testing.assert_allclose(
        losses.mse(yp, yt, seq_lengths=jnp.array([5, 2, 1])),
        _pointwise_ref("mse", yp, yt, [5, 2, 1], None, "mean", False),
        rtol=1e-5,
    )
    yp, yt = _data(5, features=(2, 3))
    np.testing.assert_allclose(
        losses.mae(yp, yt, seq_lengths=jnp.array([5, 2, 1]), reduction="sum"),
        _pointwise_ref("mae", yp, yt, [5, 2, 1], None, "sum", False),
        rtol=1e-5,
    )


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("use_mask", [False, True])
def test_cross_entropy_matches_numpy(one_hot, reduction, lengths, use_mask):
    rng = np.random.default_rng(6)
    logits = (3 * rng.normal(size=(B, T, C))).astype(np.float32)
    labels = rng.integers(0, C, size=(B, T)).astype(np.int32)
    if lengths is not None:  # padding labels that would be out of range if read
        for i, n in enumerate(lengths):
            labels[i, n:] = -1
    mask = MASK if use_mask else None
    y = np.eye(C, dtype=np.float32)[np.clip(labels, 0, None)] if one_hot else labels
    sl = None if lengths is None else jnp.array(lengths)
    got = losses.softmax_cross_entropy(logits, y, seq_lengths=sl, mask=mask, reduction=reduction)
    want = _ce_ref(logits, y, lengths, mask, reduction, False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_cross_entropy_last_step_matches_numpy(reduction, lengths):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(B, T, C)).astype(np.float32)
    labels = rng.integers(0, C, size=(B,)).astype(np.int32)
    sl = None if lengths is None else jnp.array(lengths)
    got = losses.softmax_cross_entropy(
        logits, labels, seq_lengths=sl, reduction=reduction, last_step=True
    )
    want = _ce_ref(logits, labels, lengths, None, reduction, True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_soft_labels_match_numpy():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(B, T, C)).astype(np.float32)
    probs = rng.dirichlet(np.ones(C), size=(B, T)).astype(np.float32)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, probs, seq_lengths=jnp.array([5, 1, 3])),
        _ce_ref(logits, probs, [5, 1, 3], None, "mean", False),
        rtol=1e-5,
    )


def test_accuracy_matches_count():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(B, T, C)).astype(np.float32)
    labels = rng.integers(0, C, size=(B, T)).astype(np.int32)
    lengths = [5, 2, 0]
    v = _valid_ref(lengths, None, B, T)
    want = (logits.argmax(-1) == labels)[v].mean()
    got = losses.accuracy(logits, labels, seq_lengths=jnp.array(lengths))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    one_hot = np.eye(C, dtype=np.float32)[labels]
    np.testing.assert_allclose(
        losses.accuracy(logits, one_hot, seq_lengths=jnp.array(lengths)), want
    )
    assert float(losses.accuracy(logits, labels, seq_lengths=jnp.zeros(3, jnp.int32))) == 0.0


@pytest.mark.parametrize(
    "fn",
    [
        lambda p, y, v: losses.mse(p, y, mask=v),
        lambda p, y, v: losses.mae(p, y, mask=v, reduction="sum"),
        lambda p, y, v: losses.mse(p, y[:, 0], mask=v, last_step=True),
    ],
)
def test_no_nan_gradients_from_padding(fn):
    yp, yt = _data(10)
    yt[:, 3:] = np.nan  # padded targets
    v = jnp.asarray(np.arange(T)[None, :] < np.array([3, 1, 0])[:, None])
    value, grad = jax.value_and_grad(fn)(jnp.asarray(yp), jnp.asarray(yt), v)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert float(jnp.abs(grad[:, 3:]).max()) == 0.0


def test_cross_entropy_no_nan_with_all_invalid_and_padding_labels():
    logits = jnp.asarray(np.random.default_rng(11).normal(size=(B, T, C)), jnp.float32)
    labels = jnp.full((B, T), -100, jnp.int32)
    f = lambda z: losses.softmax_cross_entropy(z, labels, seq_lengths=jnp.zeros(B, jnp.int32))  # noqa: E731
    value, grad = jax.value_and_grad(f)(logits)
    assert float(value) == 0.0 and float(jnp.abs(grad).max()) == 0.0


def test_losses_jit_and_grad():
    yp, yt = _data(12)
    sl = jnp.array([5, 2, 0])
    f = jax.jit(lambda p: losses.mse(p, yt, seq_lengths=sl, reduction="sum"))
    g = jax.grad(f)(jnp.asarray(yp))
    # d/dp (1/B) sum_{valid} mean_f (p - y)^2 = 2 (p - y) / (B F) on valid steps
    want = np.where(
        np.arange(T)[None, :, None] < np.array([5, 2, 0])[:, None, None], 2 * (yp - yt) / (B * F), 0
    )
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


# --- error messages -------------------------------------------------------------------------


def test_error_shape_mismatch_suggests_axis():
    yp, _ = _data()
    with pytest.raises(
        ValueError, match=r"mse: y_true.shape=\(3, 5\) but y_pred.shape=\(3, 5, 2\)"
    ):
        losses.mse(yp, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"y_true\[\.\.\., None\]"):
        losses.mse(yp[..., :1], np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"y_true\[\.\.\., 0\]"):
        losses.mae(yp[..., 0], np.zeros((3, 5, 1), np.float32))
    with pytest.raises(ValueError, match="last_step=True"):
        losses.mse(yp, np.zeros((3, 2), np.float32))


def test_error_last_step_target_shape():
    yp, _ = _data()
    with pytest.raises(
        ValueError, match=r"last_step=True, y_true.shape=\(3, 5, 2\), expected \(3, 2\)"
    ):
        losses.mse(yp, yp, last_step=True)


def test_error_rank_and_reduction():
    with pytest.raises(ValueError, match=r"y_pred.shape=\(3,\), expected at least 2-D"):
        losses.mse(np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"unknown reduction='avg'.*'mean'"):
        losses.mse(*_data(), reduction="avg")


def test_error_lengths_and_mask():
    yp, yt = _data()
    with pytest.raises(ValueError, match=r"seq_lengths.shape=\(2,\), expected \(3,\)"):
        losses.mse(yp, yt, seq_lengths=jnp.array([1, 2]))
    with pytest.raises(TypeError, match="seq_lengths has dtype float32"):
        losses.mse(yp, yt, seq_lengths=jnp.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"mask.shape=\(5, 3\), expected \(3, 5\) \(batch, time\)"):
        losses.mse(yp, yt, mask=np.ones((5, 3), bool))
    with pytest.raises(TypeError, match=r"mask has dtype int64.*astype\(bool\)"):
        losses.mse(yp, yt, mask=np.ones((3, 5), np.int64))


def test_error_cross_entropy_labels():
    logits = np.zeros((B, T, C), np.float32)
    with pytest.raises(
        ValueError, match=r"integer labels.shape=\(3, 5, 4\), expected \(3, 5\).*one-hot"
    ):
        losses.softmax_cross_entropy(logits, np.zeros((B, T, C), np.int32))
    with pytest.raises(
        ValueError, match=r"one-hot \(float\) labels.shape=\(3, 5\), expected \(3, 5, 4\).*astype"
    ):
        losses.softmax_cross_entropy(logits, np.zeros((B, T), np.float32))
    with pytest.raises(ValueError, match=r"logits.shape=\(3, 5\), expected 3-D"):
        losses.softmax_cross_entropy(logits[..., 0], np.zeros((B, T), np.int32))
    with pytest.raises(ValueError, match=r"expected \(3,\) \(batch\)"):
        losses.accuracy(logits, np.zeros((B, T), np.int32), last_step=True)
    with pytest.raises(TypeError, match="labels have dtype bool"):
        losses.softmax_cross_entropy(logits, np.zeros((B, T), bool))
