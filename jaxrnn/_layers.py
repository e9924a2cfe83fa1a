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

from ._cells.spec import CellSpec, spec_named
from ._cells.state import last_hidden
from ._checks import (
    check_float_input,
    check_hidden,
    check_input,
    check_params,
    match_varying,
    shape_of,
    under_forward_mode,
)
from ._dropout import dropout_key, is_on, make_dropout_masks
from ._fused import dispatch
from ._fused.common import LoopOptions
from ._fused.lstm import AUTODIFF_MIN_BATCH
from ._options import LAYER_OPTIONS, NEWTON_METHODS, layer_options
from ._remat import nested_scan
from ._time import newton
from ._unroll import scan_segment, sequence_mask

NEWTON_OPTIONS = ("tol", "max_iter", "fallback", "return_info")  # for NEWTON_METHODS only
_LAYERS: dict[str, Callable] = {}  # cell kind -> its public layer function


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


def check_state(state: Any, spec: CellSpec, batch: int, hidden: int, dtype, where: str) -> None:
    """Validate an ``initial_state`` against the layer's batch and hidden sizes."""
    arg = "initial_state"
    if spec.state_type is not None:
        if not isinstance(state, spec.state_type):
            fields = ", ".join(spec.state_fields)
            raise TypeError(
                f"{where}: {arg} must be jaxrnn.{spec.state_type.__name__}({fields}), got "
                f"{type(state).__name__}. Wrap Keras' [h, c] as LSTMState(h=h, c=c) (Flax's "
                "carry is (c, h): swap it)."
            )
    elif isinstance(state, (tuple, list)):
        raise TypeError(
            f"{where}: {arg} must be one array h of shape ({batch}, {hidden}), got a "
            f"{type(state).__name__} of {len(state)}. Pass the array itself."
        )
    for name, part in zip(spec.state_fields, spec.state_parts(state), strict=True):
        label = f"{arg}.{name}" if spec.state_type is not None else arg
        check_hidden(part, hidden, dtype, where, label)
        if shape_of(part) != (batch, hidden):
            raise ValueError(
                f"{where}: {label}.shape={shape_of(part)}, expected (batch, hidden) = "
                f"({batch}, {hidden})."
            )


def run_layer(
    spec: CellSpec,
    params: Any,
    x: Any,
    *,
    autodiff_min_batch: int = AUTODIFF_MIN_BATCH,
    chunk_min_steps: int | None = None,
    chunk_floats: int | None = None,
    **options,
):
    """The shared body of the layer functions: validation, dropout, plan, run.

    ``options`` are the layer's keywords (``layer_options(spec.options)``; missing
    ones take their defaults). ``autodiff_min_batch`` is the batch size from which
    the fused LSTM's gradient is autodiff (not under XLA's batch partitioning, which
    ``dispatch.partitioned()`` reads at each call); ``chunk_min_steps`` and ``chunk_floats`` size the chunks of
    the fused SimpleRNN's and LSTM's input projection and of the fused GRU's and LSTM's
    backward passes (``_fused.common.chunk_steps``; None: each recurrence's measured default).
    These are internal, for tests and benchmarks, not layer options.
    """
    where = spec.layer
    known = layer_options(spec.options)
    opts = {o.name: o.validate(options.pop(o.name, o.default), where) for o in known}
    if options:  # the public signatures make this unreachable; internal callers are held to it
        raise TypeError(f"{where}: unknown options {sorted(options)}.")
    in_size, hidden = check_params(params, spec.params_type, where)
    batch, num_steps = check_sequence(x, where, time_major=opts["time_major"])
    check_input(x, in_size, where, kernel_shape=shape_of(params.kernel))
    key = dropout_key(
        opts["key"], opts["training"], opts["dropout"], opts["recurrent_dropout"], where
    )
    dtype = params.kernel.dtype
    initial_state = opts["initial_state"]
    if initial_state is None:
        initial_state = spec.zero_state(params, (batch,))
    else:
        check_state(initial_state, spec, batch, hidden, dtype, where)
    valid = sequence_mask(
        opts["seq_lengths"],
        opts["mask"],
        (batch,),
        num_steps,
        time_major=opts["time_major"],
        where=where,
    )
    masks = make_dropout_masks(
        key,
        (batch,),
        in_size,
        hidden,
        spec.gates,
        dropout=opts["dropout"],
        recurrent_dropout=opts["recurrent_dropout"],
        dtype=dtype,
    )
    cell_options = {name: opts[name] for name in spec.options}
    impl = opts["impl"]
    if not spec.recurrent and is_on(opts["recurrent_dropout"]):
        raise ValueError(
            f"{where}: recurrent_dropout={opts['recurrent_dropout']!r}, but the {spec.keras} cell "
            "has no recurrent kernel to drop from (its gates read the input only). Use "
            "dropout (on the inputs) instead."
        )
    reason = dispatch.unsupported(
        spec, cell_options, masks.input, masks.recurrent, opts["remat"], where
    )
    if reason is None and under_forward_mode((params, x, initial_state)):
        # the fused path's custom VJP has no forward mode; the generic scan has both
        reason = "forward-mode autodiff (jax.jvp, jax.jacfwd): its backward pass is a custom VJP"
    if impl == "fast" and reason is not None:
        raise ValueError(
            f"{where}: impl='fast' cannot run {reason}; use impl='auto' (falls back to "
            "the generic scan) or impl='scan'."
        )
    if opts["matmul_dtype"] is not None and (impl == "scan" or reason is not None):
        why = "impl='scan'" if impl == "scan" else reason
        raise ValueError(
            f"{where}: matmul_dtype={opts['matmul_dtype']!r} needs the fused path, which cannot "
            f"run {why}. Drop matmul_dtype, or the option that forces the generic scan."
        )
    opts["method"] = _method(spec, opts, impl, reason, where)
    plan = _Plan(
        spec=spec,
        cell_options=tuple(sorted(cell_options.items())),
        fused=impl != "scan" and reason is None,
        autodiff_min_batch=autodiff_min_batch,
        partitioned=dispatch.partitioned(),
        chunk_min_steps=chunk_min_steps,
        chunk_floats=chunk_floats,
        **{o.name: opts[o.name] for o in LAYER_OPTIONS if o.static},
    )
    return _run(plan, params, x, initial_state, valid, masks)


