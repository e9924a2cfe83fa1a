"""Keras 3 ``SimpleRNN`` / ``LSTM`` / ``GRU`` / ``Bidirectional`` <-> jaxrnn."""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._cells.activations import ACTIVATIONS
from .._cells.gru import GRUParams
from .._cells.lstm import LSTMParams
from .._cells.simple_rnn import RNNParams
from .._cells.spec import spec_with
from .._compose import BidirectionalParams, bidirectional
from ._common import Converted, gru_reset_after, kind_of, layer_of, refuse_float64, to_numpy

_CAST = "from_keras([w.astype(np.float32) for w in weights])"


def _params_from_list(w: list[np.ndarray], kind: str | None, where: str):
    """One direction's params and its GRU variant (None unless a GRU) from 2-3 arrays."""
    if len(w) not in (2, 3):
        raise ValueError(
            f"{where}: a recurrent layer has 2 (use_bias=False) or 3 weights, got {len(w)}."
        )
    k, rk = w[0], w[1]
    b = w[2] if len(w) == 3 else None
    if k.ndim != 2 or rk.ndim != 2 or rk.shape[0] == 0 or rk.shape[1] % rk.shape[0]:
        raise ValueError(
            f"{where}: expected kernel (I, G*H) and recurrent_kernel (H, G*H), got "
            f"{k.shape} and {rk.shape}."
        )
    H = rk.shape[0]
    inferred = {1: "rnn", 3: "gru", 4: "lstm"}.get(rk.shape[1] // H)
    if inferred is None or k.shape[1] != rk.shape[1]:
        raise ValueError(
            f"{where}: recurrent_kernel {rk.shape} / kernel {k.shape} are not (H, G*H) / "
            "(I, G*H) with G = 1 (SimpleRNN), 3 (GRU) or 4 (LSTM)."
        )
    if kind is not None and kind != inferred:
        raise ValueError(
            f"{where}: kind={kind!r} but recurrent_kernel {rk.shape} has "
            f"{rk.shape[1] // H} gate(s) (a {inferred})."
        )
    kind = inferred
    if b is not None and kind == "gru" and b.shape not in ((2, 3 * H), (3 * H,)):
        raise ValueError(f"{where}: GRU bias must be (2, {3 * H}) or ({3 * H},), got {b.shape}.")
    if b is not None and kind != "gru" and b.shape != (rk.shape[1],):
        raise ValueError(f"{where}: bias must be ({rk.shape[1]},), got {b.shape}.")
    names = ("kernel", "recurrent_kernel", "bias")
    refuse_float64(dict(zip(names, w, strict=False)), where, _CAST)
    if kind == "gru":
        if b is None:
            return GRUParams(jnp.asarray(k), jnp.asarray(rk), None, None), None
        if b.shape == (2, 3 * H):  # reset_after=True: rows (input, recurrent)
            return GRUParams(
                jnp.asarray(k), jnp.asarray(rk), jnp.asarray(b[0]), jnp.asarray(b[1])
            ), True
        return GRUParams(jnp.asarray(k), jnp.asarray(rk), jnp.asarray(b), None), False
    cls = LSTMParams if kind == "lstm" else RNNParams
    return cls(jnp.asarray(k), jnp.asarray(rk), None if b is None else jnp.asarray(b)), None


def _act(fn):
    name = getattr(fn, "__name__", None)
    return name if name in ACTIVATIONS else fn


def _gru_variant(found: bool | None, reset_after: bool | None, where: str) -> bool:
    """A GRU weights list's ``reset_after``: its bias shape tells it; without bias,
    only the caller can (the two variants compute different values)."""
    if found is None:
        if reset_after is None:
            raise ValueError(
                f"{where}: a GRU weights list without bias (use_bias=False) does not tell "
                "reset_after=True from reset_after=False, and the two compute different "
                "values. Pass reset_after= as the Keras layer was built (True is Keras' "
                "default), or convert the live layer: from_keras(layer)."
            )
        return bool(reset_after)
    if reset_after is not None and bool(reset_after) != found:
        raise ValueError(
            f"{where}: reset_after={reset_after} but the GRU bias has the shape of "
            f"reset_after={found}: (2, 3H) for True, (3H,) for False."
        )
    return found


def from_keras(
    source: Any, kind: str | None = None, *, reset_after: bool | None = None
) -> Converted:
    """jaxrnn parameters from a Keras 3 recurrent layer or its ``get_weights()`` list.

    Keras already uses jaxrnn's layout, so arrays are taken as they are::

        SimpleRNN, LSTM:  [kernel (I, G·H), recurrent_kernel (H, G·H), bias (G·H,)]
        GRU reset_after=True:  bias (2, 3H) -> bias = bias[0], recurrent_bias = bias[1]
        GRU reset_after=False: bias (3H,)   -> bias, recurrent_bias = None
        Bidirectional: forward weights followed by backward weights

    (LSTM gates i, f, c, o and GRU gates z, r, h are jaxrnn's i, f, g, o and z, r, n.)

    Args:
        source: a ``get_weights()`` list (2-3 arrays, or 4/6 for a ``Bidirectional``)
            or a live ``SimpleRNN``/``LSTM``/``GRU``/``Bidirectional`` layer (built).
        kind: optional check, ``"rnn"``, ``"lstm"`` or ``"gru"``; inferred from shapes.
        reset_after: the GRU variant of a weights list without bias, which its
            shapes cannot tell (required there); elsewhere an optional check
            against the bias shape or the live layer.

    Returns:
        ``Converted(params, layer, layer_kwargs)``: ``params`` is one NamedTuple or a
        ``BidirectionalParams``; ``layer`` is ``jaxrnn.simple_rnn``/``lstm``/``gru``
        (or ``jaxrnn.bidirectional`` over it). ``layer_kwargs`` holds
        ``reset_after`` for a GRU and, for a live layer, its ``activation``,
        ``recurrent_activation``, ``return_sequences``, ``return_state``,
        ``go_backwards``, ``merge_mode``, ``dropout`` and ``recurrent_dropout``
        (a weights list records no dropout). With a non-zero rate, ``conv(x)`` is
        inference, as calling the Keras layer outside ``fit``, and
        ``conv(x, key=k)`` trains with dropout (Keras' ``training=True``); see
        ``Converted``. jaxrnn outputs zeros at masked steps (Keras'
        ``zero_output_for_mask=True``). Float64 weights are refused while JAX's
        64-bit mode is off (they would silently become float32).

    Raises:
        ValueError: a list that is not 2, 3, 4 or 6 arrays of recurrent shapes, a
            ``kind`` or ``reset_after`` that contradicts the shapes or the layer, or
            a GRU list without bias and without ``reset_after``. TypeError: another
            layer type; float64 weights while JAX's 64-bit mode is off.

    Examples:
        >>> import numpy as np, jaxrnn
        >>> from jaxrnn.interop import from_keras, to_keras
        >>> rng = np.random.default_rng(0)
        >>> w = [rng.normal(size=s).astype(np.float32) for s in [(2, 9), (3, 9), (2, 9)]]
        >>> conv = from_keras(w)                  # a reset_after=True GRU
        >>> conv.layer_kwargs, conv.params.recurrent_bias.shape
        ({'reset_after': True}, (9,))
        >>> all(np.array_equal(a, b) for a, b in zip(to_keras(conv.params), w))
        True
    """
    where = "from_keras"
    if kind is not None and kind not in ("rnn", "lstm", "gru"):
        raise ValueError(f"{where}: unknown kind={kind!r}; use 'rnn', 'lstm' or 'gru'.")
    if hasattr(source, "get_weights"):
        layer = source
        name = type(layer).__name__
        if name == "Bidirectional":
            fw = from_keras(layer.forward_layer, kind, reset_after=reset_after)
            bw = from_keras(layer.backward_layer, kind, reset_after=reset_after)
            kw = {k: v for k, v in fw.layer_kwargs.items() if k != "go_backwards"}
            kw["merge_mode"] = layer.merge_mode
            params = BidirectionalParams(fw.params, bw.params)
            return Converted(params, functools.partial(bidirectional, fw.layer), kw)
        lkind = _keras_kind(name)
        if lkind is None:
            raise TypeError(
                f"{where}: {name} is not a Keras SimpleRNN, LSTM, GRU or Bidirectional layer."
            )
        if not layer.built:
            raise ValueError(
                f"{where}: layer {layer.name!r} is not built; call it once or build it."
            )
        if kind is not None and kind != lkind:
            raise ValueError(f"{where}: kind={kind!r} but the layer is a {name}.")
        params, _ = _params_from_list([to_numpy(w) for w in layer.get_weights()], lkind, where)
        kw: dict[str, Any] = {"activation": _act(layer.activation)}
        if lkind != "rnn":
            kw["recurrent_activation"] = _act(layer.recurrent_activation)
        if lkind == "gru":
            kw["reset_after"] = bool(layer.reset_after)
            if reset_after is not None and bool(reset_after) != kw["reset_after"]:
                raise ValueError(
                    f"{where}: reset_after={reset_after} but the layer has "
                    f"reset_after={kw['reset_after']}."
                )
        elif reset_after is not None:
            raise ValueError(f"{where}: reset_after is a GRU option; the layer is a {name}.")
        kw.update(
            return_sequences=bool(layer.return_sequences),
            return_state=bool(layer.return_state),
            go_backwards=bool(layer.go_backwards),
            dropout=float(layer.dropout),
            recurrent_dropout=float(layer.recurrent_dropout),
        )
        return Converted(params, layer_of(lkind), kw)
    w = [to_numpy(a) for a in source]
    if len(w) in (4, 6):
        half = len(w) // 2
        fw, ra = _params_from_list(w[:half], kind, where)
        bw, rb = _params_from_list(w[half:], kind, where)
        if type(fw) is not type(bw) or ra != rb:
            raise ValueError(f"{where}: the two halves of the Bidirectional list differ in kind.")
        params: Any = BidirectionalParams(fw, bw)
        k = kind_of(fw, where)
        return Converted(
            params, functools.partial(bidirectional, layer_of(k)), _list_kwargs(k, ra, reset_after)
        )
    params, ra = _params_from_list(w, kind, where)
    k = kind_of(params, where)
    return Converted(params, layer_of(k), _list_kwargs(k, ra, reset_after))


def _list_kwargs(kind: str, found: bool | None, reset_after: bool | None) -> dict:
    """The layer keywords of a weights list: ``reset_after`` for a GRU."""
    if kind == "gru":
        return {"reset_after": _gru_variant(found, reset_after, "from_keras")}
    if reset_after is not None:
        raise ValueError(f"from_keras: reset_after is a GRU option; these weights are a {kind}.")
    return {}


def _to_keras_one(p, reset_after, where):
    kind = kind_of(p, where)
    out = [np.asarray(p.kernel), np.asarray(p.recurrent_kernel)]
    if kind != "gru":
        if p.bias is not None:
            out.append(np.asarray(p.bias))
        return out
    if gru_reset_after(p, reset_after, where):
        if p.bias is not None or p.recurrent_bias is not None:
            b = (
                np.asarray(p.bias)
                if p.bias is not None
                else np.zeros_like(np.asarray(p.recurrent_bias))
            )
            rb = np.asarray(p.recurrent_bias) if p.recurrent_bias is not None else np.zeros_like(b)
            out.append(np.stack([b, rb]))
    elif p.bias is not None:
        out.append(np.asarray(p.bias))
    return out


def to_keras(params: Any, *, reset_after: bool | None = None) -> list[np.ndarray]:
    """The Keras ``get_weights()`` list (NumPy arrays) of jaxrnn parameters.

    The inverse of ``from_keras``: ``[kernel, recurrent_kernel, bias]`` (no bias
    when ``bias`` is None); a reset-after GRU gives ``bias (2, 3H)`` =
    ``stack([bias, recurrent_bias])`` (a missing one as zeros), a reset-before GRU
    ``bias (3H,)``; ``BidirectionalParams`` give forward then backward weights,
    the order of ``Bidirectional.get_weights()``.

    Args:
        params: RNNParams, LSTMParams, GRUParams or BidirectionalParams of them.
        reset_after: GRU only; by default a GRU with ``recurrent_bias`` is
            reset-after and one with only ``bias`` reset-before.

    Examples:
        >>> import jax, jaxrnn
        >>> from jaxrnn.interop import to_keras
        >>> p = jaxrnn.init_gru(jax.random.key(0), 2, 3, reset_after=False)
        >>> [w.shape for w in to_keras(p)]
        [(2, 9), (3, 9), (9,)]
    """
    where = "to_keras"
    if isinstance(params, BidirectionalParams):
        return _to_keras_one(params.forward, reset_after, where) + _to_keras_one(
            params.backward, reset_after, where
        )
    return _to_keras_one(params, reset_after, where)


def set_keras_weights(layer: Any, params: Any) -> Any:
    """Write jaxrnn parameters into a Keras ``SimpleRNN``/``LSTM``/``GRU``/``Bidirectional``.

    Uses ``to_keras`` with the layer's own ``reset_after``; builds the layer
    (input size from ``params.kernel``) if needed; a parameter set without biases
    goes into a ``use_bias=True`` layer as zero biases. Returns the layer.

    Raises:
        ValueError: kind or sizes differ; biases into a ``use_bias=False`` layer;
            a reset-after GRU (with ``recurrent_bias``) into a ``reset_after=False``
            layer or a reset-before one into a ``reset_after=True`` layer (different
            functions); a ``Bidirectional`` layer without ``BidirectionalParams``.

    Examples:
        >>> import jax, jaxrnn
        >>> from jaxrnn.interop import to_keras
        >>> len(to_keras(jaxrnn.init_lstm(jax.random.key(0), 2, 3, use_bias=False)))
        2
    """
    where = "set_keras_weights"
    name = type(layer).__name__
    if name == "Bidirectional":
        if not isinstance(params, BidirectionalParams):
            raise ValueError(
                f"{where}: a Bidirectional layer needs BidirectionalParams(forward, backward), "
                f"got {type(params).__name__}."
            )
        if not layer.built:
            layer.build((None, None, int(params.forward.kernel.shape[0])))
        set_keras_weights(layer.forward_layer, params.forward)
        set_keras_weights(layer.backward_layer, params.backward)
        return layer
    lkind = _keras_kind(name)
    if lkind is None:
        raise TypeError(f"{where}: {name} is not a Keras SimpleRNN, LSTM, GRU or Bidirectional.")
    kind = kind_of(params, where)
    if kind != lkind:
        raise ValueError(f"{where}: {type(params).__name__} cannot go into a Keras {name}.")
    reset_after = None
    if kind == "gru":
        reset_after = bool(layer.reset_after)
        if not reset_after and params.recurrent_bias is not None:
            raise ValueError(
                f"{where}: the GRU has a recurrent_bias (reset-after) but the Keras layer has "
                "reset_after=False: n = tanh(x Wn + (r*h) Un + bn) is a different function. "
                "Build the layer with reset_after=True."
            )
        if reset_after and params.bias is not None and params.recurrent_bias is None:
            raise ValueError(
                f"{where}: the GRU has a bias and no recurrent_bias (reset-before) but the Keras "
                "layer has reset_after=True, a different function. Build it with "
                "reset_after=False."
            )
    if not layer.built:
        layer.build((None, None, int(params.kernel.shape[0])))
    weights = to_keras(params, reset_after=reset_after)
    use_bias = bool(layer.use_bias)
    if use_bias and len(weights) == 2:
        shape = tuple(layer.get_weights()[2].shape)
        weights.append(np.zeros(shape, weights[0].dtype))
    elif not use_bias and len(weights) == 3:
        if np.any(weights[2]):
            raise ValueError(
                f"{where}: the parameters have non-zero biases but the layer has use_bias=False."
            )
        weights = weights[:2]
    own = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(w.shape) for w in weights]
    if own != got:
        raise ValueError(
            f"{where}: layer {layer.name!r} has weight shapes {own} but the parameters give "
            f"{got} (input size or units differ)."
        )
    layer.set_weights(weights)
    return layer


