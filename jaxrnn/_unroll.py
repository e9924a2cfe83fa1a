"""The sequence driver: any step function over ``lax.scan``, with lengths and masks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._cells.spec import specs
from ._checks import check_flag, match_varying, shape_of
from ._remat import check_remat, nested_scan
from ._time import jacobians, newton

Step = Callable[[Any, Any, jax.Array], tuple[Any, Any]]


def check_unroll(unroll: int | bool, where: str) -> None:
    if isinstance(unroll, bool):
        return
    if not isinstance(unroll, (int, np.integer)) or unroll < 1:
        raise ValueError(
            f"{where}: unroll={unroll!r}; it must be an integer >= 1 (steps per loop "
            "iteration) or True (unroll the whole sequence)."
        )


def check_carry_batch(
    carry: Any, batch_shape: tuple, xs_shape: tuple, where: str, *, cell: bool
) -> None:
    """Every carry leaf with feature axes must lead with the batch axes of ``xs``.

    For your own step, leaves of rank ``len(batch_shape)`` or less (e.g. a scalar
    step counter) may be anything: a step is free to keep unbatched values in its
    carry. A built-in cell's carry (``cell``) is always ``(*batch, H)``.
    """
    paths = jax.tree_util.tree_flatten_with_path(carry)[0]
    nb = len(batch_shape)
    for path, leaf in paths:
        shape = shape_of(leaf)
        if cell and len(shape) != nb + 1:
            name = "carry" + jax.tree_util.keystr(path)
            raise ValueError(
                f"{where}: {name}.shape={shape}, but xs has batch shape {batch_shape} "
                f"(xs.shape={xs_shape}), so expected {batch_shape} + (hidden,). Make the "
                f"carry with jaxrnn.zero_state(params, {batch_shape})."
            )
        if len(shape) > nb and shape[:nb] != batch_shape:
            name = "carry" + jax.tree_util.keystr(path)
            raise ValueError(
                f"{where}: {name}.shape={shape}, but xs has batch shape {batch_shape} "
                f"(xs.shape={xs_shape}), so expected {batch_shape + shape[len(batch_shape) :]}: "
                "the carry needs the same leading batch axes as the inputs. Make it with "
                f"jaxrnn.zero_state(params, {batch_shape}) (or slice the inputs to the carry's "
                "batch)."
            )


def sequence_mask(
    seq_lengths: Any,
    mask: Any,
    batch_shape: tuple[int, ...],
    num_steps: int,
    *,
    time_major: bool,
    where: str,
) -> jax.Array | None:
    """A boolean validity mask ``(T, *batch)`` from ``seq_lengths`` or ``mask``, or None.

    ``seq_lengths`` (integers, shape ``batch``) marks steps ``t < length`` valid;
    values are effectively clipped to ``[0, T]``. ``mask`` is boolean, ``(B, T)``
    (``(T, B)`` when ``time_major``).
    """
    if seq_lengths is not None and mask is not None:
        raise ValueError(
            f"{where}: pass seq_lengths or mask, not both (seq_lengths=L is mask=t < L)."
        )
    if seq_lengths is not None:
        if not hasattr(seq_lengths, "dtype"):
            seq_lengths = np.asarray(seq_lengths)
        if not jnp.issubdtype(seq_lengths.dtype, jnp.integer):
            raise TypeError(
                f"{where}: seq_lengths has dtype {seq_lengths.dtype}; it must hold integer "
                "lengths, e.g. jnp.array([5, 3], dtype=jnp.int32)."
            )
        if shape_of(seq_lengths) != batch_shape:
            raise ValueError(
                f"{where}: seq_lengths.shape={shape_of(seq_lengths)}, expected {batch_shape}: "
                "one length per sequence in the batch."
            )
        steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * len(batch_shape))
        return steps < jnp.asarray(seq_lengths)[None]
    if mask is not None:
        if not hasattr(mask, "dtype"):
            mask = np.asarray(mask)
        layout = (num_steps, *batch_shape) if time_major else (*batch_shape, num_steps)
        if mask.dtype != jnp.bool_:
            raise TypeError(
                f"{where}: mask has dtype {mask.dtype}; it must be boolean (True = valid "
                "step). Use mask.astype(bool)."
            )
        if shape_of(mask) != layout:
            names = "(time, batch)" if time_major else "(batch, time)"
            raise ValueError(f"{where}: mask.shape={shape_of(mask)}, expected {layout} {names}.")
        mask = jnp.asarray(mask)
        return mask if time_major else jnp.moveaxis(mask, -1, 0)
    return None


def scan_segment(
    step: Step,
    params: Any,
    carry: Any,
    xs: Any,
    valid: jax.Array | None,
    *,
    reverse: bool,
    unroll: int | bool,
    checkpoint_step: bool = False,
) -> tuple[Any, Any]:
    """``lax.scan`` of ``step`` over time-major ``xs`` with an optional ``(T, ...)`` mask."""
    if valid is None:

        def body(c, x):
            return step(params, c, x)

        inputs = xs
    else:

        def body(c, inp):
            x, m_t = inp
            new_c, y = step(params, c, x)
            zeros = jax.tree.map(jnp.zeros_like, y)
            return _where(m_t, new_c, c), _where(m_t, y, zeros)

        inputs = (xs, valid)
    if checkpoint_step:
        body = jax.checkpoint(body)
    return jax.lax.scan(body, carry, inputs, reverse=reverse, unroll=unroll)


def unroll(
    step: Step,
    params: Any,
    xs: jax.Array,
    carry: Any,
    *,
    reverse: bool = False,
    time_major: bool = False,
    seq_lengths: jax.Array | None = None,
    mask: jax.Array | None = None,
    unroll: int | bool = 1,
    remat: str | None = None,
    method: str = "sequential",
    tol: float | None = None,
    max_iter: int | None = None,
    fallback: str | None = "sequential",
    return_info: bool = False,
) -> tuple[Any, Any] | tuple[Any, Any, newton.NewtonInfo]:
    """Run ``step(params, carry, x) -> (carry, y)`` over a sequence with ``lax.scan``.

    The semantics, for one sequence ``b`` with validity mask ``m`` (from
    ``seq_lengths``: ``m[t] = t < length``)::

        for t in (reversed(range(T)) if reverse else range(T)):
            if m[t]:
                carry, ys[t] = step(params, carry, xs[t])
            else:
                ys[t] = 0            # carry passes through unchanged
        return carry, ys

    so outputs stay aligned with the inputs even when ``reverse=True`` (as
    ``lax.scan(reverse=True)``), padded steps never change the carry, and a
    zero-length sequence returns the initial carry. Padded inputs are never
    read: whatever they hold (NaN, inf) reaches no output and no gradient. (The
    loop still evaluates ``step`` on a zero input at a padded step and discards
    the result, so a step must be finite at ``x = 0``, as every built-in cell is.) With right padding, the
    reverse pass visits ``length-1, ..., 0``: each sequence is reversed within
    its own length.

    Args:
        step: a step function such as ``jaxrnn.lstm_step`` or your own.
        params: passed to ``step`` unchanged (any pytree).
        xs: inputs ``(B, T, ...)``, or ``(T, B, ...)`` / ``(T, ...)`` when
            ``time_major``; a pytree of such arrays also works.
        carry: the initial carry, ``(B, ...)`` leaves.
        reverse: process the sequence from its end.
        time_major: whether the time axis is first.
        seq_lengths: integer lengths, shape ``(B,)`` (right padding).
        mask: boolean validity mask ``(B, T)`` (``(T, B)`` if time-major).
        unroll: steps per ``lax.scan`` iteration (``True``: all); with a Newton
            method, of its sequential fallback.
        remat: None, ``"step"`` (``jax.checkpoint`` each step) or ``"sqrt"``
            (checkpointed chunks of ~√T steps): less memory for gradients, same
            values. ``method="sequential"`` only (the Newton methods keep just the
            states for their gradients: there is nothing to recompute).
        method: the time algorithm (same result, see ``jaxrnn._time.newton``):
            ``"sequential"`` (``lax.scan``, T dependent steps); ``"deer"``
            (Newton's method over the whole sequence, each iteration a linear
            recurrence solved by an associative scan, O(log T) depth, or on CPU
            in √T-step chunks; dense Jacobians, ``T·B·D²`` memory for a carry of
            ``D`` numbers: closed forms for the built-in steps, ``jax.linearize``
            for yours, which must treat batch elements independently and keep
            float ``(B, ...)`` carry leaves); ``"quasi_deer"`` (diagonal Jacobians, ``(h_i, c_i)``
            blocks for the LSTM: ``rnn_step``, ``lstm_step``, ``gru_step`` or a
            ``functools.partial`` of them with their options only). Gradients
            are exact (the adjoint recurrence); forward-mode autodiff is not
            supported by the Newton methods. On a CPU the sequential scan is
            faster (``benchmarks/parallel_time.py``): the Newton methods pay on
            hardware with many parallel lanes.
        tol: the Newton methods stop when the largest relative change of the
            states is at most ``tol`` (None: 1e-5 in float32, 1e-10 in float64).
        max_iter: Newton iterations at most (None: 100).
        fallback: when the iterations do not converge (or an iterate is not
            finite): ``"sequential"`` returns the ``lax.scan`` result (chosen
            inside the compiled program; under ``jax.vmap`` both are computed),
            None the last finite iterate. Gradients follow the same rule.
        return_info: also return a ``NewtonInfo(iterations, residual,
            converged)`` (for ``method="sequential"``: 0, 0.0, True).

    Returns:
        ``(final_carry, ys)`` with ``ys`` in the layout of ``xs``;
        ``(final_carry, ys, info)`` with ``return_info``.

    Raises:
        ValueError: bad options (each error names its argument), ``method=
            "quasi_deer"`` for a step other than the built-in ones, or ``remat``
            with a Newton method.

    Examples:
        >>> import jaxrnn
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> xs = jnp.ones((2, 5, 3))
        >>> h, ys = unroll(jaxrnn.gru_step, p, xs, jaxrnn.zero_state(p, 2),
        ...                seq_lengths=jnp.array([5, 2]))
        >>> ys.shape, bool((ys[1, 2:] == 0).all())
        ((2, 5, 4), True)
        >>> h2, ys2, info = unroll(jaxrnn.gru_step, p, xs, jaxrnn.zero_state(p, 2),
        ...                        seq_lengths=jnp.array([5, 2]), method="quasi_deer",
        ...                        return_info=True)
        >>> bool(info.converged), bool(jnp.abs(ys2 - ys).max() < 1e-5)
        (True, True)
    """
    where = "unroll"
    check_unroll(unroll, where)
    check_remat(remat, where)
    check_flag(return_info, where, "return_info")
    cell = _check_method(step, method, tol, max_iter, fallback, remat, where)
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError(f"{where}: xs holds no arrays.")
    min_rank = 2 if time_major else 3
    for leaf in leaves:
        if np.ndim(leaf) < min_rank:
            raise ValueError(
                f"{where}: xs has shape {shape_of(leaf)}; expected (batch, time, features) "
                "or, with time_major=True, (time, [batch...,] features)."
            )
    if not time_major:
        xs = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), xs)
    # inside shard_map, a carry the same on every device meets per-device inputs
    # (params stay as they are: the user's step owns them)
    carry = match_varying(carry, (params, xs, carry, seq_lengths, mask))
    lead = shape_of(jax.tree.leaves(xs)[0])
    num_steps = lead[0]
    batch_shape = lead[1:-1]  # every axis between time and features
    check_carry_batch(
        carry, batch_shape, shape_of(leaves[0]), where, cell=any(step is s.step for s in specs())
    )
    m = sequence_mask(seq_lengths, mask, batch_shape, num_steps, time_major=time_major, where=where)
    if m is not None:
        # The step reads zeros at padded steps, so NaN or inf padding reaches no
        # value and no gradient (the step's result there is discarded).
        xs = _where(m, xs, jax.tree.map(jnp.zeros_like, xs))

    def segment(c, x, v):
        return scan_segment(
            step,
            params,
            c,
            x,
            v,
            reverse=reverse,
            unroll=unroll,
            checkpoint_step=remat == "step",
        )

    info = None
    options = dict(tol=tol, max_iter=max_iter, fallback=fallback, reverse=reverse, where=where)
    if method != "sequential" and cell is not None and cell[0].kind in jacobians.CLOSED_FORMS:
        carry, ys, info = newton.solve(*cell, params, carry, xs, m, method=method, **options)
    elif method != "sequential":
        carry, ys, info = newton.solve_step(step, params, carry, xs, m, unroll=unroll, **options)
    elif remat == "sqrt":
        carry, ys = nested_scan(segment, carry, xs, m, reverse=reverse)
    else:
        carry, ys = segment(carry, xs, m)
    if not time_major:
        ys = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), ys)
    if not return_info:
        return carry, ys
    if info is None:  # method="sequential"
        info = newton.NewtonInfo(
            jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32), jnp.ones((), jnp.bool_)
        )
    return carry, ys, info


def _check_method(
    step: Step, method: Any, tol: Any, max_iter: Any, fallback: Any, remat: Any, where: str
) -> tuple | None:
    """Check the time-algorithm options; returns ``newton.builtin(step)``."""
    newton.check_options(method, tol, max_iter, fallback, where)  # also when ignored
    cell = newton.builtin(step)
    if method == "sequential":
        return cell
    if remat is not None:
        raise ValueError(
            f"{where}: remat={remat!r} applies to method='sequential' only; method={method!r} "
            "keeps just the states for its gradients (nothing to recompute). Drop remat."
        )
    if method == "quasi_deer" and (cell is None or cell[0].kind not in jacobians.CLOSED_FORMS):
        name = getattr(step, "__name__", type(step).__name__)
        raise ValueError(
            f"{where}: method='quasi_deer' needs the closed-form diagonal Jacobians of a "
            f"built-in step (rnn_step, lstm_step, gru_step, or a functools.partial of one "
            f"with its options only); got {name}. Use method='deer' (dense Jacobians by "
            "jax.linearize of your step) or method='sequential'."
        )
    return cell


def _where(m: jax.Array, new: Any, old: Any) -> Any:
    """``where(m, new, old)`` leaf by leaf, ``m`` broadcast over trailing feature axes."""
    return jax.tree.map(
        lambda n, o: jnp.where(m.reshape(m.shape + (1,) * (n.ndim - m.ndim)), n, o), new, old
    )
