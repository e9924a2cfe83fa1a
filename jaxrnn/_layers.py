"""Layer functions with Keras semantics: ``simple_rnn``, ``lstm``, ``gru``.

Each runs its cell over a ``(batch, time, features)`` array and returns what
the Keras layer of the same name returns for the same weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _fast
from ._activations import get_activation
from ._checks import (
    check_flag,
    check_float_input,
    check_hidden,
    check_input,
    check_params,
    match_varying,
    shape_of,
    under_forward_mode,
)
from ._dropout import check_rate, dropout_key, make_dropout_masks
from ._fast import IMPLS, fast_reason, fast_segment
from ._gru import gru_step
from ._lstm import LSTMState, lstm_step
from ._remat import check_remat, nested_scan
from ._simple_rnn import rnn_step
from ._state import last_hidden, zero_state
from ._unroll import check_unroll, scan_segment, sequence_mask

_GATES = {rnn_step: 1, lstm_step: 4, gru_step: 3}


def check_sequence(x: Any, where: str, *, time_major: bool) -> tuple[int, int]:
    """Validate a 3-D sequence; return ``(batch, time)``."""
    layout = "(time, batch, features)" if time_major else "(batch, time, features)"
    if not hasattr(x, "shape"):
        raise TypeError(f"{where}: x must be an array {layout}, got {type(x).__name__}.")
    check_float_input(x, where)  # first: a 2-D array of token ids needs an embedding
    if np.ndim(x) != 3:
        hint = ""
        if np.ndim(x) == 2:
            hint = (
                " A 2-D input usually comes from a previous recurrent layer that returned "
                "only its last output: give that layer return_sequences=True. For a single "
                "sequence, add a batch axis with x[None]."
            )
        elif np.ndim(x) == 1:
            hint = " Reshape a univariate series to (batch, time, 1), e.g. x.reshape(1, -1, 1)."
        elif np.ndim(x) > 3:
            hint = " For extra batch axes, reshape them into one or use jax.vmap."
        raise ValueError(
            f"{where}: x must be 3-D {layout}, got x.shape={shape_of(x)} ({np.ndim(x)}-D).{hint}"
        )
    b, t = shape_of(x)[:2]
    return (t, b) if time_major else (b, t)


def check_state(state: Any, is_lstm: bool, batch: int, hidden: int, dtype, where: str) -> None:
    """Validate an ``initial_state`` against the layer's batch and hidden sizes."""
    arg = "initial_state"
    if is_lstm:
        if not isinstance(state, LSTMState):
            raise TypeError(
                f"{where}: {arg} must be jaxrnn.LSTMState(h, c), got {type(state).__name__}. "
                "Wrap Keras' [h, c] as LSTMState(h=h, c=c) (Flax's carry is (c, h): swap it)."
            )
        parts = [("h", state.h), ("c", state.c)]
    else:
        if isinstance(state, (tuple, list)):
            raise TypeError(
                f"{where}: {arg} must be one array h of shape ({batch}, {hidden}), got a "
                f"{type(state).__name__} of {len(state)}. Pass the array itself."
            )
        parts = [("", state)]
    for name, part in parts:
        label = f"{arg}.{name}" if name else arg
        check_hidden(part, hidden, dtype, where, label)
        if shape_of(part) != (batch, hidden):
            raise ValueError(
                f"{where}: {label}.shape={shape_of(part)}, expected (batch, hidden) = "
                f"({batch}, {hidden})."
            )


