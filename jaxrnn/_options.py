"""Every keyword option of the layers and Flax modules, declared once.

An ``Option`` holds the name, the default, the check and the one line of
documentation of one keyword. The layer functions (``jaxrnn.lstm``...) keep
explicit signatures, so users and editors see every keyword;
``tests/test_options.py`` holds those signatures and docstrings, and the Flax
modules' constructors, to the definitions here.

Adding a layer option: define it in ``LAYER_OPTIONS`` (``static=True`` when it
changes the traced program), add it to the three layer signatures and
docstrings (the test says where they differ), use it in ``_layers._run``, test it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from ._cells.activations import get_activation
from ._checks import check_flag
from ._dropout import check_rate
from ._remat import check_remat
from ._time import newton
from ._unroll import check_unroll

IMPLS = ("auto", "fast", "scan")
# every time algorithm; each cell accepts those in its ``CellSpec.methods``
METHODS = ("sequential", "associative", "chunked", "quasi_deer", "deer")
NEWTON_METHODS = ("quasi_deer", "deer")  # the options tol, max_iter, fallback, return_info


@dataclasses.dataclass(frozen=True)
class Option:
    """One keyword: ``check(value, where, name)`` raises for a bad value and may return
    a normalised one (None keeps the value)."""

    name: str
    default: Any
    doc: str  # one line; the docstrings' ``name: doc`` entry starts with it
    check: Callable[[Any, str, str], Any] | None = None
    static: bool = False  # part of a layer call's static plan (changes the program)

    def validate(self, value: Any, where: str) -> Any:
        """``value`` checked (and normalised) for ``where``."""
        if self.check is None:
            return value
        normalised = self.check(value, where, self.name)
        return value if normalised is None else normalised


def check_impl(impl: Any, where: str, name: str = "impl") -> None:
    if impl not in IMPLS:
        raise ValueError(
            f"{where}: unknown {name}={impl!r}; use 'auto' (fused path when the options "
            "allow, else the generic scan), 'fast' or 'scan'."
        )


def check_method(method: Any, where: str, name: str = "method") -> None:
    if method is not None and method not in METHODS:
        raise ValueError(
            f"{where}: unknown {name}={method!r}; use None (the cell's default) or one of "
            f"{', '.join(map(repr, METHODS))}."
        )


# the Newton options are checked by the solver's own check (one message for each)
def _check_tol(value: Any, where: str, name: str) -> None:
    newton.check_options("sequential", value, None, "sequential", where)


def _check_max_iter(value: Any, where: str, name: str) -> None:
    newton.check_options("sequential", None, value, "sequential", where)


def _check_fallback(value: Any, where: str, name: str) -> None:
    newton.check_options("sequential", None, None, value, where)


def check_matmul_dtype(dtype: Any, where: str, name: str = "matmul_dtype") -> str | None:
    """None, or the dtype's name (hashable, for the plan) when it is floating."""
    if dtype is None:
        return None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{where}: {name}={dtype!r} is not a floating dtype; use e.g. jnp.bfloat16."
        )
    return jnp.dtype(dtype).name


def _check_activation(value: Any, where: str, name: str) -> None:
    get_activation(value, where=where, arg=name)


def _check_bool(value: Any, where: str, name: str) -> None:
    check_flag(value, where, name)


def _check_unroll(value: Any, where: str, name: str) -> None:
    check_unroll(value, where)


def _check_remat(value: Any, where: str, name: str) -> None:
    check_remat(value, where)


# The cells' own options (a cell's ``CellSpec.options`` names those its step takes).
CELL_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "activation", "tanh", "callable or Keras name (default ``'tanh'``).", _check_activation
        ),
        Option(
            "recurrent_activation",
            "sigmoid",
            "callable or Keras name for the gates (default ``'sigmoid'``).",
            _check_activation,
        ),
        Option(
            "reset_after",
            True,
            "the GRU variant (True: Keras' and PyTorch's default).",
            _check_bool,
        ),
        Option(
            "unit_forget_bias",
            True,
            "forget-gate bias initialised to one (Keras).",
            _check_bool,
        ),
    )
}

# The options every layer function takes after its cell's, in signature order.
LAYER_OPTIONS: tuple[Option, ...] = (
    Option("initial_state", None, "the carry to start from; zeros when None."),
    Option(
        "return_sequences",
        False,
        "return all outputs ``(B, T, H)`` instead of the last ``(B, H)``.",
        _check_bool,
        static=True,
    ),
    Option(
        "return_state",
        False,
        "also return the final carry: ``(output, state)``.",
        _check_bool,
        static=True,
    ),
    Option(
        "go_backwards",
        False,
        "process the sequence from its end; outputs come in processing order (as Keras).",
        _check_bool,
        static=True,
    ),
    Option("seq_lengths", None, "integer ``(B,)`` lengths of right-padded sequences."),
    Option(
        "mask",
        None,
        "boolean ``(B, T)`` validity mask (Keras' ``mask``); ``(T, B)`` with ``time_major``.",
    ),
    Option(
        "time_major",
        False,
        "input and output sequences are ``(T, B, ...)``.",
        _check_bool,
        static=True,
    ),
    Option(
        "unroll",
        1,
        "scan steps per loop iteration (int >= 1, or True for all).",
        _check_unroll,
        static=True,
    ),
    Option("dropout", 0.0, "Keras' variational dropout rate on the inputs.", check_rate),
    Option(
        "recurrent_dropout",
        0.0,
        "Keras' variational dropout rate on the recurrent state.",
        check_rate,
    ),
    Option("key", None, "a ``jax.random`` key for the dropout masks."),
    Option("training", None, "Keras' switch: None or True applies dropout, False does not."),
    Option(
        "impl",
        "auto",
        "``'auto'`` (fused path when the options allow), ``'fast'`` or ``'scan'``.",
        check_impl,
    ),
    Option(
        "remat",
        None,
        "memory for gradients: None (store every step), ``'step'`` or ``'sqrt'``.",
        _check_remat,
        static=True,
    ),
    Option(
        "matmul_dtype",
        None,
        "mixed precision, e.g. ``jnp.bfloat16``: matmul inputs in this dtype.",
        check_matmul_dtype,
        static=True,
    ),
    Option(
        "method",
        None,
        "the time algorithm: None (the cell's default), ``'sequential'``, or one its cell offers.",
        check_method,
        static=True,
    ),
    Option(
        "tol",
        None,
        "Newton methods: the relative tolerance (None: 1e-5 in float32).",
        _check_tol,
        static=True,
    ),
    Option(
        "max_iter",
        None,
        "Newton methods: the most iterations (None: 100).",
        _check_max_iter,
        static=True,
    ),
    Option(
        "fallback",
        "sequential",
        "Newton methods, not converged: ``'sequential'`` (the scan's result) or None.",
        _check_fallback,
        static=True,
    ),
    Option(
        "return_info",
        False,
        "Newton methods: also return ``NewtonInfo(iterations, residual, converged)``.",
        _check_bool,
        static=True,
    ),
)

LAYER_OPTION_NAMES = tuple(o.name for o in LAYER_OPTIONS)


def layer_options(cell_options: tuple[str, ...]) -> tuple[Option, ...]:
    """A layer function's keyword options, in signature order: its cell's, then the rest."""
    return tuple(CELL_OPTIONS[n] for n in cell_options) + LAYER_OPTIONS
