"""Dispatch from the layers to a cell's fused recurrence (``CellSpec.fused``).

The fused SimpleRNN and LSTM hoist the input projection ``x W`` out of the loop,
one chunk of steps at a time (one ``(chunk·B, I) @ (I, G·H)`` matmul per chunk of
at most ``common.CHUNK_FLOATS`` floats, so scratch memory does not grow with
``T·G·H``; see ``common.chunked``), keep only ``h U``, the bias and the gate
arithmetic in the loop, and use hand-written backward passes (the LSTM from
``autodiff_min_batch`` sequences on: autodiff of an in-loop projection, see
``lstm.py``). The fused GRU keeps ``x_t W`` in its loop. The hand-written backward
passes (LSTM, GRU) run one chunk of steps at a time (``common.backward_chunks``).
It covers the default activations, lengths/masks, reverse, input dropout with a
shared mask, any ``unroll``; everything else (custom activations,
recurrent dropout, the reset-before GRU) runs the generic scan of the step
functions, which computes the same function.

A cell's fused module provides ``unsupported(step_kwargs, where) -> str | None``
and ``segment(step_kwargs, params, carry, xs, mask, opts) -> (carry, ys)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import jax

from .._cells.spec import CellSpec
from .._context import is_batch_partitioned
from .common import LoopOptions


def partitioned() -> bool:
    """Whether the layer call is traced for XLA's SPMD partitioning of the batch
    (``_context.batch_partitioned``), read at each layer call (part of its plan).

    A backward pass that accumulates weight gradients inside a loop gets an
    all-reduce per iteration from the partitioner (seen in the HLO: an all-reduce
    inside the backward while body). With the LSTM's autodiff pass (accumulating
    per step) a 2-device step ran at 0.74-0.91x of one device, and the GRU's
    chunked backward pass all-reduced per chunk. So when partitioned, the LSTM
    keeps its hand-written gradient at every batch size and the hand-written
    backward passes (LSTM, GRU) run as one chunk: their weight gradients are
    formed after the loop, and one all-reduce remains.
    """
    return is_batch_partitioned()


def fused_module(spec: CellSpec) -> ModuleType | None:
    """The module of ``spec``'s fused recurrence (None for a cell without one)."""
    return None if spec.fused is None else importlib.import_module(spec.fused)


def unsupported(
    spec: CellSpec, step_kwargs: dict, input_mask, recurrent_mask, remat, where: str
) -> str | None:
    """Why the fused path cannot run these options, or None when it can."""
    if spec.fused is None:
        return f"the {spec.keras} cell (it has no fused recurrence)"
    if remat == "step":
        return "remat='step' (per-step checkpointing of the step function)"
    if recurrent_mask is not None:
        return "recurrent_dropout > 0 (per-gate recurrent masks)"
    if input_mask is not None and input_mask.ndim != 2:
        return "per-gate input dropout masks"
    return fused_module(spec).unsupported(step_kwargs, where)


def segment(
    spec: CellSpec,
    step_kwargs: dict,
    params: Any,
    carry: Any,
    xs: jax.Array,
    valid: jax.Array | None,
    *,
    input_mask: jax.Array | None,
    opts: LoopOptions,
) -> tuple[Any, jax.Array]:
    """``(final_carry, ys)`` of the fused recurrence over time-major ``xs`` ``(T, B, I)``.

    ``valid`` is the boolean ``(T, B)`` step mask or None; ``ys`` is ``(T, B, H)``.
    With ``opts.matmul_dtype`` (e.g. ``"bfloat16"``) every matmul takes inputs in
    that dtype and accumulates in the parameters' dtype; gates, carry and cell
    state stay in the parameters' dtype.
    """
    xs = xs.astype(params.kernel.dtype)
    if input_mask is not None:
        xs = xs * input_mask
    mask = None if valid is None else valid[..., None]  # (T, B, 1)
    return fused_module(spec).segment(step_kwargs, params, carry, xs, mask, opts)