def _method(spec: CellSpec, opts: dict, impl: str, reason: str | None, where: str) -> str:
    """The time algorithm a layer call runs (its checks against the other options).

    None is the cell's default (``spec.methods[0]``), or ``'sequential'`` when
    ``impl`` asks for a particular step-by-step scan or the options need the
    generic scan (``reason``: the min cells' parallel methods run on the fused
    projection).
    """
    method = opts["method"]
    if method is None:
        method = spec.methods[0] if impl == "auto" and reason is None else "sequential"
    if method not in spec.methods:
        offered = ", ".join(map(repr, spec.methods))
        raise ValueError(
            f"{where}: method={method!r} is not offered by the {spec.keras} cell; use one of "
            f"{offered} (or None for the default, {spec.methods[0]!r})."
        )
    if method != "sequential" and impl != "auto":
        raise ValueError(
            f"{where}: impl={impl!r} chooses between the fused and the generic step-by-step "
            f"scan, so it applies to method='sequential' only; with method={method!r} leave "
            "impl='auto'."
        )
    newton = method in NEWTON_METHODS
    for o in LAYER_OPTIONS:
        if o.name in NEWTON_OPTIONS and not newton and opts[o.name] != o.default:
            raise ValueError(
                f"{where}: {o.name}={opts[o.name]!r} applies to the Newton methods only "
                f"(method='quasi_deer' or 'deer'), not to method={method!r}."
            )
    if newton:
        refused = {
            "remat": opts["remat"] is not None,
            "matmul_dtype": opts["matmul_dtype"] is not None,
            "recurrent_dropout": is_on(opts["recurrent_dropout"]),
        }
        for name, on in refused.items():
            if on:
                raise ValueError(
                    f"{where}: method={method!r} cannot run {name}={opts[name]!r} (the Newton "
                    f"solver stores its own trajectory and uses no dropout on the state); use "
                    "method='sequential' for it."
                )
    elif method != "sequential" and reason is not None:
        raise ValueError(
            f"{where}: method={method!r} cannot run {reason}; use method='sequential'."
        )
    return method


# The static (hashable) choices of one layer call: the spec, its cell options, the
# path, and every option declared static in ``_options.LAYER_OPTIONS``.
_Plan = NamedTuple(
    "_Plan",
    [
        ("spec", CellSpec),
        ("cell_options", tuple),  # sorted (name, value) pairs
        ("fused", bool),  # the fused recurrence (else the generic scan of the step)
        ("autodiff_min_batch", int),  # see run_layer
        ("partitioned", bool),  # traced for XLA's batch partitioning (dispatch.partitioned)
        ("chunk_min_steps", int | None),  # see run_layer
        ("chunk_floats", int | None),
    ]
    + [(o.name, Any) for o in LAYER_OPTIONS if o.static],
)


