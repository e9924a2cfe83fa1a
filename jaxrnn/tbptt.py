"""Truncated backpropagation through time (TBPTT) over long sequences, in one compiled loop.

A long batch ``(B, T, ...)`` is cut into ``W = T // k`` consecutive windows of
``k`` steps. The recurrent state is carried forward from each window into the
next, but gradients are not: the carry entering a window is
``jax.lax.stop_gradient`` of the one leaving the previous window, so each
window backpropagates through its own ``k`` steps only. All windows run inside
one ``lax.scan`` in one ``jax.jit``-compiled function. Imports optax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import positive_int
from ._train_core import TrainState, apply_gradients, check_clipnorm, get_optimizer

__all__ = ["make_tbptt_step", "windows"]

WindowLoss = Callable[[Any, Any, Any, Any, Any], tuple[jax.Array, Any]]
UPDATES = ("window", "sequence")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def windows(tree: Any, window: int, *, where: str = "windows") -> Any:
    """Split every ``(B, T, ...)`` leaf into ``(W, B, k, ...)`` windows, ``W = T // k``.

    Window ``w`` holds steps ``w k, ..., w k + k - 1``.

    Raises:
        ValueError: a leaf with fewer than 2 axes, unequal ``T`` across leaves, or
            ``window`` not dividing ``T``.

    Examples:
        >>> windows(jnp.zeros((2, 6, 3)), 2).shape
        (3, 2, 2, 3)
    """
    positive_int(window, where, "window", what=" (steps per window)")
    leaves = jax.tree.leaves(tree)
    shapes = [tuple(np.shape(a)) for a in leaves]
    for s in shapes:
        if len(s) < 2:
            raise ValueError(
                f"{where}: every array needs (batch, time, ...) axes, got shape {s}. TBPTT "
                "needs per-step inputs and targets."
            )
    steps = {s[1] for s in shapes}
    if len(steps) != 1:
        raise ValueError(
            f"{where}: inputs and targets must share the time axis (axis 1), got shapes {shapes}."
        )
    t = steps.pop()
    if t == 0 or t % window:
        fit = (t // window) * window
        raise ValueError(
            f"{where}: window={window} does not divide the sequence length T={t} (time axis of "
            f"shapes {shapes}). Use a window dividing T (divisors of {t}: {_divisors(t)}), or "
            f"crop the sequences to a multiple of the window, e.g. x[:, :{fit}]."
        )
    w = t // window

    def split(a):
        a = jnp.asarray(a)
        a = a.reshape(a.shape[0], w, window, *a.shape[2:])
        return jnp.swapaxes(a, 0, 1)

    return jax.tree.map(split, tree)


def make_tbptt_step(
    loss_fn: WindowLoss,
    optimizer: optax.GradientTransformation | str,
    window: int,
    *,
    update: str = "window",
    clipnorm: float | None = None,
    jit: bool = True,
) -> Callable[..., tuple[TrainState, Any, Mapping[str, jax.Array]]]:
    """A truncated-BPTT step ``step(state, carry, (x, y), key) -> (state, carry, metrics)``.

    ``loss_fn(params, carry, x_w, y_w, key) -> (loss, new_carry)`` scores one
    window (``x_w``, ``y_w`` of shape ``(B, k, ...)``) starting from ``carry``.
    With ``W = T // k`` windows, ``update="window"`` (default) does one optimizer
    update per window::

        for w in range(W):
            carry = stop_gradient(carry)
            (loss[w], new_carry), g = value_and_grad(loss_fn, has_aux=True)(
                params, carry, x[:, w k:(w+1) k], y[:, w k:(w+1) k], key_w)
            params, opt_state = update(g)                  # clipped first if clipnorm
            carry = stop_gradient(new_carry)
        return state, carry, {"loss": loss (W,), "grad_norm": (W,)}

    so window ``w`` runs with the parameters updated by windows ``0..w-1``.
    ``update="sequence"`` instead makes one update per call with the gradient of
    the *mean* window loss ``(1/W) sum_w loss[w]``, the carries between windows
    still passed through ``stop_gradient`` (the gradient is the mean of the
    per-window truncated gradients, all at the same parameters); its
    ``grad_norm`` has shape ``(1,)``. With ``window = T`` both equal one step of
    full BPTT. ``key_w = fold_in(key, w)`` (``None`` stays ``None``: no dropout).
    The returned ``carry`` (gradient-stopped) continues the stream in the next call.

    Args:
        loss_fn: the window loss, returning ``(scalar loss, new carry)``.
        optimizer: an optax optimizer or a Keras name (see ``jaxrnn.train.get_optimizer``).
        window: ``k``, steps per window; it must divide ``T`` (the error lists the divisors).
        update: ``"window"`` or ``"sequence"``.
        clipnorm: clip each gradient to this global norm before the update.
        jit: compile the step (one compiled ``lax.scan`` over the windows).

    Returns:
        The step function; start from ``TrainState.create(params, optimizer)``.

    Raises:
        ValueError: bad ``window`` or ``update``; at call time, ``window`` not dividing ``T``.

    Examples:
        >>> import jaxrnn
        >>> from jaxrnn.train import TrainState
        >>> def loss_fn(p, h, x, y, key):
        ...     ys, h = jaxrnn.simple_rnn(p, x, initial_state=h, return_sequences=True,
        ...                               return_state=True)
        ...     return jnp.mean((ys[..., :1] - y) ** 2), h
        >>> p = jaxrnn.init_rnn(jax.random.key(0), 1, 4)
        >>> step = make_tbptt_step(loss_fn, "adam", window=5)
        >>> x, y = jnp.ones((2, 20, 1)), jnp.zeros((2, 20, 1))
        >>> s, h, m = step(TrainState.create(p, "adam"), jnp.zeros((2, 4)), (x, y), None)
        >>> m["loss"].shape, int(s.step)                     # 4 windows, 4 updates
        ((4,), 4)
    """
    where = "make_tbptt_step"
    tx = get_optimizer(optimizer)
    check_clipnorm(clipnorm, where)
    if update not in UPDATES:
        raise ValueError(
            f"{where}: unknown update={update!r}; use 'window' (one optimizer update per "
            "window) or 'sequence' (one update per call from the mean window loss)."
        )
    positive_int(window, where, "window", what=" (steps per window)")

    def window_loss(params, carry, x_w, y_w, key_w):
        loss, new_carry = loss_fn(params, jax.lax.stop_gradient(carry), x_w, y_w, key_w)
        if np.shape(loss) != ():
            raise ValueError(
                f"tbptt step: loss_fn must return (scalar loss, new_carry), got a loss of shape "
                f"{tuple(np.shape(loss))}; reduce it, e.g. with .mean()."
            )
        return loss, jax.lax.stop_gradient(new_carry)

    def step(state: TrainState, carry: Any, batch: Any, key: Any):
        x, y = batch
        xw, yw = windows((x, y), window, where="tbptt step")
        num = jax.tree.leaves(xw)[0].shape[0]
        keys = (
            None if key is None else jax.vmap(lambda w: jax.random.fold_in(key, w))(jnp.arange(num))
        )

        if update == "window":

            def body(c, inp):
                st, h = c
                x_w, y_w, k_w = inp
                (loss, h), grads = jax.value_and_grad(window_loss, has_aux=True)(
                    st.params, h, x_w, y_w, k_w
                )
                st, gn = apply_gradients(tx, st, grads, clipnorm)
                return (st, h), (loss, gn)

            (state, carry), (loss, gn) = jax.lax.scan(body, (state, carry), (xw, yw, keys))
            return state, carry, {"loss": loss, "grad_norm": gn}

        def total(params):
            def body(h, inp):
                x_w, y_w, k_w = inp
                loss, h = window_loss(params, h, x_w, y_w, k_w)
                return h, loss

            h, loss = jax.lax.scan(body, carry, (xw, yw, keys))
            return loss.mean(), (h, loss)

        (_, (carry, loss)), grads = jax.value_and_grad(total, has_aux=True)(state.params)
        state, gn = apply_gradients(tx, state, grads, clipnorm)
        return state, carry, {"loss": loss, "grad_norm": gn[None]}

    return jax.jit(step) if jit else step
