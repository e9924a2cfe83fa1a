"""Variational (Keras-style) dropout masks and the masked gate matmul.

Keras draws one dropout mask per call and reuses it at every time step
(Gal & Ghahramani's variational dropout). For ``dropout`` alone the input mask
is shared by all gates; once ``recurrent_dropout`` is non-zero Keras switches to
one mask per gate, for the inputs and for the recurrent state alike. jaxrnn
draws the same structure, so a Keras layer given these masks computes exactly
what jaxrnn computes (tested by injecting them into Keras).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class DropoutMasks(NamedTuple):
    """Masks fixed across time, already scaled by ``1 / (1 - rate)``."""

    input: jax.Array | None  # (B, I) shared, or (B, G, I) one per gate
    recurrent: jax.Array | None  # (B, G, H), one per gate


def is_traced(rate: Any) -> bool:
    """A rate only known at run time (e.g. a swept hyperparameter under ``vmap``/``jit``)."""
    return isinstance(rate, jax.core.Tracer)


def is_on(rate: Any) -> bool:
    """Whether dropout at ``rate`` draws masks: a traced rate always does (0 keeps all)."""
    return is_traced(rate) or rate > 0


def check_rate(rate: float, where: str, arg: str) -> None:
    if is_traced(rate):
        return  # checked by nobody at run time: a traced rate must lie in [0, 1)
    if not (0.0 <= float(rate) < 1.0):
        raise ValueError(
            f"{where}: {arg}={rate!r} is outside [0, 1). It is the fraction of units "
            f"dropped, e.g. {arg}=0.2."
        )


def dropout_key(
    key: jax.Array | None, training: bool | None, dropout: Any, recurrent_dropout: Any, where: str
) -> jax.Array | None:
    """The key the masks are drawn with: None when dropout is off.

    ``training=False`` switches dropout off (inference); otherwise a non-zero rate
    needs a key, so a forgotten key raises instead of silently training without
    dropout. A traced rate counts as non-zero (its value is unknown here).
    """
    if training is not None and not isinstance(training, (bool, np.bool_)):
        raise TypeError(
            f"{where}: training must be True, False or None, got {type(training).__name__}. "
            "It is a Python switch (decided before tracing): use training=key is not None "
            "inside a loss that gets key=None in evaluation."
        )
    if training is not None and not training:
        return None
    rates = {
        n: r
        for n, r in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout))
        if is_on(r)
    }
    if key is None and rates:
        set_ = ", ".join(f"{n}={'<traced>' if is_traced(r) else r}" for n, r in rates.items())
        raise ValueError(
            f"{where}: {set_} but key is None, so no dropout mask can be drawn. Pass "
            "key=jax.random.key(seed) to train with dropout, or training=False for "
            "inference (dropout off). In a loss that jaxrnn.train calls with key=None "
            "for evaluation, pass training=key is not None."
        )
    return key


def _mask(key: jax.Array, rate: float, shape: tuple[int, ...], dtype) -> jax.Array:
    keep = 1.0 - rate
    return jax.random.bernoulli(key, keep, shape).astype(dtype) / jnp.asarray(keep, dtype)


def make_dropout_masks(
    key: jax.Array | None,
    batch_shape: tuple[int, ...],
    input_size: int,
    hidden_size: int,
    num_gates: int,
    *,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    dtype=jnp.float32,
) -> DropoutMasks:
    """Draw Keras-structured variational dropout masks.

    Returns ``DropoutMasks(None, None)`` when ``key`` is None or both rates are
    zero (inference: dropout off). The input mask is ``(*batch, I)`` when
    ``recurrent_dropout == 0`` and ``(*batch, G, I)`` otherwise; the recurrent
    mask is ``(*batch, G, H)``.

    A rate may be a traced array (a hyperparameter swept with ``jax.vmap``): its
    masks are then always drawn, with the structure of a positive rate, and a
    traced rate of 0 keeps every unit.

    Examples:
        >>> m = make_dropout_masks(jax.random.key(0), (2,), 3, 4, 4, dropout=0.5)
        >>> m.input.shape, m.recurrent
        ((2, 3), None)
    """
    if key is None or not (is_on(dropout) or is_on(recurrent_dropout)):
        return DropoutMasks(None, None)
    k_in, k_rec = jax.random.split(key)
    per_gate = is_on(recurrent_dropout)
    inp = rec = None
    if is_on(dropout):
        shape = (*batch_shape, num_gates, input_size) if per_gate else (*batch_shape, input_size)
        inp = _mask(k_in, dropout, shape, dtype)
    if is_on(recurrent_dropout):
        rec = _mask(k_rec, recurrent_dropout, (*batch_shape, num_gates, hidden_size), dtype)
    return DropoutMasks(inp, rec)


def masked_matmul(v: jax.Array, w: jax.Array, mask: jax.Array | None, num_gates: int) -> jax.Array:
    """``v @ w`` with an optional dropout mask on ``v``.

    ``mask`` of ``v``'s shape is shared by all gates; a mask of shape
    ``(..., G, D)`` gives gate ``g`` the input ``v * mask[..., g, :]``, so the
    result is ``concat_g((v * mask_g) @ w[:, g*H:(g+1)*H])``.
    """
    if mask is None:
        return v @ w
    if mask.ndim == v.ndim:
        return (v * mask) @ w
    d, gh = w.shape
    hidden = gh // num_gates
    vg = v[..., None, :] * mask  # (..., G, D)
    out = jnp.einsum("...gd,dgh->...gh", vg, w.reshape(d, num_gates, hidden))
    return out.reshape(*out.shape[:-2], gh)
