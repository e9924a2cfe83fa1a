"""The fast LSTM recurrence: hoisted input projection and a hand-written backward pass.

``lstm_recurrence(xs, W, U, b, h0, c0, mask, opts)`` projects a time-major input
``xs`` in one matmul, ``xw = x W`` ``(T, B, 4H)``, and runs the loop over it; the
bias is added inside the loop, where it fuses into the gate arithmetic (adding
it to the hoisted array instead measured 1.5x slower on XLA:CPU). Its custom VJP
scans backwards carrying only ``(dh, dc)`` and emits the gate pre-activation
gradients ``da`` per step, one chunk of steps at a time
(``common.backward_chunks``); after each chunk's loop, ``dU``, ``dW`` and ``dx``
are one matmul each over that chunk's rows and ``db`` one sum, while the chunk's
gradients are in cache. Only the default activations (sigmoid gates, tanh cell)
take this path. ``segment`` runs it once per chunk of steps of the input
(``common.chunked``): the projection then takes ``(chunk, B, 4H)`` floats (at
most ``CHUNK_FLOATS``) instead of ``(T, B, 4H)``, inference included.

``lstm_layer(xs, W, U, ...)`` is what the layers call from ``AUTODIFF_MIN_BATCH``
sequences on: the same forward pass and a different gradient, JAX's VJP of a
loop that projects ``x_t W`` inside it, which accumulates the weight gradients
step by step and measured faster at those batch sizes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._cells.lstm import LSTMState
from .common import (
    LoopOptions,
    backward_chunks,
    bias_or_zeros,
    cast,
    chunked,
    gates_unsupported,
    matmul,
    previous,
    project,
    sum_outer,
)


def _gates(a):
    """i, f, g, o from the pre-activations ``a`` (..., 4H) with a single ``tanh``.

    σ(x) = (1 + tanh(x / 2)) / 2, so one ``tanh`` over all 4H columns (scaled by
    1/2 on the sigmoid gates) gives every gate; on XLA:CPU this fuses into one
    loop where separate ``logistic`` ops over a hoisted input measured up to 2x
    slower. Absolute error against ``jax.nn.sigmoid``: below 1e-7 in float32.
    """
    hidden = a.shape[-1] // 4
    half = jnp.asarray(0.5, a.dtype)
    scale = jnp.concatenate(
        [jnp.full((2 * hidden,), half), jnp.ones((hidden,), a.dtype), jnp.full((hidden,), half)]
    )
    t_i, t_f, g, t_o = jnp.split(jnp.tanh(a * scale), 4, axis=-1)
    return half + half * t_i, half + half * t_f, g, half + half * t_o


def _forward(xw, u, b, h0, c0, mask, opts: LoopOptions, save: bool):
    """Carries ``hs``, ``cs`` after each step (T, B, H) and, with ``save``, the gates (T, B, 4H).

    Only these are stacked per step (each stacked output costs XLA:CPU one more
    op per step); the outputs and the previous carries are derived after the loop.
    """
    u_c = cast(u, opts)

    def body(carry, inp):
        h, c = carry
        xw_t, m = inp
        i, f, g, o = gates = _gates(xw_t + b + matmul(h, u_c, opts, xw_t.dtype))
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        if m is not None:
            h_new, c_new = jnp.where(m, h_new, h), jnp.where(m, c_new, c)
        saved = (c_new, jnp.concatenate(gates, axis=-1)) if save else None
        return (h_new, c_new), (h_new, saved)

    (h, c), (hs, saved) = jax.lax.scan(
        body, (h0, c0), (xw, mask), reverse=opts.reverse, unroll=opts.unroll
    )
    ys = hs if mask is None else jnp.where(mask, hs, 0)
    return ys, h, c, (hs, saved)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def lstm_recurrence(xs, w, u, b, h0, c0, mask, opts: LoopOptions):
    """``(ys, h_T, c_T)``; ``xs`` (T, B, I) projected in one matmul to ``(T, B, 4H)``
    before the loop, ``b`` (4H,), ``mask`` (T, B, 1) bool or None."""
    ys, h, c, _ = _forward(project(xs, w, opts), u, b, h0, c0, mask, opts, save=False)
    return ys, h, c


def _fwd(xs, w, u, b, h0, c0, mask, opts):
    xw = project(xs, w, opts)
    ys, h, c, (hs, (cs, gates)) = _forward(xw, u, b, h0, c0, mask, opts, save=True)
    h_prev = previous(hs, h0, opts.reverse)  # (T, B, H): the carries each step read
    c_prev = previous(cs, c0, opts.reverse)
    return (ys, h, c), (xs, w, u, mask, (h_prev, c_prev, gates))


def _bwd(opts, saved, cotangents):
    xs, w, u, mask, res = saved
    dys, dh_T, dc_T = cotangents
    u_t, w_t = cast(u.T, opts), cast(w.T, opts)

    def step(carry, inp):
        dh, dc = carry
        dy, m, (c_prev, gates) = inp
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        dh_new, dc_new = dh + dy, dc
        if m is not None:  # a skipped step passes the gradient straight through
            dh_new, dc_new = jnp.where(m, dh_new, 0), jnp.where(m, dc, 0)
        tc = jnp.tanh(f * c_prev + i * g)  # recomputed: one array less to store
        dc_tot = dc_new + dh_new * o * (1 - tc * tc)
        da = jnp.concatenate(
            [
                dc_tot * g * i * (1 - i),
                dc_tot * c_prev * f * (1 - f),
                dc_tot * i * (1 - g * g),
                dh_new * tc * o * (1 - o),
            ],
            axis=-1,
        )
        dh_prev = matmul(da, u_t, opts, da.dtype)
        dc_prev = dc_tot * f
        if m is not None:
            dh_prev = dh_prev + jnp.where(m, 0, dh)
            dc_prev = dc_prev + jnp.where(m, 0, dc)
        return (dh_prev, dc_prev), da

    def chunk(carry, xs, dys, mask, res):  # one chunk's steps, last to first
        dhc, (dw, du, db) = carry
        h_prev, c_prev, gates = res
        dhc, da = jax.lax.scan(
            step, dhc, (dys, mask, (c_prev, gates)), reverse=not opts.reverse, unroll=opts.unroll
        )
        dw, du = dw + sum_outer(xs, da, opts), du + sum_outer(h_prev, da, opts)
        return (dhc, (dw, du, db + da.sum(axis=(0, 1)))), matmul(da, w_t, opts, da.dtype)

    zeros = (jnp.zeros_like(w), jnp.zeros_like(u), jnp.zeros_like(w[0]))
    ((dh0, dc0), (dw, du, db)), dxs = backward_chunks(
        chunk, ((dh_T, dc_T), zeros), (xs, dys, mask, res), w.shape[-1], opts
    )
    return dxs, dw, du, db, dh0, dc0, None


lstm_recurrence.defvjp(_fwd, _bwd)


# From this batch size on, training takes JAX's autodiff of a loop that projects
# x_t W inside it (``lstm_layer``). Training step time, autodiff / hand-written, on
# a 2-core XLA:CPU (``python benchmarks/lstm_backward.py``), (B, T, I, H):
# (64, 28, 28, 128) 0.90, (64, 100, 128, 256) 0.93, (128, 28, 28, 128) 0.81,
# (256, 28, 28, 64) 0.77; but (32, 100, 32, 128) 1.15 and (16, 200, 8, 64) 1.01.
# Re-measured with the chunked hand-written pass (same script, 15 reps, busy machine):
# (64, 28, 28, 128) 0.90, (128, 28, 28, 128) 0.92, (256, 28, 28, 64) 0.89; (64, 100, 128,
# 256) 1.04, (128, 100, 32, 64) 1.08; (32, 100, 32, 128) 1.37, (16, 200, 8, 64) 1.12.
# Within noise of the switch either way at T = 100 and B >= 64, so it stays.
AUTODIFF_MIN_BATCH = 64


def _project_in_loop(xs, w, u, b, h0, c0, mask, opts: LoopOptions):
    """The same recurrence with ``x_t W`` computed inside the loop, for autodiff.

    Differentiated by JAX, its backward loop accumulates ``dW``, ``dU`` and ``db``
    step by step while the step's values are in cache, instead of one pass over
    the stored ``(T, B, 4H)`` gate gradients after the loop, which at large
    batches costs more than it saves.
    """
    w_c, u_c = cast(w, opts), cast(u, opts)

    def body(carry, inp):
        h, c = carry
        x_t, m = inp
        a = matmul(x_t, w_c, opts, h.dtype) + b + matmul(h, u_c, opts, h.dtype)
        # separate sigmoids here: with the one-tanh form of ``_gates`` XLA:CPU's
        # backward loop measured 1.4x slower once the outputs are transposed to
        # batch-major (as every batch-major layer call does)
        a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
        i, f, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jax.nn.sigmoid(a_o)
        g = jnp.tanh(a_g)
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        if m is not None:
            h_new, c_new = jnp.where(m, h_new, h), jnp.where(m, c_new, c)
        return (h_new, c_new), h_new

    (h, c), hs = jax.lax.scan(body, (h0, c0), (xs, mask), reverse=opts.reverse, unroll=opts.unroll)
    ys = hs if mask is None else jnp.where(mask, hs, 0)
    return ys, h, c


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def lstm_layer(xs, w, u, b, h0, c0, mask, opts: LoopOptions):
    """``(ys, h_T, c_T)`` from time-major ``xs`` (T, B, I): the fused forward pass
    (projection chunk by chunk, ``lstm_recurrence``) and, when differentiated, the VJP
    of ``_project_in_loop`` over all steps (see ``AUTODIFF_MIN_BATCH``), which projects
    inside its loop already and so is not chunked."""

    def run(carry, xs, mask):
        h, c = carry
        ys, h, c = lstm_recurrence(xs, w, u, b, h, c, mask, opts)
        return (h, c), ys

    (h, c), ys = chunked(run, (h0, c0), (xs, mask), u.shape[-1], opts)
    return ys, h, c


def _layer_fwd(xs, w, u, b, h0, c0, mask, opts):
    def run(xs, w, u, b, h0, c0):
        return _project_in_loop(xs, w, u, b, h0, c0, mask, opts)

    return jax.vjp(run, xs, w, u, b, h0, c0)


def _layer_bwd(opts, vjp, cotangents):
    return (*vjp(cotangents), None)


lstm_layer.defvjp(_layer_fwd, _layer_bwd)


def unsupported(step_kwargs: dict, where: str) -> str | None:
    """Why this recurrence cannot run the step's options, or None."""
    return gates_unsupported(step_kwargs, where)


def segment(step_kwargs: dict, params, carry: LSTMState, xs, mask, opts: LoopOptions):
    """``(LSTMState(h_T, c_T), ys)`` of ``lstm_step`` over time-major ``xs`` (T, B, I):
    from ``opts.autodiff_min_batch`` sequences on, ``lstm_layer``'s autodiff gradient
    (not when ``opts.partitioned``: see ``dispatch.partitioned``)."""
    w, u = params.kernel, params.recurrent_kernel
    b = bias_or_zeros(params.bias, w)
    if xs.shape[1] >= opts.autodiff_min_batch and not opts.partitioned:
        ys, h, c = lstm_layer(xs, w, u, b, carry.h, carry.c, mask, opts)
        return LSTMState(h, c), ys

    def run(carry, xs, mask):  # one chunk: its projection (chunk, B, 4H), then its loop
        ys, h, c = lstm_recurrence(xs, w, u, b, carry.h, carry.c, mask, opts)
        return LSTMState(h, c), ys

    return chunked(run, carry, (xs, mask), u.shape[-1], opts)