def run_layer(
    where: str,
    step: Callable,
    step_kwargs: dict,
    params: Any,
    x: jax.Array,
    *,
    initial_state: Any,
    return_sequences: bool,
    return_state: bool,
    go_backwards: bool,
    seq_lengths: Any,
    mask: Any,
    time_major: bool,
    unroll: int | bool,
    dropout: float,
    recurrent_dropout: float,
    key: jax.Array | None,
    training: bool | None = None,
    impl: str = "auto",
    remat: str | None = None,
    matmul_dtype: Any = None,
):
    """The shared body of the layer functions (validation, dropout, unroll, outputs)."""
    num_gates = _GATES[step]
    in_size, hidden = check_params(params, num_gates, where)
    batch, num_steps = check_sequence(x, where, time_major=time_major)
    check_input(x, in_size, where, kernel_shape=shape_of(params.kernel))
    check_unroll(unroll, where)
    for flag, value in [
        ("return_sequences", return_sequences),
        ("return_state", return_state),
        ("go_backwards", go_backwards),
        ("time_major", time_major),
    ]:
        check_flag(value, where, flag)
    check_rate(dropout, where, "dropout")
    check_rate(recurrent_dropout, where, "recurrent_dropout")
    key = dropout_key(key, training, dropout, recurrent_dropout, where)
    check_remat(remat, where)
    if matmul_dtype is not None:
        if not jnp.issubdtype(matmul_dtype, jnp.floating):
            raise TypeError(
                f"{where}: matmul_dtype={matmul_dtype!r} is not a floating dtype; use e.g. "
                "jnp.bfloat16."
            )
        matmul_dtype = jnp.dtype(matmul_dtype).name
    if impl not in IMPLS:
        raise ValueError(
            f"{where}: unknown impl={impl!r}; use 'auto' (fused path when the options allow, "
            "else the generic scan), 'fast' or 'scan'."
        )
    for name, value in step_kwargs.items():
        if name.endswith("activation"):
            get_activation(value, where=where, arg=name)
    dtype = params.kernel.dtype
    is_lstm = step is lstm_step
    if initial_state is None:
        initial_state = zero_state(params, (batch,))
    else:
        check_state(initial_state, is_lstm, batch, hidden, dtype, where)
    valid = sequence_mask(
        seq_lengths, mask, (batch,), num_steps, time_major=time_major, where=where
    )

    masks = make_dropout_masks(
        key,
        (batch,),
        in_size,
        hidden,
        num_gates,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        dtype=dtype,
    )
    reason = fast_reason(step, step_kwargs, masks.input, masks.recurrent, remat, where)
    if reason is None and under_forward_mode((params, x, initial_state)):
        # the fused path's custom VJP has no forward mode; the generic scan has both
        reason = "forward-mode autodiff (jax.jvp, jax.jacfwd): its backward pass is a custom VJP"
    if impl == "fast" and reason is not None:
        raise ValueError(
            f"{where}: impl='fast' cannot run {reason}; use impl='auto' (falls back to "
            "the generic scan) or impl='scan'."
        )
    if matmul_dtype is not None and (impl == "scan" or reason is not None):
        why = "impl='scan'" if impl == "scan" else reason
        raise ValueError(
            f"{where}: matmul_dtype={matmul_dtype!r} needs the fused path, which cannot run "
            f"{why}. Drop matmul_dtype, or the option that forces the generic scan."
        )
    plan = _Plan(
        step=step,
        step_kwargs=tuple(sorted(step_kwargs.items())),
        fused=impl != "scan" and reason is None,
        go_backwards=go_backwards,
        unroll=unroll,
        remat=remat,
        matmul_dtype=matmul_dtype,
        time_major=time_major,
        return_sequences=return_sequences,
        return_state=return_state,
        lstm_autodiff_min_batch=_fast.lstm_autodiff_min_batch(),  # read per call: in the key
    )
    return _run(plan, params, x, initial_state, valid, masks)


class _Plan(NamedTuple):
    """The static (hashable) choices of one layer call, validated by ``run_layer``."""

    step: Callable
    step_kwargs: tuple  # sorted (name, value) pairs
    fused: bool  # the fused recurrence (else the generic scan of the step)
    go_backwards: bool
    unroll: int | bool
    remat: str | None
    matmul_dtype: str | None
    time_major: bool
    return_sequences: bool
    return_state: bool
    lstm_autodiff_min_batch: int  # see _fast_lstm.AUTODIFF_MIN_BATCH


