"""The minGRU cell (Feng et al. 2024, "Were RNNs All We Needed?"), gate order z, h̃.

Neither gate reads the state, so the recurrence is linear in ``h``::

    h_t = a_t ⊙ h_{t-1} + b_t      a_t = 1 − z_t,   b_t = z_t ⊙ h̃_t

and a whole sequence can be evaluated with an associative scan (``jaxrnn._time``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers

from .._checks import check_hidden, check_step
from .._dropout import masked_matmul
from .init import draw
from .spec import CellSpec, register


class MinGRUParams(NamedTuple):
    """Parameters of a minGRU cell, Keras layout, gates ``z, h̃`` along the last axis.

    There is no recurrent kernel: both gates are projections of the input only.
    """

    kernel: jax.Array  # (I, 2H)
    bias: jax.Array | None  # (2H,) or None


def init_min_gru(
    key: jax.Array, input_size: int, hidden_size: int, *, dtype=jnp.float32, use_bias: bool = True,
    kernel_init=initializers.glorot_uniform(), bias_init=initializers.zeros,
) -> MinGRUParams:  # fmt: skip
    """Initialise a minGRU cell with Keras' defaults for a dense kernel (Glorot
    uniform, zero bias).

    Examples:
        >>> p = init_min_gru(jax.random.key(0), 3, 2)
        >>> p.kernel.shape, p.bias.shape
        ((3, 4), (4,))
    """
    return init_min(MinGRUParams, 2, key, input_size, hidden_size, dtype, use_bias,
                    kernel_init, bias_init)  # fmt: skip


def init_min(params_type, gates, key, input_size, hidden_size, dtype, use_bias, kernel_init,
             bias_init):  # fmt: skip
    """A min cell's ``params_type(kernel (I, G·H), bias (G·H,) or None)``."""
    k_w, k_b = jax.random.split(key)
    gh = gates * hidden_size
    return params_type(
        kernel=draw(kernel_init, k_w, (input_size, gh), dtype),
        bias=draw(bias_init, k_b, (gh,), dtype) if use_bias else None,
    )


def min_gru_coefficients(k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(a, b)`` of ``h_t = a ⊙ h_{t-1} + b`` from the pre-activations ``k = x W + bias``::

        z = σ(k_z)      a = 1 − z = σ(−k_z)      b = z ⊙ h̃,   h̃ = k_h

    ``k`` is ``(..., 2H)``; ``a``, ``b`` are ``(..., H)``.

    Examples:
        >>> a, b = min_gru_coefficients(jnp.array([0.0, 2.0]))
        >>> a, b
        (Array([0.5], dtype=float32), Array([1.], dtype=float32))
    """
    k_z, k_h = jnp.split(k, 2, axis=-1)
    return jax.nn.sigmoid(-k_z), jax.nn.sigmoid(k_z) * k_h


def min_gru_step(
    params: MinGRUParams,
    carry: jax.Array,
    x: jax.Array,
    *,
    input_mask: jax.Array | None = None,
    recurrent_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One minGRU step::

        z = σ(x W_z + b_z)     h̃ = x W_h + b_h
        h' = (1 − z) ⊙ h + z ⊙ h̃          y = h'

    Args:
        params: ``MinGRUParams``: ``kernel`` ``(I, 2H)``, ``bias`` ``(2H,)`` or None.
        carry: the previous hidden state ``h``, ``(..., H)``.
        x: input ``(..., I)``.
        input_mask: optional dropout mask on ``x`` (shared ``(..., I)`` or per gate
            ``(..., 2, I)``).
        recurrent_mask: must be None: the cell has no recurrent kernel to drop from.

    Returns:
        ``(h', h')``.

    Examples:
        >>> p = init_min_gru(jax.random.key(0), 3, 2)
        >>> h, y = min_gru_step(p, jnp.zeros((4, 2)), jnp.ones((4, 3)))
        >>> y.shape
        (4, 2)
    """
    h = _step_input(params, MinGRUParams, carry, x, recurrent_mask, "min_gru_step")
    a, b = min_gru_coefficients(_preactivations(params, x.astype(h.dtype), input_mask, 2))
    h = a * h + b
    return h, h


def _step_input(params, params_type, carry, x, recurrent_mask, where):
    """Check a min cell's step arguments; return the carry."""
    hidden, dtype = check_step(params, params_type, x, where)
    check_hidden(carry, hidden, dtype, where, "carry")
    if recurrent_mask is not None:
        raise ValueError(
            f"{where}: recurrent_mask must be None: the cell has no recurrent kernel "
            "(recurrent_dropout does not apply to it)."
        )
    return carry


def _preactivations(params, x, input_mask, gates):
    k = masked_matmul(x, params.kernel, input_mask, gates)
    return k if params.bias is None else k + params.bias


SPEC = register(CellSpec(
    kind="min_gru", layer="min_gru", keras="MinGRU", torch=None, gates=2,
    step=min_gru_step, init=init_min_gru, params_type=MinGRUParams, state_fields=("h",),
    state_type=None, options=(), fused="jaxrnn._fused.min_rnn",
    methods=("sequential", "associative", "chunked"), coefficients=min_gru_coefficients,
))  # fmt: skip
