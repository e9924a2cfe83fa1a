"""Shared pieces of the fused recurrences: static loop options, matmuls and the
activation check of the gated ones."""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._cells.activations import get_activation

# Chunks of the fused SimpleRNN's and LSTM's hoisted input projection (``chunked``):
# ``max(CHUNK_MIN_STEPS, CHUNK_FLOATS // (B·G·H))`` steps each, so the projection
# takes at most ``max(CHUNK_FLOATS, CHUNK_MIN_STEPS·B·G·H)`` floats (4 MiB of float32
# up to B·G·H = 8192) whatever T, instead of ``T·B·G·H``. Sizing chunks by floats
# keeps the chunk loop's own cost (per chunk: zeroing and copying its outputs, one
# more matmul call) negligible where a step costs well under a µs (small B·H); the
# minimum leaves sequences of up to 128 steps as one projection, as before chunking.
# Measured by ``python benchmarks/chunk_length.py`` (the layers, chunked / unchunked
# median time, interleaved in one process; 2-core XLA:CPU, identical programs within
# ±5% of each other on a quiet machine), at the shapes of run.py and remat_speed.py:
# - 128 steps / 2^20 floats (chosen): T <= 128, and SimpleRNN wherever T·B·H <= 2^20
#   (all of run.py's shapes): the unchunked program itself; LSTM forward at T = 1,000-20,000
#   0.53-1.10x, training 0.70-1.07x (0.70-0.81x from T = 1,000 at B = 16; the gates'
#   gradients are formed and consumed chunk by chunk); SimpleRNN training 1.00-1.04x.
#   SimpleRNN forward with all outputs at T = 20,000, (B, H) = (8, 32): 1.2-1.7x with
#   11 reps on a busy machine, 1.00x with 41 on a quiet one; at (4, 100,000, 8, 32)
#   1.09x (a step costs under a µs there, and each chunk's outputs are copied once
#   more into the stacked output: a cost per output byte, whatever the chunk size).
# - 2^18 floats, no minimum (chunks of 2-64 steps at T = 100): SimpleRNN
#   (16, 1000, 16, 64) forward 1.20x, training 1.33x; LSTM T = 100 forward 1.07-1.10x.
# - 128 steps / 2^22 floats: the LSTM's long-sequence gains mostly gone (0.73-1.00x).
CHUNK_MIN_STEPS = 128
CHUNK_FLOATS = 2**20
DEFAULT_CHUNK = (CHUNK_MIN_STEPS, CHUNK_FLOATS)

# Chunks of the hand-written backward passes (GRU, LSTM; ``backward_chunks``):
# (min_steps, floats) for ``chunk_steps``, i.e. 2^18 / (B·G·H) steps with no minimum,
# so a chunk's per-step gradient arrays take a few MiB of float32 (one step's, if
# larger), formed and consumed in cache. For the GRU, besides bounding memory (at
# (16, 1e5, 8, 64) the training step's scratch fell from 5,518 to 3,177 MiB; the
# generic scan's is 4,736), small chunks made the training step faster: measured with
# ``python benchmarks/chunk_length.py --cells gru`` (chunked / unchunked, 15-21 reps
# interleaved, 2-core XLA:CPU; the forward pass is the same program):
# - 0:2^18 (chosen): T = 1,000-20,000 0.74-0.91x; (64, 100, 128, 256) 0.86x,
#   (32, 100, 32, 128), (64, 100, 512, 512), (128, 28, 28, 128) 0.96-1.00x;
#   (16, 200, 16, 64) 1.08-1.10x (0.4 ms more: two chunks and a tail).
# - 0:2^16: T >= 1,000 0.80-0.98x; (32, 100, 32, 128) 1.14x.
# - 128:2^20 (the projection's sizing): T >= 1,000 0.92-1.38x (1.38x at (4, 4000, 8, 32),
#   one chunk of 2,730 steps and a tail of 1,270).
# For the LSTM (its backward pass took the same chunks after the GRU's; the projection's
# gradients dW and dx are formed per chunk inside it), training step, chunked backward /
# one backward pass per projection chunk, B < AUTODIFF_MIN_BATCH, 21 interleaved reps
# (the layers' segment, old and new module side by side), quiet machine:
# (32, 100, 32, 128) 0.99, (16, 200, 16, 64) 0.94, (16, 1000, 16, 64) 0.93,
# (32, 1000, 32, 128) 0.84, (4, 4000, 8, 32) 0.75, (8, 20000, 8, 32) 0.89,
# (16, 100, 64, 512) 0.96, (10, 10, 1, 100) 0.97 (on a loaded machine 0.73-0.95);
# training scratch unchanged (3,566 MiB at (16, 1e5, 8, 64)).
BACKWARD_CHUNK = (0, 2**18)


