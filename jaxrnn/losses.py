"""Sequence losses that respect ``seq_lengths`` and ``mask``.

Every loss here scores outputs ``y_pred`` of shape ``(B, T, ...)`` (batch, time,
features) step by step. A step ``(b, t)`` is *valid* when ``t < seq_lengths[b]``
(if lengths are given) **and** ``mask[b, t]`` (if a mask is given); passing both
scores only the masked steps inside each sequence's length, so ``mask`` is also
the way to score only some steps (e.g. the last ``k``). With per-step losses
``l[b, t]`` and validity ``v[b, t]``, the reductions are::

    "mean": sum_{b,t} v[b,t] l[b,t] / max(sum_{b,t} v[b,t], 1)   # mean over valid steps
    "sum":  (1/B) sum_b sum_t v[b,t] l[b,t]                      # sum over time, mean over batch
    "none": v[b,t] l[b,t], shape (B, T)                          # zeros at invalid steps

``"sum"`` is the classic RNN training loss (the sum of the step losses over the
sequence, averaged over the batch). With no valid step at all, ``"mean"`` is
``0`` (the denominator is clamped to one) and ``"sum"`` is ``0``; a sequence of
length 0 contributes nothing but still counts in the batch size ``B`` of
``"sum"``. Invalid steps never produce NaN, in values or gradients, whatever
they hold (padding labels such as ``-1``, NaN targets).

``last_step=True`` scores, for many-to-one tasks, only the last valid step of
each sequence against a target ``y_true`` of shape ``(B, ...)`` (no time axis):
that is the mask ``t == L_b - 1``, so ``"mean"`` averages over the sequences
that have a valid step and ``"sum"`` divides by ``B``. (A model that already
returns its last output ``(B, ...)``, e.g. ``jaxrnn.lstm(..., seq_lengths=L)``,
needs no lengths here: any plain mean loss does.)

This module needs only JAX (not optax).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import match_varying
from ._context import current_batch_axes
from ._unroll import sequence_mask

__all__ = ["accuracy", "mae", "mse", "softmax_cross_entropy", "valid_mask"]

REDUCTIONS = ("mean", "sum", "none")


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(np.shape(a))


def _check_reduction(reduction: str, where: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{where}: unknown reduction={reduction!r}; use 'mean' (mean over valid steps), "
            "'sum' (sum over time, mean over batch) or 'none' (per-step losses (B, T))."
        )


def _check_pred(y_pred: Any, where: str, name: str = "y_pred") -> tuple[int, int]:
    if not hasattr(y_pred, "shape"):
        raise TypeError(
            f"{where}: {name} must be an array (B, T, ...), got {type(y_pred).__name__}."
        )
    if np.ndim(y_pred) < 2:
        raise ValueError(
            f"{where}: {name}.shape={_shape(y_pred)}, expected at least 2-D (batch, time, ...). "
            "A per-sequence output (B,) has no time axis: use a plain mean loss for it."
        )
    b, t = _shape(y_pred)[:2]
    return b, t


def valid_mask(
    batch: int,
    num_steps: int,
    seq_lengths: Any = None,
    mask: Any = None,
    *,
    where: str = "valid_mask",
) -> jax.Array:
    """The boolean validity ``(B, T)``: ``v[b, t] = (t < seq_lengths[b]) and mask[b, t]``.

    Either argument may be None (then it does not restrict); with both None every
    step is valid. Lengths outside ``[0, T]`` act as clipped.

    Args:
        batch: ``B``.
        num_steps: ``T``.
        seq_lengths: integer lengths ``(B,)``.
        mask: boolean ``(B, T)``.

    Returns:
        A boolean ``(B, T)`` array.

    Raises:
        ValueError: wrong shapes. TypeError: non-integer lengths, non-boolean mask.

    Examples:
        >>> valid_mask(2, 4, seq_lengths=jnp.array([3, 0])).astype(int).tolist()
        [[1, 1, 1, 0], [0, 0, 0, 0]]
    """
    v = jnp.ones((batch, num_steps), bool)
    # the layers' own checks and masks (time-major there): one message for one mistake
    for lengths, m in ((seq_lengths, None), (None, mask)):
        part = sequence_mask(lengths, m, (batch,), num_steps, time_major=False, where=where)
        if part is not None:
            v = v & part.T
    return v


def _last_index(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Index of the last True step of each row of ``v (B, T)`` and whether there is one."""
    num_steps = v.shape[1]
    has = v.any(axis=1)
    idx = num_steps - 1 - jnp.argmax(jnp.flip(v, axis=1), axis=1)
    return jnp.where(has, idx, 0), has


