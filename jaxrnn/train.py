"""Optax training for functional models: a jitted train step and a Keras-like ``fit``.

A model here is any pure function of a parameter pytree; training needs only a
loss ``loss_fn(params, x, y, key) -> scalar``, where ``key`` is a fresh
``jax.random`` key per step during training (for dropout) and ``None`` during
evaluation, so ``training=key is not None`` is the layers' training switch::

    def loss_fn(params, x, y, key):
        h = jaxrnn.lstm(params.cell, x, dropout=0.1, key=key, training=key is not None)
        return jnp.mean((h @ params.w - y) ** 2)

This module imports optax (``import jaxrnn`` alone does not). Progress bars use
``tqdm`` when it is installed and ``History.plot`` uses ``matplotlib``; neither
is required.

The module is the public face of two private ones: ``jaxrnn._train_core``, the
functional core (``TrainState``, ``get_optimizer``, ``apply_gradients``,
``make_train_step``, ``make_eval_step``, ``evaluate``), and ``jaxrnn._fit``, the
Keras-style layer over it (``fit``, ``History``, ``EarlyStopping``). Import from here.
"""

from ._fit import EarlyStopping, History, fit
from ._train_core import KERAS_DEFAULTS as KERAS_DEFAULTS
from ._train_core import LossFn as LossFn
from ._train_core import MetricFn as MetricFn
from ._train_core import TrainState, evaluate, get_optimizer, make_eval_step, make_train_step
from ._train_core import apply_gradients as apply_gradients

__all__ = [
    "EarlyStopping",
    "History",
    "TrainState",
    "evaluate",
    "fit",
    "get_optimizer",
    "make_eval_step",
    "make_train_step",
]
