"""Configuration shared by the Flax modules (``jaxrnn.nnx`` and ``jaxrnn.linen``).

Flax-free: Keras initialiser names, the checks of a layer's constructor
arguments, building a cell's parameters, binding the functional layer, and the
settings of stacked and bidirectional wrappers. Each module file keeps only
what its Flax flavour needs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers

from ._cells.activations import get_activation
from ._cells.gru import GRUParams, init_gru
from ._cells.lstm import LSTMParams, init_lstm
from ._cells.orthogonal import orthogonal
from ._cells.simple_rnn import RNNParams, init_rnn
from ._compose import MERGE_MODES
from ._dropout import check_rate
from ._layers import gru, lstm, simple_rnn
from ._options import IMPLS
from ._remat import check_remat
from ._unroll import check_unroll

# Keras initialiser names whose jax.nn.initializers namesake draws the same
# distribution (the glorot/he/lecun normals are truncated in both).
INITIALIZERS: dict[str, Callable] = {
    "glorot_uniform": initializers.glorot_uniform(),
    "glorot_normal": initializers.glorot_normal(),
    "he_uniform": initializers.he_uniform(),
    "he_normal": initializers.he_normal(),
    "lecun_uniform": initializers.lecun_uniform(),
    "lecun_normal": initializers.lecun_normal(),
    "orthogonal": orthogonal(),  # without LAPACK (see jaxrnn/_cells/orthogonal.py)
    "zeros": initializers.zeros,
    "ones": initializers.ones,
}


# ---------------------------------------------------------------------------
# configuration checks shared with jaxrnn.linen


def _get_initializer(init: str | Callable, where: str, arg: str) -> Callable:
    """A Keras initialiser name or a ``jax.nn.initializers`` callable."""
    if isinstance(init, str):
        try:
            return INITIALIZERS[init]
        except KeyError:
            known = ", ".join(sorted(INITIALIZERS))
            raise ValueError(
                f"{where}: unknown {arg}={init!r}. Use one of {known}, or pass a "
                "jax.nn.initializers callable (key, shape, dtype) -> array."
            ) from None
    if callable(init):
        return init
    raise TypeError(
        f"{where}: {arg} must be an initialiser name such as 'glorot_uniform' or a "
        f"callable, got {type(init).__name__}."
    )


def _check_size(value: Any, where: str, arg: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {arg}={value!r}; it must be a positive integer.")


def _check_config(where: str, cfg: dict) -> None:
    """Validate a layer's constructor arguments (early, with the argument's name)."""
    _check_size(cfg["units"], where, "units")
    for arg in ("activation", "recurrent_activation"):
        if arg in cfg:
            get_activation(cfg[arg], where=where, arg=arg)
    for arg in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
        _get_initializer(cfg[arg], where, arg)
    check_rate(cfg["dropout"], where, "dropout")
    check_rate(cfg["recurrent_dropout"], where, "recurrent_dropout")
    check_unroll(cfg["unroll"], where)
    check_remat(cfg["remat"], where)
    if cfg["impl"] not in IMPLS:
        raise ValueError(f"{where}: unknown impl={cfg['impl']!r}; use 'auto', 'fast' or 'scan'.")
    if not jnp.issubdtype(cfg["dtype"], jnp.floating):
        raise TypeError(f"{where}: dtype={cfg['dtype']!r} is not a floating dtype.")
    if cfg["stateful"] and cfg["learnable_initial_state"]:
        raise ValueError(
            f"{where}: stateful=True and learnable_initial_state=True together are not "
            "supported; a stateful layer starts from zeros after reset_state()."
        )


def _init_cell(kind: str, key: jax.Array, in_features: int, cfg: dict, where: str):
    """Draw the cell parameters with the functional initialiser of ``kind``."""
    common = dict(
        dtype=cfg["dtype"],
        use_bias=cfg["use_bias"],
        kernel_init=_get_initializer(cfg["kernel_initializer"], where, "kernel_initializer"),
        recurrent_init=_get_initializer(
            cfg["recurrent_initializer"], where, "recurrent_initializer"
        ),
        bias_init=_get_initializer(cfg["bias_initializer"], where, "bias_initializer"),
    )
    units = cfg["units"]
    if kind == "lstm":
        return init_lstm(
            key, in_features, units, unit_forget_bias=cfg["unit_forget_bias"], **common
        )
    if kind == "gru":
        return init_gru(key, in_features, units, reset_after=cfg["reset_after"], **common)
    return init_rnn(key, in_features, units, **common)


_LAYER_FNS = {"rnn": simple_rnn, "lstm": lstm, "gru": gru}
_PARAM_TYPES = {"rnn": RNNParams, "lstm": LSTMParams, "gru": GRUParams}
# constructor arguments forwarded to the layer function (besides the per-call ones)
_CALL_ARGS = {
    "rnn": ("activation",),
    "lstm": ("activation", "recurrent_activation"),
    "gru": ("activation", "recurrent_activation", "reset_after"),
}
_PASS_ARGS = ("unroll", "dropout", "recurrent_dropout", "impl", "remat", "matmul_dtype")


def _bind_layer(kind: str, cfg: dict, *, with_direction: bool = True) -> Callable:
    """The functional layer with the module's configuration bound."""
    kwargs = {a: cfg[a] for a in _CALL_ARGS[kind] + _PASS_ARGS}
    if with_direction:
        kwargs["go_backwards"] = cfg["go_backwards"]
    return functools.partial(_LAYER_FNS[kind], **kwargs)


