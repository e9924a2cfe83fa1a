"""Carry resets inside a sequence (episode boundaries, as in reinforcement learning).

A boolean flag ``resets[b, t]`` means "the carry of sequence ``b`` is reset to
the initial state *before* step ``t``", so one long stream can hold several
episodes back to back and each is processed as if run on its own from the
initial state. ``with_resets(step)`` wraps any step function
``(params, carry, x) -> (carry, y)``; ``unroll_with_resets`` drives it with
``jaxrnn.unroll``. Neither needs optax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _unroll

__all__ = ["unroll_with_resets", "with_resets"]

Step = Callable[[Any, Any, Any], tuple[Any, Any]]


def with_resets(step: Step, initial_state: Any = None) -> Step:
    """Wrap ``step`` so its input is ``(x_t, reset_t)`` and a set flag resets the carry first.

    The wrapped step computes::

        def reset_step(params, carry, inputs):
            x, reset = inputs
            carry = initial_state if reset else carry     # leaf by leaf, per batch element
            return step(params, carry, x)

    ``initial_state`` defaults to zeros shaped like the carry. Because the reset is
    a ``jnp.where``, no gradient flows through a reset from the steps after it to
    the carry before it: gradients stay within an episode (they do flow into
    ``initial_state`` when it is an array you differentiate, e.g. a learned
    initial state).

    Args:
        step: any step ``(params, carry, x) -> (carry, y)``, e.g. ``jaxrnn.lstm_step``.
        initial_state: the state a reset restores, a pytree like the carry whose
            leaves broadcast against the carry's (e.g. ``(H,)`` or ``(B, H)``);
            None for zeros.

    Returns:
        ``reset_step(params, carry, (x, reset)) -> (carry, y)``, where ``reset`` is
        boolean with the carry's batch shape ``(...)`` (a trailing axis of 1 is
        also accepted).

    Examples:
        >>> import jaxrnn
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> step = with_resets(jaxrnn.gru_step)
        >>> h = jnp.ones((2, 4))
        >>> h1, _ = step(p, h, (jnp.zeros((2, 3)), jnp.array([True, False])))
        >>> h2, _ = jaxrnn.gru_step(p, jnp.zeros((2, 4)), jnp.zeros((2, 3)))
        >>> bool(jnp.allclose(h1[0], h2[0]))            # row 0 restarted from zeros
        True
    """

    def reset_step(params, carry, inputs):
        if not isinstance(inputs, tuple) or len(inputs) != 2:
            raise TypeError(
                "with_resets: the wrapped step takes inputs (x, reset), a tuple of two, got "
                f"{type(inputs).__name__}. Pass xs=(x, resets) to the driver, or use "
                "jaxrnn.resets.unroll_with_resets."
            )
        x, reset = inputs
        reset = jnp.asarray(reset)
        if reset.dtype != jnp.bool_:
            raise TypeError(
                f"with_resets: reset has dtype {reset.dtype}; it must be boolean "
                "(True = start a new episode at this step). Use resets.astype(bool)."
            )
        init = jax.tree.map(jnp.zeros_like, carry) if initial_state is None else initial_state

        def pick(c, i):
            r = reset
            if r.ndim and r.ndim == c.ndim and r.shape[-1] == 1:
                r = r[..., 0]
            r = r.reshape(r.shape + (1,) * (c.ndim - r.ndim))
            return jnp.where(r, jnp.asarray(i, c.dtype), c)

        carry = jax.tree.map(pick, carry, init)
        return step(params, carry, x)

    return reset_step


def unroll_with_resets(
    step: Step,
    params: Any,
    xs: Any,
    carry: Any,
    resets: Any,
    *,
    initial_state: Any = None,
    time_major: bool = False,
    seq_lengths: Any = None,
    mask: Any = None,
    unroll: int | bool = 1,
    remat: str | None = None,
) -> tuple[Any, Any]:
    """``jaxrnn.unroll`` with episode boundaries: reset the carry before each flagged step.

    For one sequence ``b`` with validity ``m`` (from ``seq_lengths``/``mask``)::

        c0 = zeros_like(carry) if initial_state is None else initial_state
        for t in range(T):
            if m[t]:
                if resets[t]:
                    carry = c0
                carry, ys[t] = step(params, carry, xs[t])
            else:
                ys[t] = 0                        # a reset on a padded step is ignored
        return carry, ys

    so the outputs and final carry equal running each episode separately from
    ``c0`` (tested), and gradients flow only within an episode (and into ``c0``).
    A reset means one thing everywhere in jaxrnn: back to the zero state (as
    ``with_resets``), never back to the incoming ``carry``. The incoming carry
    is only where the first episode starts, so a stream cut into windows (e.g.
    truncated BPTT, carrying the state from window to window) restarts every
    episode from zeros whichever window it begins in. ``initial_state`` makes a
    reset restore anything else (a learned state, or ``initial_state=carry``).
    Only forward processing is offered (an episode's start is only defined going
    forward).

    Args:
        step: any step ``(params, carry, x) -> (carry, y)``.
        params: passed to ``step``.
        xs: inputs ``(B, T, ...)`` (``(T, B, ...)`` when ``time_major``).
        carry: the starting carry ``(B, ...)`` leaves.
        resets: boolean ``(B, T)`` (``(T, B)`` when ``time_major``).
        initial_state: the state a reset restores, a pytree like the carry whose
            leaves broadcast against it; default (None): zeros, as ``with_resets``.
        time_major: as for ``jaxrnn.unroll``.
        seq_lengths: as for ``jaxrnn.unroll``.
        mask: as for ``jaxrnn.unroll``.
        unroll: as for ``jaxrnn.unroll``.
        remat: as for ``jaxrnn.unroll``.

    Returns:
        ``(final_carry, ys)``, as ``jaxrnn.unroll``.

    Raises:
        ValueError: ``resets`` does not have the shape of ``xs``' leading axes.
        TypeError: ``resets`` is not boolean.

    Examples:
        >>> import jaxrnn
        >>> p = jaxrnn.init_lstm(jax.random.key(0), 2, 3)
        >>> x = jnp.ones((1, 6, 2))
        >>> resets = jnp.array([[False, False, False, True, False, False]])
        >>> _, ys = unroll_with_resets(jaxrnn.lstm_step, p, x, jaxrnn.zero_state(p, 1), resets)
        >>> bool(jnp.allclose(ys[:, 3:], ys[:, :3]))     # two identical episodes
        True
    """
    where = "unroll_with_resets"
    if not hasattr(resets, "dtype"):
        resets = np.asarray(resets)
    if resets.dtype != jnp.bool_:
        raise TypeError(
            f"{where}: resets has dtype {resets.dtype}; it must be boolean (True = reset "
            "the carry before this step). Use resets.astype(bool)."
        )
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError(f"{where}: xs holds no arrays.")
    lead = tuple(np.shape(leaves[0]))[:2]
    if tuple(np.shape(resets)) != lead:
        names = "(time, batch)" if time_major else "(batch, time)"
        raise ValueError(
            f"{where}: resets.shape={tuple(np.shape(resets))}, expected {lead} {names}, the "
            f"leading axes of xs (xs.shape={tuple(np.shape(leaves[0]))}): one flag per step "
            "of each sequence."
        )
    # unroll wants a feature axis on every input leaf: carry the flags as (B, T, 1).
    return _unroll.unroll(
        with_resets(step, initial_state),
        params,
        (xs, jnp.asarray(resets)[..., None]),
        carry,
        time_major=time_major,
        seq_lengths=seq_lengths,
        mask=mask,
        unroll=unroll,
        remat=remat,
    )
