"""The cells: parameter NamedTuples, steps, initialisers and the registry.

``spec.py`` is the registry (``CellSpec``); ``simple_rnn.py``, ``lstm.py``,
``gru.py``, ``min_gru.py`` and ``min_lstm.py`` each hold one cell and register it; ``activations.py``,
``init.py`` and ``orthogonal.py`` are what the cells are built from;
``state.py`` makes zero carries from any registered cell's parameters.

This ``__init__`` imports nothing, so that the checks below the cells can read
``spec.py`` without importing the cells themselves; ``jaxrnn/__init__.py``
imports every cell module, which fills the registry.
"""
