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

import abc
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ._cells.spec import CellSpec, spec_named
from ._checks import positive_int
from ._compose import BidirectionalParams
from ._flax_common import (
    INITIALIZERS,
    BidirectionalBase,
    RecurrentModule,
    StackedBase,
    batch_of,
    bidirectional_settings,
    bind_layer,
    check_batch,
    check_config,
    check_features,
    init_cell,
    module_options,
    stack_settings,
    start_state,
)

__all__ = [
    "GRU",
    "INITIALIZERS",
    "LSTM",
    "Bidirectional",
    "MinGRU",
    "MinLSTM",
    "RecurrentState",
    "SimpleRNN",
    "Stacked",
]


class RecurrentState(nnx.Variable):
    """The carry a ``stateful=True`` layer keeps between calls (not a parameter).

    A layer keeps ``state_h`` (and ``state_c`` for the LSTM), each ``(batch_size,
    units)``; filter them with ``nnx.state(model, RecurrentState)``. Optimizers
    built with ``wrt=nnx.Param`` leave them alone.

    Examples:
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


class _Meta(type(nnx.Module), abc.ABCMeta):
    """NNX's module metaclass with ``RecurrentModule``'s abstract methods."""


class _Recurrent(nnx.Module, RecurrentModule, metaclass=_Meta):
    """The NNX side of ``RecurrentModule``: dropout keys and the call."""

    where = "jaxrnn.nnx"

    def set_view(self, deterministic: bool | None = None):
        """Used by ``nnx.view(module, deterministic=...)``."""
        if deterministic is not None:
            self.deterministic = deterministic

    @abc.abstractmethod
    def _streams(self) -> list:
        """The dropout ``RngStream`` s inside (None where a layer has none)."""

    @abc.abstractmethod
    def get_initial_state(self, batch_size: int):
        """The state a call without ``initial_state`` starts from."""

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

    def __call__(
        self, x: jax.Array, *, seq_lengths: jax.Array | None = None,
        mask: jax.Array | None = None, initial_state: Any = None, deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ):  # fmt: skip
        """Run the functional layer (or composition) on ``self.params``.

        Args:
            x: ``(B, T, in_features)`` (``(T, B, in_features)`` with ``time_major``).
            seq_lengths, mask: as the functional layer.
            initial_state: overrides the state the module starts from (a pair for
                ``Bidirectional``, a list for ``Stacked``).
            deterministic: True switches dropout off (overrides the attribute).
            rngs: a key, stream or ``nnx.Rngs`` for the dropout masks.

        Returns:
            The output (``(B, units)``, or ``(B, T, units)`` with ``return_sequences``);
            with ``return_state``, ``(output, final_state)``.
        """
        check_features(x, self.in_features, self.where)
        key = self._dropout_key(deterministic, rngs)
        if initial_state is None:
            batch = batch_of(x, self.time_major)
            initial_state = None if batch is None else self.get_initial_state(batch)
        out, final = self._layer_fn()(
            self.params,
            x,
            initial_state=initial_state,
            key=key,
            training=key is not None,
            return_sequences=self.return_sequences,
            return_state=True,
            seq_lengths=seq_lengths,
            mask=mask,
            time_major=self.time_major,
        )
        self._store_state(final)
        return (out, final) if self.return_state else out


class _Layer(_Recurrent):
    """``SimpleRNN``, ``LSTM`` and ``GRU``: one constructor for every cell.

    The keyword options are ``_flax_common.module_options(spec)``; each class's
    ``__signature__`` lists them with their defaults, so ``help()``,
    ``inspect.signature`` and documentation tools show every keyword.
    """

    spec: CellSpec

    def __init_subclass__(cls, kind: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        cls.spec = spec_named(kind)
        cls.where = f"jaxrnn.nnx.{cls.spec.keras}"
        P = inspect.Parameter
        cls.__signature__ = inspect.Signature(
            [
                P("in_features", P.POSITIONAL_OR_KEYWORD, annotation=int),
                P("units", P.POSITIONAL_OR_KEYWORD, annotation=int),
                P("rngs", P.KEYWORD_ONLY, annotation=nnx.Rngs),
                *(P(o.name, P.KEYWORD_ONLY, default=o.default) for o in module_options(cls.spec)),
            ]
        )

    def __init__(self, in_features: int, units: int, *, rngs: nnx.Rngs, **options):
        where, spec = self.where, self.spec
        bound = self.__signature__.bind(in_features, units, rngs=rngs, **options)
        bound.apply_defaults()
        cfg = {k: v for k, v in bound.arguments.items() if k not in ("in_features", "rngs")}
        positive_int(in_features, where, "in_features")
        check_config(spec, cfg, where)
        if cfg["stateful"] and cfg["batch_size"] is None:
            raise ValueError(
                f"{where}: stateful=True needs batch_size= (the fixed number of sequences "
                "whose state is kept), as Keras."
            )
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{where}: rngs must be an nnx.Rngs, got {type(rngs).__name__}.")
        self.in_features = int(in_features)
        self._config_keys = tuple(cfg)
        for name, value in cfg.items():
            setattr(self, name, value)
        p = init_cell(spec, rngs.params(), in_features, cfg, where)
        for name, value in p._asdict().items():
            setattr(self, name, None if value is None else nnx.Param(value))
        zeros = jnp.zeros((units,), cfg["dtype"])
        for f in spec.state_fields if cfg["learnable_initial_state"] else ():
            setattr(self, f"{f}0", nnx.Param(zeros))
        for f in spec.state_fields if cfg["stateful"] else ():
            setattr(
                self,
                f"state_{f}",
                RecurrentState(jnp.zeros((cfg["batch_size"], units), cfg["dtype"])),
            )
        stream = None
        if self._has_dropout():
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
        fields = self.spec.params_type._fields
        return self.spec.params_type(
            *(None if getattr(self, f) is None else getattr(self, f)[...] for f in fields)
        )

    def _layer_fn(self, with_direction: bool = True) -> Callable:
        return bind_layer(self.spec, self.get_config(), with_direction=with_direction)

    def _has_dropout(self) -> bool:
        return self.dropout > 0 or getattr(self, "recurrent_dropout", 0.0) > 0

    def _streams(self) -> list:
        return [self.rngs]

    @property
    def state(self):
        """The kept state of a ``stateful`` layer (``LSTMState`` for the LSTM)."""
        if not self.stateful:
            return None
        return self.spec.make_state(
            tuple(getattr(self, f"state_{f}")[...] for f in self.spec.state_fields)
        )

    def reset_state(self) -> None:
        """Set the kept state of a ``stateful`` layer to zeros (Keras' ``reset_state``)."""
        if not self.stateful:
            raise ValueError(f"{self.where}: reset_state() needs a layer built with stateful=True.")
        for f in self.spec.state_fields:
            kept = getattr(self, f"state_{f}")
            kept[...] = jnp.zeros_like(kept[...])

    def get_initial_state(self, batch_size: int):
        """The state a call without ``initial_state`` starts from, for ``batch_size`` rows:
        the kept state (``stateful``), the learnt ``h0``/``c0`` broadcast over the batch
        (``learnable_initial_state``), or zeros."""
        fields = self.spec.state_fields
        kept = learnt = None
        if self.stateful:
            check_batch(self.batch_size, batch_size, self.where)
            kept = tuple(getattr(self, f"state_{f}")[...] for f in fields)
        elif self.learnable_initial_state:
            learnt = tuple(getattr(self, f"{f}0")[...] for f in fields)
        return start_state(self.spec, self.params, batch_size, kept, learnt)

    def _store_state(self, final) -> None:
        if not self.stateful:
            return
        final = jax.lax.stop_gradient(final)
        for f, value in zip(self.spec.state_fields, self.spec.state_parts(final), strict=True):
            getattr(self, f"state_{f}")[...] = value


class SimpleRNN(_Layer, kind="rnn"):
    """A simple (Elman) RNN layer, ``keras.layers.SimpleRNN`` as an NNX module::

        h_t = activation(x_t W + h_{t-1} U + b)        (see ``jaxrnn.rnn_step``)

    Shapes: ``x`` ``(B, T, in_features)`` -> ``(B, units)`` or, with
    ``return_sequences``, ``(B, T, units)``.

    Args:
        in_features: the input size ``F``, as in ``jaxrnn.nnx.LSTM``.
        units: the hidden size ``H``.
        rngs: ``nnx.Rngs``, as in ``jaxrnn.nnx.LSTM``.
        activation: callable or Keras name (default ``'tanh'``).

    Every other keyword is the modules' common option, documented in
    ``help(jaxrnn.nnx.LSTM)``; ``inspect.signature(SimpleRNN)`` lists them with
    their defaults. The parameters ``kernel``, ``recurrent_kernel``, ``bias`` are
    ``nnx.Param`` s in the Keras layout; ``params`` gives ``jaxrnn.RNNParams``.

    Examples:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.SimpleRNN(3, 4, rngs=nnx.Rngs(0), return_sequences=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> layer(x).shape
        (2, 5, 4)
        >>> bool(jnp.allclose(layer(x), jaxrnn.simple_rnn(layer.params, x, return_sequences=True)))
        True
    """


class LSTM(_Layer, kind="lstm"):
    """An LSTM layer, ``keras.layers.LSTM`` as an NNX module::

        i, f, o = σ(x W + h U + b)_{i,f,o}    g = act(x W + h U + b)_g
        c_t = f ⊙ c_{t-1} + i ⊙ g             h_t = o ⊙ act(c_t)   (see ``jaxrnn.lstm_step``)

    Shapes: ``x`` ``(B, T, in_features)`` -> ``(B, units)`` or ``(B, T, units)``;
    the state is ``LSTMState(h, c)``, each ``(B, units)``. The keywords after
    ``unit_forget_bias`` are those of every layer module (``SimpleRNN`` and ``GRU``).

    Args:
        in_features: the input size ``F`` (NNX builds parameters up front).
        units: the hidden size ``H``.
        rngs: ``nnx.Rngs``; ``params`` (or ``default``) draws the weights, and a layer
            with dropout keeps a fork of ``dropout`` (or ``default``).
        activation: callable or Keras name (default ``'tanh'``).
        recurrent_activation: callable or Keras name for the gates (default ``'sigmoid'``).
        unit_forget_bias: forget-gate bias initialised to one (Keras).
        use_bias: create the bias vector(s).
        kernel_initializer: Keras name or ``jax.nn.initializers`` callable.
        recurrent_initializer: Keras name or ``jax.nn.initializers`` callable.
        bias_initializer: Keras name or ``jax.nn.initializers`` callable.
            Names: ``'glorot_uniform'``, ``'orthogonal'``, ``'zeros'``, ... (``INITIALIZERS``).
        return_sequences: passed to the functional layer (``help(jaxrnn.lstm)``).
        return_state: passed to the functional layer.
        go_backwards: passed to the functional layer.
        dropout: Keras' variational dropout rate on the inputs, applied unless
            ``deterministic``.
        recurrent_dropout: the same on the recurrent state.
        deterministic: the call's default: True switches dropout off.
            False (the default) is training; ``module.eval()`` sets it to True.
        unroll: passed to the functional layer.
        stateful: keep the final state between calls (as Keras).
            Needs ``batch_size``; ``reset_state()`` zeros it. The kept state is an
            ``nnx.Variable`` of type ``RecurrentState``, not a parameter.
        batch_size: the fixed batch size of a stateful layer.
        learnable_initial_state: learn the initial state (``h0``, and ``c0`` for the LSTM).
            Each ``(units,)``, broadcast over the batch, initialised to zeros.
        time_major: passed to the functional layer.
        dtype: the parameters' dtype (inputs are cast to it).
        impl: passed to the functional layer.
        remat: passed to the functional layer.
        matmul_dtype: passed to the functional layer.
        method: passed to the functional layer.
        tol: passed to the functional layer.
        max_iter: passed to the functional layer.
        fallback: passed to the functional layer.

    Attributes:
        kernel: ``nnx.Param`` ``(F, 4H)``, Keras layout.
        recurrent_kernel: ``nnx.Param`` ``(H, 4H)``.
        bias: ``nnx.Param`` ``(4H,)`` (None without bias). The GRU adds
            ``recurrent_bias``; ``params`` gives them as ``jaxrnn.LSTMParams``.

    Examples:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.LSTM(3, 4, rngs=nnx.Rngs(0))
        >>> x = jnp.ones((2, 5, 3))
        >>> type(layer.params).__name__, layer(x).shape
        ('LSTMParams', (2, 4))
        >>> bool(jnp.allclose(layer(x), jaxrnn.lstm(layer.params, x)))
        True
    """


class GRU(_Layer, kind="gru"):
    """A GRU layer, ``keras.layers.GRU`` as an NNX module::

        z, r = σ(x W + b + h U + β)_{z,r}
        n = act(x W_n + b_n + r ⊙ (h U_n + β_n))     (reset_after=True)
        h_t = z ⊙ h_{t-1} + (1 − z) ⊙ n              (see ``jaxrnn.gru_step``)

    Shapes: ``x`` ``(B, T, in_features)`` -> ``(B, units)`` or ``(B, T, units)``.

    Args:
        in_features: the input size ``F``, as in ``jaxrnn.nnx.LSTM``.
        units: the hidden size ``H``.
        rngs: ``nnx.Rngs``, as in ``jaxrnn.nnx.LSTM``.
        activation: callable or Keras name (default ``'tanh'``).
        recurrent_activation: callable or Keras name for the gates (default ``'sigmoid'``).
        reset_after: the GRU variant (True: Keras' and PyTorch's default).

    Every other keyword is the modules' common option, documented in
    ``help(jaxrnn.nnx.LSTM)``. The parameters add ``recurrent_bias`` (None when
    ``reset_after=False`` or without bias); ``params`` gives ``jaxrnn.GRUParams``.

    Examples:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.GRU(3, 4, rngs=nnx.Rngs(0), go_backwards=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> bool(jnp.allclose(layer(x), jaxrnn.gru(layer.params, x, go_backwards=True)))
        True
    """


class MinGRU(_Layer, kind="min_gru"):
    """A minGRU layer (Feng et al. 2024) as an NNX module (Keras has none)::

        z = σ(x W_z + b_z)   h̃ = x W_h + b_h   h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃

    (see ``jaxrnn.min_gru``). Linear in the state, so ``method='associative'`` or
    ``'chunked'`` evaluates it in parallel over time.

    Args:
        in_features: the input size ``F``, as in ``jaxrnn.nnx.LSTM``.
        units: the hidden size ``H``.
        rngs: ``nnx.Rngs``, as in ``jaxrnn.nnx.LSTM``.

    Every other keyword is the modules' common option, documented in
    ``help(jaxrnn.nnx.LSTM)``, except ``recurrent_initializer`` and
    ``recurrent_dropout``: there is no recurrent kernel. The parameters are
    ``kernel`` ``(F, 2H)`` and ``bias`` ``(2H,)``; ``params`` gives ``jaxrnn.MinGRUParams``.

    Examples:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.MinGRU(3, 4, rngs=nnx.Rngs(0), return_sequences=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> bool(jnp.allclose(layer(x), jaxrnn.min_gru(layer.params, x, return_sequences=True)))
        True
    """


class MinLSTM(_Layer, kind="min_lstm"):
    """A minLSTM layer (Feng et al. 2024) as an NNX module (Keras has none)::

        f, i = σ(x W + b)_{f,i}   h̃ = x W_h + b_h
        h_t = f/(f+i) ⊙ h_{t-1} + i/(f+i) ⊙ h̃

    (see ``jaxrnn.min_lstm``); the state is ``h`` alone.

    Args:
        in_features: the input size ``F``, as in ``jaxrnn.nnx.LSTM``.
        units: the hidden size ``H``.
        rngs: ``nnx.Rngs``, as in ``jaxrnn.nnx.LSTM``.

    The other keywords are those of ``jaxrnn.nnx.MinGRU``. The parameters are
    ``kernel`` ``(F, 3H)`` and ``bias`` ``(3H,)``; ``params`` gives ``jaxrnn.MinLSTMParams``.

    Examples:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> layer = jaxrnn.nnx.MinLSTM(3, 4, rngs=nnx.Rngs(0))
        >>> x = jnp.ones((2, 5, 3))
        >>> bool(jnp.allclose(layer(x), jaxrnn.min_lstm(layer.params, x)))
        True
    """


class Bidirectional(BidirectionalBase, _Recurrent):
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

    Examples:
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
        self, forward_layer: _Layer, backward_layer: _Layer | None = None, *,
        merge_mode: str | None = "concat", rngs: nnx.Rngs | None = None,
        deterministic: bool | None = None,
    ):  # fmt: skip
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
        bidirectional_settings(forward_layer, backward_layer, merge_mode, self.where)
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.deterministic = forward_layer.deterministic if deterministic is None else deterministic
        self.in_features = forward_layer.in_features
        self.time_major = forward_layer.time_major
        self.return_sequences = forward_layer.return_sequences
        self.return_state = forward_layer.return_state

    @property
    def params(self) -> BidirectionalParams:
        return BidirectionalParams(self.forward_layer.params, self.backward_layer.params)

    def _backward_config(self) -> _Layer:
        return self.backward_layer

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