def _take_time(a: jax.Array, idx: jax.Array) -> jax.Array:
    """``a[b, idx[b]]`` for ``a (B, T, ...)``."""
    if a.shape[1] == 0:
        return jnp.zeros(a.shape[:1] + a.shape[2:], a.dtype)
    ix = idx.reshape(idx.shape + (1,) * (a.ndim - 1))
    return jnp.take_along_axis(a, ix, axis=1)[:, 0]


def _reduce(l: jax.Array, v: jax.Array, reduction: str) -> jax.Array:
    """Reduce per-step (or per-sequence) losses ``l`` with validity ``v`` of the same shape."""
    l = jnp.where(v, l, 0)
    if reduction == "none":
        return l
    if reduction == "mean":
        count = v.sum()
        axes = current_batch_axes()
        if axes:  # a data-parallel step: this device's share of the whole batch's mean
            count = jax.lax.psum(match_varying(count, (l, count)), axes)
            share = jax.lax.psum(1, axes)  # the mean over devices (pmean) undoes it
            return l.sum() * share / jnp.maximum(count, 1).astype(l.dtype)
        return l.sum() / jnp.maximum(count, 1).astype(l.dtype)
    return l.sum() / max(l.shape[0], 1)  # "sum": over time, then mean over the batch


def _pointwise(name, fn, y_pred, y_true, seq_lengths, mask, reduction, last_step):
    where = name
    _check_reduction(reduction, where)
    b, t = _check_pred(y_pred, where)
    v = valid_mask(b, t, seq_lengths, mask, where=where)
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true)
    if last_step:
        want = (b,) + _shape(y_pred)[2:]
        if _shape(y_true) != want:
            raise ValueError(
                f"{where}: with last_step=True, y_true.shape={_shape(y_true)}, expected "
                f"{want}: one target per sequence (y_pred.shape={_shape(y_pred)} is (B, T, ...))."
                + _hint(_shape(y_true), want)
            )
        idx, has = _last_index(v)
        y_pred = _take_time(y_pred, idx)  # (B, ...)
        v = has
    elif _shape(y_true) != _shape(y_pred):
        raise ValueError(
            f"{where}: y_true.shape={_shape(y_true)} but y_pred.shape={_shape(y_pred)}; they "
            "must be equal (both (B, T, ...)); broadcasting is refused on purpose."
            + _hint(_shape(y_true), _shape(y_pred))
            + " For one target per sequence, pass last_step=True."
        )
    vv = v.reshape(v.shape + (1,) * (y_pred.ndim - v.ndim))
    diff = jnp.where(vv, y_pred - y_true.astype(y_pred.dtype), 0)  # no NaN from padding
    per = fn(diff)
    per = per.reshape(per.shape[: v.ndim] + (-1,)).mean(axis=-1) if per.ndim > v.ndim else per
    return _reduce(per, v, reduction)


