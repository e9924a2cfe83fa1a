"""The fast simple-RNN recurrence with a hand-written backward pass.

``rnn_recurrence(xw, U, h0, mask, activation, opts)`` runs
``h' = act(xw_t + h U)`` over a time-major projected input. Supported
activations are those whose derivative is a function of their output
(tanh, relu, sigmoid, linear); the custom VJP scans backwards carrying ``dh``
and forms ``dU`` as one matmul after the loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._fast_common import LoopOptions, cast, matmul, sum_outer

# activation name -> (f, f' expressed through y = f(a))
ACTIVATIONS = {
    "tanh": (jnp.tanh, lambda y: 1 - y * y),
    "relu": (jax.nn.relu, lambda y: (y > 0).astype(y.dtype)),
    "sigmoid": (jax.nn.sigmoid, lambda y: y * (1 - y)),
    "linear": (lambda a: a, jnp.ones_like),
}


def _forward(xw, u, h0, mask, activation, opts: LoopOptions, save: bool):
    act = ACTIVATIONS[activation][0]
    u_c = cast(u, opts)

    def body(h, inp):
        xw_t, m = inp
        h_new = act(xw_t + matmul(h, u_c, opts, xw_t.dtype))
        y = h_new if m is None else jnp.where(m, h_new, 0)
        h_next = h_new if m is None else jnp.where(m, h_new, h)
        return h_next, (y, (h, h_new) if save else None)

    h, (ys, res) = jax.lax.scan(body, h0, (xw, mask), reverse=opts.reverse, unroll=opts.unroll)
    return ys, h, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def rnn_recurrence(xw, u, h0, mask, activation: str, opts: LoopOptions):
    """``(ys, h_T)``; ``xw`` (T, B, H), ``mask`` (T, B, 1) bool or None."""
    ys, h, _ = _forward(xw, u, h0, mask, activation, opts, save=False)
    return ys, h


def _fwd(xw, u, h0, mask, activation, opts):
    ys, h, res = _forward(xw, u, h0, mask, activation, opts, save=True)
    return (ys, h), (u, mask, res)


def _bwd(activation, opts, saved, cotangents):
    u, mask, res = saved
    dys, dh_T = cotangents
    grad_act = ACTIVATIONS[activation][1]
    u_t = cast(u.T, opts)

    def body(dh, inp):
        dy, m, (h_prev, h_new) = inp
        dh_new = dh + dy if m is None else jnp.where(m, dh + dy, 0)
        da = dh_new * grad_act(h_new)
        dh_prev = matmul(da, u_t, opts, da.dtype)
        if m is not None:
            dh_prev = dh_prev + jnp.where(m, 0, dh)
        return dh_prev, da

    dh0, das = jax.lax.scan(
        body, dh_T, (dys, mask, res), reverse=not opts.reverse, unroll=opts.unroll
    )
    return das, sum_outer(res[0], das, opts), dh0, None


rnn_recurrence.defvjp(_fwd, _bwd)
