"""What the Flax modules share (``jaxrnn.nnx`` and ``jaxrnn.linen``), Flax-free.

The modules' options (declared once, as ``Option`` s, with the layers' own),
Keras initialiser names, the checks of a layer's constructor arguments, drawing
a cell's parameters and binding its functional layer (both from its
``CellSpec``), the carry kept by stateful layers, the settings of stacked and
bidirectional wrappers, and ``RecurrentModule``, the interface the modules of
both flavours implement. Each module file keeps only what its Flax flavour needs.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers

from ._cells.orthogonal import orthogonal
from ._cells.spec import CellSpec
from ._checks import check_flag, lookup, positive_int
from ._compose import MERGE_MODES, bidirectional, stacked
from ._layers import layer_for
from ._options import CELL_OPTIONS, LAYER_OPTIONS, Option

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


def get_initializer(init: str | Callable, where: str, arg: str) -> Callable:
    """A Keras initialiser name or a ``jax.nn.initializers`` callable."""
    alternative = "a jax.nn.initializers callable (key, shape, dtype) -> array"
    expected = "an initialiser name such as 'glorot_uniform' or a callable"
    return lookup(INITIALIZERS, init, where, arg, alternative=alternative, expected=expected)


def _check_initializer(value: Any, where: str, name: str) -> None:
    get_initializer(value, where, name)


def _check_dtype(value: Any, where: str, name: str) -> None:
    if not jnp.issubdtype(value, jnp.floating):
        raise TypeError(f"{where}: {name}={value!r} is not a floating dtype.")


def _check_batch_size(value: Any, where: str, name: str) -> None:
    if value is not None:
        positive_int(value, where, name)


def _check_bool(value: Any, where: str, name: str) -> None:
    check_flag(value, where, name)


def _layer_option(name: str) -> Option:
    return next(o for o in LAYER_OPTIONS if o.name == name)


# The modules' keyword options after the cell's own, in constructor order. Those
# passed to the functional layer are the layers' own definitions.
MODULE_OPTIONS: tuple[Option, ...] = (
    Option("use_bias", True, "create the bias vector(s).", _check_bool),
    Option(
        "kernel_initializer",
        "glorot_uniform",
        "Keras name or ``jax.nn.initializers`` callable.",
        _check_initializer,
    ),
    Option(
        "recurrent_initializer",
        "orthogonal",
        "Keras name or ``jax.nn.initializers`` callable.",
        _check_initializer,
    ),
    Option(
        "bias_initializer",
        "zeros",
        "Keras name or ``jax.nn.initializers`` callable.",
        _check_initializer,
    ),
    *(
        _layer_option(n)
        for n in (
            "return_sequences",
            "return_state",
            "go_backwards",
            "dropout",
            "recurrent_dropout",
        )
    ),
    Option("deterministic", False, "the call's default: True switches dropout off."),
    _layer_option("unroll"),
    Option("stateful", False, "keep the final state between calls (as Keras).", _check_bool),
    Option("batch_size", None, "the fixed batch size of a stateful layer.", _check_batch_size),
    Option(
        "learnable_initial_state",
        False,
        "learn the initial state (``h0``, and ``c0`` for the LSTM).",
        _check_bool,
    ),
    _layer_option("time_major"),
    Option("dtype", jnp.float32, "the parameters' dtype (inputs are cast to it).", _check_dtype),
    *(
        _layer_option(n)
        for n in ("impl", "remat", "matmul_dtype", "method", "tol", "max_iter", "fallback")
    ),
)

# What the functional layer takes from a module's configuration (with the cell's options).
PASSED = (
    "unroll", "dropout", "recurrent_dropout", "impl", "remat", "matmul_dtype", "method", "tol",
    "max_iter", "fallback",
)  # fmt: skip
# Options of a recurrent kernel, which the min cells do not have.
RECURRENT_ONLY = ("recurrent_initializer", "recurrent_dropout")


def module_options(spec: CellSpec) -> tuple[Option, ...]:
    """A layer module's keyword options in constructor order: the cell's step and
    initialiser options, then ``MODULE_OPTIONS`` (without ``RECURRENT_ONLY`` for a
    cell without recurrent kernel)."""
    names = dict.fromkeys(spec.options + spec.init_options)
    common = tuple(o for o in MODULE_OPTIONS if spec.recurrent or o.name not in RECURRENT_ONLY)
    return tuple(CELL_OPTIONS[n] for n in names) + common


def check_config(spec: CellSpec, cfg: dict, where: str) -> None:
    """Validate a layer's constructor arguments (early, with the argument's name)."""
    positive_int(cfg["units"], where, "units")
    for option in MODULE_OPTIONS:
        if option.name in RECURRENT_ONLY and not spec.recurrent and option.name in cfg:
            if cfg[option.name] is not option.default and cfg[option.name] != option.default:
                raise ValueError(
                    f"{where}: {option.name}={cfg[option.name]!r} does not apply: the "
                    f"{spec.keras} cell has no recurrent kernel (its gates read the input only)."
                )
    for option in module_options(spec):
        if option.name in cfg:
            option.validate(cfg[option.name], where)
    if cfg.get("stateful") and cfg.get("learnable_initial_state"):
        raise ValueError(
            f"{where}: stateful=True and learnable_initial_state=True together are not "
            "supported; a stateful layer starts from zeros after reset_state()."
        )


def init_cell(spec: CellSpec, key: jax.Array, in_features: int, cfg: dict, where: str):
    """Draw the cell parameters with the cell's functional initialiser."""
    return spec.init(
        key,
        in_features,
        cfg["units"],
        dtype=cfg["dtype"],
        use_bias=cfg["use_bias"],
        kernel_init=get_initializer(cfg["kernel_initializer"], where, "kernel_initializer"),
        bias_init=get_initializer(cfg["bias_initializer"], where, "bias_initializer"),
        **{name: cfg[name] for name in spec.init_options},
        **(
            {
                "recurrent_init": get_initializer(
                    cfg["recurrent_initializer"], where, "recurrent_initializer"
                )
            }
            if spec.recurrent
            else {}
        ),
    )