@functools.partial(jax.jit, static_argnums=0)
def _run(plan: _Plan, params, x, initial_state, valid, masks):
    """The computation of a layer call, jitted once per plan and shapes.

    Under an outer ``jit``/``grad``/``vmap`` this is inlined; called eagerly, it
    compiles once and is reused, instead of re-tracing the scan at every call.
    """
    step_kwargs = dict(plan.step_kwargs)
    # Inside shard_map, values the same on every device (parameters, a zero
    # initial state) meet per-device inputs: make them per-device up front, so
    # that scan carries keep one type and the custom VJPs see one type. Their
    # gradients are summed over the devices by pcast's transpose, as JAX does.
    everything = (params, x, initial_state, valid, masks)
    params, x, initial_state, valid, masks = match_varying(everything, everything)
    if plan.fused:
        segment = functools.partial(
            fast_segment,
            plan.step,
            step_kwargs,
            params,
            input_mask=masks.input,
            reverse=plan.go_backwards,
            unroll=plan.unroll,
            matmul_dtype=plan.matmul_dtype,
            lstm_autodiff_min_batch=plan.lstm_autodiff_min_batch,
        )
    else:
        cell = functools.partial(
            plan.step, **step_kwargs, input_mask=masks.input, recurrent_mask=masks.recurrent
        )
        segment = functools.partial(
            scan_segment,
            cell,
            params,
            reverse=plan.go_backwards,
            unroll=plan.unroll,
            checkpoint_step=plan.remat == "step",
        )
    xs = x if plan.time_major else jnp.swapaxes(x, 0, 1)  # (T, B, I)
    if valid is not None:
        # Padded steps read zeros, so whatever the padding holds (NaN, inf) reaches
        # no value and no gradient: their results are discarded, and the backward
        # pass multiplies finite derivatives by zero cotangents.
        xs = jnp.where(valid[..., None], xs, jnp.zeros((), xs.dtype))
    if plan.remat == "sqrt":
        carry, ys = nested_scan(segment, initial_state, xs, valid, reverse=plan.go_backwards)
    else:
        carry, ys = segment(initial_state, xs, valid)  # ys: (T, B, H)
    if not plan.time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    t_axis = 0 if plan.time_major else 1
    if plan.return_sequences:
        # Keras returns go_backwards outputs in processing order.
        out = jnp.flip(ys, t_axis) if plan.go_backwards else ys
    else:
        # Keras: the output of the last valid step, which is the final h (for a
        # sequence with no valid step, the initial h, as Keras' masked output).
        out = last_hidden(carry)
    return (out, carry) if plan.return_state else out


_LAYER_DOC = """Run a {kind} over a batch of sequences, as ``keras.layers.{keras}``.

    Equation per step: see ``jaxrnn.{step}``. ``x`` is ``(batch, time, features)``
    (``(time, batch, features)`` with ``time_major``).

    Args:
        params: ``{params}`` (Keras layout).
        x: the input sequences, floating point.
        initial_state: {state}; zeros when None.
        return_sequences: return all outputs ``(B, T, H)`` instead of the last ``(B, H)``.
        return_state: also return the final carry: ``(output, state)``.
        go_backwards: process the sequence from its end; outputs come in processing
            order (as Keras). With lengths or a mask, padded steps are skipped.
        seq_lengths: integer ``(B,)`` lengths of right-padded sequences.
        mask: boolean ``(B, T)`` validity mask (Keras' ``mask``); a masked step
            leaves the state unchanged and outputs zeros.
        time_major: input and output sequences are ``(T, B, ...)``.
        unroll: scan steps per loop iteration (int >= 1, or True for all).
        dropout, recurrent_dropout: Keras' variational dropout rates (training only).
        key: a ``jax.random`` key for the dropout masks; required when a rate is
            non-zero, unless ``training=False``.
        training: Keras' switch. None (default): dropout is applied when a rate is
            non-zero, and then a ``key`` is required (a rate without a key raises
            rather than silently training without dropout); False: inference,
            dropout off, the key ignored; True: training, as None. In a loss
            given ``key=None`` for evaluation (``jaxrnn.train``), pass
            ``training=key is not None``.
        impl: ``"auto"`` (default) runs the fused recurrence (hoisted input
            projection, hand-written backward pass) when the options allow and the
            generic ``lax.scan`` of the step function otherwise; ``"scan"`` forces
            the generic scan (e.g. for forward-mode autodiff, which the fused
            path's custom VJP does not support); ``"fast"`` requires the fused path.
        remat: memory for gradients over long sequences: None (store every step's
            gate values), ``"step"`` (checkpoint each step; generic scan) or
            ``"sqrt"`` (checkpoint ~√T chunks: O(√T) stored steps). Same values.
        matmul_dtype: mixed precision, e.g. ``jnp.bfloat16``: matmul inputs in this
            dtype with accumulation, gates, carry and cell state in the parameters'
            dtype (fused path only).
        {extra}
    Returns:
        The last output ``(B, H)`` (the final ``h``: for a zero-length sequence,
        the initial ``h``, as Keras) or all
        outputs; with ``return_state``, ``(output, final_state)``, the state taken
        at each sequence's true last step.

    Raises:
        ValueError: wrong rank (a 2-D ``x`` usually means the previous layer needs
            ``return_sequences=True``), feature/hidden-size mismatches, bad lengths.
        TypeError: non-float ``x``, wrongly typed state, lengths or mask.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.{init}(jax.random.key(0), 3, 4)
        >>> jaxrnn.{name}(p, jnp.ones((2, 5, 3)), return_sequences=True).shape
        (2, 5, 4)
    """


