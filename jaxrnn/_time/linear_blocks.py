"""Linear recurrences with matrix coefficients: ``s_t = A_t s_{t-1} + b_t``.

The Newton methods (``newton.py``) solve one of these per iteration, composing
the pairs ``(A_t, b_t)`` with::

    (A, b) ∘ (A', b') = (A' A, A' b + b')        (the earlier pair on the left)

in one of two orders (as ``linear.diagonal`` for diagonal ``A_t``):

* ``"associative"``: ``lax.associative_scan``, O(log T) depth, O(T) products;
* ``"chunked"``: one scan of C ≈ √T steps over all T/C chunks at once (running
  products and states from a zero state), one scan over the chunks carrying the
  true state, and a fix-up: C + T/C dependent steps.

Two structures of ``A_t``:

* ``blocks``: ``A_t`` is a ``k × k`` block matrix of diagonal ``H × H`` blocks,
  stored ``(k, k, T, ..., H)``, acting on states ``(k, T, ..., H)``:
  ``(A s)_i = Σ_j A_ij ⊙ s_j``. ``k = 2`` couples the ``(h_i, c_i)`` of each LSTM
  unit. (``k = 1``, a diagonal, is ``linear.diagonal``.)
* ``dense``: ``A_t`` is ``(T, ..., D, D)``, acting on ``(..., D)`` by ``A @ s``.

``reverse=True`` runs from ``t = T-1`` down to 0 (``s_t = A_t s_{t+1} + b_t``),
the states staying aligned with the inputs, as ``lax.scan(reverse=True)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .linear import chunk_length

METHODS = ("associative", "chunked")


def blocks(
    a: jax.Array, b: jax.Array, s0: jax.Array, *, method: str = "associative", reverse: bool = False
) -> jax.Array:
    """All states of ``s_t = A_t s_{t-1} + b_t`` for ``k × k`` blocks of diagonals.

    The block axes come first: every product is then elementwise on contiguous
    ``(T, ..., H)`` slices, which XLA fuses (with the block axes last, the sums
    over them run ~6x slower on CPU).

    Args:
        a: ``(k, k, T, ..., H)``: ``a[i, j, t]`` is the diagonal of block ``(i, j)``.
        b: ``(k, T, ..., H)``.
        s0: ``(k, ..., H)``, the state before the first step.
        method: ``"associative"`` or ``"chunked"`` (see the module docstring).
        reverse: run from the end of the sequence.

    Returns:
        ``(k, T, ..., H)``.

    Examples:
        >>> a = jnp.ones((2, 2, 3, 1)).at[1, 0].set(0.0)  # [[1, 1], [0, 1]]: one unit
        >>> blocks(a, jnp.ones((2, 3, 1)), jnp.zeros((2, 1)))[..., 0]  # (s1 + s2 + 1, s2 + 1)
        Array([[1., 3., 6.],
               [1., 2., 3.]], dtype=float32)
    """
    if method not in METHODS:
        raise ValueError(f"linear_blocks: unknown method={method!r}; use one of {METHODS}.")
    k = a.shape[0]
    if b.shape[1] == 0:
        return b
    if method == "associative":  # the pairs (a, b[:, None]): time is axis 2 of both
        a_, b_ = (jnp.flip(a, 2), jnp.flip(b, 1)) if reverse else (a, b)
        b_ = b_.at[:, 0].add(_blocks_apply(a_[:, :, 0], s0))[:, None]
        s = jax.lax.associative_scan(_blocks_combine, (a_, b_), axis=2)[1][:, 0]
        return jnp.flip(s, 1) if reverse else s
    # the generic chunked solve over time-leading leaves, one per block entry
    a_t = tuple(tuple(a[i, j] for j in range(k)) for i in range(k))
    eye = tuple(tuple(float(i == j) for j in range(k)) for i in range(k))
    s = _solve(_tuple_combine, _tuple_apply, eye, a_t, tuple(b), tuple(s0), method, reverse)
    return jnp.stack(s)


def dense(
    a: jax.Array, b: jax.Array, s0: jax.Array, *, method: str = "associative", reverse: bool = False
) -> jax.Array:
    """All states of ``s_t = A_t s_{t-1} + b_t`` for dense ``A_t``.

    Args:
        a: ``(T, ..., D, D)``.
        b: ``(T, ..., D)``.
        s0: ``(..., D)``.
        method: ``"associative"`` or ``"chunked"``.
        reverse: run from the end of the sequence.

    Returns:
        ``(T, ..., D)``.

    Examples:
        >>> a = jnp.broadcast_to(jnp.array([[0.0, 1.0], [1.0, 0.0]]), (3, 2, 2))  # swap
        >>> dense(a, jnp.zeros((3, 2)), jnp.array([1.0, 2.0]))
        Array([[2., 1.],
               [1., 2.],
               [2., 1.]], dtype=float32)
    """
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    return _solve(_dense_combine, _dense_apply, eye, a, b, s0, method, reverse)


def _blocks_apply(a, s):  # (k, k, ...) · (k, ...) -> (k, ...): (A s)_i = Σ_j A_ij ⊙ s_j
    k = a.shape[0]
    return jnp.stack([sum(a[i, j] * s[j] for j in range(k)) for i in range(k)])


def _blocks_combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    k = a1.shape[0]
    a = jnp.stack(
        [
            jnp.stack([sum(a2[i, m] * a1[m, j] for m in range(k)) for j in range(k)])
            for i in range(k)
        ]
    )
    return a, _blocks_apply(a2, b1) + b2


def _tuple_apply(a, s):  # the same on tuples of arrays
    return tuple(sum(a_ij * s_j for a_ij, s_j in zip(row, s, strict=True)) for row in a)


def _tuple_combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    k = len(a1)
    a = tuple(tuple(sum(a2[i][m] * a1[m][j] for m in range(k)) for j in range(k)) for i in range(k))
    return a, tuple(x + y for x, y in zip(_tuple_apply(a2, b1), b2, strict=True))


def _dense_apply(a, s):
    return jnp.einsum("...ij,...j->...i", a, s)


def _dense_combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 @ a1, _dense_apply(a2, b1) + b2


def _solve(combine, apply, eye, a, b, s0, method, reverse):
    """``a``, ``b``, ``s0`` are pytrees (arrays, or the blocks' tuples); ``eye`` is ``a``'s
    identity, broadcastable to one step of it."""
    if method not in METHODS:
        raise ValueError(f"linear_blocks: unknown method={method!r}; use one of {METHODS}.")
    if jax.tree.leaves(b)[0].shape[0] == 0:
        return b
    if reverse:
        a, b = _flip(a), _flip(b)
    if method == "associative":
        first = jax.tree.map(lambda x: x[0], a)
        b0 = jax.tree.map(lambda x, y: x[0] + y, b, apply(first, s0))  # fold in the initial state
        b = jax.tree.map(lambda x, y: x.at[0].set(y), b, b0)
        s = jax.lax.associative_scan(combine, (a, b))[1]
    else:
        s = _chunked(combine, apply, eye, a, b, s0)
    return _flip(s) if reverse else s


def _flip(tree):
    return jax.tree.map(lambda x: jnp.flip(x, 0), tree)


def _chunked(combine, apply, eye, a, b, s0):
    """As ``linear.diagonal``'s ``"chunked"``: C steps for all chunks, then T/C across."""
    num_steps = jax.tree.leaves(b)[0].shape[0]
    chunk = chunk_length(num_steps)
    n = -(-num_steps // chunk)
    pad = n * chunk - num_steps

    def split(x, fill):  # (T, ...) -> (C, n, ...), padded with identity steps at the end
        if pad:
            x = jnp.concatenate([x, jnp.broadcast_to(fill, (pad, *x.shape[1:])).astype(x.dtype)])
        return jnp.swapaxes(x.reshape(n, chunk, *x.shape[1:]), 0, 1)

    a_c = jax.tree.map(split, a, eye)
    b_c = jax.tree.map(lambda x: split(x, 0.0), b)

    def within(carry, ab):  # the running products and states of every chunk
        carry = combine(carry, ab)
        return carry, carry

    first = jax.tree.map(lambda x, e: jnp.broadcast_to(e, x.shape[1:]).astype(x.dtype), a_c, eye)
    start = (first, jax.tree.map(lambda x: jnp.zeros_like(x[0]), b_c))
    (p_last, s_last), (p, s) = jax.lax.scan(within, start, (a_c, b_c))

    def across(h, ps):
        return jax.tree.map(jnp.add, apply(ps[0], h), ps[1]), h

    _, h_in = jax.lax.scan(across, s0, (p_last, s_last))  # the state entering each chunk
    h_in = jax.tree.map(lambda x: x[None], h_in)
    hs = jax.tree.map(jnp.add, s, apply(p, h_in))  # (C, n, ...)

    def merge(x):
        return jnp.swapaxes(x, 0, 1).reshape(n * chunk, *x.shape[2:])[:num_steps]

    return jax.tree.map(merge, hs)