def param_fields(spec: CellSpec, in_features: int, cfg: dict, where: str) -> tuple[str, ...]:
    """The parameter fields this configuration creates (``bias`` only with
    ``use_bias``...), read from the initialiser's output shapes, without drawing."""
    shapes = jax.eval_shape(
        lambda k: init_cell(spec, k, in_features, cfg, where), jax.random.key(0)
    )
    return tuple(f for f in spec.params_type._fields if getattr(shapes, f) is not None)


def bind_layer(spec: CellSpec, cfg: dict, *, with_direction: bool = True) -> Callable:
    """The functional layer with the module's configuration bound."""
    kwargs = {a: cfg[a] for a in spec.options + PASSED if a in cfg}
    if with_direction:
        kwargs["go_backwards"] = cfg["go_backwards"]
    return functools.partial(layer_for(spec), **kwargs)


def start_state(
    spec: CellSpec, params: Any, batch_size: int, kept: tuple | None, learnt: tuple | None
):
    """The carry a call without ``initial_state`` starts from: the ``kept`` fields of
    a stateful layer, the ``learnt`` ``(units,)`` fields broadcast over the batch, or zeros."""
    if kept is not None:
        return spec.make_state(kept)
    if learnt is not None:
        shape = (batch_size, learnt[0].shape[-1])
        return spec.make_state(tuple(jnp.broadcast_to(v, shape) for v in learnt))
    return spec.zero_state(params, (batch_size,))


