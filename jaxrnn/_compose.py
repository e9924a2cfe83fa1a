"""Composition of layers: stacked (deep) RNNs and bidirectional wrappers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Layer = Callable[..., Any]

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class BidirectionalParams(NamedTuple):
    """Parameters of a bidirectional layer: one cell per direction."""

    forward: Any  # e.g. LSTMParams
    backward: Any  # same type as forward


def _merge(fw: jax.Array, bw: jax.Array, merge_mode: str | None):
    if merge_mode == "concat":
        return jnp.concatenate([fw, bw], axis=-1)
    if merge_mode == "sum":
        return fw + bw
    if merge_mode == "mul":
        return fw * bw
    if merge_mode == "ave":
        return (fw + bw) / 2
    return fw, bw


def _refuse_info(layer_kwargs: dict, where: str) -> None:
    if layer_kwargs.get("return_info"):
        raise ValueError(
            f"{where}: return_info=True is not supported here (each layer would return its "
            "own NewtonInfo); call the layer functions themselves with return_info=True."
        )


def bidirectional(
    layer: Layer,
    params: BidirectionalParams,
    x: jax.Array,
    *,
    merge_mode: str | None = "concat",
    initial_state: tuple[Any, Any] | None = None,
    return_sequences: bool = False, return_state: bool = False,
    seq_lengths: jax.Array | None = None, mask: jax.Array | None = None, time_major: bool = False,
    key: jax.Array | None = None, **layer_kwargs: Any,
):  # fmt: skip
    """Run ``layer`` forwards and backwards and merge, as ``keras.layers.Bidirectional``::

        fw_t = layer(params.forward, x)_t
        bw_t = output of layer(params.backward) after reading x_{L-1}, ..., x_t
        y_t  = merge(fw_t, bw_t)          # concat | sum | mul | ave | None (a pair)

    The backward direction reverses each sequence within its own length
    (``seq_lengths`` or a right-padded ``mask``) and its outputs are re-aligned
    with the input, so ``y_t`` sees the whole valid sequence from both sides and
    padded steps are zero. Without ``return_sequences`` the outputs merged are
    the forward output at the last valid step and the backward output at step 0.

    Args:
        layer: ``jaxrnn.simple_rnn``, ``jaxrnn.lstm``, ``jaxrnn.gru`` or any function
            with their signature.
        params: ``BidirectionalParams(forward, backward)``.
        x: ``(B, T, F)`` (``(T, B, F)`` with ``time_major``).
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or None
            (return ``(forward, backward)`` unmerged).
        initial_state: a pair ``(forward_state, backward_state)`` or None.
        return_sequences: as the layer's.
        return_state: as the layer's.
        seq_lengths: as the layer's.
        mask: as the layer's.
        time_major: as the layer's.
        key: split into one dropout key per direction.
        **layer_kwargs: passed to both directions (``dropout``, ``training``, ``unroll``,
            activations...).

    Returns:
        The merged output; with ``return_state``, ``(output, (fw_state, bw_state))``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> p = BidirectionalParams(jaxrnn.init_lstm(k1, 3, 4), jaxrnn.init_lstm(k2, 3, 4))
        >>> bidirectional(jaxrnn.lstm, p, jnp.ones((2, 5, 3)), return_sequences=True).shape
        (2, 5, 8)
    """
    where = "bidirectional"
    _refuse_info(layer_kwargs, where)
    if merge_mode not in MERGE_MODES:
        raise ValueError(
            f"{where}: unknown merge_mode={merge_mode!r}; use one of "
            "'concat', 'sum', 'mul', 'ave' or None (return both directions)."
        )
    if not isinstance(params, BidirectionalParams):
        raise TypeError(
            f"{where}: params must be BidirectionalParams(forward, backward), got "
            f"{type(params).__name__}."
        )
    if initial_state is None:
        fw_state = bw_state = None
    else:
        if (
            not isinstance(initial_state, (tuple, list))
            or len(initial_state) != 2
            or (hasattr(initial_state, "_fields"))
        ):
            n = len(initial_state) if isinstance(initial_state, (tuple, list)) else 1
            raise ValueError(
                f"{where}: initial_state must be a pair (forward_state, backward_state), "
                f"got {type(initial_state).__name__} with {n} part(s). For an LSTM pass "
                "(LSTMState(h_fw, c_fw), LSTMState(h_bw, c_bw))."
            )
        fw_state, bw_state = initial_state
    k_fw = k_bw = None
    if key is not None:
        k_fw, k_bw = jax.random.split(key)
    common = dict(
        return_sequences=return_sequences,
        return_state=True,
        seq_lengths=seq_lengths,
        mask=mask,
        time_major=time_major,
        **layer_kwargs,
    )
    fw, fw_final = layer(params.forward, x, initial_state=fw_state, key=k_fw, **common)
    bw, bw_final = layer(
        params.backward, x, initial_state=bw_state, key=k_bw, go_backwards=True, **common
    )
    if return_sequences:
        bw = jnp.flip(bw, 0 if time_major else 1)  # processing order -> input order
    out = _merge(fw, bw, merge_mode)
    return (out, (fw_final, bw_final)) if return_state else out


def stacked(
    layer: Layer | Sequence[Layer],
    params: Sequence[Any],
    x: jax.Array,
    *,
    initial_state: Sequence[Any] | None = None,
    return_sequences: bool = False, return_state: bool = False,
    seq_lengths: jax.Array | None = None, mask: jax.Array | None = None, time_major: bool = False,
    key: jax.Array | None = None, **layer_kwargs: Any,
):  # fmt: skip
    """A deep RNN: layers applied in turn, every one but the last returning sequences::

        h^0 = x;   h^k = layer_k(params[k], h^{k-1}, return_sequences=True)   (k < L)
        output = layer_L(params[L], h^{L-1}, return_sequences=return_sequences)

    the Keras ``Sequential([LSTM(.., return_sequences=True), ..., LSTM(..)])`` and
    PyTorch ``nn.LSTM(num_layers=L)`` pattern.

    Args:
        layer: one layer function for all layers, or one per layer (a
            ``functools.partial(jaxrnn.bidirectional, jaxrnn.lstm)`` works too).
        params: one parameter set per layer (layer ``k``'s input size is layer
            ``k-1``'s output size).
        x: ``(B, T, F)`` (``(T, B, F)`` with ``time_major``).
        initial_state: one state per layer, or None for zeros.
        return_sequences: as the layers'.
        return_state: as the layers'.
        seq_lengths: as the layers'; the lengths apply to every layer.
        mask: as the layers'; the mask applies to every layer.
        time_major: as the layers'.
        key: split into one dropout key per layer.
        **layer_kwargs: passed to every layer (``dropout``, ``training``, ...).

    Returns:
        The last layer's output; with ``return_state``, ``(output, [state per layer])``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> ks = jax.random.split(jax.random.key(0), 3)
        >>> ps = [jaxrnn.init_rnn(ks[0], 1, 20)] + [jaxrnn.init_rnn(k, 20, 20) for k in ks[1:]]
        >>> stacked(jaxrnn.simple_rnn, ps, jnp.ones((4, 7, 1))).shape
        (4, 20)
    """
    where = "stacked"
    _refuse_info(layer_kwargs, where)
    if hasattr(params, "_fields") or not isinstance(params, Sequence):
        raise TypeError(
            f"{where}: params must be a list with one parameter set per layer, got a single "
            f"{type(params).__name__}. For one layer pass [params] (or call the layer "
            "function directly); for several, e.g. [jaxrnn.init_lstm(k1, 3, 64), "
            "jaxrnn.init_lstm(k2, 64, 64)]."
        )
    params = list(params)
    depth = len(params)
    if depth == 0:
        raise ValueError(f"{where}: params is empty; pass one parameter set per layer.")
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer] * depth
    if len(layers) != depth:
        raise ValueError(
            f"{where}: {len(layers)} layer functions for {depth} parameter sets; pass one "
            "function for all layers or one per parameter set."
        )
    if initial_state is None:
        states = [None] * depth
    else:
        states = list(initial_state)
        if len(states) != depth:
            raise ValueError(
                f"{where}: initial_state has {len(states)} entries for {depth} layers; "
                "pass one state per layer (None for zeros is not allowed inside the list)."
            )
    keys = [None] * depth if key is None else list(jax.random.split(key, depth))
    finals = []
    h = x
    for k, (fn, p, s, kk) in enumerate(zip(layers, params, states, keys, strict=True)):
        last = k == depth - 1
        h, final = fn(
            p,
            h,
            initial_state=s,
            key=kk,
            return_sequences=return_sequences if last else True,
            return_state=True,
            seq_lengths=seq_lengths,
            mask=mask,
            time_major=time_major,
            **layer_kwargs,
        )
        finals.append(final)
    return (h, finals) if return_state else h
