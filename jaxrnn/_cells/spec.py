"""The cell registry: one ``CellSpec`` per cell, looked up by name or parameters.

Everything that must know "which cell is this" reads it here: the layers (gate
count, step, fused recurrence), ``zero_state``, the Flax modules (parameter
type, initialiser, state fields), the converters and the error messages.

Adding a cell means writing its parameter NamedTuple, its step, its initialiser
and, at the end of its module, one ``register(CellSpec(...))``. The layer
function (``jaxrnn.lstm``...) registers itself with ``_layers.layer_for``.

This module imports nothing from jaxrnn, so the checks below the cells can read
it; the cell modules fill it when ``jaxrnn`` is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """What the rest of jaxrnn needs to know about one cell.

    Examples:
        >>> import jax, jaxrnn
        >>> spec = spec_of(jaxrnn.init_lstm(jax.random.key(0), 3, 2))
        >>> spec.kind, spec.gates, spec.state_fields, spec.keras
        ('lstm', 4, ('h', 'c'), 'LSTM')
    """

    kind: str  # short name used by the converters and modules: "rnn", "lstm", "gru"
    layer: str  # the layer function's name in jaxrnn: "simple_rnn", "lstm", "gru"
    keras: str  # the Keras layer class (and jaxrnn.nnx / jaxrnn.linen class): "LSTM"
    # the torch.nn module, e.g. "LSTM"; None: no peer library (Keras, PyTorch, Flax,
    # Haiku) has the cell, and the converters refuse it (the min cells)
    torch: str | None
    step: Callable  # (params, carry, x, **options) -> (carry, y)
    init: Callable  # (key, input_size, hidden_size, *, dtype, use_bias, ...) -> params
    params_type: type  # the parameter NamedTuple
    gates: int  # G: kernel (I, G·H), recurrent_kernel (H, G·H)
    state_fields: tuple[str, ...]  # ("h",): the carry is h itself; ("h", "c"): state_type
    state_type: type | None  # the NamedTuple carry when there are several fields
    options: tuple[str, ...]  # the step's keyword options a layer forwards, e.g. activation
    init_options: tuple[str, ...] = ()  # initialiser keywords beyond the common ones
    fused: str | None = None  # module of its fused recurrence (imported on first use)
    # time algorithms the layer runs (``method=``), its default first (see jaxrnn._time)
    methods: tuple[str, ...] = ("sequential",)
    # cells linear in their state, h_t = a_t ⊙ h_{t-1} + b_t: the pre-activations
    # k = x W + b (..., G·H) -> (a, b) (..., H), any leading axes (the min cells); None
    # for the others
    coefficients: Callable | None = None

    @property
    def has_peers(self) -> bool:
        """Whether Keras, PyTorch, Flax and Haiku have this cell (the converters' cells)."""
        return self.torch is not None

    @property
    def recurrent(self) -> bool:
        """Whether the parameters hold a ``recurrent_kernel`` (the min cells have none)."""
        return "recurrent_kernel" in self.params_type._fields

    def hidden_size(self, params: Any) -> int:
        """H, from ``kernel`` ``(I, G·H)``."""
        return params.kernel.shape[-1] // self.gates

    def make_state(self, parts: tuple) -> Any:
        """The carry from its fields in ``state_fields`` order."""
        return self.state_type(*parts) if self.state_type is not None else parts[0]

    def state_parts(self, carry: Any) -> tuple:
        """The carry's fields in ``state_fields`` order."""
        return tuple(carry) if self.state_type is not None else (carry,)

    def zero_state(self, params: Any, batch_shape: tuple[int, ...]) -> Any:
        """All-zeros carry ``(*batch_shape, H)`` in the parameters' dtype."""
        zeros = jnp.zeros((*batch_shape, self.hidden_size(params)), params.kernel.dtype)
        return self.make_state((zeros,) * len(self.state_fields))


_SPECS: dict[str, CellSpec] = {}  # kind -> spec, in registration order


def register(spec: CellSpec) -> CellSpec:
    """Add ``spec`` to the registry (once per kind); returns it."""
    if spec.kind in _SPECS and _SPECS[spec.kind] != spec:
        raise ValueError(f"register: a cell of kind {spec.kind!r} is already registered.")
    _SPECS[spec.kind] = spec
    return spec


def specs() -> tuple[CellSpec, ...]:
    """Every registered cell, in registration order."""
    return tuple(_SPECS.values())


def spec_named(kind: str) -> CellSpec:
    """The spec of ``kind`` ("rnn", "lstm", "gru", ...)."""
    return _SPECS[kind]


def spec_of_type(cls: type) -> CellSpec | None:
    """The spec whose parameter type is ``cls`` (None when none is)."""
    for spec in _SPECS.values():
        if spec.params_type is cls:
            return spec
    return None


def spec_of(params: Any) -> CellSpec | None:
    """The spec of a parameter NamedTuple (None for anything else)."""
    return spec_of_type(type(params))


def spec_with(**fields: Any) -> CellSpec | None:
    """The one spec whose fields equal ``fields``, e.g. ``spec_with(keras="GRU")``."""
    found = [s for s in _SPECS.values() if all(getattr(s, k) == v for k, v in fields.items())]
    return found[0] if len(found) == 1 else None


def param_type_names() -> str:
    """``"RNNParams, LSTMParams or GRUParams"``, for messages."""
    names = [s.params_type.__name__ for s in _SPECS.values()]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)