@functools.partial(jax.jit, static_argnums=0)
def _run(plan: _Plan, params, x, initial_state, valid, masks):
    """The computation of a layer call, jitted once per plan and shapes.

    Under an outer ``jit``/``grad``/``vmap`` this is inlined; called eagerly, it
    compiles once and is reused, instead of re-tracing the scan at every call.
    """
    cell_options = dict(plan.cell_options)
    # Inside shard_map, values the same on every device (parameters, a zero
    # initial state) meet per-device inputs: make them per-device up front, so
    # that scan carries keep one type and the custom VJPs see one type. Their
    # gradients are summed over the devices by pcast's transpose, as JAX does.
    everything = (params, x, initial_state, valid, masks)
    params, x, initial_state, valid, masks = match_varying(everything, everything)
    if plan.fused:
        loop = LoopOptions(
            reverse=plan.go_backwards,
            unroll=plan.unroll,
            matmul_dtype=plan.matmul_dtype,
            autodiff_min_batch=plan.autodiff_min_batch,
            partitioned=plan.partitioned,
            method=plan.method,
            chunk_min_steps=plan.chunk_min_steps,
            chunk_floats=plan.chunk_floats,
        )
        segment = functools.partial(
            dispatch.segment, plan.spec, cell_options, params, input_mask=masks.input, opts=loop
        )
    else:
        cell = functools.partial(
            plan.spec.step, **cell_options, input_mask=masks.input, recurrent_mask=masks.recurrent
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
    info = None
    if plan.method in NEWTON_METHODS:
        if masks.input is not None:  # a shared mask (no recurrent dropout here)
            xs = xs.astype(params.kernel.dtype) * masks.input
        carry, ys, info = newton.solve(
            plan.spec, cell_options, params, initial_state, xs, valid, method=plan.method,
            tol=plan.tol, max_iter=plan.max_iter, fallback=plan.fallback,
            reverse=plan.go_backwards, where=plan.spec.layer,
        )  # fmt: skip
    elif plan.remat == "sqrt":
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
    result = (out, carry) if plan.return_state else (out,)
    if plan.return_info:
        result = (*result, info)
    return result if len(result) > 1 else out


def layer_for(spec: CellSpec) -> Callable:
    """The public layer function of a cell (``jaxrnn.lstm`` for the LSTM's spec)."""
    return _LAYERS[spec.kind]


def _layer(kind: str) -> Callable:
    """Register the decorated function as the layer of cell ``kind``."""

    def register(fn: Callable) -> Callable:
        _LAYERS[kind] = fn
        return fn

    return register


@_layer("rnn")
def simple_rnn(
    params, x, *, activation="tanh",
    initial_state=None, return_sequences=False, return_state=False, go_backwards=False,
    seq_lengths=None, mask=None, time_major=False, unroll=1, dropout=0.0, recurrent_dropout=0.0,
    key=None, training=None, impl="auto", remat=None, matmul_dtype=None, method=None,
    tol=None, max_iter=None, fallback="sequential", return_info=False,
):  # fmt: skip
    """Run a simple (Elman) RNN over a batch of sequences, as ``keras.layers.SimpleRNN``::

        h_t = activation(x_t W + h_{t-1} U + b)        (see ``jaxrnn.rnn_step``)

    ``x`` is ``(batch, time, features)`` (``(time, batch, features)`` with
    ``time_major``); the carry is the hidden state ``h`` ``(B, H)``.

    Args:
        params: ``RNNParams`` (Keras layout), e.g. from ``jaxrnn.init_rnn``.
        x: the input sequences, floating point.
        activation: callable or Keras name (default ``'tanh'``).

    The other keywords are the layers' common options, each documented in
    ``help(jaxrnn.lstm)``: initial_state, return_sequences, return_state,
    go_backwards, seq_lengths, mask, time_major, unroll, dropout,
    recurrent_dropout, key, training, impl, remat, matmul_dtype, method, tol,
    max_iter, fallback, return_info.

    Returns:
        The last output ``(B, H)`` or, with ``return_sequences``, all outputs
        ``(B, T, H)``; with ``return_state``, ``(output, final_h)``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p, x = jaxrnn.init_rnn(jax.random.key(0), 3, 4), jnp.ones((2, 5, 3))
        >>> ys, h = jaxrnn.simple_rnn(p, x, return_sequences=True, return_state=True)
        >>> ys.shape, h.shape
        ((2, 5, 4), (2, 4))
    """
    return run_layer(spec_named("rnn"), **locals())


@_layer("lstm")
def lstm(
    params, x, *, activation="tanh", recurrent_activation="sigmoid",
    initial_state=None, return_sequences=False, return_state=False, go_backwards=False,
    seq_lengths=None, mask=None, time_major=False, unroll=1, dropout=0.0, recurrent_dropout=0.0,
    key=None, training=None, impl="auto", remat=None, matmul_dtype=None, method=None,
    tol=None, max_iter=None, fallback="sequential", return_info=False,
):  # fmt: skip
    """Run an LSTM over a batch of sequences, as ``keras.layers.LSTM``::

        i, f, o = σ(x W + h U + b)_{i,f,o}    g = act(x W + h U + b)_g
        c_t = f ⊙ c_{t-1} + i ⊙ g             h_t = o ⊙ act(c_t)   (see ``jaxrnn.lstm_step``)

    ``x`` is ``(batch, time, features)`` (``(time, batch, features)`` with
    ``time_major``); the carry is ``LSTMState(h, c)``, each ``(B, H)``. The
    options below after ``recurrent_activation`` are those of every layer
    (``jaxrnn.simple_rnn`` and ``jaxrnn.gru`` too).

    Args:
        params: ``LSTMParams`` (Keras layout), e.g. from ``jaxrnn.init_lstm``.
        x: the input sequences, floating point.
        activation: callable or Keras name (default ``'tanh'``).
        recurrent_activation: callable or Keras name for the gates (default ``'sigmoid'``).
        initial_state: the carry to start from; zeros when None. Here an
            ``LSTMState(h, c)``; for the other layers the array ``h``.
        return_sequences: return all outputs ``(B, T, H)`` instead of the last ``(B, H)``.
        return_state: also return the final carry: ``(output, state)``.
        go_backwards: process the sequence from its end; outputs come in processing
            order (as Keras). With lengths or a mask, padded steps are skipped.
        seq_lengths: integer ``(B,)`` lengths of right-padded sequences.
        mask: boolean ``(B, T)`` validity mask (Keras' ``mask``); ``(T, B)`` with ``time_major``.
            A masked step leaves the state unchanged and outputs zeros.
        time_major: input and output sequences are ``(T, B, ...)``.
        unroll: scan steps per loop iteration (int >= 1, or True for all).
            ``True`` unrolls the backward loop too: compile time grows with T, so keep
            it for short sequences, as in Keras.
        dropout: Keras' variational dropout rate on the inputs.
        recurrent_dropout: Keras' variational dropout rate on the recurrent state.
            Both rates act in training only.
        key: a ``jax.random`` key for the dropout masks. Required when a rate is
            non-zero, unless ``training=False``.
        training: Keras' switch: None or True applies dropout, False does not.
            With None (default) a non-zero rate needs a ``key`` (a rate without a
            key raises rather than silently training without dropout); False is
            inference, the key ignored. In a loss given ``key=None`` for
            evaluation (``jaxrnn.train``), pass ``training=key is not None``.
        impl: ``'auto'`` (fused path when the options allow), ``'fast'`` or ``'scan'``.
            The fused path hoists the input projection and has a hand-written
            backward pass; ``'scan'`` forces the generic ``lax.scan`` of the step
            function; ``'fast'`` requires the fused path. Forward-mode autodiff
            (``jax.jvp``, ``jax.jacfwd``) runs the generic scan under ``'auto'``.
        remat: memory for gradients: None (store every step), ``'step'`` or ``'sqrt'``.
            ``'step'`` checkpoints each step (generic scan), ``'sqrt'`` ~√T chunks
            (O(√T) stored steps). Same values.
        matmul_dtype: mixed precision, e.g. ``jnp.bfloat16``: matmul inputs in this dtype.
            Accumulation, gates, carry and cell state stay in the parameters'
            dtype (fused path only).
        method: the time algorithm: None (the cell's default), ``'sequential'``, or one its cell offers.
            ``'sequential'`` (the default here) runs the steps one after another
            (``impl`` then picks the fused or the generic scan); ``'quasi_deer'``
            and ``'deer'`` evaluate all steps at once by Newton's method
            (quasi-DEER: diagonal or 2x2-block Jacobians; DEER: dense), with
            associative scans in O(log T) depth per iteration. The min cells
            (``jaxrnn.min_gru``, ``jaxrnn.min_lstm``) offer ``'associative'``
            and ``'chunked'`` instead (see "Parallel in time" in docs/cells.md).
        tol: Newton methods: the relative tolerance (None: 1e-5 in float32).
            The iterations stop when the largest change of the states relative to
            their scale is at most ``tol``; the gradient's adjoint iterations too.
        max_iter: Newton methods: the most iterations (None: 100).
        fallback: Newton methods, not converged: ``'sequential'`` (the scan's result) or None.
            ``'sequential'`` computes the step-by-step result in the same compiled
            program (``lax.cond``) when the iterations did not converge or met a
            non-finite value; None returns the last finite iterate. No error is
            raised inside ``jit``: ask for ``return_info``.
        return_info: Newton methods: also return ``NewtonInfo(iterations, residual, converged)``.
            Appended last: ``(output, info)`` or ``(output, state, info)``. Not
            through ``jaxrnn.bidirectional`` / ``jaxrnn.stacked``.

    Returns:
        The last output ``(B, H)`` (the final ``h``: for a zero-length sequence,
        the initial ``h``, as Keras) or all outputs; with ``return_state``,
        ``(output, final_state)``, the state taken at each sequence's true last step.

    Raises:
        ValueError: wrong rank (a 2-D ``x`` usually means the previous layer needs
            ``return_sequences=True``), feature/hidden-size mismatches, bad lengths.
        TypeError: non-float ``x``, wrongly typed state, lengths or mask.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.init_lstm(jax.random.key(0), 3, 4)
        >>> jaxrnn.lstm(p, jnp.ones((2, 5, 3)), return_sequences=True).shape
        (2, 5, 4)
    """
    return run_layer(spec_named("lstm"), **locals())


@_layer("gru")
def gru(
    params, x, *, activation="tanh", recurrent_activation="sigmoid", reset_after=True,
    initial_state=None, return_sequences=False, return_state=False, go_backwards=False,
    seq_lengths=None, mask=None, time_major=False, unroll=1, dropout=0.0, recurrent_dropout=0.0,
    key=None, training=None, impl="auto", remat=None, matmul_dtype=None, method=None,
    tol=None, max_iter=None, fallback="sequential", return_info=False,
):  # fmt: skip
    """Run a GRU over a batch of sequences, as ``keras.layers.GRU``::

        z, r = σ(x W + b + h U + β)_{z,r}
        n = act(x W_n + b_n + r ⊙ (h U_n + β_n))     (reset_after=True)
        h_t = z ⊙ h_{t-1} + (1 − z) ⊙ n              (see ``jaxrnn.gru_step``)

    As for ``jaxrnn.simple_rnn``, the carry is the hidden state ``h`` ``(B, H)`` and
    ``x`` is ``(batch, time, features)`` (``(time, batch, features)`` with ``time_major``).

    Args:
        params: ``GRUParams`` (Keras layout), e.g. from ``jaxrnn.init_gru``.
        x: the input sequences, floating point.
        activation: callable or Keras name (default ``'tanh'``).
        recurrent_activation: callable or Keras name for the gates (default ``'sigmoid'``).
        reset_after: the GRU variant (True: Keras' and PyTorch's default).

    The other keywords are the layers' common options, each documented in
    ``help(jaxrnn.lstm)``: initial_state, return_sequences, return_state,
    go_backwards, seq_lengths, mask, time_major, unroll, dropout,
    recurrent_dropout, key, training, impl, remat, matmul_dtype, method, tol,
    max_iter, fallback, return_info.

    Returns:
        The last output ``(B, H)`` or all outputs ``(B, T, H)``; with
        ``return_state``, ``(output, final_h)``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> y, h = jaxrnn.gru(p, jnp.ones((2, 5, 3)), go_backwards=True, return_state=True)
        >>> y.shape, bool((y == h).all())  # the last output is the final state
        ((2, 4), True)
    """
    return run_layer(spec_named("gru"), **locals())


@_layer("min_gru")
def min_gru(
    params, x, *,
    initial_state=None, return_sequences=False, return_state=False, go_backwards=False,
    seq_lengths=None, mask=None, time_major=False, unroll=1, dropout=0.0, recurrent_dropout=0.0,
    key=None, training=None, impl="auto", remat=None, matmul_dtype=None, method=None,
    tol=None, max_iter=None, fallback="sequential", return_info=False,
):  # fmt: skip
    """Run a minGRU (Feng et al. 2024) over a batch of sequences::

        z = σ(x W_z + b_z)     h̃ = x W_h + b_h
        h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃         (see ``jaxrnn.min_gru_step``)

    The gates read the input only, so the recurrence ``h_t = a_t ⊙ h_{t-1} + b_t``
    is linear in the state and the whole sequence can be evaluated in parallel
    over time. ``x`` is ``(batch, time, features)`` (``(time, batch, features)``
    with ``time_major``); the carry is the hidden state ``h`` ``(B, H)``.

    Args:
        params: ``MinGRUParams``, e.g. from ``jaxrnn.init_min_gru``.
        x: the input sequences, floating point.
        method: ``'sequential'`` (default: the fastest measured on CPU; ``impl``
            picks the fused loop or the generic scan of the step), ``'associative'``
            (``lax.associative_scan``, O(log T) depth) or ``'chunked'`` (√T chunks,
            about 2√T sequential steps). All compute the same values;
            "Parallel in time" in docs/cells.md compares them.

    The other keywords are the layers' common options, each documented in
    ``help(jaxrnn.lstm)``: initial_state, return_sequences, return_state,
    go_backwards, seq_lengths, mask, time_major, unroll, dropout,
    recurrent_dropout, key, training, impl, remat, matmul_dtype, method (above), tol,
    max_iter, fallback, return_info (the last four for the Newton methods, which
    these cells do not offer: they must keep their defaults).
    The cell has no recurrent kernel, so ``recurrent_dropout`` must stay 0.

    Returns:
        The last output ``(B, H)`` or all outputs ``(B, T, H)``; with
        ``return_state``, ``(output, final_h)``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.init_min_gru(jax.random.key(0), 3, 4)
        >>> x = jnp.ones((2, 100, 3))
        >>> a = jaxrnn.min_gru(p, x, method="associative")
        >>> b = jaxrnn.min_gru(p, x, method="sequential")
        >>> a.shape, bool(jnp.allclose(a, b, atol=1e-6))
        ((2, 4), True)
    """
    return run_layer(spec_named("min_gru"), **locals())


@_layer("min_lstm")
def min_lstm(
    params, x, *,
    initial_state=None, return_sequences=False, return_state=False, go_backwards=False,
    seq_lengths=None, mask=None, time_major=False, unroll=1, dropout=0.0, recurrent_dropout=0.0,
    key=None, training=None, impl="auto", remat=None, matmul_dtype=None, method=None,
    tol=None, max_iter=None, fallback="sequential", return_info=False,
):  # fmt: skip
    """Run a minLSTM (Feng et al. 2024) over a batch of sequences::

        f = σ(x W_f + b_f)   i = σ(x W_i + b_i)   h̃ = x W_h + b_h
        f' = f / (f + i)     i' = i / (f + i)
        h_t = f' ⊙ h_{t-1} + i' ⊙ h̃               (see ``jaxrnn.min_lstm_step``)

    Linear in the state like ``jaxrnn.min_gru``, and with the same ``method``
    choices; the carry is ``h`` ``(B, H)`` alone (there is no cell state).

    Args:
        params: ``MinLSTMParams``, e.g. from ``jaxrnn.init_min_lstm``.
        x: the input sequences, floating point.
        method: ``'sequential'`` (default), ``'associative'`` or ``'chunked'``, as
            for ``jaxrnn.min_gru``.

    As for ``jaxrnn.min_gru``, the other keywords are the common options
    (``help(jaxrnn.lstm)``): initial_state, return_sequences, return_state,
    go_backwards, seq_lengths, mask, time_major, unroll, dropout, recurrent_dropout
    (must stay 0), key, training, impl, remat, matmul_dtype, method (above), and
    tol, max_iter, fallback, return_info (Newton methods only: keep the defaults).

    Returns:
        What ``jaxrnn.min_gru`` returns: ``(B, H)``, ``(B, T, H)``, or with
        ``return_state`` a pair ``(output, final_h)``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.init_min_lstm(jax.random.key(0), 3, 4)
        >>> ys, h = jaxrnn.min_lstm(p, jnp.ones((2, 5, 3)), return_sequences=True,
        ...                         return_state=True, seq_lengths=jnp.array([5, 2]))
        >>> ys.shape, bool((ys[1, 2:] == 0).all()), bool((h[1] == ys[1, 1]).all())
        ((2, 5, 4), True, True)
    """
    return run_layer(spec_named("min_lstm"), **locals())
