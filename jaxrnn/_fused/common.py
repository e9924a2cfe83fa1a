"""Shared pieces of the fused recurrences: static loop options, matmuls and the
activation check of the gated ones."""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._cells.activations import get_activation


class LoopOptions(NamedTuple):
    """Static (hashable) options of a fused recurrence."""

    reverse: bool = False
    unroll: int | bool = 1
    matmul_dtype: Any = None  # e.g. "bfloat16": matmul inputs in this dtype, f32 accumulation
    # the LSTM's gradient is autodiff from this batch size on (the layers pass
    # dispatch.default_autodiff_min_batch(); the default here: never)
    autodiff_min_batch: int = sys.maxsize
    # the time algorithm of a cell linear in its state (jaxrnn._time.linear.METHODS)
    method: str = "sequential"


def cast(a: jax.Array, opts: LoopOptions) -> jax.Array:
    """``a`` in the matmul dtype (unchanged when there is none)."""
    return a if opts.matmul_dtype is None else a.astype(opts.matmul_dtype)


def matmul(a: jax.Array, b_cast: jax.Array, opts: LoopOptions, out_dtype) -> jax.Array:
    """``a @ b`` with ``b`` already cast; accumulates in ``out_dtype``."""
    if opts.matmul_dtype is None:
        return a @ b_cast
    return jnp.matmul(cast(a, opts), b_cast, preferred_element_type=out_dtype)


def sum_outer(h: jax.Array, d: jax.Array, opts: LoopOptions) -> jax.Array:
    """``Σ_t h_tᵀ d_t`` over all ``T·B`` rows: one ``(H, T·B) @ (T·B, G·H)`` matmul."""
    return jnp.einsum("tbh,tbg->hg", cast(h, opts), cast(d, opts), preferred_element_type=d.dtype)


def previous(carries: jax.Array, first: jax.Array, reverse: bool) -> jax.Array:
    """The carry *before* each step, from the carries after each step ``(T, ...)``.

    Forward: ``[first, carries[0], ..., carries[T-2]]``; in reverse (step ``t``
    follows step ``t + 1``): ``[carries[1], ..., carries[T-1], first]``. Saving the
    carry sequence once and shifting it after the loop costs one copy instead of
    one more stacked output per step.
    """
    if carries.shape[0] == 0:
        return carries
    if reverse:
        return jnp.concatenate([carries[1:], first[None]], axis=0)
    return jnp.concatenate([first[None], carries[:-1]], axis=0)


def bias_or_zeros(b: jax.Array | None, like: jax.Array) -> jax.Array:
    """``b``, or zeros the size of ``like``'s last axis (a cell without bias)."""
    return jnp.zeros(like.shape[-1], like.dtype) if b is None else b


def project(xs: jax.Array, w: jax.Array, opts: LoopOptions) -> jax.Array:
    """The hoisted input projection ``xs W`` over all steps at once, ``(T, B, G·H)``."""
    return matmul(xs, cast(w, opts), opts, w.dtype)


def gates_unsupported(step_kwargs: dict, where: str) -> str | None:
    """Why a gated recurrence (LSTM, GRU), written for ``tanh`` and ``sigmoid`` gates,
    cannot run the step's ``activation`` / ``recurrent_activation``, or None."""
    act = get_activation(step_kwargs.get("activation", "tanh"), where=where, arg="activation")
    rec = get_activation(
        step_kwargs.get("recurrent_activation", "sigmoid"), where=where, arg="recurrent_activation"
    )
    if act is not jnp.tanh or rec is not jax.nn.sigmoid:
        return "activations other than tanh / sigmoid"
    return None
