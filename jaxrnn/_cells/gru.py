"""The GRU cell (Cho et al.), gate order z, r, n (Keras' z, r, h).

Two function classes exist. ``reset_after=True`` (default; PyTorch, cuDNN and
Keras' default) applies the reset gate after the recurrent matmul and has a
separate recurrent bias; ``reset_after=False`` (Keras' other variant, TF1,
Haiku) applies it to ``h`` before the matmul.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers

from .._checks import check_hidden, check_step
from .._dropout import masked_matmul
from .activations import Activation, get_activation
from .init import draw
from .orthogonal import orthogonal
from .spec import CellSpec, register


class GRUParams(NamedTuple):
    """Parameters of a GRU cell, Keras layout, gates ``z, r, n`` along the last axis.

    ``bias`` is added to ``x W``; ``recurrent_bias`` to ``h U`` (inside the reset
    gate for ``n`` when ``reset_after=True``). Keras' ``reset_after=True`` bias
    ``(2, 3H)`` is ``(bias, recurrent_bias)``; PyTorch's ``bias_ih``/``bias_hh``
    map to them after reordering ``r, z, n`` to ``z, r, n``.
    """

    kernel: jax.Array  # (I, 3H)
    recurrent_kernel: jax.Array  # (H, 3H)
    bias: jax.Array | None  # (3H,) or None
    recurrent_bias: jax.Array | None  # (3H,) or None


def init_gru(
    key: jax.Array, input_size: int, hidden_size: int, *, dtype=jnp.float32, use_bias: bool = True,
    reset_after: bool = True,
    kernel_init=initializers.glorot_uniform(), recurrent_init=orthogonal(),
    bias_init=initializers.zeros,
) -> GRUParams:  # fmt: skip
    """Initialise a GRU cell with Keras' defaults.

    With ``reset_after=True`` both biases are created (Keras' ``(2, 3H)`` bias);
    with ``reset_after=False`` only ``bias`` (Keras' ``(3H,)``), and
    ``recurrent_bias`` is None.

    Examples:
        >>> p = init_gru(jax.random.key(0), 3, 2)
        >>> p.kernel.shape, p.recurrent_bias.shape
        ((3, 6), (6,))
    """
    k_w, k_u, k_b, k_rb = jax.random.split(key, 4)
    h3 = 3 * hidden_size
    return GRUParams(
        kernel=draw(kernel_init, k_w, (input_size, h3), dtype),
        recurrent_kernel=draw(recurrent_init, k_u, (hidden_size, h3), dtype),
        bias=draw(bias_init, k_b, (h3,), dtype) if use_bias else None,
        recurrent_bias=draw(bias_init, k_rb, (h3,), dtype) if use_bias and reset_after else None,
    )


def gru_step(
    params: GRUParams,
    carry: jax.Array,
    x: jax.Array,
    *,
    activation: str | Activation = jnp.tanh,
    recurrent_activation: str | Activation = jax.nn.sigmoid,
    reset_after: bool = True,
    input_mask: jax.Array | None = None,
    recurrent_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One GRU step::

        z = σ(x W_z + b_z + h U_z + β_z)     r = σ(x W_r + b_r + h U_r + β_r)
        reset_after=True:   n = act(x W_n + b_n + r ⊙ (h U_n + β_n))
        reset_after=False:  n = act(x W_n + b_n + (r ⊙ h) U_n + β_n)
        h' = z ⊙ h + (1 − z) ⊙ n            y = h'

    with ``b`` = ``bias``, ``β`` = ``recurrent_bias`` (zero when None),
    σ = ``recurrent_activation``, act = ``activation``. ``h' = z h + (1 − z) n``
    is PyTorch's ``(1 − z) n + z h``.

    Args:
        params: ``GRUParams``: ``kernel`` ``(I, 3H)``, ``recurrent_kernel``
            ``(H, 3H)``, ``bias`` and ``recurrent_bias`` ``(3H,)`` or None.
        carry: the previous hidden state ``h``, ``(..., H)``.
        x: input ``(..., I)``.
        reset_after: which GRU (see the module docstring).
        input_mask: optional dropout mask for ``x``, shared ``(..., I)`` or per
            gate ``(..., 3, I)``.
        recurrent_mask: optional dropout mask for ``h``, shared ``(..., H)`` or per
            gate ``(..., 3, H)``; as in Keras, the masked ``h`` feeds the matmuls
            only, the interpolation uses the unmasked ``h``.

    Returns:
        ``(h', h')``.

    Examples:
        >>> p = init_gru(jax.random.key(0), 3, 2)
        >>> h, y = gru_step(p, jnp.zeros((4, 2)), jnp.ones((4, 3)))
        >>> y.shape
        (4, 2)
    """
    where = "gru_step"
    hidden, dtype = check_step(params, GRUParams, x, where)
    check_hidden(carry, hidden, dtype, where, "carry")
    act = get_activation(activation, where=where, arg="activation")
    rec_act = get_activation(recurrent_activation, where=where, arg="recurrent_activation")
    x = x.astype(dtype)
    h = carry
    u = params.recurrent_kernel
    ax = masked_matmul(x, params.kernel, input_mask, 3)
    if params.bias is not None:
        ax = ax + params.bias
    ax_z, ax_r, ax_n = jnp.split(ax, 3, axis=-1)
    if reset_after:
        ah = masked_matmul(h, u, recurrent_mask, 3)
        if params.recurrent_bias is not None:
            ah = ah + params.recurrent_bias
        ah_z, ah_r, ah_n = jnp.split(ah, 3, axis=-1)
        z, r = rec_act(ax_z + ah_z), rec_act(ax_r + ah_r)
        n = act(ax_n + r * ah_n)
    else:
        shared = recurrent_mask is None or recurrent_mask.ndim == h.ndim
        m_zr = recurrent_mask if shared else recurrent_mask[..., :2, :]
        ah_zr = masked_matmul(h, u[:, : 2 * hidden], m_zr, 2)
        h_n = (
            h
            if recurrent_mask is None
            else h * (recurrent_mask if shared else recurrent_mask[..., 2, :])
        )
        rb = params.recurrent_bias
        if rb is not None:
            ah_zr = ah_zr + rb[: 2 * hidden]
        ah_z, ah_r = jnp.split(ah_zr, 2, axis=-1)
        z, r = rec_act(ax_z + ah_z), rec_act(ax_r + ah_r)
        ah_n = (r * h_n) @ u[:, 2 * hidden :]
        if rb is not None:
            ah_n = ah_n + rb[2 * hidden :]
        n = act(ax_n + ah_n)
    h = z * h + (1.0 - z) * n
    return h, h


SPEC = register(CellSpec(
    kind="gru", layer="gru", keras="GRU", torch="GRU", gates=3,
    step=gru_step, init=init_gru, params_type=GRUParams, state_fields=("h",), state_type=None,
    options=("activation", "recurrent_activation", "reset_after"), init_options=("reset_after",),
    fused="jaxrnn._fused.gru",
    methods=("sequential", "quasi_deer", "deer"),
))  # fmt: skip
