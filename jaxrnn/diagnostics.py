"""Diagnostics for recurrent models: how far back gradients reach.

``input_gradient_norms`` measures vanishing and exploding gradients directly
on the inputs: the norm of ``∂loss/∂x_t`` for every time step ``t``. For a loss
read at the last step, plotting it against the distance ``T - 1 - t`` shows how
much an input ``k`` steps in the past can still move the loss.

This module needs only JAX; ``import jaxrnn`` does not import it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["input_gradient_norms"]


def input_gradient_norms(
    loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array, *, time_major: bool = False
) -> jax.Array:
    """Batch-averaged norm of the loss gradient with respect to each input step.

    With ``g = ∂loss/∂x`` (one backward pass, ``jax.grad``)::

        norms[t] = (1/B) Σ_b ‖g[b, t, :]‖₂           # ‖·‖₂ over the feature axes

    For a loss that averages over the batch, each ``g[b]`` carries a factor
    ``1/B``; compare norms of runs with the same batch size (or use a summed
    loss). Extra trailing feature axes are all included in the norm.

    Args:
        loss_fn: ``loss_fn(x) -> scalar``, the model and its loss with the
            parameters and targets bound (close over them).
        x: ``(B, T, ...)`` inputs, or ``(T, B, ...)`` with ``time_major=True``;
            floating dtype.
        time_major: whether axis 0 of ``x`` is time.

    Returns:
        ``(T,)`` array: the mean over the batch of ``‖∂loss/∂x_t‖₂``, in ``x``'s dtype.

    Raises:
        ValueError: ``x`` with fewer than 2 axes.
        TypeError: ``x`` not floating, or ``loss_fn`` not returning a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones((2, 3, 2))                              # (B, T, F)
        >>> w = jnp.array([1.0, 2.0, 3.0])[None, :, None]         # weight per step
        >>> norms = input_gradient_norms(lambda x: jnp.sum(w * x), x)   # (T,)
        >>> [round(v, 4) for v in norms.tolist()]                # ‖(w_t, w_t)‖ = √2 w_t
        [1.4142, 2.8284, 4.2426]
    """
    where = "input_gradient_norms"
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"{where}: x must have a batch and a time axis, (B, T, ...) or (T, B, ...) with "
            f"time_major=True; got x.shape={x.shape} ({x.ndim}-D)."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{where}: x must be floating to differentiate, got dtype {x.dtype}.")
    out = jax.eval_shape(loss_fn, x)
    if getattr(out, "shape", None) != ():
        raise TypeError(
            f"{where}: loss_fn must return a scalar, got shape {getattr(out, 'shape', out)}; "
            "reduce it (e.g. jnp.mean) first."
        )
    g = jax.grad(loss_fn)(x)  # (B, T, ...) or (T, B, ...)
    if time_major:
        g = jnp.swapaxes(g, 0, 1)  # (B, T, ...)
    g = g.reshape(g.shape[0], g.shape[1], -1)  # (B, T, F)
    return jnp.mean(jnp.sqrt(jnp.sum(g * g, axis=-1)), axis=0)  # (T,)
