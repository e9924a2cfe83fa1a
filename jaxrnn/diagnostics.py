"""Diagnostics for recurrent models: how far back gradients reach, where NaNs start.

``input_gradient_norms`` measures vanishing and exploding gradients directly
on the inputs: the norm of ``∂loss/∂x_t`` for every time step ``t``. For a loss
read at the last step, plotting it against the distance ``T - 1 - t`` shows how
much an input ``k`` steps in the past can still move the loss.

``first_nonfinite`` / ``check_finite`` run a stack of layers step by step of the
stack and report the first layer and time step whose output is NaN or infinite.
They are opt-in debugging calls: nothing in the layers checks values, so a
model that does not call them pays nothing.

This module needs only JAX; ``import jaxrnn`` does not import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["NonFinite", "check_finite", "first_nonfinite", "input_gradient_norms"]


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

    Examples:
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


class NonFinite(NamedTuple):
    """Where a non-finite value first appears in a stack's outputs."""

    layer: int  # index into the stack (0 = first layer)
    step: int  # time step (input order), the earliest over the batch
    batch: int  # the first sequence with a non-finite output at that step
    value: float  # the value found there (nan, inf or -inf)


def first_nonfinite(
    layers: Callable | Sequence[Callable],
    params: Sequence[Any],
    x: jax.Array,
    *,
    seq_lengths: jax.Array | None = None,
    mask: jax.Array | None = None,
    **layer_kwargs: Any,
) -> NonFinite | None:
    """The first layer and time step whose output is NaN or ±inf, or None.

    Runs ``h^k = layer_k(params[k], h^{k-1}, return_sequences=True)`` as
    ``jaxrnn.stacked`` does (input ``h^0 = x``, ``(B, T, F)``) and scans each
    layer's outputs ``(B, T, H)`` in order: the answer is the lowest layer with a
    non-finite output, and in it the earliest step (outputs of padded steps are
    zeros and never count). A NaN in ``x`` itself is reported as layer ``-1``.

    Opt-in and eager (it pulls values to the host): call it when a loss turns
    NaN, with the batch and parameters of that step.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p1, p2 = jaxrnn.init_gru(jax.random.key(0), 2, 3), jaxrnn.init_gru(jax.random.key(1), 3, 3)
        >>> x = jnp.ones((2, 5, 2)).at[1, 3, 0].set(jnp.inf)
        >>> first_nonfinite(jaxrnn.gru, [p1, p2], x)
        NonFinite(layer=-1, step=3, batch=1, value=inf)
        >>> p2_bad = p2._replace(bias=p2.bias.at[0].set(jnp.nan))
        >>> first_nonfinite(jaxrnn.gru, [p1, p2_bad], jnp.ones((2, 5, 2)))
        NonFinite(layer=1, step=0, batch=0, value=nan)
        >>> first_nonfinite(jaxrnn.gru, [p1, p2], jnp.ones((2, 5, 2))) is None
        True
    """
    import numpy as np

    layer_list = list(layers) if isinstance(layers, Sequence) else [layers] * len(params)
    if len(layer_list) != len(params):
        raise ValueError(
            f"first_nonfinite: {len(layer_list)} layers but {len(params)} parameter sets; "
            "give one layer function for all, or one per parameter set."
        )

    def find(a, k):
        bad = ~np.isfinite(np.asarray(a, np.float64)).reshape(a.shape[0], a.shape[1], -1)
        if not bad.any():
            return None
        per_step = bad.any(axis=(0, 2))  # (T,)
        t = int(np.argmax(per_step))
        b = int(np.argmax(bad[:, t].any(axis=1)))
        flat = np.asarray(a[b, t], np.float64).reshape(-1)
        return NonFinite(k, t, b, float(flat[~np.isfinite(flat)][0]))

    found = find(x, -1)
    if found is not None:
        return found
    h = x
    for k, (layer, p) in enumerate(zip(layer_list, params, strict=True)):
        h = layer(p, h, return_sequences=True, seq_lengths=seq_lengths, mask=mask, **layer_kwargs)
        found = find(h, k)
        if found is not None:
            return found
    return None


def check_finite(
    layers: Callable | Sequence[Callable], params: Sequence[Any], x: jax.Array, **kwargs: Any
) -> None:
    """Raise ``FloatingPointError`` naming the first layer and step with a NaN/inf output.

    The raising form of ``first_nonfinite`` (same arguments), for a debugging run.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.init_lstm(jax.random.key(0), 2, 3)
        >>> check_finite(jaxrnn.lstm, [p], jnp.ones((1, 4, 2)))   # finite: returns None
        >>> check_finite(jaxrnn.lstm, [p._replace(kernel=p.kernel * jnp.nan)], jnp.ones((1, 4, 2)))
        Traceback (most recent call last):
        ...
        FloatingPointError: check_finite: layer 0 outputs nan at time step 0 (sequence 0); the layers below it and the input are finite. Check that layer's parameters (jax.tree.map(jnp.isfinite, params[0])) and its input scale; exploding values often need gradient clipping (clipnorm).
    """
    found = first_nonfinite(layers, params, x, **kwargs)
    if found is None:
        return
    if found.layer < 0:
        raise FloatingPointError(
            f"check_finite: the input x holds {found.value} at time step {found.step} "
            f"(sequence {found.batch}); clean the data (e.g. jnp.nan_to_num) or mask that step."
        )
    raise FloatingPointError(
        f"check_finite: layer {found.layer} outputs {found.value} at time step {found.step} "
        f"(sequence {found.batch}); the layers below it and the input are finite. Check that "
        f"layer's parameters (jax.tree.map(jnp.isfinite, params[{found.layer}])) and its "
        "input scale; exploding values often need gradient clipping (clipnorm)."
    )
