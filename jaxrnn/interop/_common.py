"""Shared pieces of the converters: the ``Converted`` result and array helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from .._cells.gru import GRUParams
from .._cells.spec import param_type_names, spec_named, spec_of
from .._compose import BidirectionalParams
from .._dropout import is_on
from .._layers import layer_for

DROPOUT_ARGS = ("dropout", "recurrent_dropout")  # Keras layer config kept in layer_kwargs


class Converted(NamedTuple):
    """Converted parameters and what is needed to run them with jaxrnn.

    ``conv(x, **kw)`` is ``conv.layer(conv.params, x, **conv.layer_kwargs, **kw)``
    (keyword arguments given to the call override ``layer_kwargs``), with one
    addition for a converted layer that has dropout (a Keras layer's non-zero
    ``dropout`` or ``recurrent_dropout``, kept in ``layer_kwargs``): a call
    without a key (``key`` absent or None) that gives none of ``training``,
    ``dropout``, ``recurrent_dropout`` is inference, ``training=False``, as
    calling the Keras layer outside ``fit``. ``conv(x, key=k)`` trains with
    dropout (Keras' ``training=True``), so ``conv(x, key=key)`` in a loss that
    gets ``key=None`` for evaluation does the right thing in both cases;
    ``training=`` given explicitly always wins. (Calling ``conv.layer`` yourself
    with these ``layer_kwargs`` and no key raises; pass ``training=False``.)

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np, jaxrnn
        >>> p = jaxrnn.RNNParams(np.ones((2, 3), np.float32), np.zeros((3, 3), np.float32), None)
        >>> conv = Converted(p, jaxrnn.simple_rnn, {"activation": "relu"})
        >>> conv(jnp.ones((1, 4, 2))).tolist()
        [[2.0, 2.0, 2.0]]
        >>> drop = Converted(p, jaxrnn.simple_rnn, {"activation": "relu", "dropout": 0.5})
        >>> drop(jnp.ones((1, 4, 2))).tolist()          # inference: dropout off
        [[2.0, 2.0, 2.0]]
        >>> drop(jnp.ones((1, 4, 2)), key=jax.random.key(0)).shape   # training: dropout on
        (1, 3)
    """

    params: Any  # params, BidirectionalParams, or a list of them (one per layer)
    layer: Callable[..., Any]  # e.g. jaxrnn.lstm, or partial(jaxrnn.stacked, ...)
    layer_kwargs: dict[str, Any]  # e.g. {"activation": "relu", "time_major": True}

    def __call__(self, x, **kwargs):
        kw = {**self.layer_kwargs, **kwargs}
        recorded = any(is_on(self.layer_kwargs.get(n, 0)) for n in DROPOUT_ARGS)
        chosen = any(n in kwargs for n in (*DROPOUT_ARGS, "training"))
        if recorded and not chosen and kwargs.get("key") is None:
            kw["training"] = False  # a plain call of a converted layer is inference
        return self.layer(self.params, x, **kw)


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy-free view of a NumPy/JAX array or a (detached, CPU) torch tensor."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor, without importing torch
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def kind_of(params: Any, where: str) -> str:
    """``"rnn"``, ``"lstm"`` or ``"gru"`` (the cell's ``CellSpec.kind``) from its parameters."""
    spec = spec_of(params)
    if spec is None:
        raise TypeError(
            f"{where}: expected jaxrnn {param_type_names()}, got {type(params).__name__}."
        )
    if not spec.has_peers:
        raise TypeError(
            f"{where}: {type(params).__name__} has no counterpart in Keras, PyTorch, Flax or "
            f"Haiku (none of them ships a {spec.keras} cell), so there is no format to convert "
            "to or from. Save and load it with jaxrnn.checkpoint."
        )
    return spec.kind


def layer_of(kind: str):
    """The layer function of cell ``kind``: ``layer_of("lstm") is jaxrnn.lstm``."""
    return layer_for(spec_named(kind))


def split_layers(params: Any, where: str) -> tuple[list[list[Any]], bool, bool]:
    """``(layers, bidirectional, is_list)``: each layer as a list of 1 or 2 directions."""
    is_list = isinstance(params, (list, tuple)) and not hasattr(params, "_fields")
    items = list(params) if is_list else [params]
    if not items:
        raise ValueError(f"{where}: params is an empty list; pass one parameter set per layer.")
    bidi = [isinstance(p, BidirectionalParams) for p in items]
    if any(bidi) and not all(bidi):
        raise ValueError(
            f"{where}: some layers are BidirectionalParams and some are not; the target "
            "needs every layer to have the same number of directions."
        )
    layers = [[p.forward, p.backward] if b else [p] for p, b in zip(items, bidi, strict=True)]
    kinds = {kind_of(d, where) for layer in layers for d in layer}
    if len(kinds) > 1:
        raise ValueError(f"{where}: layers of different kinds {sorted(kinds)}; use one kind.")
    return layers, all(bidi), is_list


def gru_reset_after(p: GRUParams, reset_after: bool | None, where: str) -> bool:
    """Which GRU variant ``p`` is: ``reset_after`` when given, else read from the biases.

    ``recurrent_bias`` present -> reset-after; only ``bias`` -> reset-before (Keras'
    ``reset_after=False`` layout); no bias at all fits both variants: reset-after
    (PyTorch's, Flax's and Keras' default) is assumed.
    """
    if reset_after is not None:
        if not reset_after and p.recurrent_bias is not None:
            raise ValueError(
                f"{where}: reset_after=False but the GRU has a recurrent_bias; the "
                "reset-before GRU has none (set it to None or pass reset_after=True)."
            )
        return bool(reset_after)
    if p.recurrent_bias is not None:
        return True
    return p.bias is None


def refuse_reset_before(
    p: GRUParams, reset_after: bool | None, where: str, target: str, library: str
) -> None:
    """Raise ``ValueError`` when ``p`` is a reset-before GRU (see ``gru_reset_after``):
    ``target``, e.g. ``"PyTorch's nn.GRU"``, is reset-after, a different function."""
    if not gru_reset_after(p, reset_after, where):
        raise ValueError(
            f"{where}: this GRU is reset-before (an input bias and no recurrent_bias, "
            "Keras' reset_after=False layout): n = tanh(x Wn + (r*h) Un + bn). "
            f"{target} is reset-after, n = tanh(x Wn + bin + r*(h Un + bhn)), a different "
            f"function, so no {library} weights reproduce it. If these really are "
            "reset-after weights with a zero recurrent bias, pass reset_after=True."
        )


def blocks(a: np.ndarray, order: str, new_order: str, axis: int) -> np.ndarray:
    """Reorder gate blocks along ``axis``: ``blocks(a, "rzn", "zrn", 0)``."""
    parts = dict(zip(order, np.split(a, len(order), axis=axis), strict=True))
    return np.concatenate([parts[g] for g in new_order], axis=axis)


def same_dtype_zeros(shape, like: np.ndarray) -> np.ndarray:
    return np.zeros(shape, dtype=like.dtype)


def refuse_float64(arrays: Mapping[str, np.ndarray], where: str, cast: str) -> None:
    """Raise ``TypeError`` if any array is float64 while JAX's 64-bit mode is off.

    ``jnp.asarray`` would silently round such weights to float32, so the converted
    network would not compute what the source computes: exact or not at all.
    ``cast`` shows how to make float32 weights on purpose.
    """
    if jax.config.read("jax_enable_x64"):
        return
    wide = [name for name, a in arrays.items() if np.asarray(a).dtype == np.float64]
    if not wide:
        return
    which = repr(wide[0]) + (f" and {len(wide) - 1} more" if len(wide) > 1 else "")
    raise TypeError(
        f"{where}: {len(wide)} of {len(arrays)} arrays are float64 ({which}) but JAX's 64-bit "
        "mode is off, so converting would silently round them to float32 and the result "
        "would not compute what the float64 source computes. Either turn 64-bit mode on "
        'before converting, jax.config.update("jax_enable_x64", True), or make them float32 '
        f"on purpose first: {cast}."
    )