class LoopOptions(NamedTuple):
    """Static (hashable) options of a fused recurrence."""

    reverse: bool = False
    unroll: int | bool = 1
    matmul_dtype: Any = None  # e.g. "bfloat16": matmul inputs in this dtype, f32 accumulation
    # the LSTM's gradient is autodiff from this batch size on (the layers pass
    # lstm.AUTODIFF_MIN_BATCH; the default here: never)
    autodiff_min_batch: int = sys.maxsize
    # the step is split by XLA's SPMD partitioner (``_context.batch_partitioned``; the
    # layers read it at each call): weight gradients are then formed once, after the
    # backward loop, never per step or per chunk inside it, where the partitioner would
    # all-reduce them at every iteration (see ``dispatch.partitioned``)
    partitioned: bool = False
    # the time algorithm of a cell linear in its state (jaxrnn._time.linear.METHODS)
    method: str = "sequential"
    # chunk sizes (``chunk_steps``); None: the recurrence's own (for the SimpleRNN's and
    # LSTM's input projection CHUNK_MIN_STEPS / CHUNK_FLOATS, for the hand-written backward
    # passes of the LSTM and GRU BACKWARD_CHUNK)
    chunk_min_steps: int | None = None
    chunk_floats: int | None = None


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
    """The hoisted input projection ``xs W`` over all steps of ``xs`` at once (a chunk's:
    ``chunked``), ``(T, B, G·H)``."""
    return matmul(xs, cast(w, opts), opts, w.dtype)


def chunk_steps(
    batch: int, width: int, opts: LoopOptions, default: tuple[int, int] = DEFAULT_CHUNK
) -> int:
    """Steps per chunk of a projection ``(T, batch, width)``: ``floats`` floats, at least
    ``min_steps`` steps and at least one; ``(min_steps, floats)`` are ``opts``' or, where
    those are None, ``default``'s."""
    min_steps = default[0] if opts.chunk_min_steps is None else opts.chunk_min_steps
    floats = default[1] if opts.chunk_floats is None else opts.chunk_floats
    return max(1, min_steps, floats // max(1, batch * width))


def chunked(
    run,
    carry,
    seqs: tuple,
    width: int,
    opts: LoopOptions,
    *,
    copy: bool = True,
    default: tuple[int, int] = DEFAULT_CHUNK,
):
    """``run(carry, *seqs) -> (carry, ys)`` over chunks of ``chunk_steps`` steps.

    ``seqs`` are time-major pytrees (``(T, B, ...)`` leaves; None entries stay None),
    e.g. ``(xs, mask)``: ``run`` then projects its chunk's input in one matmul to
    ``(chunk, B, width)`` and loops over its steps, so only one chunk's projection
    exists at a time. The ``T // chunk`` whole chunks run in an outer ``lax.scan``;
    the ``T % chunk`` remaining steps (the last ones; with ``opts.reverse``, the first
    processed) in one more call of ``run``, so nothing is padded and no step is
    computed twice. ``T <= chunk`` is a single call of ``run``.

    With ``copy`` (for a differentiated loop) the whole chunks are a reshaped copy
    of ``seqs``, and under ``jax.grad`` the outer scan stores each chunk's residuals
    (those of ``run``'s custom VJP), stacked: the same arrays as one call over all
    ``T`` steps. Without (for a loop that is not differentiated, such as a backward
    pass over stored residuals) each chunk is a ``dynamic_slice`` of ``seqs``, which
    copies nothing.
    """
    first = jax.tree.leaves(seqs)[0]
    num_steps, k = first.shape[0], chunk_steps(first.shape[1], width, opts, default)
    if num_steps <= k:
        return run(carry, *seqs)
    n, rest = divmod(num_steps, k)

    def body(c, inp):
        if copy:
            return run(c, *inp)
        return run(c, *jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, inp * k, k), seqs))

    def tail(tree):  # (rest, ...)
        return jax.tree.map(lambda a: a[n * k :], tree)

    ys_tail = None
    if rest and opts.reverse:  # in reverse the last steps come first
        carry, ys_tail = run(carry, *tail(seqs))
    if copy:  # (n, k, ...): the whole chunks
        chunks = jax.tree.map(lambda a: a[: n * k].reshape(n, k, *a.shape[1:]), seqs)
    else:
        chunks = jnp.arange(n)
    carry, ys = jax.lax.scan(body, carry, chunks, reverse=opts.reverse)
    if rest and not opts.reverse:
        carry, ys_tail = run(carry, *tail(seqs))
    ys = jax.tree.map(lambda a: a.reshape(n * k, *a.shape[2:]), ys)
    if ys_tail is None:
        return carry, ys
    return carry, jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), ys, ys_tail)


def backward_chunks(chunk, carry, seqs: tuple, width: int, opts: LoopOptions):
    """A hand-written backward pass ``chunk(carry, *seqs) -> (carry, dxs)`` over chunks of
    ``BACKWARD_CHUNK`` steps (or ``opts``' chunk sizes), in the backward pass's order.

    ``seqs`` are the time-major residuals and cotangents, sliced without copies;
    ``carry`` holds the carry gradient and the weight gradients that each chunk adds
    to. When ``opts.partitioned``, one chunk: the partitioner would otherwise
    all-reduce the weight gradients in every chunk (``dispatch.partitioned``).
    """
    backward = opts._replace(reverse=not opts.reverse)
    if opts.partitioned:
        backward = backward._replace(chunk_min_steps=sys.maxsize)
    return chunked(chunk, carry, seqs, width, backward, copy=False, default=BACKWARD_CHUNK)


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
