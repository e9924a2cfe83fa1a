"""Flax Linen modules over the functional layers: ``SimpleRNN``, ``LSTM``, ``GRU``,
``Bidirectional`` and ``Stacked``.

The modules hold configuration only; parameters live in the ``'params'``
collection under the NamedTuple field names (``kernel``, ``recurrent_kernel``,
``bias``, and ``recurrent_bias`` for the GRU), and every call is one call of the
functional layer on them, so ``jaxrnn.lstm(to_params(variables), x)`` equals
``module.apply(variables, x)``.

Conventions (as ``flax.linen.Dropout``):

- the input size is read from ``x`` at ``init``; weights are drawn with the
  functional initialisers (``jaxrnn.init_lstm`` ...) from the ``'params'`` rng;
- dropout acts when ``deterministic`` is False (module attribute or call
  argument; the call wins) and draws its key with ``self.make_rng('dropout')``,
  so ``apply(..., rngs={'dropout': key})`` is needed while training;
- ``stateful=True`` keeps the final state in the ``'state'`` collection: apply
  with ``mutable=['state']`` and zero it with ``reset_state(variables)``;
- ``learnable_initial_state=True`` adds parameters ``h0`` (and ``c0``), each
  ``(units,)``, broadcast over the batch.

``to_params`` turns a params dict into the functional NamedTuples
(``BidirectionalParams`` and lists for the composites) and ``from_params`` back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ._cells.spec import CellSpec, param_type_names, spec_named, spec_of, spec_of_type, spec_with
from ._compose import BidirectionalParams
from ._flax_common import (
    BidirectionalBase,
    RecurrentModule,
    StackedBase,
    bidirectional_settings,
    bind_layer,
    check_batch,
    check_config,
    init_cell,
    param_fields,
    stack_settings,
    start_state,
)
from ._layers import check_sequence

__all__ = [
    "GRU",
    "LSTM",
    "Bidirectional",
    "MinGRU",
    "MinLSTM",
    "SimpleRNN",
    "Stacked",
    "from_params",
    "reset_state",
    "to_params",
]


def to_params(tree: Mapping, *, params_type: type | None = None) -> Any:
    """Convert Linen parameters to the functional NamedTuples.

    ``tree`` is the variables dict (``{'params': ...}``) or its ``'params'``
    entry, of a layer (-> ``RNNParams``/``LSTMParams``/``GRUParams``, the type
    read from the shapes: ``recurrent_kernel`` is ``(H, G·H)`` with G = 1, 4, 3),
    a ``Bidirectional`` (-> ``BidirectionalParams``) or a ``Stacked`` (-> a list).
    Learnable initial states (``h0``, ``c0``) are not cell parameters and are left out.
    A cell without recurrent kernel (``MinGRU``, ``MinLSTM``) cannot be told from
    its shapes: pass its type, ``params_type=jaxrnn.MinGRUParams``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> x = jnp.ones((2, 5, 3))
        >>> layer = jaxrnn.linen.LSTM(4)
        >>> v = layer.init(jax.random.key(0), x)
        >>> p = jaxrnn.linen.to_params(v)
        >>> type(p).__name__, p.kernel.shape
        ('LSTMParams', (3, 16))
        >>> bool(jnp.allclose(jaxrnn.lstm(p, x), layer.apply(v, x)))
        True
    """
    if not isinstance(tree, Mapping):
        raise TypeError(f"to_params: expected a dict of parameters, got {type(tree).__name__}.")
    if "params" in tree and isinstance(tree["params"], Mapping):
        tree = tree["params"]
    if params_type is not None and "kernel" in tree:
        spec = spec_of_type(params_type)
        if spec is None:
            raise TypeError(
                f"to_params: params_type must be {param_type_names()}, got {params_type!r}."
            )
        return spec.params_type(**{f: tree.get(f) for f in spec.params_type._fields})
    if "kernel" in tree:
        if "recurrent_kernel" not in tree:
            raise ValueError(
                "to_params: these parameters have a kernel but no recurrent_kernel (a "
                "MinGRU or MinLSTM), whose type the shapes cannot tell: pass "
                "params_type=jaxrnn.MinGRUParams or params_type=jaxrnn.MinLSTMParams."
            )
        hidden, gh = np.shape(tree["recurrent_kernel"])
        spec = (
            spec_with(gates=gh // hidden, recurrent=True) if hidden and gh % hidden == 0 else None
        )
        if spec is None:
            raise ValueError(
                f"to_params: recurrent_kernel.shape={(hidden, gh)} is not (H, G·H) with "
                "G = 1 (SimpleRNN), 4 (LSTM) or 3 (GRU)."
            )
        return spec.params_type(**{f: tree.get(f) for f in spec.params_type._fields})
    if "forward_layer" in tree:
        return BidirectionalParams(
            to_params(tree["forward_layer"], params_type=params_type),
            to_params(tree["backward_layer"], params_type=params_type),
        )
    if "layers_0" in tree:
        n = sum(1 for k in tree if k.startswith("layers_"))
        return [to_params(tree[f"layers_{k}"], params_type=params_type) for k in range(n)]
    raise ValueError(
        f"to_params: no layer parameters found (keys {sorted(tree)}); pass the variables "
        "or params of a jaxrnn.linen module."
    )


def from_params(params: Any) -> dict:
    """The inverse of ``to_params``: a ``'params'`` dict for a jaxrnn.linen module.

    Use ``{'params': from_params(p)}`` as the variables of ``apply`` (add ``h0``/``c0``
    for a learnable initial state).

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> x = jnp.ones((2, 5, 3))
        >>> y = jaxrnn.linen.GRU(4).apply({'params': jaxrnn.linen.from_params(p)}, x)
        >>> bool(jnp.allclose(y, jaxrnn.gru(p, x)))
        True
    """
    if isinstance(params, BidirectionalParams):
        return {
            "forward_layer": from_params(params.forward),
            "backward_layer": from_params(params.backward),
        }
    if spec_of(params) is not None:
        return {f: v for f, v in params._asdict().items() if v is not None}
    if isinstance(params, (list, tuple)):
        return {f"layers_{k}": from_params(p) for k, p in enumerate(params)}
    raise TypeError(
        f"from_params: expected {param_type_names()}, BidirectionalParams or a "
        f"list of them, got {type(params).__name__}."
    )


def reset_state(variables: Mapping) -> dict:
    """Zero the kept state of stateful layers: a copy of ``variables`` whose
    ``'state'`` collection is all zeros (Keras' ``reset_state``).

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn.linen
        >>> layer = jaxrnn.linen.GRU(4, stateful=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> v = layer.init(jax.random.key(0), x)
        >>> y, upd = layer.apply(v, x, mutable=['state'])
        >>> v = {**v, **upd}
        >>> float(jnp.abs(v['state']['h']).sum()) > 0
        True
        >>> float(jnp.abs(jaxrnn.linen.reset_state(v)['state']['h']).sum())
        0.0
    """
    out = dict(variables)
    if "state" in out:
        out["state"] = jax.tree.map(jnp.zeros_like, out["state"])
    return out


class _Recurrent(nn.Module, RecurrentModule):
    """The Linen side of ``RecurrentModule``: dropout keys and the call."""

    where: ClassVar[str] = "jaxrnn.linen"

    def _key(self, deterministic: bool | None) -> jax.Array | None:
        if not self._has_dropout():
            return None
        if deterministic is None:
            deterministic = self.deterministic
        if deterministic is None:
            raise ValueError(
                f"{self.where}: dropout is set, so pass deterministic=True (inference) or "
                "deterministic=False (training, with rngs={'dropout': key}) to the call "
                "or the constructor."
            )
        return None if deterministic else self.make_rng("dropout")

    def __call__(
        self, x: jax.Array, *, seq_lengths: jax.Array | None = None,
        mask: jax.Array | None = None, initial_state: Any = None, deterministic: bool | None = None,
    ):  # fmt: skip
        """Run the functional layer (or composition) on the module's parameters.

        The arguments are those of ``jaxrnn.nnx.LSTM.__call__`` but ``rngs``: the
        dropout key comes from the ``'dropout'`` rng of ``apply``. ``x`` is ``(B, T, F)``
        (``(T, B, F)`` with ``time_major``); returns the output, or with
        ``return_state`` ``(output, final_state)``.
        """
        check_sequence(x, self.where, time_major=self.time_major)
        batch = int(np.shape(x)[1 if self.time_major else 0])
        params, start = self.layer_variables(int(np.shape(x)[-1]), batch)
        key = self._key(deterministic)
        out, final = self._layer_fn()(
            params,
            x,
            initial_state=start if initial_state is None else initial_state,
            key=key,
            training=key is not None,
            return_sequences=self._return_sequences(),
            return_state=True,
            seq_lengths=seq_lengths,
            mask=mask,
            time_major=self.time_major,
        )
        if not self.is_initializing():
            self._store_state(final)
        return (out, final) if self._return_state() else out


class _Layer(_Recurrent):
    """``SimpleRNN``, ``LSTM`` and ``GRU``: the fields every layer shares, declared
    once (defaults as ``_flax_common.MODULE_OPTIONS``, which tests hold them to);
    each subclass adds its cell's options and names its ``CellSpec``."""

    units: int
    use_bias: bool = True
    kernel_initializer: str | Callable = "glorot_uniform"
    recurrent_initializer: str | Callable = "orthogonal"
    bias_initializer: str | Callable = "zeros"
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    deterministic: bool | None = None  # Linen: required (here or per call) with dropout
    unroll: int | bool = 1
    stateful: bool = False
    learnable_initial_state: bool = False
    time_major: bool = False
    dtype: Any = jnp.float32
    impl: str = "auto"
    remat: str | None = None
    matmul_dtype: Any = None
    method: str | None = None
    tol: float | None = None
    max_iter: int | None = None
    fallback: str | None = "sequential"

    spec: ClassVar[CellSpec]

    @property
    def where(self) -> str:
        return f"jaxrnn.linen.{self.spec.keras}"

    @nn.nowrap
    def get_config(self) -> dict:
        """The constructor arguments, as Keras."""
        skip = ("parent", "name")
        return {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in skip}

    @property
    def out_features(self) -> int:
        return self.units

    @nn.nowrap
    def _cfg(self) -> dict:
        cfg = self.get_config()
        cfg.pop("deterministic")
        return cfg

    @nn.nowrap
    def _return_sequences(self) -> bool:
        return self.return_sequences

    @nn.nowrap
    def _return_state(self) -> bool:
        return self.return_state

    @nn.nowrap
    def _has_dropout(self) -> bool:
        return self.dropout > 0 or self.recurrent_dropout > 0

    @nn.nowrap
    def _layer_fn(self, with_direction: bool = True) -> Callable:
        return bind_layer(self.spec, self._cfg(), with_direction=with_direction)

    @nn.compact
    def layer_variables(self, in_features: int, batch_size: int):
        """Create (at ``init``) or read the layer's variables.

        Returns ``(params, start_state)``: the cell parameters as the functional
        NamedTuple, and the state a call without ``initial_state`` starts from
        (the kept state when ``stateful``, the learnt ``h0``/``c0`` broadcast over
        the batch, or zeros).
        """
        where, cfg, spec = self.where, self._cfg(), self.spec
        check_config(spec, cfg, where)
        fields = param_fields(spec, in_features, cfg, where)
        if all(self.has_variable("params", f) for f in fields):
            values = {f: self.get_variable("params", f) for f in fields}
        else:  # init: one draw of the functional initialiser
            full = init_cell(spec, self.make_rng("params"), in_features, cfg, where)
            values = {f: self.param(f, lambda _rng, v=getattr(full, f): v) for f in fields}
        params = spec.params_type(**{f: values.get(f) for f in spec.params_type._fields})
        built = np.shape(params.kernel)[0]
        if built != in_features:
            raise ValueError(
                f"{where}: x has {in_features} features but the layer's kernel was built for "
                f"in_features={built} (kernel.shape={np.shape(params.kernel)})."
            )
        units, dtype = self.units, self.dtype
        kept = learnt = None
        if self.stateful:
            shape = (batch_size, units)
            kept = tuple(
                self.variable("state", f, jnp.zeros, shape, dtype).value for f in spec.state_fields
            )
            check_batch(int(np.shape(kept[0])[0]), batch_size, where)
        elif self.learnable_initial_state:
            zeros = nn.initializers.zeros
            learnt = tuple(self.param(f"{f}0", zeros, (units,), dtype) for f in spec.state_fields)
        return params, start_state(spec, params, batch_size, kept, learnt)

    def _store_state(self, final) -> None:
        if not self.stateful:
            return
        if not self.is_mutable_collection("state"):
            raise ValueError(
                f"{self.where}: a stateful layer updates its 'state' collection; call "
                "apply(..., mutable=['state']) and keep the returned state."
            )
        final = jax.lax.stop_gradient(final)
        for f, value in zip(self.spec.state_fields, self.spec.state_parts(final), strict=True):
            self.put_variable("state", f, value)


class SimpleRNN(_Layer):
    """A simple (Elman) RNN layer, ``keras.layers.SimpleRNN`` as a Linen module::

        h_t = activation(x_t W + h_{t-1} U + b)        (see ``jaxrnn.rnn_step``)

    Shapes: ``x`` ``(B, T, F)`` -> ``(B, units)`` or ``(B, T, units)``.

    Attributes:
        units: the hidden size ``H`` (the input size is read from ``x`` at init).
        activation: callable or Keras name (default ``'tanh'``).

    The other fields are every layer's, documented in ``help(jaxrnn.linen.LSTM)``.
    Parameters (``'params'``): ``kernel`` ``(F, H)``, ``recurrent_kernel`` ``(H, H)``,
    ``bias`` ``(H,)``; ``to_params`` gives ``jaxrnn.RNNParams``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> layer = jaxrnn.linen.SimpleRNN(4, return_sequences=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> v = layer.init(jax.random.key(0), x)
        >>> layer.apply(v, x).shape
        (2, 5, 4)
        >>> ref = jaxrnn.simple_rnn(jaxrnn.linen.to_params(v), x, return_sequences=True)
        >>> bool(jnp.allclose(layer.apply(v, x), ref))
        True
    """

    activation: str | Callable = "tanh"

    spec: ClassVar[CellSpec] = spec_named("rnn")


class LSTM(_Layer):
    """An LSTM layer, ``keras.layers.LSTM`` as a Linen module::

        i, f, o = σ(x W + h U + b)_{i,f,o}    g = act(x W + h U + b)_g
        c_t = f ⊙ c_{t-1} + i ⊙ g             h_t = o ⊙ act(c_t)   (see ``jaxrnn.lstm_step``)

    Shapes: ``x`` ``(B, T, F)`` -> ``(B, units)`` or ``(B, T, units)``; the state
    is ``LSTMState(h, c)``, each ``(B, units)``.

    Attributes:
        units: the hidden size ``H`` (the input size is read from ``x`` at init).
        activation: callable or Keras name (default ``'tanh'``).
        recurrent_activation: callable or Keras name for the gates (default ``'sigmoid'``).
        unit_forget_bias: forget-gate bias initialised to one (Keras).
        dropout: Keras' variational dropout rate on the inputs; active when
            ``deterministic`` is False, with the ``'dropout'`` rng.
        recurrent_dropout: the same on the recurrent state.
        deterministic: default of the call's ``deterministic`` (required, here or
            per call, when a dropout rate is set).
        stateful: keep the final state in the ``'state'`` collection (entries
            ``h``, ``c``); the batch size is fixed by ``init``.
        learnable_initial_state: parameters ``h0`` and ``c0`` ``(units,)``, zeros at init.

    The fields use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
    return_sequences, return_state, go_backwards, unroll, time_major, impl, remat,
    matmul_dtype, method, tol, max_iter, fallback and dtype are as ``jaxrnn.nnx.LSTM``'s
    arguments (every layer here has these fields).

    Parameters (``'params'``): ``kernel`` ``(F, 4H)``, ``recurrent_kernel``
    ``(H, 4H)``, ``bias`` ``(4H,)``; ``to_params`` gives ``jaxrnn.LSTMParams``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> layer = jaxrnn.linen.LSTM(4, dropout=0.2)
        >>> x = jnp.ones((2, 5, 3))
        >>> v = layer.init(jax.random.key(0), x, deterministic=True)
        >>> y = layer.apply(v, x, deterministic=False, rngs={'dropout': jax.random.key(1)})
        >>> y.shape
        (2, 4)
        >>> bool(jnp.allclose(layer.apply(v, x, deterministic=True),
        ...                   jaxrnn.lstm(jaxrnn.linen.to_params(v), x)))
        True
    """

    activation: str | Callable = "tanh"
    recurrent_activation: str | Callable = "sigmoid"
    unit_forget_bias: bool = True

    spec: ClassVar[CellSpec] = spec_named("lstm")


class GRU(_Layer):
    """A GRU layer, ``keras.layers.GRU`` as a Linen module::

        z, r = σ(x W + b + h U + β)_{z,r}
        n = act(x W_n + b_n + r ⊙ (h U_n + β_n))     (reset_after=True)
        h_t = z ⊙ h_{t-1} + (1 − z) ⊙ n              (see ``jaxrnn.gru_step``)

    Shapes: ``x`` ``(B, T, F)`` -> ``(B, units)`` or ``(B, T, units)``.

    Attributes:
        units: the hidden size ``H`` (the input size is read from ``x`` at init).
        activation: callable or Keras name (default ``'tanh'``).
        recurrent_activation: callable or Keras name for the gates (default ``'sigmoid'``).
        reset_after: the GRU variant (True: Keras' and PyTorch's default).

    The other fields are every layer's, documented in ``help(jaxrnn.linen.LSTM)``.
    Parameters (``'params'``): ``kernel`` ``(F, 3H)``, ``recurrent_kernel``
    ``(H, 3H)``, ``bias`` ``(3H,)``, ``recurrent_bias`` ``(3H,)`` (reset-after only);
    ``to_params`` gives ``jaxrnn.GRUParams``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> layer = jaxrnn.linen.GRU(4, go_backwards=True)
        >>> x = jnp.ones((2, 5, 3))
        >>> v = layer.init(jax.random.key(0), x)
        >>> ref = jaxrnn.gru(jaxrnn.linen.to_params(v), x, go_backwards=True)
        >>> bool(jnp.allclose(layer.apply(v, x), ref))
        True
    """

    activation: str | Callable = "tanh"
    recurrent_activation: str | Callable = "sigmoid"
    reset_after: bool = True

    spec: ClassVar[CellSpec] = spec_named("gru")


class MinGRU(_Layer):
    """A minGRU layer (Feng et al. 2024) as a Linen module (Keras has none)::

        z = σ(x W_z + b_z)   h̃ = x W_h + b_h   h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃

    (see ``jaxrnn.min_gru``). Linear in the state, so ``method='associative'`` or
    ``'chunked'`` evaluates it in parallel over time.

    Attributes:
        units: the hidden size ``H`` (the input size is read from ``x`` at init).

    The other fields are every layer's, documented in ``help(jaxrnn.linen.LSTM)``;
    ``recurrent_initializer`` and ``recurrent_dropout`` must keep their defaults
    (there is no recurrent kernel). Parameters (``'params'``): ``kernel`` ``(F, 2H)``,
    ``bias`` ``(2H,)``; ``to_params(v, params_type=jaxrnn.MinGRUParams)`` gives
    ``jaxrnn.MinGRUParams``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> layer = jaxrnn.linen.MinGRU(4)
        >>> x = jnp.ones((2, 5, 3))
        >>> v = layer.init(jax.random.key(0), x)
        >>> p = jaxrnn.linen.to_params(v, params_type=jaxrnn.MinGRUParams)
        >>> bool(jnp.allclose(layer.apply(v, x), jaxrnn.min_gru(p, x)))
        True
    """

    spec: ClassVar[CellSpec] = spec_named("min_gru")


class MinLSTM(_Layer):
    """A minLSTM layer (Feng et al. 2024) as a Linen module (Keras has none)::

        f, i = σ(x W + b)_{f,i}   h̃ = x W_h + b_h
        h_t = f/(f+i) ⊙ h_{t-1} + i/(f+i) ⊙ h̃

    (see ``jaxrnn.min_lstm``); the state is ``h`` alone.

    Attributes:
        units: the hidden size ``H``.

    The other fields are those of ``jaxrnn.linen.MinGRU``. Parameters:
    ``kernel`` ``(F, 3H)``, ``bias`` ``(3H,)``; ``to_params(v,
    params_type=jaxrnn.MinLSTMParams)`` gives ``jaxrnn.MinLSTMParams``.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> layer = jaxrnn.linen.MinLSTM(4, method="associative")
        >>> x = jnp.ones((2, 5, 3))
        >>> v = layer.init(jax.random.key(0), x)
        >>> p = jaxrnn.linen.to_params(v, params_type=jaxrnn.MinLSTMParams)
        >>> bool(jnp.allclose(layer.apply(v, x), jaxrnn.min_lstm(p, x)))
        True
    """

    spec: ClassVar[CellSpec] = spec_named("min_lstm")


class Bidirectional(BidirectionalBase, _Recurrent):
    """``keras.layers.Bidirectional`` as a Linen module: the equation, merge modes and
    shapes of ``jaxrnn.nnx.Bidirectional`` (and ``jaxrnn.bidirectional``), over Linen layers.

    Attributes:
        forward_layer: a ``SimpleRNN``, ``LSTM`` or ``GRU`` with ``go_backwards=False``.
        backward_layer: None (default) clones the forward layer: same config, its
            own weights, as Keras. Otherwise its ``go_backwards`` is ignored and its
            ``return_sequences``, ``return_state`` and ``time_major`` must match.
        merge_mode: ``'concat'`` (default), ``'sum'``, ``'mul'``, ``'ave'`` or None.
        deterministic: None takes the forward layer's.

    The parameters are ``{'forward_layer': ..., 'backward_layer': ...}``
    (``to_params``: ``jaxrnn.BidirectionalParams``).

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> bi = jaxrnn.linen.Bidirectional(jaxrnn.linen.LSTM(4), merge_mode='sum')
        >>> x = jnp.ones((2, 5, 3))
        >>> v = bi.init(jax.random.key(0), x)
        >>> bi.apply(v, x).shape
        (2, 4)
        >>> ref = jaxrnn.bidirectional(jaxrnn.lstm, jaxrnn.linen.to_params(v), x, merge_mode='sum')
        >>> bool(jnp.allclose(bi.apply(v, x), ref))
        True
    """

    forward_layer: _Layer
    backward_layer: _Layer | None = None
    merge_mode: str | None = "concat"
    deterministic: bool | None = None

    where: ClassVar[str] = "jaxrnn.linen.Bidirectional"

    @nn.compact
    def _backward(self) -> _Layer:
        if self.backward_layer is not None:
            return self.backward_layer
        return self.forward_layer.clone(name="backward_layer", parent=self)

    @property
    def time_major(self) -> bool:
        return self.forward_layer.time_major

    @nn.nowrap
    def _backward_config(self) -> _Layer:
        return self.forward_layer if self.backward_layer is None else self.backward_layer

    @nn.nowrap
    def _return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    @nn.nowrap
    def _return_state(self) -> bool:
        return self.forward_layer.return_state

    def _key(self, deterministic):
        if deterministic is None and self.deterministic is None:
            deterministic = self.forward_layer.deterministic
        return super()._key(deterministic)

    def layer_variables(self, in_features: int, batch_size: int):
        """``(BidirectionalParams, (forward_state, backward_state))``, as the layers'."""
        fw, bw = self.forward_layer, self._backward()
        bidirectional_settings(fw, bw, self.merge_mode, self.where)
        p_fw, s_fw = fw.layer_variables(in_features, batch_size)
        p_bw, s_bw = bw.layer_variables(in_features, batch_size)
        return BidirectionalParams(p_fw, p_bw), (s_fw, s_bw)

    def _store_state(self, final) -> None:
        self.forward_layer._store_state(final[0])
        self._backward()._store_state(final[1])


class Stacked(StackedBase, _Recurrent):
    """A deep RNN as a Linen module: ``jaxrnn.nnx.Stacked`` (and ``jaxrnn.stacked``)
    over Linen layers, whose parameters sit under ``layers_0``, ``layers_1``, ...

    Attributes:
        layers: ``SimpleRNN``/``LSTM``/``GRU``/``Bidirectional`` modules (their
            ``return_sequences``/``return_state`` are ignored).
        return_sequences, return_state: the stack's output (``return_state`` gives
            ``[state per layer]``); None takes the last layer's setting.
        deterministic: None takes the first layer's.

    Examples:
        >>> import jax, jax.numpy as jnp, jaxrnn, jaxrnn.linen
        >>> deep = jaxrnn.linen.Stacked([jaxrnn.linen.GRU(4), jaxrnn.linen.GRU(4)])
        >>> x = jnp.ones((2, 5, 3))
        >>> v = deep.init(jax.random.key(0), x)
        >>> ref = jaxrnn.stacked(jaxrnn.gru, jaxrnn.linen.to_params(v), x)
        >>> bool(jnp.allclose(deep.apply(v, x), ref))
        True
    """

    layers: Sequence[_Recurrent]
    return_sequences: bool | None = None
    return_state: bool | None = None
    deterministic: bool | None = None

    where: ClassVar[str] = "jaxrnn.linen.Stacked"

    def __post_init__(self):
        if len(self.layers) == 0:
            raise ValueError(f"{self.where}: layers is empty; pass at least one recurrent layer.")
        super().__post_init__()

    @property
    def time_major(self) -> bool:
        return bool(self.layers[0].time_major) if len(self.layers) else False

    @nn.nowrap
    def _return_sequences(self) -> bool:
        rs = self.return_sequences
        return self.layers[-1]._return_sequences() if rs is None else rs

    @nn.nowrap
    def _return_state(self) -> bool:
        rs = self.return_state
        return self.layers[-1]._return_state() if rs is None else rs

    def _key(self, deterministic):
        if deterministic is None and self.deterministic is None:
            deterministic = self.layers[0].deterministic
        return super()._key(deterministic)

    def _check(self, in_features: int) -> None:
        layers = list(self.layers)
        for k, layer in enumerate(layers):
            if not isinstance(layer, _Recurrent):
                raise TypeError(
                    f"{self.where}: layers[{k}] is a {type(layer).__name__}; use jaxrnn.linen "
                    "recurrent layers."
                )
        # each layer's input size is the previous one's output (Linen reads it), so
        # what can fail here is a merge_mode=None layer feeding another, or mixed time_major
        sizes = [in_features] + [layer.out_features for layer in layers[:-1]]
        views = [_View(layer, size) for layer, size in zip(layers, sizes, strict=True)]
        stack_settings(views, self.where)

    def layer_variables(self, in_features: int, batch_size: int):
        """``([params per layer], [start state per layer])``."""
        self._check(in_features)
        params, states = [], []
        size = in_features
        for layer in self.layers:
            p, s = layer.layer_variables(size, batch_size)
            params.append(p)
            states.append(s)
            size = layer.out_features
        return params, states


class _View:
    """A layer seen with the input size it receives (Linen infers it from ``x``)."""

    def __init__(self, layer: Any, in_features: int):
        self.layer = layer
        self.in_features = in_features

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)
