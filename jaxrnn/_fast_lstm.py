"""The fast LSTM recurrence: hoisted input projection and a hand-written backward pass.

``lstm_recurrence(xw, U, h0, c0, mask, reverse, unroll)`` runs the loop part of
an LSTM over a time-major, already projected input ``xw = x W + b``. Its custom
VJP scans backwards carrying only ``(dh, dc)``, emits the gate pre-activation
gradients ``da`` per step, and forms ``dU`` as one matmul over all ``T·B`` rows
after the loop; ``dW``, ``db`` and ``dx`` come from differentiating the hoisted
projection, also one matmul each. Only the default activations (sigmoid gates,
tanh cell) take this path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _gates(a):
    """i, f, g, o from the pre-activations ``a`` (..., 4H) with a single ``tanh``.

    σ(x) = (1 + tanh(x / 2)) / 2, so one ``tanh`` over all 4H columns (scaled by
    1/2 on the sigmoid gates) gives every gate; on XLA:CPU this fuses into one
    loop where separate ``logistic`` ops measured 2x slower over a hoisted input.
    Absolute error against ``jax.nn.sigmoid``: below 1e-7 in float32.
    """
    hidden = a.shape[-1] // 4
    half = jnp.asarray(0.5, a.dtype)
    scale = jnp.concatenate(
        [jnp.full((2 * hidden,), half), jnp.ones((hidden,), a.dtype), jnp.full((hidden,), half)]
    )
    t_i, t_f, g, t_o = jnp.split(jnp.tanh(a * scale), 4, axis=-1)
    return half + half * t_i, half + half * t_f, g, half + half * t_o


def _keep(m, new, old):
    return new if m is None else jnp.where(m, new, old)


def _forward(xw, u, h0, c0, mask, reverse, unroll, save):
    def body(carry, inp):
        h, c = carry
        xw_t, m = inp
        i, f, g, o = _gates(xw_t + h @ u)
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        h_new = o * tc
        y = h_new if m is None else jnp.where(m, h_new, 0)
        res = (h, c, i, f, g, o, tc) if save else None
        return (_keep(m, h_new, h), _keep(m, c_new, c)), (y, res)

    (h, c), (ys, res) = jax.lax.scan(body, (h0, c0), (xw, mask), reverse=reverse, unroll=unroll)
    return ys, h, c, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def lstm_recurrence(xw, u, h0, c0, mask, reverse, unroll):
    """``(ys, h_T, c_T)`` of the LSTM loop; ``xw`` (T, B, 4H), ``mask`` (T, B, 1) bool or None."""
    ys, h, c, _ = _forward(xw, u, h0, c0, mask, reverse, unroll, save=False)
    return ys, h, c


def _fwd(xw, u, h0, c0, mask, reverse, unroll):
    ys, h, c, res = _forward(xw, u, h0, c0, mask, reverse, unroll, save=True)
    return (ys, h, c), (u, mask, res)


def _bwd(reverse, unroll, saved, cotangents):
    u, mask, res = saved
    dys, dh_T, dc_T = cotangents
    u_t = u.T

    def body(carry, inp):
        dh, dc = carry
        dy, m, (h_prev, c_prev, i, f, g, o, tc) = inp
        dh_new = dh + dy
        dc_new = dc
        if m is not None:  # a skipped step passes the gradient straight through
            dh_new, dc_new = jnp.where(m, dh_new, 0), jnp.where(m, dc, 0)
        do = dh_new * tc
        dc_tot = dc_new + dh_new * o * (1 - tc * tc)
        da = jnp.concatenate(
            [
                dc_tot * g * i * (1 - i),
                dc_tot * c_prev * f * (1 - f),
                dc_tot * i * (1 - g * g),
                do * o * (1 - o),
            ],
            axis=-1,
        )
        dh_prev = da @ u_t
        dc_prev = dc_tot * f
        if m is not None:
            dh_prev = dh_prev + jnp.where(m, 0, dh)
            dc_prev = dc_prev + jnp.where(m, 0, dc)
        return (dh_prev, dc_prev), da

    (dh0, dc0), das = jax.lax.scan(
        body, (dh_T, dc_T), (dys, mask, res), reverse=not reverse, unroll=unroll
    )
    h_prev = res[0]
    du = jnp.einsum("tbh,tbg->hg", h_prev, das)
    dmask = None if mask is None else None
    return das, du, dh0, dc0, dmask


lstm_recurrence.defvjp(_fwd, _bwd)
