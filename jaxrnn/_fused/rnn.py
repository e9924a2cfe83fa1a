"""The fast simple-RNN recurrence with a hand-written backward pass.

``rnn_recurrence(xw, U, b, h0, mask, activation, opts)`` runs
``h' = act(xw_t + b + h U)`` over a time-major projected input ``xw = x W``
(the bias is added inside the loop, where it fuses); ``segment`` calls it once per
chunk of steps, projecting that chunk's input (``common.chunked``). Supported
activations are those whose derivative is a function of their output
(tanh, relu, sigmoid, linear); the custom VJP scans backwards carrying ``dh``
and forms ``dU`` as one matmul after the loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._cells.activations import get_activation
from .common import (
    LoopOptions,
    bias_or_zeros,
    cast,
    chunked,
    matmul,
    previous,
    project,
    sum_outer,
)

# activation name -> (f, f' expressed through y = f(a))
ACTIVATIONS = {
    "tanh": (jnp.tanh, lambda y: 1 - y * y),
    "relu": (jax.nn.relu, lambda y: (y > 0).astype(y.dtype)),
    "sigmoid": (jax.nn.sigmoid, lambda y: y * (1 - y)),
    "linear": (lambda a: a, jnp.ones_like),
}


def _forward(xw, u, b, h0, mask, activation, opts: LoopOptions, save: bool):
    """Carries ``hs`` after each step (T, B, H) and, with ``save`` and a mask, the
    unmasked new states (without a mask they are the carries)."""
    act = ACTIVATIONS[activation][0]
    u_c = cast(u, opts)

    def body(h, inp):
        xw_t, m = inp
        h_new = act(xw_t + b + matmul(h, u_c, opts, xw_t.dtype))
        if m is None:
            return h_new, (h_new, None)
        return jnp.where(m, h_new, h), (jnp.where(m, h_new, h), h_new if save else None)

    h, (hs, h_new) = jax.lax.scan(body, h0, (xw, mask), reverse=opts.reverse, unroll=opts.unroll)
    ys = hs if mask is None else jnp.where(mask, hs, 0)
    return ys, h, (hs, hs if h_new is None else h_new)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def rnn_recurrence(xw, u, b, h0, mask, activation: str, opts: LoopOptions):
    """``(ys, h_T)``; ``xw`` (T, B, H), ``b`` (H,), ``mask`` (T, B, 1) bool or None."""
    ys, h, _ = _forward(xw, u, b, h0, mask, activation, opts, save=False)
    return ys, h


def _fwd(xw, u, b, h0, mask, activation, opts):
    ys, h, (hs, h_new) = _forward(xw, u, b, h0, mask, activation, opts, save=True)
    h_prev = previous(hs, h0, opts.reverse)  # (T, B, H): the carries each step read
    return (ys, h), (u, mask, (h_prev, h_new))


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
    return das, sum_outer(res[0], das, opts), das.sum(axis=(0, 1)), dh0, None


rnn_recurrence.defvjp(_fwd, _bwd)


def activation_name(activation, where: str) -> str | None:
    """The name in ``ACTIVATIONS`` of ``activation`` (a name or callable), or None."""
    act = get_activation(activation, where=where, arg="activation")
    for name, (fn, _) in ACTIVATIONS.items():
        if act is fn or act is get_activation(name, where=where, arg="activation"):
            return name
    return None


def unsupported(step_kwargs: dict, where: str) -> str | None:
    """Why this recurrence cannot run the step's options, or None."""
    if activation_name(step_kwargs.get("activation", "tanh"), where) is None:
        return "an activation other than tanh, relu, sigmoid or linear"
    return None


def segment(step_kwargs: dict, params, h0, xs, mask, opts: LoopOptions):
    """``(h_T, ys)`` of ``rnn_step`` over time-major ``xs`` (T, B, I)."""
    name = activation_name(step_kwargs.get("activation", "tanh"), "simple_rnn")
    b = bias_or_zeros(params.bias, params.kernel)

    def run(h, xs, mask):  # one chunk: its projection, then its loop
        xw = project(xs, params.kernel, opts)  # (chunk, B, H)
        ys, h = rnn_recurrence(xw, params.recurrent_kernel, b, h, mask, name, opts)
        return h, ys

    return chunked(run, h0, (xs, mask), params.recurrent_kernel.shape[-1], opts)