def from_keras_model(model: Any, weights_path: str | None = None) -> dict[str, Any]:
    """Every weighted layer of a Keras model, recurrent ones converted; optionally
    after ``model.load_weights(weights_path)`` (a ``.weights.h5`` file).

    Keras saves weights by layer, so a ``.weights.h5`` file is read through a live
    model of the same architecture: build it, pass the path, and each recurrent
    layer (``SimpleRNN``, ``LSTM``, ``GRU``, ``Bidirectional``) comes back as
    ``from_keras(layer)``, its ``dropout`` and ``recurrent_dropout`` included
    (``conv(x)`` is inference, ``conv(x, key=k)`` trains with dropout); any other
    layer with weights (``Dense``, ...) as its ``get_weights()`` list, for you to
    map. Layers without weights are left out.

    Args:
        model: a built Keras model (``Sequential`` or functional).
        weights_path: optional file for ``model.load_weights``.

    Returns:
        ``{layer.name: Converted | list[np.ndarray]}`` in the model's layer order.

    Examples:
        >>> import numpy as np, jaxrnn
        >>> class Layer:                            # a stand-in for a Keras Dense layer
        ...     name = "dense"
        ...     def get_weights(self): return [np.ones((2, 1), np.float32)]
        >>> class Model:
        ...     layers = [Layer()]
        >>> {k: [w.shape for w in v] for k, v in from_keras_model(Model()).items()}
        {'dense': [(2, 1)]}
    """
    if weights_path is not None:
        model.load_weights(weights_path)
    out: dict[str, Any] = {}
    for layer in model.layers:
        name = type(layer).__name__
        if _keras_kind(name) is not None or name == "Bidirectional":
            out[layer.name] = from_keras(layer)
        else:
            weights = [to_numpy(w) for w in layer.get_weights()]
            if weights:
                out[layer.name] = weights
    return out


def _keras_kind(class_name: str) -> str | None:
    """The cell kind of a Keras recurrent layer class name (None if it is none)."""
    spec = spec_with(keras=class_name)
    return None if spec is None or not spec.has_peers else spec.kind