def _hint(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    if got == want + (1,):
        return " Drop the trailing axis of y_true: y_true[..., 0]."
    if got + (1,) == want:
        return " Add a trailing feature axis to y_true: y_true[..., None]."
    return ""


_DOC = """{title}

    Per step ``l[b, t] = mean_f {expr}`` (mean over the feature axes
    ``f``; none for ``(B, T)`` outputs), reduced over the valid steps as the
    module docstring says (``"mean"``: mean over valid steps, ``0`` when there is
    none; ``"sum"``: sum over time, mean over the batch; ``"none"``: ``(B, T)``).

    Args:
        y_pred: predictions ``(B, T, ...)``.
        y_true: targets of the same shape, or ``(B, ...)`` with ``last_step``.
        seq_lengths: integer lengths ``(B,)``: steps ``t >= L`` are not scored.
        mask: boolean ``(B, T)``: only True steps are scored (combines with lengths).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        last_step: score only each sequence's last valid step (many-to-one).

    Returns:
        A scalar, or ``(B, T)`` (``(B,)`` with ``last_step``) for ``"none"``.

    Raises:
        ValueError: shapes of ``y_pred``, ``y_true``, lengths or mask disagree; bad reduction.

    Examples:
        >>> y = jnp.array([[[1.0], [2.0], [9.0]]])           # (B=1, T=3, F=1)
        >>> float({name}(y, jnp.zeros((1, 3, 1)), seq_lengths=jnp.array([2])))
        {ex_mean}
        >>> float({name}(y, jnp.zeros((1, 3, 1)), seq_lengths=jnp.array([2]), reduction="sum"))
        {ex_sum}
    """


def mse(y_pred, y_true, *, seq_lengths=None, mask=None, reduction="mean", last_step=False):
    return _pointwise("mse", jnp.square, y_pred, y_true, seq_lengths, mask, reduction, last_step)


def mae(y_pred, y_true, *, seq_lengths=None, mask=None, reduction="mean", last_step=False):
    return _pointwise("mae", jnp.abs, y_pred, y_true, seq_lengths, mask, reduction, last_step)


def _document(loss, error: str, expr: str, ex_mean: str, ex_sum: str) -> None:
    """Give the pointwise ``loss`` its docstring: ``_DOC`` for the ``error`` ("squared")
    ``l[b, t] = mean_f expr``, and the results of its example."""
    title = f"Mean {error} error per step, over valid steps."
    loss.__doc__ = _DOC.format(
        title=title, expr=expr, name=loss.__name__, ex_mean=ex_mean, ex_sum=ex_sum
    )


_document(mse, "squared", "(y_pred[b, t, f] - y_true[b, t, f])²", "2.5", "5.0")
_document(mae, "absolute", "|y_pred[b, t, f] - y_true[b, t, f]|", "1.5", "3.0")


def _check_labels(where, logits, labels, last_step):
    b, t = _check_pred(logits, where, "logits")
    if np.ndim(logits) != 3:
        raise ValueError(
            f"{where}: logits.shape={_shape(logits)}, expected 3-D (batch, time, classes)."
        )
    c = _shape(logits)[2]
    lead = (b,) if last_step else (b, t)
    if not hasattr(labels, "dtype"):
        labels = np.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if _shape(labels) != lead:
            extra = (
                " These look like one-hot labels: pass them as floats, or take argmax."
                if _shape(labels) == lead + (c,)
                else _hint(_shape(labels), lead)
            )
            raise ValueError(
                f"{where}: integer labels.shape={_shape(labels)}, expected {lead} "
                f"({'batch' if last_step else 'batch, time'}) for logits.shape={_shape(logits)}."
                + extra
            )
        return labels, True
    if not jnp.issubdtype(labels.dtype, jnp.floating):
        raise TypeError(
            f"{where}: labels have dtype {labels.dtype}; use integer class ids or float "
            "one-hot/probability vectors."
        )
    if _shape(labels) != lead + (c,):
        raise ValueError(
            f"{where}: one-hot (float) labels.shape={_shape(labels)}, expected {lead + (c,)} "
            f"for logits.shape={_shape(logits)}. Integer class ids must have an integer dtype "
            "(labels.astype(jnp.int32))."
        )
    return labels, False


def _scored(where, logits, labels, seq_lengths, mask, last_step):
    """``(logits, labels, sparse, v)``: the checked logits and labels (``sparse``: integer
    class ids) and the validity ``v (B, T)``; with ``last_step``, the logits of each
    sequence's last valid step ``(B, C)`` and ``v (B,)``, whether it has one."""
    labels, sparse = _check_labels(where, logits, labels, last_step)
    b, t = _shape(logits)[:2]
    v = valid_mask(b, t, seq_lengths, mask, where=where)
    logits = jnp.asarray(logits)
    if last_step:
        idx, v = _last_index(v)
        logits = _take_time(logits, idx)  # (B, C)
    return logits, labels, sparse, v


def softmax_cross_entropy(
    logits, labels, *, seq_lengths=None, mask=None, reduction="mean", last_step=False
):
    """Softmax cross-entropy per step, over valid steps.

    Per step, with ``log p = log_softmax(logits[b, t])`` over the ``C`` classes::

        integer labels:     l[b, t] = -log p[labels[b, t]]
        one-hot / probs:    l[b, t] = -sum_c labels[b, t, c] log p[c]

    reduced as the module docstring says (``"mean"`` over valid steps, ``0``
    when there is none; ``"sum"`` over time then mean over batch; ``"none"``).
    Labels at invalid steps are never read as indices (``-1`` padding is fine).

    Args:
        logits: ``(B, T, C)`` unnormalised scores.
        labels: integer ``(B, T)`` class ids or float ``(B, T, C)`` one-hot or
            probability vectors; with ``last_step``, ``(B,)`` or ``(B, C)``.
        seq_lengths: as for ``mse``.
        mask: as for ``mse``.
        reduction: as for ``mse``.
        last_step: as for ``mse``.

    Returns:
        A scalar, or the per-step (per-sequence with ``last_step``) losses for ``"none"``.

    Raises:
        ValueError: shapes disagree. TypeError: labels neither integer nor float.

    Examples:
        >>> logits = jnp.zeros((1, 3, 4))                    # uniform over 4 classes
        >>> l = softmax_cross_entropy(logits, jnp.array([[0, 1, -1]]), seq_lengths=jnp.array([2]))
        >>> round(float(l), 4)                               # log 4
        1.3863
    """
    where = "softmax_cross_entropy"
    _check_reduction(reduction, where)
    logits, labels, sparse, v = _scored(where, logits, labels, seq_lengths, mask, last_step)
    logp = jax.nn.log_softmax(logits, axis=-1)
    if sparse:
        c = logits.shape[-1]
        safe = jnp.where(v, jnp.clip(jnp.asarray(labels), 0, c - 1), 0)
        per = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    else:
        lab = jnp.where(v[..., None], jnp.asarray(labels).astype(logp.dtype), 0)
        per = -(lab * logp).sum(axis=-1)
    return _reduce(per, v, reduction)


def accuracy(logits, labels, *, seq_lengths=None, mask=None, last_step=False):
    """Fraction of valid steps whose ``argmax`` prediction equals the label.

    ``acc = sum_{b,t} v[b,t] [argmax_c logits[b,t,c] == y[b,t]] / max(sum v, 1)``
    with ``y`` the integer label or the argmax of one-hot labels; ``0`` when no
    step is valid. A metric (not differentiable).

    Args:
        logits: ``(B, T, C)``.
        labels: integer ``(B, T)`` or one-hot ``(B, T, C)`` (``(B,)``/``(B, C)`` with ``last_step``).
        seq_lengths: as for ``softmax_cross_entropy``.
        mask: as for ``softmax_cross_entropy``.
        last_step: as for ``softmax_cross_entropy``.

    Returns:
        A scalar in ``[0, 1]``.

    Examples:
        >>> logits = jnp.array([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]])
        >>> float(accuracy(logits, jnp.array([[0, 0, 0]]), seq_lengths=jnp.array([2])))
        0.5
    """
    where = "accuracy"
    logits, labels, sparse, v = _scored(where, logits, labels, seq_lengths, mask, last_step)
    y = jnp.asarray(labels) if sparse else jnp.argmax(jnp.asarray(labels), axis=-1)
    hit = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
    return _reduce(hit, v, "mean")