class Stacked(StackedBase, _Recurrent):
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

    Examples:
        >>> import jax.numpy as jnp, jaxrnn, jaxrnn.nnx
        >>> from flax import nnx
        >>> rngs = nnx.Rngs(0)
        >>> deep = jaxrnn.nnx.Stacked([jaxrnn.nnx.GRU(3, 4, rngs=rngs), jaxrnn.nnx.GRU(4, 4, rngs=rngs)])
        >>> x = jnp.ones((2, 5, 3))
        >>> bool(jnp.allclose(deep(x), jaxrnn.stacked(jaxrnn.gru, deep.params, x)))
        True
        >>> deep(x).shape, len(deep.params)
        ((2, 4), 2)
    """

    where = "jaxrnn.nnx.Stacked"

    def __init__(
        self, layers: Sequence[_Recurrent], *, return_sequences: bool | None = None,
        return_state: bool | None = None, deterministic: bool | None = None,
    ):  # fmt: skip
        layers = list(layers)
        for k, layer in enumerate(layers):
            if not isinstance(layer, _Recurrent):
                raise TypeError(
                    f"{self.where}: layers[{k}] is a {type(layer).__name__}; use jaxrnn.nnx "
                    "recurrent layers."
                )
        self.time_major = stack_settings(layers, self.where)
        self.layers = nnx.List(layers)
        last = layers[-1]
        self.return_sequences = (
            last.return_sequences if return_sequences is None else return_sequences
        )
        self.return_state = last.return_state if return_state is None else return_state
        self.deterministic = layers[0].deterministic if deterministic is None else deterministic
        self.in_features = layers[0].in_features

    @property
    def params(self) -> list:
        return [layer.params for layer in self.layers]

    def _streams(self) -> list:
        return [s for layer in self.layers for s in layer._streams()]

    def get_initial_state(self, batch_size: int) -> list:
        """One start state per layer."""
        return [layer.get_initial_state(batch_size) for layer in self.layers]

    def reset_state(self) -> None:
        """Zero the kept state of stateful inner layers."""
        for layer in self.layers:
            if not isinstance(layer, _Layer) or layer.stateful:
                layer.reset_state()
