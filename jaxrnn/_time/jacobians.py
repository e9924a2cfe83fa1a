"""Closed-form Jacobians of the built-in cells' steps with respect to their state.

For the Newton methods (``newton.py``) each cell gives its new state ``s'`` and
``J = ∂s'/∂s`` in one pass over the gates, in one of two structures:

* ``"blocks"`` (quasi-DEER): for each unit ``i``, the ``k × k`` block coupling the
  ``k`` state fields of that unit with each other: ``(T, ..., k, k, H)``, entry
  ``[..., a, b, i] = ∂s'_a[i] / ∂s_b[i]``. ``k = 1`` (SimpleRNN, GRU) is the
  diagonal of ``J``; ``k = 2`` (LSTM) the ``(h_i, c_i)`` blocks. The rest of
  ``J`` (unit ``i`` reading unit ``j ≠ i`` through the recurrent kernel) is dropped.
* ``"dense"`` (DEER): all of ``J``, ``(..., D, D)`` with ``D = k·H``, the state
  fields concatenated in ``spec.state_fields`` order (``[h | c]``), entry
  ``[..., a, b] = ∂s'_a / ∂s_b``.

With the recurrent kernel in Keras layout (``h @ U``), ``∂(h U)_k / ∂h_j = U[j, k]``,
so a dense block is ``w[..., :, None] * U.T`` for the per-unit factor ``w`` of the
output, and its diagonal ``w * diag(U)``. The activations may be any elementwise
callable: their slopes come from ``jax.jvp`` with a tangent of ones, never from a
hard-coded ``1 - tanh²``.

The steps read the input through ``x W`` only, which does not depend on the state:
``project`` computes it once per sequence, outside the Newton iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._cells.activations import get_activation

STRUCTURES = ("blocks", "dense")


class Linearisation(NamedTuple):
    """A step's new state and its Jacobian with respect to the old one."""

    state: tuple  # the new state's fields, each (..., H)
    jac: jax.Array  # "blocks": (k, k, ..., H); "dense": (..., k·H, k·H)


def project(params: Any, xs: jax.Array) -> jax.Array:
    """``x W``, the part of every built-in cell's pre-activations without the state.

    Examples:
        >>> import jaxrnn
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> project(p, jnp.ones((5, 2, 3))).shape
        (5, 2, 12)
    """
    return xs.astype(params.kernel.dtype) @ params.kernel


