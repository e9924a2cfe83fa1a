"""Dispatch from the layer functions to the fused recurrences (``_fast_*``).

The fused path hoists the input projection ``x W`` out of the loop (one
``(T·B, I) @ (I, G·H)`` matmul), keeps only ``h U``, the bias and the gate
arithmetic in the loop, and uses hand-written backward passes (the LSTM from
``AUTODIFF_MIN_BATCH`` sequences on: autodiff of an in-loop projection, see
``_fast_lstm``). It covers the default
activations, lengths/masks, reverse, input dropout with a shared mask, any
``unroll``; everything else (custom activations, recurrent dropout, the
reset-before GRU) runs the generic scan of the step functions, which computes
the same function.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp

from ._activations import get_activation
from ._context import is_batch_partitioned
from ._fast_common import LoopOptions, cast, matmul
from ._fast_gru import gru_recurrence
from ._fast_lstm import AUTODIFF_MIN_BATCH, lstm_layer, lstm_recurrence
from ._fast_rnn import ACTIVATIONS as RNN_ACTIVATIONS
from ._fast_rnn import rnn_recurrence
from ._gru import gru_step
from ._lstm import LSTMState, lstm_step
from ._simple_rnn import rnn_step

IMPLS = ("auto", "fast", "scan")


def lstm_autodiff_min_batch() -> int:
    """The batch size from which the fused LSTM's gradient is autodiff.

    Under XLA's SPMD partitioning of the batch (``_context.batch_partitioned``),
    never: the autodiff pass accumulates its weight gradients inside the loop,
    where the partitioner then all-reduces them at every step (seen in the HLO: an
    all-reduce inside the backward while body), which made a 2-device step
    0.74-0.91x of one device; the hand-written pass forms them after the loop, so
    one all-reduce remains. Read at each layer call (part of its plan).
    """
    return sys.maxsize if is_batch_partitioned() else AUTODIFF_MIN_BATCH


def _act(kwargs: dict, name: str, default: str, where: str):
    return get_activation(kwargs.get(name, default), where=where, arg=name)


def fast_reason(
    step, step_kwargs: dict, input_mask, recurrent_mask, remat, where: str
) -> str | None:
    """Why the fused path cannot run these options, or None when it can."""
    if remat == "step":
        return "remat='step' (per-step checkpointing of the step function)"
    if recurrent_mask is not None:
        return "recurrent_dropout > 0 (per-gate recurrent masks)"
    if input_mask is not None and input_mask.ndim != 2:
        return "per-gate input dropout masks"
    if step is rnn_step:
        act = _act(step_kwargs, "activation", "tanh", where)
        if _rnn_activation_name(act) is None:
            return "an activation other than tanh, relu, sigmoid or linear"
        return None
    act = _act(step_kwargs, "activation", "tanh", where)
    rec = _act(step_kwargs, "recurrent_activation", "sigmoid", where)
    if act is not jnp.tanh or rec is not jax.nn.sigmoid:
        return "activations other than tanh / sigmoid"
    if step is gru_step and not step_kwargs.get("reset_after", True):
        return "reset_after=False"
    return None


def _rnn_activation_name(act) -> str | None:
    for name, (fn, _) in RNN_ACTIVATIONS.items():
        if act is fn or act is get_activation(name, where="", arg=""):
            return name
    return None


def fast_segment(
    step,
    step_kwargs: dict,
    params: Any,
    carry: Any,
    xs: jax.Array,
    valid: jax.Array | None,
    *,
    input_mask: jax.Array | None,
    reverse: bool,
    unroll: int | bool,
    matmul_dtype: str | None = None,
    lstm_autodiff_min_batch: int = AUTODIFF_MIN_BATCH,
) -> tuple[Any, jax.Array]:
    """``(final_carry, ys)`` of the fused recurrence over time-major ``xs`` ``(T, B, I)``.

    ``valid`` is the boolean ``(T, B)`` step mask or None; ``ys`` is ``(T, B, H)``.
    With ``matmul_dtype`` (e.g. ``"bfloat16"``) every matmul takes inputs in that
    dtype and accumulates in the parameters' dtype; gates, carry and cell state
    stay in the parameters' dtype. The LSTM's gradient is autodiff of an in-loop
    projection from ``lstm_autodiff_min_batch`` sequences on (the layers pass
    ``AUTODIFF_MIN_BATCH`` as read at each call; see ``_fast_lstm``).
    """
    opts = LoopOptions(reverse, unroll, matmul_dtype)
    dtype = params.kernel.dtype
    xs = xs.astype(dtype)
    if input_mask is not None:
        xs = xs * input_mask
    zeros = jnp.zeros(params.kernel.shape[-1], dtype)
    b = zeros if params.bias is None else params.bias
    m = None if valid is None else valid[..., None]  # (T, B, 1)
    u = params.recurrent_kernel
    if step is gru_step:  # the GRU projects inside its loop (see _fast_gru)
        rb = zeros if params.recurrent_bias is None else params.recurrent_bias
        ys, h = gru_recurrence(xs, params.kernel, u, b, rb, carry, m, opts)
        return h, ys
    if step is lstm_step and xs.shape[1] >= lstm_autodiff_min_batch:
        ys, h, c = lstm_layer(xs, params.kernel, u, b, carry.h, carry.c, m, opts)
        return LSTMState(h, c), ys
    xw = matmul(xs, cast(params.kernel, opts), opts, dtype)  # (T, B, G·H), hoisted
    if step is lstm_step:
        ys, h, c = lstm_recurrence(xw, u, b, carry.h, carry.c, m, opts)
        return LSTMState(h, c), ys
    name = _rnn_activation_name(_act(step_kwargs, "activation", "tanh", "simple_rnn"))
    ys, h = rnn_recurrence(xw, u, b, carry, m, name, opts)
    return h, ys