def simple_rnn(
    params,
    x,
    *,
    activation="tanh",
    initial_state=None,
    return_sequences=False,
    return_state=False,
    go_backwards=False,
    seq_lengths=None,
    mask=None,
    time_major=False,
    unroll=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    key=None,
    training=None,
    impl="auto",
    remat=None,
    matmul_dtype=None,
):
    return run_layer(
        "simple_rnn",
        rnn_step,
        dict(activation=activation),
        params,
        x,
        initial_state=initial_state,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        seq_lengths=seq_lengths,
        mask=mask,
        time_major=time_major,
        unroll=unroll,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        key=key,
        training=training,
        impl=impl,
        remat=remat,
        matmul_dtype=matmul_dtype,
    )


def lstm(
    params,
    x,
    *,
    activation="tanh",
    recurrent_activation="sigmoid",
    initial_state=None,
    return_sequences=False,
    return_state=False,
    go_backwards=False,
    seq_lengths=None,
    mask=None,
    time_major=False,
    unroll=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    key=None,
    training=None,
    impl="auto",
    remat=None,
    matmul_dtype=None,
):
    return run_layer(
        "lstm",
        lstm_step,
        dict(activation=activation, recurrent_activation=recurrent_activation),
        params,
        x,
        initial_state=initial_state,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        seq_lengths=seq_lengths,
        mask=mask,
        time_major=time_major,
        unroll=unroll,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        key=key,
        training=training,
        impl=impl,
        remat=remat,
        matmul_dtype=matmul_dtype,
    )


def gru(
    params,
    x,
    *,
    activation="tanh",
    recurrent_activation="sigmoid",
    reset_after=True,
    initial_state=None,
    return_sequences=False,
    return_state=False,
    go_backwards=False,
    seq_lengths=None,
    mask=None,
    time_major=False,
    unroll=1,
    dropout=0.0,
    recurrent_dropout=0.0,
    key=None,
    training=None,
    impl="auto",
    remat=None,
    matmul_dtype=None,
):
    return run_layer(
        "gru",
        gru_step,
        dict(
            activation=activation,
            recurrent_activation=recurrent_activation,
            reset_after=reset_after,
        ),
        params,
        x,
        initial_state=initial_state,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        seq_lengths=seq_lengths,
        mask=mask,
        time_major=time_major,
        unroll=unroll,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        key=key,
        training=training,
        impl=impl,
        remat=remat,
        matmul_dtype=matmul_dtype,
    )


simple_rnn.__doc__ = _LAYER_DOC.format(
    kind="simple (Elman) RNN",
    keras="SimpleRNN",
    step="rnn_step",
    params="RNNParams",
    state="hidden state ``(B, H)``",
    init="init_rnn",
    name="simple_rnn",
    extra="activation: callable or Keras name (default ``'tanh'``).\n",
)
lstm.__doc__ = _LAYER_DOC.format(
    kind="LSTM",
    keras="LSTM",
    step="lstm_step",
    params="LSTMParams",
    state="``LSTMState(h, c)``, each ``(B, H)``",
    init="init_lstm",
    name="lstm",
    extra="activation, recurrent_activation: callables or Keras names.\n",
)
gru.__doc__ = _LAYER_DOC.format(
    kind="GRU",
    keras="GRU",
    step="gru_step",
    params="GRUParams",
    state="hidden state ``(B, H)``",
    init="init_gru",
    name="gru",
    extra="activation, recurrent_activation: callables or Keras names.\n"
    "        reset_after: the GRU variant (True: PyTorch/Keras default).\n",
)
