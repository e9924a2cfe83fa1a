"""Trace-time context of a data-parallel training step.

``jaxrnn.parallel`` and ``jaxrnn.train`` trace a user's loss inside a step that
splits the batch over devices. Two things in the layers and losses depend on
that, and are read here while tracing (each becomes part of what is compiled):

* ``batch_partitioned()``: the step is split by XLA's SPMD partitioner, so the
  fused LSTM takes the backward pass whose weight gradients are formed after
  the loop (see ``_fused/dispatch.py``);
* ``batch_axes(axes)``: inside ``shard_map``, the named mesh axes over which the
  batch is split. ``jaxrnn.losses``' ``"mean"`` over valid steps then divides by
  the valid steps of the whole batch (a ``psum`` of the per-device counts),
  scaled so that the mean over devices (``lax.pmean``, what the data-parallel
  step takes) is the mean over the whole batch.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

_PARTITIONED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "jaxrnn_batch_partitioned", default=False
)
_BATCH_AXES: contextvars.ContextVar[tuple] = contextvars.ContextVar("jaxrnn_batch_axes", default=())


@contextlib.contextmanager
def _set(var: contextvars.ContextVar, value: Any) -> Iterator[None]:
    """``var`` holds ``value`` within the context; its previous value is restored on exit."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


@contextlib.contextmanager
def batch_partitioned() -> Iterator[None]:
    """Within this context, layer calls trace for an SPMD-partitioned batch."""
    with _set(_PARTITIONED, True):
        yield


def is_batch_partitioned() -> bool:
    return _PARTITIONED.get()


@contextlib.contextmanager
def batch_axes(axes: str | tuple) -> Iterator[None]:
    """Declare, while tracing inside ``shard_map``, that the batch is split over ``axes``.

    ``jaxrnn.losses``' ``"mean"`` over valid steps then returns this device's share
    of the whole batch's mean: ``sum_d l_d * n / sum_d count_d`` for ``n``
    devices, so that ``lax.pmean`` of the per-device losses (and of their
    gradients) equals the mean over all valid steps of the whole batch, as on
    one device. Without it, each device would average over its own valid steps,
    and with lengths or masks the devices' means would weigh steps unequally.
    ``jaxrnn.train.make_train_step(..., mesh=...)`` and ``fit(..., mesh=...)``
    declare it themselves; use it in your own ``shard_map`` training step::

        def local_step(params, batch):
            with jaxrnn.parallel.batch_axes("batch"):
                loss, g = jax.value_and_grad(loss_fn)(params, batch)
            return jax.lax.pmean((loss, g), "batch")
    """
    with _set(_BATCH_AXES, (axes,) if isinstance(axes, str) else tuple(axes)):
        yield


def current_batch_axes() -> tuple:
    return _BATCH_AXES.get()
