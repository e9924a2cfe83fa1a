"""An orthogonal initialiser that calls no LAPACK kernel (Householder QR in JAX ops).

``jax.nn.initializers.orthogonal`` takes the ``Q`` of a QR decomposition, which
XLA:CPU runs as a LAPACK custom call. In jaxlib 0.10.2 a *batched* LAPACK call
(e.g. a QR under ``vmap``, as when a sweep initialises several configurations)
splits its batch into chunks on XLA:CPU's shared worker pool and blocks until
they finish; when several host devices run such a call at once, every pool
thread can end up waiting for chunks that no thread is left to run, and the
program never returns (seen as the sharded-sweep hang at H >= 54 with two
configurations per device). The QR here is a loop of Householder reflections in
plain JAX ops, so it compiles into the program like any other computation.

It draws the same normal matrix from the same key and applies the same sign
correction (``diag(R) > 0``), so it returns the same matrices as
``jax.nn.initializers.orthogonal`` up to float rounding (tested to 1e-5), with the
same (Haar) distribution.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _householder_q(z: jax.Array) -> jax.Array:
    """The thin ``Q`` ``(M, N)`` of ``z = Q R`` (``M >= N``) with ``diag(R) > 0``.

    Column ``k``: the reflection ``I - 2 v vᵀ`` maps ``A[k:, k]`` onto
    ``alpha e_k`` with ``alpha = -sign(A[k, k]) ||A[k:, k]||``; then
    ``Q = H_0 H_1 ... H_{N-1} [I; 0]`` and each column is multiplied by
    ``sign(alpha_k)`` so that ``R``'s diagonal is positive.
    """
    m, n = z.shape
    rows = jnp.arange(m)

    def reflect(k, carry):
        a, vs = carry
        col = lax.dynamic_index_in_dim(a, k, axis=1, keepdims=False)
        x = jnp.where(rows >= k, col, 0)
        xk = lax.dynamic_index_in_dim(col, k, keepdims=False)
        alpha = -jnp.where(xk >= 0, 1.0, -1.0).astype(a.dtype) * jnp.sqrt(jnp.sum(x * x))
        v = x - alpha * (rows == k).astype(a.dtype)
        norm = jnp.sqrt(jnp.sum(v * v))
        v = jnp.where(norm > 0, v / jnp.where(norm > 0, norm, 1), 0)
        a = a - 2 * jnp.outer(v, v @ a)
        return a, lax.dynamic_update_index_in_dim(vs, v, k, axis=1)

    r, vs = lax.fori_loop(0, n, reflect, (z, jnp.zeros_like(z)))

    def apply(i, q):
        v = lax.dynamic_index_in_dim(vs, n - 1 - i, axis=1, keepdims=False)
        return q - 2 * jnp.outer(v, v @ q)

    q = lax.fori_loop(0, n, apply, jnp.eye(m, n, dtype=z.dtype))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def orthogonal(scale: float = 1.0, column_axis: int = -1):
    """``jax.nn.initializers.orthogonal``, without LAPACK: the default recurrent initialiser.

    ``init(key, shape, dtype)`` draws ``z ~ N(0, 1)`` of shape
    ``(max(n, m), min(n, m))`` (``m = shape[column_axis]``, ``n`` the product of
    the other axes), takes the ``Q`` of ``z = Q R`` with ``diag(R) > 0``
    (Householder reflections), transposes it when ``n < m`` and multiplies by
    ``scale``: rows or columns orthonormal, whichever are fewer.

    Args:
        scale: multiplies the matrix (Keras' ``gain``).
        column_axis: the axis holding the columns.

    Returns:
        An initialiser ``init(key, shape, dtype=jnp.float32)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> u = orthogonal()(jax.random.key(0), (4, 16))      # an LSTM's U for H = 4: (H, 4H)
        >>> bool(jnp.allclose(u @ u.T, jnp.eye(4), atol=1e-5))
        True
        >>> ref = jax.nn.initializers.orthogonal()(jax.random.key(0), (4, 16))
        >>> bool(jnp.allclose(u, ref, atol=1e-5))
        True
    """

    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(
                f"orthogonal: shape={tuple(shape)}; an orthogonal matrix needs at least 2 axes."
            )
        return _orthogonal(key, tuple(shape), jnp.dtype(dtype), float(scale), column_axis)

    return init


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _orthogonal(key, shape, dtype, scale, column_axis):
    """The initialiser's computation, compiled once per shape (inlined under an outer jit)."""
    cols = shape[column_axis]
    rows = math.prod(shape) // cols
    z = jax.random.normal(key, (max(rows, cols), min(rows, cols)), dtype)
    q = _householder_q(z)
    q = q.T if rows < cols else q  # (rows, cols)
    q = jnp.reshape(q, tuple(np.delete(shape, column_axis)) + (cols,))
    return jnp.asarray(scale, dtype) * jnp.moveaxis(q, -1, column_axis)
