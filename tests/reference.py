"""Float64 NumPy references written from the equations, independent of jaxrnn's code."""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def np64(p):
    """A params NamedTuple as float64 NumPy arrays (None stays None)."""
    return type(p)(*(None if v is None else np.asarray(v, np.float64) for v in p))


def rnn_ref(p, h, x, act=np.tanh, m_x=None, m_h=None):
    p = np64(p)
    x = x if m_x is None else x * m_x
    hh = h if m_h is None else h * m_h
    a = x @ p.kernel + hh @ p.recurrent_kernel
    if p.bias is not None:
        a = a + p.bias
    return act(a)


def _gate(v, w, m, g, hidden):
    """(v * m_g) @ w_g for gate g (m: None, shared (..., D) or per gate (..., G, D))."""
    if m is not None:
        v = v * (m if m.ndim == v.ndim else m[..., g, :])
    return v @ w[:, g * hidden : (g + 1) * hidden]


def lstm_ref(p, h, c, x, act=np.tanh, rec=sigmoid, m_x=None, m_h=None):
    p = np64(p)
    hidden = p.recurrent_kernel.shape[0]
    b = np.zeros(4 * hidden) if p.bias is None else p.bias
    pre = [
        _gate(x, p.kernel, m_x, g, hidden)
        + _gate(h, p.recurrent_kernel, m_h, g, hidden)
        + b[g * hidden : (g + 1) * hidden]
        for g in range(4)
    ]
    i, f, g, o = rec(pre[0]), rec(pre[1]), act(pre[2]), rec(pre[3])
    c = f * c + i * g
    h = o * act(c)
    return h, c


def gru_ref(p, h, x, act=np.tanh, rec=sigmoid, reset_after=True, m_x=None, m_h=None):
    p = np64(p)
    hidden = p.recurrent_kernel.shape[0]
    bx = np.zeros(3 * hidden) if p.bias is None else p.bias
    bh = np.zeros(3 * hidden) if p.recurrent_bias is None else p.recurrent_bias
    xs = [_gate(x, p.kernel, m_x, g, hidden) + bx[g * hidden : (g + 1) * hidden] for g in range(3)]
    u = p.recurrent_kernel
    hz = _gate(h, u, m_h, 0, hidden) + bh[:hidden]
    hr = _gate(h, u, m_h, 1, hidden) + bh[hidden : 2 * hidden]
    z, r = rec(xs[0] + hz), rec(xs[1] + hr)
    if reset_after:
        n = act(xs[2] + r * (_gate(h, u, m_h, 2, hidden) + bh[2 * hidden :]))
    else:
        hn = h if m_h is None else h * (m_h if m_h.ndim == h.ndim else m_h[..., 2, :])
        n = act(xs[2] + (r * hn) @ u[:, 2 * hidden :] + bh[2 * hidden :])
    return z * h + (1 - z) * n


def run_ref(step, carry, xs, lengths=None, reverse=False):
    """Batch-major loop with the documented semantics; carry is a tuple of (B, H) arrays.

    step(carry_tuple, x_b) -> carry_tuple, output is carry[0]. Each sequence is
    processed alone, over its own valid steps, reversed within its length.
    """
    xs = np.asarray(xs, np.float64)
    batch, steps = xs.shape[:2]
    carry = tuple(np.asarray(c, np.float64) for c in carry)
    hidden = carry[0].shape[-1]
    ys = np.zeros((batch, steps, hidden))
    finals = [np.array(c) for c in carry]
    for b in range(batch):
        n = steps if lengths is None else int(np.clip(lengths[b], 0, steps))
        cb = tuple(c[b] for c in carry)
        order = range(n - 1, -1, -1) if reverse else range(n)
        for t in order:
            cb = step(cb, xs[b, t])
            ys[b, t] = cb[0]
        for k, c in enumerate(cb):
            finals[k][b] = c
    return tuple(finals), ys