def slope(act: Callable, a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(act(a), act'(a))`` for an elementwise activation, by one ``jax.jvp``.

    Examples:
        >>> slope(jnp.tanh, jnp.zeros(2))
        (Array([0., 0.], dtype=float32), Array([1., 1.], dtype=float32))
    """
    return jax.jvp(act, (a,), (jnp.ones_like(a),))


def rnn(params, xw, h, *, structure: str, activation=jnp.tanh) -> Linearisation:
    """SimpleRNN: ``h' = act(a)``, ``a = x W + h U + b``::

        ∂h'_k/∂h_j = act'(a_k) U[j, k]

    Examples:
        >>> import jaxrnn
        >>> p = jaxrnn.init_rnn(jax.random.key(0), 3, 4)
        >>> lin = rnn(p, project(p, jnp.ones((2, 3))), jnp.zeros((2, 4)), structure="blocks")
        >>> lin.state[0].shape, lin.jac.shape
        ((2, 4), (1, 1, 2, 4))
    """
    act = get_activation(activation, where="rnn_step", arg="activation")
    u = params.recurrent_kernel
    a = xw + h @ u
    if params.bias is not None:
        a = a + params.bias
    h_new, da = slope(act, a)
    if structure == "blocks":
        return Linearisation((h_new,), _block(da * jnp.diagonal(u)))
    return Linearisation((h_new,), _rows(da, u))


def lstm(
    params, xw, h, c, *, structure: str, activation=jnp.tanh, recurrent_activation=jax.nn.sigmoid
) -> Linearisation:
    """LSTM, state ``[h | c]``: with ``c' = f c + i g``, ``h' = o act(c')``::

        ∂c'/∂h = (c σ'(a_f)) U_f + (g σ'(a_i)) U_i + (i act'(a_g)) U_g     ∂c'/∂c = f
        ∂h'/∂h = (act(c') σ'(a_o)) U_o + (o act'(c')) ∂c'/∂h                ∂h'/∂c = o act'(c') f

    (a per-unit factor before ``U_*`` scales output unit ``k``: ``w_k U[j, k]``).

    Examples:
        >>> import jaxrnn
        >>> p = jaxrnn.init_lstm(jax.random.key(0), 3, 4)
        >>> z = jnp.zeros((2, 4))
        >>> lstm(p, project(p, jnp.ones((2, 3))), z, z, structure="dense").jac.shape
        (2, 8, 8)
    """
    act = get_activation(activation, where="lstm_step", arg="activation")
    rec_act = get_activation(recurrent_activation, where="lstm_step", arg="recurrent_activation")
    u = params.recurrent_kernel
    a = xw + h @ u
    if params.bias is not None:
        a = a + params.bias
    a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
    (i, di), (f, df), (g, dg), (o, do) = (
        slope(rec_act, a_i),
        slope(rec_act, a_f),
        slope(act, a_g),
        slope(rec_act, a_o),
    )
    c_new = f * c + i * g
    tc, dtc = slope(act, c_new)
    h_new = o * tc
    u_i, u_f, u_g, u_o = jnp.split(u, 4, axis=-1)
    w_i, w_f, w_g, w_o = g * di, c * df, i * dg, tc * do  # the factors of U_i, U_f, U_g, U_o
    dh_dc = o * dtc * f
    if structure == "blocks":
        dc_dh = w_i * jnp.diagonal(u_i) + w_f * jnp.diagonal(u_f) + w_g * jnp.diagonal(u_g)
        dh_dh = w_o * jnp.diagonal(u_o) + o * dtc * dc_dh
        jac = jnp.stack([jnp.stack([dh_dh, dh_dc]), jnp.stack([dc_dh, f])])
        return Linearisation((h_new, c_new), jac)
    dc_dh = _rows(w_i, u_i) + _rows(w_f, u_f) + _rows(w_g, u_g)
    dh_dh = _rows(w_o, u_o) + (o * dtc)[..., :, None] * dc_dh
    top = jnp.concatenate([dh_dh, _diag(dh_dc)], -1)
    bottom = jnp.concatenate([dc_dh, _diag(f)], -1)
    return Linearisation((h_new, c_new), jnp.concatenate([top, bottom], -2))


def gru(
    params,
    xw,
    h,
    *,
    structure: str,
    activation=jnp.tanh,
    recurrent_activation=jax.nn.sigmoid,
    reset_after: bool = True,
) -> Linearisation:
    """GRU: ``h' = z h + (1 − z) n``, ``n = act(x W_n + b_n + q)``::

        ∂h'_k/∂h_j = z_k δ_kj + (h_k − n_k) σ'(a_z,k) U_z[j, k] + (1 − z_k) act'(·)_k ∂q_k/∂h_j
        reset_after=True:   q = r ⊙ (h U_n + β_n)
            ∂q_k/∂h_j = (h U_n + β_n)_k σ'(a_r,k) U_r[j, k] + r_k U_n[j, k]
        reset_after=False:  q = (r ⊙ h) U_n + β_n
            ∂q_k/∂h_j = Σ_m U_r[j, m] σ'(a_r,m) h_m U_n[m, k] + r_j U_n[j, k]

    For ``reset_after=False`` the reset gate sits between two matmuls, so the
    exact diagonal has a sum over all units: ``diag(U_r diag(w) U_n) =
    w @ (U_rᵀ ⊙ U_n)`` with ``w = σ'(a_r) h``, one ``(H, H)`` matmul per step.

    Examples:
        >>> import jaxrnn
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> lin = gru(p, project(p, jnp.ones((2, 3))), jnp.zeros((2, 4)), structure="dense")
        >>> lin.jac.shape
        (2, 4, 4)
    """
    act = get_activation(activation, where="gru_step", arg="activation")
    rec_act = get_activation(recurrent_activation, where="gru_step", arg="recurrent_activation")
    hidden = h.shape[-1]
    u = params.recurrent_kernel
    u_z, u_r, u_n = jnp.split(u, 3, axis=-1)
    ax = xw if params.bias is None else xw + params.bias
    ax_z, ax_r, ax_n = jnp.split(ax, 3, axis=-1)
    rb = params.recurrent_bias
    if reset_after:
        ah = h @ u
        if rb is not None:
            ah = ah + rb
        ah_z, ah_r, ah_n = jnp.split(ah, 3, axis=-1)
        (z, dz), (r, dr) = slope(rec_act, ax_z + ah_z), slope(rec_act, ax_r + ah_r)
        n, dn = slope(act, ax_n + r * ah_n)
    else:
        ah_zr = h @ u[:, : 2 * hidden]
        if rb is not None:
            ah_zr = ah_zr + rb[: 2 * hidden]
        ah_z, ah_r = jnp.split(ah_zr, 2, axis=-1)
        (z, dz), (r, dr) = slope(rec_act, ax_z + ah_z), slope(rec_act, ax_r + ah_r)
        q = (r * h) @ u_n
        if rb is not None:
            q = q + rb[2 * hidden :]
        n, dn = slope(act, ax_n + q)
    h_new = z * h + (1.0 - z) * n
    w_z, w_n = (h - n) * dz, (1.0 - z) * dn  # the factors of ∂z/∂h and ∂(pre-activation of n)/∂h
    if structure == "blocks":
        if reset_after:
            dq = ah_n * dr * jnp.diagonal(u_r) + r * jnp.diagonal(u_n)
        else:
            dq = (dr * h) @ (u_r.T * u_n) + r * jnp.diagonal(u_n)
        return Linearisation((h_new,), _block(z + w_z * jnp.diagonal(u_z) + w_n * dq))
    if reset_after:
        dq = _rows(ah_n * dr, u_r) + _rows(r, u_n)
    else:  # dq[k, j] = Σ_m U_r[j, m] w_m U_n[m, k] + r_j U_n[j, k]
        dq = jnp.swapaxes((u_r * (dr * h)[..., None, :]) @ u_n + r[..., :, None] * u_n, -1, -2)
    return Linearisation((h_new,), _diag(z) + _rows(w_z, u_z) + w_n[..., :, None] * dq)


CLOSED_FORMS: dict[str, Callable[..., Linearisation]] = {"rnn": rnn, "lstm": lstm, "gru": gru}


def _rows(w: jax.Array, u: jax.Array) -> jax.Array:
    """``J[..., k, j] = w[..., k] U[j, k]``: the Jacobian of ``w ⊙ (h U)`` with respect to ``h``."""
    return w[..., :, None] * u.T


def _diag(d: jax.Array) -> jax.Array:
    """``(..., H) -> (..., H, H)``, the diagonal matrix."""
    return d[..., :, None] * jnp.eye(d.shape[-1], dtype=d.dtype)


def _block(d: jax.Array) -> jax.Array:
    """A diagonal as ``1 × 1`` blocks: ``(..., H) -> (1, 1, ..., H)``."""
    return d[None, None]