def _direction_dispatch(fw: Callable, bw: Callable) -> Callable:
    """A layer function for ``jaxrnn.bidirectional`` running ``fw`` or ``bw``.

    ``bidirectional`` calls the layer once plainly and once with
    ``go_backwards=True``; this routes the two calls to the two configurations.
    """

    def layer(params, x, *, go_backwards=False, **kwargs):
        return (bw if go_backwards else fw)(params, x, go_backwards=go_backwards, **kwargs)

    return layer


def _batch_of(x: Any, time_major: bool) -> int | None:
    """The batch size of a 3-D sequence, or None (the layer then raises its own error)."""
    if np.ndim(x) != 3:
        return None
    return int(np.shape(x)[1 if time_major else 0])


def _check_features(x: Any, in_features: int, where: str) -> None:
    if np.ndim(x) == 3 and np.shape(x)[-1] != in_features:
        raise ValueError(
            f"{where}: x has {np.shape(x)[-1]} features (x.shape={tuple(np.shape(x))}) but the "
            f"layer was built with in_features={in_features}."
        )


def _check_batch(expected: int, batch: int, where: str) -> None:
    if batch != expected:
        raise ValueError(
            f"{where}: this stateful layer keeps the state of batch_size={expected} "
            f"sequences, but x has batch size {batch}. A stateful layer needs a fixed batch "
            "size: feed batches of that size, or build another layer for this one."
        )


def _stack_settings(layers: Sequence[Any], where: str) -> bool:
    """Check that consecutive layers fit; return the common ``time_major``."""
    if len(layers) == 0:
        raise ValueError(f"{where}: layers is empty; pass at least one recurrent layer.")
    for k in range(1, len(layers)):
        prev, cur = layers[k - 1], layers[k]
        if prev.out_features is None:
            raise ValueError(
                f"{where}: layers[{k - 1}] returns two outputs (merge_mode=None) and cannot "
                "feed another layer; use merge_mode='concat'."
            )
        if cur.in_features != prev.out_features:
            raise ValueError(
                f"{where}: layers[{k}] has in_features={cur.in_features} but layers[{k - 1}] "
                f"outputs {prev.out_features} features."
            )
    modes = {bool(layer.time_major) for layer in layers}
    if len(modes) > 1:
        raise ValueError(f"{where}: the layers disagree on time_major; use one layout for all.")
    return modes.pop()


def _bidirectional_settings(fw: Any, bw: Any, merge_mode: Any, where: str) -> None:
    """Keras' rules for the two directions (``in_features`` only where modules have it)."""
    if merge_mode not in MERGE_MODES:
        raise ValueError(
            f"{where}: unknown merge_mode={merge_mode!r}; use one of 'concat', 'sum', 'mul', "
            "'ave' or None (return both directions)."
        )
    for name, layer in (("forward_layer", fw), ("backward_layer", bw)):
        if not hasattr(layer, "units"):
            raise TypeError(
                f"{where}: {name} must be a SimpleRNN, LSTM or GRU layer, got "
                f"{type(layer).__name__}."
            )
    if type(fw) is not type(bw):
        raise TypeError(
            f"{where}: forward_layer is a {type(fw).__name__} but backward_layer a "
            f"{type(bw).__name__}; use the same layer type in both directions."
        )
    if fw.go_backwards:
        raise ValueError(
            f"{where}: forward_layer has go_backwards=True; Bidirectional runs it forwards "
            "and the backward layer backwards, so build it with go_backwards=False."
        )
    for arg in ("return_sequences", "return_state", "time_major", "in_features"):
        if getattr(fw, arg, None) != getattr(bw, arg, None):
            raise ValueError(
                f"{where}: forward_layer.{arg}={getattr(fw, arg)!r} but "
                f"backward_layer.{arg}={getattr(bw, arg)!r}; they must agree."
            )
    if merge_mode in ("sum", "mul", "ave") and fw.units != bw.units:
        raise ValueError(
            f"{where}: merge_mode={merge_mode!r} needs equal units, got forward "
            f"{fw.units} and backward {bw.units}."
        )


def _merged_features(fw_units: int, bw_units: int, merge_mode: Any) -> int | None:
    if merge_mode == "concat":
        return fw_units + bw_units
    return None if merge_mode is None else fw_units
