"""The implementations under benchmark, one small module each.

Each module defines ``IMPLS``, a dict from a column label to a
``build(cell, weights, x, target) -> Built | None`` function (see ``_common``).
A module whose library fails to import is skipped with a note.
"""

from __future__ import annotations

import importlib

# In table order; jaxrnn first (the baseline of every ratio).
MODULES = (
    "jaxrnn_layers",
    "naive_scan",
    "flax_nnx",
    "flax_linen",
    "keras_jax",
    "equinox_cells",
    "haiku_cores",
    "torch_nn",
)


def load_impls(only: set[str] | None = None):
    """Import every implementation module; return ``(impls, notes)``.

    ``impls`` maps a label to its build function; ``only`` keeps just those labels.
    ``notes`` says which modules were skipped and why.
    """
    impls, notes = {}, []
    for name in MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except Exception as e:  # a missing or broken library: skip it, never crash
            notes.append(f"`{name}` skipped: {type(e).__name__}: {e}")
            continue
        for label, build in module.IMPLS.items():
            if only is None or label in only:
                impls[label] = build
    return impls, notes
