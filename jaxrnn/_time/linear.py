"""Diagonal linear recurrences over time: ``h_t = a_t ⊙ h_{t-1} + b_t``.

Three exact algorithms, differing only in how the T dependent steps are ordered:

* ``"sequential"``: ``lax.scan`` of the step, T iterations;
* ``"associative"``: ``lax.associative_scan`` over the pairs ``(a_t, b_t)`` with
  ``(a, b) ∘ (a', b') = (a a', a' b + b')``: O(log T) depth, O(T log T) work;
* ``"chunked"``: the sequence cut into chunks of C steps. One scan of C steps
  runs every chunk at once from a zero state, carrying the running products
  ``P_k = a_k ⋯ a_1`` and states ``s_k``; a scan over the T/C chunks then carries
  the true state across chunks, and ``h = s + P ⊙ h_in`` fixes every step up.
  C + T/C sequential steps instead of T, each over T/C (or C) times more data.
  It only multiplies, never divides, so small ``a`` underflow to exact zeros
  instead of overflowing (as a cumulative-product ratio would).

The gradient is the adjoint recurrence, itself diagonal and linear, solved by the
same algorithm in the other direction::

    λ_t = g_t + a_{t+1} ⊙ λ_{t+1}      ∂b_t = λ_t      ∂a_t = λ_t ⊙ h_{t-1}      ∂h0 = a_0 ⊙ λ_0

so no intermediate of the solver is stored for the backward pass: only ``a`` and
the states ``h``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

METHODS = ("sequential", "associative", "chunked")


def diagonal(a, b, h0, *, method: str = "chunked", reverse: bool = False, chunk: int = 0):
    """All states of ``h_t = a_t ⊙ h_{t-1} + b_t`` (time-major), ``h_{-1} = h0``.

    Args:
        a, b: ``(T, *rest)`` coefficients and inputs.
        h0: ``rest``, the state before the first step.
        method: ``"sequential"``, ``"associative"`` or ``"chunked"``.
        reverse: run from ``t = T-1`` down to 0 (``h_t = a_t h_{t+1} + b_t``);
            the states stay aligned with the inputs, as ``lax.scan(reverse=True)``.
        chunk: the chunk length for ``"chunked"`` (0: about √T).

    Returns:
        ``hs`` ``(T, *rest)``; the final state is ``hs[-1]`` (``hs[0]`` if reverse).

    Examples:
        >>> a = jnp.full((4, 1), 0.5); b = jnp.ones((4, 1))
        >>> diagonal(a, b, jnp.zeros(1), method="associative")[:, 0]
        Array([1.   , 1.5  , 1.75 , 1.875], dtype=float32)
    """
    if method not in METHODS:
        raise ValueError(f"diagonal: unknown method={method!r}; use one of {METHODS}.")
    return _diagonal(method, reverse, chunk, a, b, h0)


def chunk_length(num_steps: int) -> int:
    """The default chunk: ⌈√T⌉, which minimises the C + T/C sequential steps."""
    return max(1, math.isqrt(max(num_steps - 1, 0)) + 1)


def _solve(method, reverse, chunk, a, b, h0):
    if a.shape[0] == 0:
        return b
    if method == "sequential":
        return _sequential(a, b, h0, reverse)
    if reverse:
        return jnp.flip(_solve(method, False, chunk, jnp.flip(a, 0), jnp.flip(b, 0), h0), 0)
    if method == "associative":
        return _associative(a, b, h0)
    return _chunked(a, b, h0, chunk or chunk_length(a.shape[0]))


def _sequential(a, b, h0, reverse):
    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(step, h0, (a, b), reverse=reverse)[1]


def _adjoint_sequential(a, g, reverse):
    """``λ_t = g_t + a_{t+1} λ_{t+1}`` (forward recurrence) in one scan, and
    ``a_0 λ_0``: the carry is ``a_t λ_t``, so no shifted copy of ``a`` is made."""

    def step(c, ag):
        lam = ag[1] + c
        return ag[0] * lam, lam

    first, lam = jax.lax.scan(step, jnp.zeros_like(g[0]), (a, g), reverse=not reverse)
    return lam, first


def _combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def _associative(a, b, h0):
    b = b.at[0].add(a[0] * h0)  # fold the initial state into the first input
    return jax.lax.associative_scan(_combine, (a, b))[1]


def _chunked(a, b, h0, chunk):
    num_steps = a.shape[0]
    n = -(-num_steps // chunk)
    pad = n * chunk - num_steps
    if pad:  # identity steps at the end: a = 1, b = 0
        widths = [(0, pad)] + [(0, 0)] * (a.ndim - 1)
        a = jnp.pad(a, widths, constant_values=1)
        b = jnp.pad(b, widths)
    rest = a.shape[1:]
    # (C, n, *rest): the inner scan runs over the position within a chunk, for all chunks
    a_c = jnp.swapaxes(a.reshape(n, chunk, *rest), 0, 1)
    b_c = jnp.swapaxes(b.reshape(n, chunk, *rest), 0, 1)

    def within(carry, ab):
        p, s = carry
        p, s = ab[0] * p, ab[0] * s + ab[1]
        return (p, s), (p, s)

    ones = jnp.ones((n, *rest), a.dtype)
    (p_last, s_last), (p, s) = jax.lax.scan(within, (ones, jnp.zeros_like(ones)), (a_c, b_c))

    def across(h, ps):
        return ps[0] * h + ps[1], h

    _, h_in = jax.lax.scan(across, h0, (p_last, s_last))  # the state entering each chunk
    hs = s + p * h_in[None]  # (C, n, *rest)
    return jnp.swapaxes(hs, 0, 1).reshape(n * chunk, *rest)[:num_steps]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _diagonal(method, reverse, chunk, a, b, h0):
    return _solve(method, reverse, chunk, a, b, h0)


def _diagonal_fwd(method, reverse, chunk, a, b, h0):
    hs = _solve(method, reverse, chunk, a, b, h0)
    return hs, (a, hs, h0)


def _diagonal_bwd(method, reverse, chunk, res, g):
    a, hs, h0 = res
    if a.shape[0] == 0:
        return jnp.zeros_like(a), g, jnp.zeros_like(h0)
    if reverse:  # the state before step t is h_{t+1}; the adjoint runs forward
        prev = jnp.concatenate([hs[1:], h0[None]], 0)
    else:
        prev = jnp.concatenate([h0[None], hs[:-1]], 0)
    if method == "sequential":
        lam, dh0 = _adjoint_sequential(a, g, reverse)
    else:
        if reverse:
            a_next = jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]], 0)
        else:
            a_next = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])], 0)
        lam = _solve(method, not reverse, chunk, a_next, g, jnp.zeros_like(h0))
        first = -1 if reverse else 0
        dh0 = a[first] * lam[first]
    return lam * prev, lam, dh0


_diagonal.defvjp(_diagonal_fwd, _diagonal_bwd)
