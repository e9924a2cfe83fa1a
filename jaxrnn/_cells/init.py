"""Drawing initial weights in any floating dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def draw(init, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """``init(key, shape, dtype)``; half-precision weights are drawn in float32 and cast.

    (XLA:CPU has no QR for bfloat16/float16, so ``orthogonal`` would fail there.)
    """
    if jnp.finfo(dtype).bits < 32:
        return init(key, shape, jnp.float32).astype(dtype)
    return init(key, shape, dtype)
