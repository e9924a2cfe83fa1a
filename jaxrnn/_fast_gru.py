"""The fast reset-after GRU recurrence with a hand-written backward pass.

``gru_recurrence(xw, U, rb, h0, mask, opts)`` runs the loop over a time-major
projected input ``xw = x W + b`` (gates z, r, n). The custom VJP scans
backwards carrying only ``dh``, emits the input-side and recurrent-side
pre-activation gradients per step, and forms ``dU`` and the recurrent-bias
gradient as one matmul / sum over all ``T·B`` rows after the loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._fast_common import LoopOptions, cast, matmul, sum_outer


def _forward(xw, u, rb, h0, mask, opts: LoopOptions, save: bool):
    half = jnp.asarray(0.5, xw.dtype)
    u_c = cast(u, opts)

    def body(h, inp):
        xw_t, m = inp
        k = 2 * h.shape[-1]
        ah = matmul(h, u_c, opts, xw_t.dtype) + rb
        h_n = ah[..., k:]
        # σ(a) = (1 + tanh(a / 2)) / 2: one tanh for both gates (see _fast_lstm)
        t_z, t_r = jnp.split(jnp.tanh(half * (xw_t[..., :k] + ah[..., :k])), 2, axis=-1)
        z, r = half + half * t_z, half + half * t_r
        n = jnp.tanh(xw_t[..., k:] + r * h_n)
        h_new = n + z * (h - n)
        y = h_new if m is None else jnp.where(m, h_new, 0)
        h_next = h_new if m is None else jnp.where(m, h_new, h)
        return h_next, (y, (h, z, r, n, h_n) if save else None)

    h, (ys, res) = jax.lax.scan(body, h0, (xw, mask), reverse=opts.reverse, unroll=opts.unroll)
    return ys, h, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def gru_recurrence(xw, u, rb, h0, mask, opts: LoopOptions):
    """``(ys, h_T)``; ``xw`` (T, B, 3H), ``rb`` (3H,), ``mask`` (T, B, 1) bool or None."""
    ys, h, _ = _forward(xw, u, rb, h0, mask, opts, save=False)
    return ys, h


def _fwd(xw, u, rb, h0, mask, opts):
    ys, h, res = _forward(xw, u, rb, h0, mask, opts, save=True)
    return (ys, h), (u, mask, res)


def _bwd(opts, saved, cotangents):
    u, mask, res = saved
    dys, dh_T = cotangents
    u_t = cast(u.T, opts)

    def body(dh, inp):
        dy, m, (h_prev, z, r, n, h_n) = inp
        dh_new = dh + dy if m is None else jnp.where(m, dh + dy, 0)
        da_n = dh_new * (1 - z) * (1 - n * n)
        da_z = dh_new * (h_prev - n) * z * (1 - z)
        da_r = da_n * h_n * r * (1 - r)
        dax = jnp.concatenate([da_z, da_r, da_n], axis=-1)
        dah = jnp.concatenate([da_z, da_r, da_n * r], axis=-1)
        dh_prev = matmul(dah, u_t, opts, dah.dtype) + dh_new * z
        if m is not None:
            dh_prev = dh_prev + jnp.where(m, 0, dh)
        return dh_prev, (dax, dah)

    dh0, (dax, dah) = jax.lax.scan(
        body, dh_T, (dys, mask, res), reverse=not opts.reverse, unroll=opts.unroll
    )
    return dax, sum_outer(res[0], dah, opts), dah.sum(axis=(0, 1)), dh0, None


gru_recurrence.defvjp(_fwd, _bwd)
