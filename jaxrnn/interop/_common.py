"""Shared pieces of the converters: the ``Converted`` result and array helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._compose import BidirectionalParams
from .._gru import GRUParams
from .._lstm import LSTMParams
from .._simple_rnn import RNNParams

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PARAMS_CLS = {"rnn": RNNParams, "lstm": LSTMParams, "gru": GRUParams}


class Converted(NamedTuple):
    """Converted parameters and what is needed to run them with jaxrnn.

    ``conv(x, **kw)`` is ``conv.layer(conv.params, x, **conv.layer_kwargs, **kw)``
    (keyword arguments given to the call override ``layer_kwargs``).

    Example:
        >>> import jax.numpy as jnp, numpy as np, jaxrnn
        >>> p = jaxrnn.RNNParams(np.ones((2, 3), np.float32), np.zeros((3, 3), np.float32), None)
        >>> conv = Converted(p, jaxrnn.simple_rnn, {"activation": "relu"})
        >>> conv(jnp.ones((1, 4, 2))).tolist()
        [[2.0, 2.0, 2.0]]
    """

    params: Any  # params, BidirectionalParams, or a list of them (one per layer)
    layer: Callable[..., Any]  # e.g. jaxrnn.lstm, or partial(jaxrnn.stacked, ...)
    layer_kwargs: dict[str, Any]  # e.g. {"activation": "relu", "time_major": True}

    def __call__(self, x, **kwargs):
        return self.layer(self.params, x, **{**self.layer_kwargs, **kwargs})


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy-free view of a NumPy/JAX array or a (detached, CPU) torch tensor."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor, without importing torch
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def kind_of(params: Any, where: str) -> str:
    """``"rnn"``, ``"lstm"`` or ``"gru"`` from a jaxrnn parameter NamedTuple."""
    for kind, cls in PARAMS_CLS.items():
        if isinstance(params, cls):
            return kind
    raise TypeError(
        f"{where}: expected jaxrnn RNNParams, LSTMParams or GRUParams, got {type(params).__name__}."
    )


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


def blocks(a: np.ndarray, order: str, new_order: str, axis: int) -> np.ndarray:
    """Reorder gate blocks along ``axis``: ``blocks(a, "rzn", "zrn", 0)``."""
    parts = dict(zip(order, np.split(a, len(order), axis=axis), strict=True))
    return np.concatenate([parts[g] for g in new_order], axis=axis)


def same_dtype_zeros(shape, like: np.ndarray) -> np.ndarray:
    return np.zeros(shape, dtype=like.dtype)
