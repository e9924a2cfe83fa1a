"""The fused recurrences: one module per cell (``rnn.py``, ``lstm.py``, ``gru.py``)
over the shared loop pieces in ``common.py``, reached through ``dispatch.py``.

A cell names its module in ``CellSpec.fused``; the layers call
``dispatch.unsupported`` and ``dispatch.segment``. These modules sit above the
cells (they read the cells' NamedTuples) and below the layers.
"""
