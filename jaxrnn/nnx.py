"""Flax NNX modules over the functional layers: ``SimpleRNN``, ``LSTM``, ``GRU``,
``Bidirectional`` and ``Stacked``.

The modules hold parameters and configuration only; every call is one call of
``jaxrnn.simple_rnn``/``lstm``/``gru``/``bidirectional``/``stacked`` on
``module.params`` (the same NamedTuple types as the functional API), so
``jaxrnn.lstm(module.params, x) == module(x)``.

Conventions (as ``nnx.Dropout``):

- ``rngs`` at construction: the ``params`` stream (or ``default``) draws the
  weights; layers with ``dropout``/``recurrent_dropout`` keep a fork of the
  ``dropout`` stream (or ``default``) for their masks.
- ``deterministic``: ``False`` (the default, training) applies dropout, ``True``
  switches it off. Set it at construction, per call, with ``module.eval()`` /
  ``module.train()`` or with ``nnx.view(module, deterministic=True)``.
- A call may pass ``rngs=`` (an ``nnx.Rngs``, an ``RngStream`` or a plain key);
  a key gives exactly the masks of the functional call with ``key=`` that key.
- In ``Bidirectional`` and ``Stacked`` the outer module draws one key (from its
  call ``rngs`` or the first inner layer's stream) and the functional
  composition splits it, so an explicit key again matches the functional call.

``import jaxrnn`` does not import Flax; ``import jaxrnn.nnx`` does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ._cells.lstm import LSTMState
from ._cells.state import zero_state
from ._compose import BidirectionalParams, bidirectional, stacked
from ._module_config import (
    _PARAM_TYPES,
    INITIALIZERS,
    _batch_of,
    _bidirectional_settings,
    _bind_layer,
    _check_batch,
    _check_config,
    _check_features,
    _check_size,
    _direction_dispatch,
    _init_cell,
    _merged_features,
    _stack_settings,
)

__all__ = ["GRU", "INITIALIZERS", "LSTM", "Bidirectional", "RecurrentState", "SimpleRNN", "Stacked"]


class RecurrentState(nnx.Variable):
    """The carry a ``stateful=True`` layer keeps between calls (not a parameter).

    A layer keeps ``state_h`` (and ``state_c`` for the LSTM), each ``(batch_size,
    units)``; filter them with ``nnx.state(model, RecurrentState)``. Optimizers
    built with ``wrt=nnx.Param`` leave them alone.

    Example:
        >>> import jax.numpy as jnp, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.GRU(3, 4, rngs=nnx.Rngs(0), stateful=True, batch_size=2)
        >>> _ = layer(jnp.ones((2, 5, 3)))
        >>> kept = nnx.state(layer, jaxrnn.nnx.RecurrentState)
        >>> kept['state_h'][...].shape, bool(jnp.any(layer.state != 0))
        ((2, 4), True)
        >>> layer.reset_state()
        >>> float(jnp.abs(layer.state).sum())
        0.0
    """


# ---------------------------------------------------------------------------
# the NNX modules


def _to_key(source: Any, where: str) -> jax.Array:
    if isinstance(source, nnx.Rngs):
        return source["dropout"]()
    if isinstance(source, nnx.RngStream):
        return source()
    if isinstance(source, jax.Array):
        return source
    raise TypeError(
        f"{where}: rngs must be an nnx.Rngs, an nnx.RngStream or a jax.random key, got "
        f"{type(source).__name__}."
    )


class _Recurrent(nnx.Module):
    """What every module here provides to ``Bidirectional`` and ``Stacked``."""

    where = "jaxrnn.nnx"

    # Each module also provides: ``params`` (the functional parameters),
    # ``_layer_fn()`` (the functional layer with its configuration bound),
    # ``get_initial_state(batch_size)``, ``_store_state(final)``, ``_streams()``
    # (its dropout RngStreams) and ``_has_dropout()``.

    def set_view(self, deterministic: bool | None = None):
        """Used by ``nnx.view(module, deterministic=...)``."""
        if deterministic is not None:
            self.deterministic = deterministic

    def _dropout_key(self, deterministic: bool | None, rngs: Any) -> jax.Array | None:
        if not self._has_dropout():
            return None
        if deterministic is None:
            deterministic = self.deterministic
        if deterministic:
            return None
        if rngs is None:
            streams = [s for s in self._streams() if s is not None]
            if not streams:
                raise ValueError(
                    f"{self.where}: dropout is on (deterministic=False) but there is no "
                    "dropout stream: build the layer with rngs=nnx.Rngs(params=0, dropout=1), "
                    "pass rngs= (or a key) to the call, or switch dropout off with "
                    "deterministic=True / module.eval()."
                )
            rngs = streams[0]
        return _to_key(rngs, self.where)

    def _run(
        self,
        x,
        *,
        return_sequences,
        return_state,
        seq_lengths,
        mask,
        initial_state,
        deterministic,
        rngs,
    ):
        _check_features(x, self.in_features, self.where)
        key = self._dropout_key(deterministic, rngs)
        if initial_state is None:
            batch = _batch_of(x, self.time_major)
            initial_state = None if batch is None else self.get_initial_state(batch)
        out, final = self._layer_fn()(
            self.params,
            x,
            initial_state=initial_state,
            key=key,
            training=key is not None,
            return_sequences=return_sequences,
            return_state=True,
            seq_lengths=seq_lengths,
            mask=mask,
            time_major=self.time_major,
        )
        self._store_state(final)
        return (out, final) if return_state else out


class _Layer(_Recurrent):
    """Shared body of ``SimpleRNN``, ``LSTM`` and ``GRU``."""

    kind = "rnn"

    def _setup(self, in_features: int, rngs: nnx.Rngs, cfg: dict) -> None:
        where = self.where
        _check_size(in_features, where, "in_features")
        _check_config(where, cfg)
        if cfg["stateful"]:
            if cfg["batch_size"] is None:
                raise ValueError(
                    f"{where}: stateful=True needs batch_size= (the fixed number of sequences "
                    "whose state is kept), as Keras."
                )
            _check_size(cfg["batch_size"], where, "batch_size")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{where}: rngs must be an nnx.Rngs, got {type(rngs).__name__}.")
        self.in_features = int(in_features)
        self._config_keys = tuple(cfg)
        for name, value in cfg.items():
            setattr(self, name, value)
        p = _init_cell(self.kind, rngs.params(), in_features, cfg, where)
        for name, value in p._asdict().items():
            setattr(self, name, None if value is None else nnx.Param(value))
        units, dtype = cfg["units"], cfg["dtype"]
        if cfg["learnable_initial_state"]:
            self.h0 = nnx.Param(jnp.zeros((units,), dtype))
            if self.kind == "lstm":
                self.c0 = nnx.Param(jnp.zeros((units,), dtype))
        if cfg["stateful"]:
            zeros = jnp.zeros((cfg["batch_size"], units), dtype)
            self.state_h = RecurrentState(zeros)
            if self.kind == "lstm":
                self.state_c = RecurrentState(zeros)
        stream = None
        if cfg["dropout"] > 0 or cfg["recurrent_dropout"] > 0:
            try:
                stream = rngs["dropout"].fork()
            except (KeyError, AttributeError):
                stream = None  # a call then needs rngs= (or deterministic=True)
        self.rngs = nnx.data(stream)

    def get_config(self) -> dict:
        """The constructor arguments (except ``in_features`` and ``rngs``), as Keras;
        current values, so ``module.eval()`` shows as ``deterministic=True``."""
        return {k: getattr(self, k) for k in self._config_keys}

    @property
    def out_features(self) -> int:
        return self.units

    @property
    def params(self):
        """The parameters as the functional NamedTuple (``RNNParams``, ``LSTMParams``...)."""
        cls = _PARAM_TYPES[self.kind]
        return cls(
            *(None if getattr(self, f) is None else getattr(self, f)[...] for f in cls._fields)
        )

    def _layer_fn(self, with_direction: bool = True) -> Callable:
        return _bind_layer(self.kind, self.get_config(), with_direction=with_direction)

    def _has_dropout(self) -> bool:
        return self.dropout > 0 or self.recurrent_dropout > 0

    def _streams(self) -> list:
        return [self.rngs]

    @property
    def state(self):
        """The kept state of a ``stateful`` layer (``LSTMState`` for the LSTM)."""
        if not self.stateful:
            return None
        if self.kind == "lstm":
            return LSTMState(self.state_h[...], self.state_c[...])
        return self.state_h[...]

    def reset_state(self) -> None:
        """Set the kept state of a ``stateful`` layer to zeros (Keras' ``reset_state``)."""
        if not self.stateful:
            raise ValueError(f"{self.where}: reset_state() needs a layer built with stateful=True.")
        self.state_h[...] = jnp.zeros_like(self.state_h[...])
        if self.kind == "lstm":
            self.state_c[...] = jnp.zeros_like(self.state_c[...])

    def get_initial_state(self, batch_size: int):
        """The state a call without ``initial_state`` starts from, for ``batch_size`` rows:
        the kept state (``stateful``), the learnt ``h0``/``c0`` broadcast over the batch
        (``learnable_initial_state``), or zeros."""
        if self.stateful:
            _check_batch(self.batch_size, batch_size, self.where)
            return self.state
        if self.learnable_initial_state:
            shape = (batch_size, self.units)
            h = jnp.broadcast_to(self.h0[...], shape)
            if self.kind == "lstm":
                return LSTMState(h, jnp.broadcast_to(self.c0[...], shape))
            return h
        return zero_state(self.params, (batch_size,))

    def _store_state(self, final) -> None:
        if not self.stateful:
            return
        final = jax.lax.stop_gradient(final)
        if self.kind == "lstm":
            self.state_h[...] = final.h
            self.state_c[...] = final.c
        else:
            self.state_h[...] = final

    def __call__(
        self,
        x: jax.Array,
        *,
        seq_lengths: jax.Array | None = None,
        mask: jax.Array | None = None,
        initial_state: Any = None,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ):
        """Run the layer: ``jaxrnn.{simple_rnn,lstm,gru}(self.params, x, ...)``.

        Args:
            x: ``(B, T, in_features)`` (``(T, B, in_features)`` with ``time_major``).
            seq_lengths, mask: as the functional layer.
            initial_state: overrides the state the layer starts from.
            deterministic: True switches dropout off (overrides the attribute).
            rngs: a key, stream or ``nnx.Rngs`` for the dropout masks.

        Returns:
            The output (``(B, units)``, or ``(B, T, units)`` with ``return_sequences``);
            with ``return_state``, ``(output, final_state)``.
        """
        return self._run(
            x,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            seq_lengths=seq_lengths,
            mask=mask,
            initial_state=initial_state,
            deterministic=deterministic,
            rngs=rngs,
        )


def _common_cfg(units, **kw) -> dict:
    return dict(units=units, **kw)


_ARGS_DOC = """
    Args:
        in_features: the input size ``F`` (NNX builds parameters up front).
        units: the hidden size ``H``.
        rngs: ``nnx.Rngs``; ``params`` (or ``default``) draws the weights, and a layer
            with dropout keeps a fork of ``dropout`` (or ``default``).
        activation{ract}: Keras names or callables.
        use_bias: create the bias vector(s).
        kernel_initializer, recurrent_initializer, bias_initializer: Keras names
            (``'glorot_uniform'``, ``'orthogonal'``, ``'zeros'``, ...) or
            ``jax.nn.initializers`` callables.{extra}
        return_sequences, return_state, go_backwards, time_major, unroll, impl,
            remat, matmul_dtype: passed to ``jaxrnn.{fn}``.
        dropout, recurrent_dropout: Keras' variational dropout rates, applied
            unless ``deterministic``.
        deterministic: the default of the call's ``deterministic`` (False:
            training, dropout on); ``module.eval()`` sets it to True.
        stateful: keep the final state between calls (as Keras); needs
            ``batch_size``. ``reset_state()`` zeros it; the kept state is an
            ``nnx.Variable`` of type ``RecurrentState``, not a parameter.
        batch_size: the fixed batch size of a stateful layer.
        learnable_initial_state: learn the initial state (parameters ``h0``{c0},
            each ``(units,)``, broadcast over the batch; initialised to zeros).
        dtype: the parameters' dtype (inputs are cast to it).

    Attributes:
        kernel, recurrent_kernel, bias{rbias}: ``nnx.Param`` s in the Keras layout;
        ``params`` gives them as ``jaxrnn.{params}``.
"""


class SimpleRNN(_Layer):
    kind = "rnn"
    where = "jaxrnn.nnx.SimpleRNN"

    def __init__(
        self,
        in_features: int,
        units: int,
        *,
        rngs: nnx.Rngs,
        activation: str | Callable = "tanh",
        use_bias: bool = True,
        kernel_initializer: str | Callable = "glorot_uniform",
        recurrent_initializer: str | Callable = "orthogonal",
        bias_initializer: str | Callable = "zeros",
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        deterministic: bool = False,
        unroll: int | bool = 1,
        stateful: bool = False,
        batch_size: int | None = None,
        learnable_initial_state: bool = False,
        time_major: bool = False,
        dtype: Any = jnp.float32,
        impl: str = "auto",
        remat: str | None = None,
        matmul_dtype: Any = None,
    ):
        cfg = {
            k: v
            for k, v in locals().items()
            if k not in ("self", "in_features", "rngs", "__class__")
        }
        self._setup(in_features, rngs, cfg)


class LSTM(_Layer):
    kind = "lstm"
    where = "jaxrnn.nnx.LSTM"

    def __init__(
        self,
        in_features: int,
        units: int,
        *,
        rngs: nnx.Rngs,
        activation: str | Callable = "tanh",
        recurrent_activation: str | Callable = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: str | Callable = "glorot_uniform",
        recurrent_initializer: str | Callable = "orthogonal",
        bias_initializer: str | Callable = "zeros",
        unit_forget_bias: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        deterministic: bool = False,
        unroll: int | bool = 1,
        stateful: bool = False,
        batch_size: int | None = None,
        learnable_initial_state: bool = False,
        time_major: bool = False,
        dtype: Any = jnp.float32,
        impl: str = "auto",
        remat: str | None = None,
        matmul_dtype: Any = None,
    ):
        cfg = {
            k: v
            for k, v in locals().items()
            if k not in ("self", "in_features", "rngs", "__class__")
        }
        self._setup(in_features, rngs, cfg)


class GRU(_Layer):
    kind = "gru"
    where = "jaxrnn.nnx.GRU"

    def __init__(
        self,
        in_features: int,
        units: int,
        *,
        rngs: nnx.Rngs,
        activation: str | Callable = "tanh",
        recurrent_activation: str | Callable = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: str | Callable = "glorot_uniform",
        recurrent_initializer: str | Callable = "orthogonal",
        bias_initializer: str | Callable = "zeros",
        reset_after: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        deterministic: bool = False,
        unroll: int | bool = 1,
        stateful: bool = False,
        batch_size: int | None = None,
        learnable_initial_state: bool = False,
        time_major: bool = False,
        dtype: Any = jnp.float32,
        impl: str = "auto",
        remat: str | None = None,
        matmul_dtype: Any = None,
    ):
        cfg = {
            k: v
            for k, v in locals().items()
            if k not in ("self", "in_features", "rngs", "__class__")
        }
        self._setup(in_features, rngs, cfg)


SimpleRNN.__doc__ = (
    """A simple (Elman) RNN layer, ``keras.layers.SimpleRNN`` as an NNX module::

        h_t = activation(x_t W + h_{t-1} U + b)        (see ``jaxrnn.rnn_step``)

    Shapes: ``x`` ``(B, T, in_features)`` -> ``(B, units)`` or, with
    ``return_sequences``, ``(B, T, units)``.
"""
    + _ARGS_DOC.format(ract="", extra="", fn="simple_rnn", c0="", rbias="", params="RNNParams")
    + """
    Example:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.SimpleRNN(3, 4, rngs=nnx.Rngs(0), return_sequences=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> layer(x).shape
        (2, 5, 4)
        >>> bool(jnp.allclose(layer(x), jaxrnn.simple_rnn(layer.params, x, return_sequences=True)))
        True
    """
)
LSTM.__doc__ = (
    """An LSTM layer, ``keras.layers.LSTM`` as an NNX module::

        i, f, o = σ(x W + h U + b)_{i,f,o}    g = act(x W + h U + b)_g
        c_t = f ⊙ c_{t-1} + i ⊙ g             h_t = o ⊙ act(c_t)   (see ``jaxrnn.lstm_step``)

    Shapes: ``x`` ``(B, T, in_features)`` -> ``(B, units)`` or ``(B, T, units)``;
    the state is ``LSTMState(h, c)``, each ``(B, units)``.
"""
    + _ARGS_DOC.format(
        ract=", recurrent_activation",
        extra="\n        unit_forget_bias: forget-gate bias initialised to one (Keras).",
        fn="lstm",
        c0=" and ``c0``",
        rbias="",
        params="LSTMParams",
    )
    + """
    Example:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.LSTM(3, 4, rngs=nnx.Rngs(0))
        >>> x = jnp.ones((2, 5, 3))
        >>> type(layer.params).__name__, layer(x).shape
        ('LSTMParams', (2, 4))
        >>> bool(jnp.allclose(layer(x), jaxrnn.lstm(layer.params, x)))
        True
    """
)
GRU.__doc__ = (
    """A GRU layer, ``keras.layers.GRU`` as an NNX module::

        z, r = σ(x W + b + h U + β)_{z,r}
        n = act(x W_n + b_n + r ⊙ (h U_n + β_n))     (reset_after=True)
        h_t = z ⊙ h_{t-1} + (1 − z) ⊙ n              (see ``jaxrnn.gru_step``)

    Shapes: ``x`` ``(B, T, in_features)`` -> ``(B, units)`` or ``(B, T, units)``.
"""
    + _ARGS_DOC.format(
        ract=", recurrent_activation",
        extra="\n        reset_after: the GRU variant (True: Keras' and PyTorch's default).",
        fn="gru",
        c0="",
        rbias=", recurrent_bias (None when ``reset_after=False`` or no bias)",
        params="GRUParams",
    )
    + """
    Example:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.GRU(3, 4, rngs=nnx.Rngs(0), go_backwards=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> bool(jnp.allclose(layer(x), jaxrnn.gru(layer.params, x, go_backwards=True)))
        True
    """
)


class Bidirectional(_Recurrent):
    """A bidirectional wrapper, ``keras.layers.Bidirectional`` as an NNX module::

        y_t = merge(forward_layer(x)_t, backward_layer(x reversed)_t aligned with x)

    (see ``jaxrnn.bidirectional``; merge is ``concat``, ``sum``, ``mul``, ``ave`` or
    None for the pair).

    Shapes: ``x`` ``(B, T, F)`` -> ``(B, 2H)`` with ``concat`` (``(B, T, 2H)`` when the
    layers return sequences), ``(B, H)`` for the other merges.

    Args:
        forward_layer: a ``SimpleRNN``, ``LSTM`` or ``GRU`` with ``go_backwards=False``.
        backward_layer: the layer run backwards; when None, one is built from
            ``forward_layer.get_config()`` with new weights drawn from ``rngs``
            (as Keras). Its ``go_backwards`` is ignored; its ``return_sequences``,
            ``return_state``, ``time_major`` and ``in_features`` must match.
        merge_mode: ``'concat'`` (default), ``'sum'``, ``'mul'``, ``'ave'`` or None.
        rngs: needed only to build the backward layer.
        deterministic: as the layers (None: the forward layer's setting).

    The output, state and dropout follow ``forward_layer``'s ``return_sequences``,
    ``return_state``; the state is ``(forward_state, backward_state)``.
    ``module.params`` is ``jaxrnn.BidirectionalParams(forward, backward)``.

    Example:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> bi = jaxrnn.nnx.Bidirectional(jaxrnn.nnx.LSTM(3, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
        >>> x = jnp.ones((2, 5, 3))
        >>> bi(x).shape
        (2, 8)
        >>> bool(jnp.allclose(bi(x), jaxrnn.bidirectional(jaxrnn.lstm, bi.params, x)))
        True
    """

    where = "jaxrnn.nnx.Bidirectional"

    def __init__(
        self,
        forward_layer: _Layer,
        backward_layer: _Layer | None = None,
        *,
        merge_mode: str | None = "concat",
        rngs: nnx.Rngs | None = None,
        deterministic: bool | None = None,
    ):
        if backward_layer is None and isinstance(forward_layer, _Layer):
            if rngs is None:
                raise ValueError(
                    f"{self.where}: backward_layer is None, so it is built from the forward "
                    "layer's config with new weights: pass rngs=nnx.Rngs(...) (or pass "
                    "backward_layer=...)."
                )
            backward_layer = type(forward_layer)(
                forward_layer.in_features, **forward_layer.get_config(), rngs=rngs
            )
        _bidirectional_settings(forward_layer, backward_layer, merge_mode, self.where)
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.deterministic = forward_layer.deterministic if deterministic is None else deterministic
        self.in_features = forward_layer.in_features
        self.time_major = forward_layer.time_major
        self.return_sequences = forward_layer.return_sequences
        self.return_state = forward_layer.return_state

    @property
    def out_features(self) -> int | None:
        return _merged_features(
            self.forward_layer.units, self.backward_layer.units, self.merge_mode
        )

    @property
    def params(self) -> BidirectionalParams:
        return BidirectionalParams(self.forward_layer.params, self.backward_layer.params)

    def _layer_fn(self) -> Callable:
        layer = _direction_dispatch(
            self.forward_layer._layer_fn(with_direction=False),
            self.backward_layer._layer_fn(with_direction=False),
        )
        return functools.partial(bidirectional, layer, merge_mode=self.merge_mode)

    def _has_dropout(self) -> bool:
        return self.forward_layer._has_dropout() or self.backward_layer._has_dropout()

    def _streams(self) -> list:
        return self.forward_layer._streams() + self.backward_layer._streams()

    def get_initial_state(self, batch_size: int):
        """``(forward_state, backward_state)`` the call starts from."""
        return (
            self.forward_layer.get_initial_state(batch_size),
            self.backward_layer.get_initial_state(batch_size),
        )

    def _store_state(self, final) -> None:
        self.forward_layer._store_state(final[0])
        self.backward_layer._store_state(final[1])

    def reset_state(self) -> None:
        """Zero the kept state of stateful inner layers."""
        for layer in (self.forward_layer, self.backward_layer):
            if layer.stateful:
                layer.reset_state()

    def __call__(
        self, x, *, seq_lengths=None, mask=None, initial_state=None, deterministic=None, rngs=None
    ):
        """Run ``jaxrnn.bidirectional`` on ``self.params``; arguments as ``LSTM.__call__``
        (``initial_state`` is a pair)."""
        return self._run(
            x,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            seq_lengths=seq_lengths,
            mask=mask,
            initial_state=initial_state,
            deterministic=deterministic,
            rngs=rngs,
        )


class Stacked(_Recurrent):
    """A deep RNN: layers applied in turn, every one but the last returning sequences::

        h^0 = x;   h^k = layer_k(h^{k-1}) (all steps);   output = layer_L(h^{L-1})

    (see ``jaxrnn.stacked``), Keras' ``Sequential([LSTM(.., return_sequences=True),
    ..., LSTM(..)])``.

    Shapes: ``x`` ``(B, T, F)`` -> the last layer's ``(B, H)`` (or ``(B, T, H)``).

    Args:
        layers: ``SimpleRNN``/``LSTM``/``GRU``/``Bidirectional``/``Stacked``
            modules; ``layers[k].in_features`` must be ``layers[k-1]``'s output size.
            The inner layers' ``return_sequences``/``return_state`` are ignored.
        return_sequences: the last layer's output at every step; None takes the
            last layer's setting.
        return_state: also return ``[state per layer]``; None takes the last
            layer's setting.
        deterministic: as the layers (None: the first layer's setting).

    ``module.params`` is the list of the layers' parameters.

    Example:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> rngs = nnx.Rngs(0)
        >>> deep = jaxrnn.nnx.Stacked([jaxrnn.nnx.GRU(3, 4, rngs=rngs), jaxrnn.nnx.GRU(4, 4, rngs=rngs)])
        >>> x = jnp.ones((2, 5, 3))
        >>> deep(x).shape
        (2, 4)
        >>> bool(jnp.allclose(deep(x), jaxrnn.stacked(jaxrnn.gru, deep.params, x)))
        True
    """

    where = "jaxrnn.nnx.Stacked"

    def __init__(
        self,
        layers: Sequence[_Recurrent],
        *,
        return_sequences: bool | None = None,
        return_state: bool | None = None,
        deterministic: bool | None = None,
    ):
        layers = list(layers)
        for k, layer in enumerate(layers):
            if not isinstance(layer, _Recurrent):
                raise TypeError(
                    f"{self.where}: layers[{k}] is a {type(layer).__name__}; use jaxrnn.nnx "
                    "recurrent layers."
                )
        self.time_major = _stack_settings(layers, self.where)
        self.layers = nnx.List(layers)
        last = layers[-1]
        self.return_sequences = (
            last.return_sequences if return_sequences is None else return_sequences
        )
        self.return_state = last.return_state if return_state is None else return_state
        self.deterministic = layers[0].deterministic if deterministic is None else deterministic
        self.in_features = layers[0].in_features

    @property
    def out_features(self) -> int | None:
        return self.layers[-1].out_features

    @property
    def params(self) -> list:
        return [layer.params for layer in self.layers]

    def _layer_fn(self) -> Callable:
        return functools.partial(stacked, [layer._layer_fn() for layer in self.layers])

    def _has_dropout(self) -> bool:
        return any(layer._has_dropout() for layer in self.layers)

    def _streams(self) -> list:
        return [s for layer in self.layers for s in layer._streams()]

    def get_initial_state(self, batch_size: int) -> list:
        """One start state per layer."""
        return [layer.get_initial_state(batch_size) for layer in self.layers]

    def _store_state(self, final) -> None:
        for layer, f in zip(self.layers, final, strict=True):
            layer._store_state(f)

    def reset_state(self) -> None:
        """Zero the kept state of stateful inner layers."""
        for layer in self.layers:
            if isinstance(layer, _Layer):
                if layer.stateful:
                    layer.reset_state()
            else:
                layer.reset_state()

    def __call__(
        self, x, *, seq_lengths=None, mask=None, initial_state=None, deterministic=None, rngs=None
    ):
        """Run ``jaxrnn.stacked`` on ``self.params``; arguments as ``LSTM.__call__``
        (``initial_state`` is a list, one state per layer)."""
        return self._run(
            x,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            seq_lengths=seq_lengths,
            mask=mask,
            initial_state=initial_state,
            deterministic=deterministic,
            rngs=rngs,
        )