class RecurrentModule(abc.ABC):
    """The interface every jaxrnn module implements, NNX or Linen, for
    ``Bidirectional`` and ``Stacked`` (which implement it too)."""

    where: str  # the name errors start with, e.g. "jaxrnn.nnx.LSTM"

    @abc.abstractmethod
    def _layer_fn(self) -> Callable:
        """The functional layer (or composition) with the module's configuration bound."""

    @abc.abstractmethod
    def _has_dropout(self) -> bool:
        """Whether a dropout rate is set anywhere inside."""

    @abc.abstractmethod
    def _store_state(self, final: Any) -> None:
        """Keep the final carry (stateful layers; the others ignore it)."""

    @property
    @abc.abstractmethod
    def out_features(self) -> int | None:
        """The output size, or None when two outputs are returned (merge_mode=None)."""


def direction_dispatch(fw: Callable, bw: Callable) -> Callable:
    """A layer function for ``jaxrnn.bidirectional`` running ``fw`` or ``bw``.

    ``bidirectional`` calls the layer once plainly and once with
    ``go_backwards=True``; this routes the two calls to the two configurations.
    """

    def layer(params, x, *, go_backwards=False, **kwargs):
        return (bw if go_backwards else fw)(params, x, go_backwards=go_backwards, **kwargs)

    return layer


def batch_of(x: Any, time_major: bool) -> int | None:
    """The batch size of a 3-D sequence, or None (the layer then raises its own error)."""
    if np.ndim(x) != 3:
        return None
    return int(np.shape(x)[1 if time_major else 0])


def check_features(x: Any, in_features: int, where: str) -> None:
    if np.ndim(x) == 3 and np.shape(x)[-1] != in_features:
        raise ValueError(
            f"{where}: x has {np.shape(x)[-1]} features (x.shape={tuple(np.shape(x))}) but the "
            f"layer was built with in_features={in_features}."
        )


def check_batch(expected: int, batch: int, where: str) -> None:
    if batch != expected:
        raise ValueError(
            f"{where}: this stateful layer keeps the state of batch_size={expected} "
            f"sequences, but x has batch size {batch}. A stateful layer needs a fixed batch "
            "size: feed batches of that size, or build another layer for this one."
        )


def stack_settings(layers: Sequence[Any], where: str) -> bool:
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


def bidirectional_settings(fw: Any, bw: Any, merge_mode: Any, where: str) -> None:
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


def merged_features(fw_units: int, bw_units: int, merge_mode: Any) -> int | None:
    if merge_mode == "concat":
        return fw_units + bw_units
    return None if merge_mode is None else fw_units


class BidirectionalBase(RecurrentModule):
    """The flavour-free half of ``Bidirectional`` (NNX and Linen): its flavour provides
    ``forward_layer``, ``merge_mode`` and ``_backward_config()``, the module whose
    configuration the backward direction runs (Linen: the forward layer's clone)."""

    @abc.abstractmethod
    def _backward_config(self) -> Any:
        """The backward direction's layer, or one with its configuration."""

    @property
    def out_features(self) -> int | None:
        units = (self.forward_layer.units, self._backward_config().units)
        return merged_features(*units, self.merge_mode)

    def _layer_fn(self) -> Callable:
        layer = direction_dispatch(
            self.forward_layer._layer_fn(with_direction=False),
            self._backward_config()._layer_fn(with_direction=False),
        )
        return functools.partial(bidirectional, layer, merge_mode=self.merge_mode)

    def _has_dropout(self) -> bool:
        return self.forward_layer._has_dropout() or self._backward_config()._has_dropout()


class StackedBase(RecurrentModule):
    """The flavour-free half of ``Stacked`` (NNX and Linen) over its ``layers``."""

    @property
    def out_features(self) -> int | None:
        return self.layers[-1].out_features

    def _layer_fn(self) -> Callable:
        return functools.partial(stacked, [layer._layer_fn() for layer in self.layers])

    def _has_dropout(self) -> bool:
        return any(layer._has_dropout() for layer in self.layers)

    def _store_state(self, final) -> None:
        for layer, f in zip(self.layers, final, strict=True):
            layer._store_state(f)
