"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (and their cells) <-> jaxrnn."""

from __future__ import annotations

import functools
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._cells.gru import GRUParams
from .._cells.lstm import LSTMParams, LSTMState
from .._cells.simple_rnn import RNNParams
from .._cells.spec import spec_named, specs
from .._compose import BidirectionalParams, bidirectional, stacked
from ._common import (
    Converted,
    blocks,
    layer_of,
    refuse_float64,
    refuse_reset_before,
    split_layers,
    to_numpy,
)

_TORCH_MODES = {
    "RNN_TANH": ("rnn", "tanh"),
    "RNN_RELU": ("rnn", "relu"),
    "LSTM": ("lstm", None),
    "GRU": ("gru", None),
}
_KINDS = {
    "rnn": ("rnn", None),
    "rnn_tanh": ("rnn", "tanh"),
    "rnn_relu": ("rnn", "relu"),
    "lstm": ("lstm", None),
    "gru": ("gru", None),
}
_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(?:_l(\d+)(_reverse)?)?$")


def _parse_kind(kind: str | None, nonlinearity: str | None, where: str):
    if kind is None:
        return None, nonlinearity
    k = kind.lower()
    if k not in _KINDS:
        raise ValueError(
            f"{where}: unknown kind={kind!r}; use 'rnn', 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'."
        )
    base, nl = _KINDS[k]
    if nl is not None and nonlinearity is not None and nl != nonlinearity:
        raise ValueError(f"{where}: kind={kind!r} contradicts nonlinearity={nonlinearity!r}.")
    return base, nl or nonlinearity


def _from_torch_layer(kind, w_ih, w_hh, b_ih, b_hh):
    if kind == "gru":  # PyTorch r, z, n -> jaxrnn z, r, n
        return GRUParams(
            kernel=jnp.asarray(blocks(w_ih, "rzn", "zrn", 0).T),
            recurrent_kernel=jnp.asarray(blocks(w_hh, "rzn", "zrn", 0).T),
            bias=None if b_ih is None else jnp.asarray(blocks(b_ih, "rzn", "zrn", 0)),
            recurrent_bias=None if b_hh is None else jnp.asarray(blocks(b_hh, "rzn", "zrn", 0)),
        )
    cls = LSTMParams if kind == "lstm" else RNNParams
    bias = None if b_ih is None else jnp.asarray(b_ih + b_hh)
    return cls(jnp.asarray(w_ih.T), jnp.asarray(w_hh.T), bias)


def _read_module(mod, kind, nonlinearity, where):
    """``(kind, nonlinearity, batch_first, cell_name)`` of a live torch module.

    ``batch_first`` is None for a cell (no time axis); ``cell_name`` None for a
    sequence module.
    """
    mode = getattr(mod, "mode", None)
    cell_name = None
    if mode is None:  # a cell: RNNCell has .nonlinearity, LSTMCell/GRUCell the class
        cell_name = type(mod).__name__
        mode = {"LSTMCell": "LSTM", "GRUCell": "GRU"}.get(cell_name)
        if mode is None and cell_name == "RNNCell":
            mode = "RNN_RELU" if mod.nonlinearity == "relu" else "RNN_TANH"
        if mode is None:
            raise TypeError(
                f"{where}: {cell_name} is not nn.RNN/LSTM/GRU or their cells; pass its "
                "state_dict() and kind= if it holds their weights."
            )
    mkind, mnl = _TORCH_MODES[mode]
    if kind is not None and kind != mkind:
        raise ValueError(f"{where}: kind={kind!r} but the module is {mode}.")
    if nonlinearity is not None and mnl is not None and nonlinearity != mnl:
        raise ValueError(f"{where}: nonlinearity={nonlinearity!r} but the module is {mode}.")
    if getattr(mod, "proj_size", 0):
        raise ValueError(
            f"{where}: nn.LSTM with proj_size={mod.proj_size} projects h to "
            f"{mod.proj_size} features (weight_hr_l0); jaxrnn's LSTM has no projection, "
            "so it cannot compute the same function. Use proj_size=0."
        )
    module_bf = None if cell_name else bool(mod.batch_first)
    return mkind, mnl, module_bf, cell_name


def _parse_keys(sd: dict[str, np.ndarray], where: str):
    """``{(layer or None for a cell, direction): {name: array}}`` from state-dict keys."""
    found: dict[tuple[int | None, int], dict[str, np.ndarray]] = {}
    for key, value in sd.items():
        m = _KEY.match(key)
        if m is None:
            raise ValueError(
                f"{where}: unexpected key {key!r}; expected weight_ih_l{{k}}, weight_hh_l{{k}}, "
                "bias_ih_l{k}, bias_hh_l{k} (optional suffix _reverse) or the cell's "
                "weight_ih, weight_hh, bias_ih, bias_hh."
            )
        name, layer, rev = m.groups()
        if name == "weight_hr":
            raise ValueError(
                f"{where}: {key!r} is the projection of an nn.LSTM with proj_size="
                f"{value.shape[0]}; jaxrnn's LSTM has no projection, so it cannot compute "
                "the same function. Use proj_size=0."
            )
        found.setdefault((None if layer is None else int(layer), int(bool(rev))), {})[name] = value
    if not found:
        raise ValueError(f"{where}: no weights found (empty state dict).")
    if any(k[0] is None for k in found) and not all(k[0] is None for k in found):
        raise ValueError(f"{where}: mixes cell keys (no _l{{k}}) with layer keys.")
    return found


def _time_major(batch_first, module_bf, cell_name, is_module, where) -> dict[str, Any]:
    """``{"time_major": ...}`` for a sequence module, ``{}`` for a cell; never a guess."""
    if cell_name is not None:  # no time axis
        if batch_first is not None:
            what = (
                f"the module is an nn.{cell_name}, which takes one time step x of shape (B, F) "
                "and has"
                if is_module
                else "these are cell weights (keys without _l0: nn.RNNCell, nn.LSTMCell or "
                "nn.GRUCell), which take one time step x of shape (B, F) and have"
            )
            raise ValueError(
                f"{where}: batch_first={batch_first} was given, but {what} no time axis. "
                "Leave batch_first out: the "
                "converted layer runs the cell over a (B, T, F) sequence, or over (T, B, F) "
                "with conv(x, time_major=True)."
            )
        return {}
    if module_bf is not None:  # a live nn.RNN/LSTM/GRU knows its own layout
        if batch_first is not None and batch_first != module_bf:
            raise ValueError(
                f"{where}: batch_first={batch_first} but the module was built with "
                f"batch_first={module_bf}; a live module's own setting is used, so leave "
                "batch_first out (or make it agree). To feed the converted layer the other "
                f"layout, call conv(x, time_major={module_bf})."
            )
        return {"time_major": not module_bf}
    if batch_first is None:
        raise ValueError(
            f"{where}: batch_first is required for the state dict of an nn.RNN, nn.LSTM or "
            "nn.GRU (keys with _l0): a state dict does not record the module's batch_first, "
            "and both layouts take inputs of the same shapes but give different numbers, so "
            "from_torch does not guess. Pass batch_first=False for PyTorch's default "
            "time-major layout, x of shape (T, B, F), or batch_first=True if the module was "
            "built with batch_first=True, x of shape (B, T, F). (A live module is read "
            "directly: from_torch(module).)"
        )
    return {"time_major": not batch_first}


def from_torch(
    source: Any,
    kind: str | None = None,
    *,
    nonlinearity: str | None = None,
    batch_first: bool | None = None,
) -> Converted:
    """jaxrnn parameters from a PyTorch RNN/LSTM/GRU state dict or live module.

    Mapping, per layer ``k`` and direction (suffix ``_reverse`` = backward)::

        kernel           = weight_ih_l{k}.T            (G·H, I) -> (I, G·H)
        recurrent_kernel = weight_hh_l{k}.T            (G·H, H) -> (H, G·H)
        RNN, LSTM:  bias = bias_ih_l{k} + bias_hh_l{k} (gate order i, f, g, o kept)
        GRU:  gate blocks r, z, n -> z, r, n on every array;
              bias = bias_ih, recurrent_bias = bias_hh  (reset-after, as PyTorch)

    Exact or not at all: arrays keep their dtype, and float64 weights are refused
    while JAX's 64-bit mode is off (they would silently become float32).

    Args:
        source: a ``state_dict()`` (any mapping of names to torch tensors or NumPy
            arrays, e.g. a loaded ``.npz``) or a live ``nn.RNN``/``nn.LSTM``/``nn.GRU``
            or ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``.
        kind: ``"rnn"``, ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"``;
            read from a module, inferred from the shapes (gate count) of a dict.
        nonlinearity: ``"tanh"`` (default) or ``"relu"`` for ``nn.RNN`` state
            dicts (a state dict does not record it; a module does).
        batch_first: the module's own ``batch_first``. **Required** for the state
            dict of an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (keys ``..._l0``), which
            does not record it: ``False`` is PyTorch's default, time-major ``x``
            of shape ``(T, B, F)``; ``True`` is ``(B, T, F)``. A live module's own
            setting is used (giving a different one raises); cells (no time axis)
            take no ``batch_first``.

    Returns:
        ``Converted(params, layer, layer_kwargs)``. For an ``nn.RNN``/``nn.LSTM``/
        ``nn.GRU``, ``params`` is always a list with one entry per layer (also
        for one layer; ``BidirectionalParams`` when bidirectional) and ``layer``
        is ``jaxrnn.stacked`` over ``jaxrnn.simple_rnn``/``lstm``/``gru``
        (wrapped in ``jaxrnn.bidirectional`` with ``merge_mode="concat"``,
        PyTorch's output layout); for a cell (keys without ``_l0``) ``params`` is
        one NamedTuple and ``layer`` the plain layer function. ``layer_kwargs``
        holds ``activation="relu"`` for ``RNN_RELU`` and, for a sequence module,
        ``time_major=not batch_first``. ``conv(x, return_sequences=True,
        return_state=True)`` then gives PyTorch's ``(output, h_n)`` (see
        ``from_torch_state``/``to_torch_state``).

    Raises:
        ValueError: a state dict of a sequence module without ``batch_first``;
            ``batch_first`` for a cell or against a live module's; LSTM with
            ``proj_size > 0`` (``weight_hr_l{k}``; jaxrnn's LSTM has no projection),
            unknown keys, missing layers, inconsistent shapes or a ``kind`` that
            contradicts the shapes.
        TypeError: float64 weights while JAX's 64-bit mode is off; ``batch_first``
            not a bool; a module that is not an RNN/LSTM/GRU or their cells.

    Examples:
        >>> import numpy as np, jaxrnn
        >>> from jaxrnn.interop import from_torch, to_torch
        >>> rng = np.random.default_rng(0)
        >>> sd = {"weight_ih_l0": rng.normal(size=(9, 2)), "weight_hh_l0": rng.normal(size=(9, 3)),
        ...       "bias_ih_l0": rng.normal(size=9), "bias_hh_l0": rng.normal(size=9)}
        >>> sd = {k: v.astype(np.float32) for k, v in sd.items()}
        >>> conv = from_torch(sd, batch_first=False)    # 3 gates of H = 3: a GRU
        >>> type(conv.params[0]).__name__, conv.params[0].kernel.shape, conv.layer_kwargs
        ('GRUParams', (2, 9), {'time_major': True})
        >>> back = to_torch(conv.params)
        >>> all(np.array_equal(back[k], sd[k]) for k in sd)
        True
        >>> conv(np.ones((5, 1, 2), np.float32)).shape  # (T, B, F) -> (B, H)
        (1, 3)
    """
    where = "from_torch"
    kind, nonlinearity = _parse_kind(kind, nonlinearity, where)
    if batch_first is not None and not isinstance(batch_first, (bool, np.bool_)):
        raise TypeError(
            f"{where}: batch_first must be True or False, as in nn.LSTM(..., batch_first=...), "
            f"got {batch_first!r}."
        )
    batch_first = None if batch_first is None else bool(batch_first)
    is_module = hasattr(source, "state_dict") and hasattr(source, "parameters")
    module_bf = cell_name = None
    if is_module:
        kind, nonlinearity, module_bf, cell_name = _read_module(source, kind, nonlinearity, where)
        cast = "from_torch(module.float())"
        source = source.state_dict()
    else:
        cast = (
            "from_torch({k: v.float() for k, v in state_dict.items()}, ...) "
            "(v.astype(np.float32) for NumPy arrays)"
        )
    sd = {str(k): to_numpy(v) for k, v in dict(source).items()}
    found = _parse_keys(sd, where)
    cell = all(k[0] is None for k in found)
    if cell and cell_name is None:
        cell_name = "cell"
    num_layers = 1 if cell else max(k[0] for k in found) + 1
    bidi = any(k[1] for k in found)
    dirs = (0, 1) if bidi else (0,)
    raw = []  # per layer, per direction: (w_ih, w_hh, b_ih, b_hh), checked
    for k in range(num_layers):
        pair = []
        for d in dirs:
            sfx = "" if cell else f"_l{k}" + ("_reverse" if d else "")
            t = found.get((None if cell else k, d))
            if t is None or "weight_ih" not in t or "weight_hh" not in t:
                raise ValueError(f"{where}: missing weight_ih{sfx} / weight_hh{sfx}.")
            if ("bias_ih" in t) != ("bias_hh" in t):
                raise ValueError(f"{where}: bias_ih{sfx} and bias_hh{sfx} come together.")
            w_ih, w_hh = t["weight_ih"], t["weight_hh"]
            H = w_hh.shape[1]
            gates = w_hh.shape[0] // H if H else 0
            inferred = _torch_kind(gates)
            if inferred is None or w_hh.shape[0] != gates * H or w_ih.shape[0] != gates * H:
                raise ValueError(
                    f"{where}: weight_hh{sfx}.shape={w_hh.shape}, weight_ih{sfx}.shape="
                    f"{w_ih.shape} are not (G*H, H), (G*H, I) for G in 1 (RNN), 3 (GRU), 4 (LSTM)."
                )
            if kind is None:
                kind = inferred
            elif kind != inferred:
                raise ValueError(
                    f"{where}: kind={kind!r} needs {spec_named(kind).gates} gates, but weight_hh{sfx} "
                    f"has shape {w_hh.shape} ({gates} gates of H={H})."
                )
            pair.append((w_ih, w_hh, t.get("bias_ih"), t.get("bias_hh")))
        raw.append(pair)
    if kind != "rnn" and nonlinearity is not None:
        raise ValueError(f"{where}: nonlinearity applies to nn.RNN only, not to a {kind}.")
    if nonlinearity not in (None, "tanh", "relu"):
        raise ValueError(f"{where}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}.")
    layer_kwargs = _time_major(batch_first, module_bf, cell_name, is_module, where)
    refuse_float64(sd, where, cast)
    if kind == "rnn" and nonlinearity == "relu":
        layer_kwargs["activation"] = "relu"
    layers = [[_from_torch_layer(kind, *arrays) for arrays in pair] for pair in raw]
    layers = [BidirectionalParams(*pair) if bidi else pair[0] for pair in layers]
    base = layer_of(kind)
    if cell:
        return Converted(layers[0], base, layer_kwargs)
    fn = functools.partial(bidirectional, base, merge_mode="concat") if bidi else base
    return Converted(layers, functools.partial(stacked, fn), layer_kwargs)


def _to_torch_layer(kind, p, reset_after, where):
    out = {}
    if kind == "gru":
        refuse_reset_before(p, reset_after, where, "PyTorch's nn.GRU", "PyTorch")
        w = lambda a: np.asarray(a)  # noqa: E731
        out["weight_ih"] = blocks(w(p.kernel).T, "zrn", "rzn", 0)
        out["weight_hh"] = blocks(w(p.recurrent_kernel).T, "zrn", "rzn", 0)
        if p.bias is not None or p.recurrent_bias is not None:
            b = w(p.bias) if p.bias is not None else np.zeros_like(w(p.recurrent_bias))
            rb = w(p.recurrent_bias) if p.recurrent_bias is not None else np.zeros_like(b)
            out["bias_ih"] = blocks(b, "zrn", "rzn", 0)
            out["bias_hh"] = blocks(rb, "zrn", "rzn", 0)
        return out
    out["weight_ih"] = np.asarray(p.kernel).T
    out["weight_hh"] = np.asarray(p.recurrent_kernel).T
    if p.bias is not None:
        out["bias_ih"] = np.asarray(p.bias)
        out["bias_hh"] = np.zeros_like(out["bias_ih"])
    return out


def to_torch(
    params: Any,
    *,
    reset_after: bool | None = None,
    module: Any = None,
) -> dict[str, np.ndarray]:
    """A PyTorch state dict (NumPy arrays) from jaxrnn parameters; optionally load it.

    Mapping (the inverse of ``from_torch``), per layer ``k`` and direction::

        weight_ih_l{k} = kernel.T,  weight_hh_l{k} = recurrent_kernel.T
        RNN, LSTM: bias_ih_l{k} = bias, bias_hh_l{k} = 0
        GRU: gate blocks z, r, n -> r, z, n; bias_ih = bias, bias_hh = recurrent_bias

    PyTorch sums its two RNN/LSTM biases, so jaxrnn -> PyTorch -> jaxrnn gives
    back identical arrays while PyTorch -> jaxrnn -> PyTorch gives the same sum
    split as ``(bias_ih + bias_hh, 0)``.

    Args:
        params: one parameter set (keys ``..._l0``), a ``BidirectionalParams``
            (``_l0`` and ``_l0_reverse``) or a list of either, one per layer.
        reset_after: GRU only. The default reads it from the biases: a GRU with
            ``bias`` and no ``recurrent_bias`` is reset-before and is refused.
        module: optional live ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (or cell): the state
            dict is loaded into it (``load_state_dict(strict=True)``, its dtype kept).
            A cell module gets cell keys (``weight_ih``, no ``_l0``). The nonlinearity
            of ``nn.RNN`` is the module's: jaxrnn parameters do not record it.

    Returns:
        ``{name: np.ndarray}`` in PyTorch's layout.

    Raises:
        ValueError: reset-before GRU (PyTorch has only the reset-after GRU); layers
            with and without biases mixed; a module whose kind, depth, direction
            or sizes differ (or LSTM ``proj_size > 0``).

    Examples:
        >>> import jax, numpy as np, jaxrnn
        >>> from jaxrnn.interop import from_torch, to_torch
        >>> p = jaxrnn.init_lstm(jax.random.key(0), 2, 3)
        >>> sd = to_torch([p])
        >>> sorted((k, v.shape) for k, v in sd.items())
        [('bias_hh_l0', (12,)), ('bias_ih_l0', (12,)), ('weight_hh_l0', (12, 3)), ('weight_ih_l0', (12, 2))]
        >>> q = from_torch(sd, batch_first=False).params[0]
        >>> all(np.array_equal(a, b) for a, b in zip(p, q))
        True
    """
    where = "to_torch"
    layers, bidi, _ = split_layers(params, where)
    kind = {type(d).__name__ for layer in layers for d in layer}.pop()
    kind = {"RNNParams": "rnn", "LSTMParams": "lstm", "GRUParams": "gru"}[kind]
    cell_keys = module is not None and "weight_ih" in module.state_dict()
    if cell_keys and (len(layers) > 1 or bidi):
        raise ValueError(f"{where}: a cell module holds one direction of one layer; got more.")
    sd: dict[str, np.ndarray] = {}
    has_bias = set()
    for k, layer in enumerate(layers):
        for d, p in enumerate(layer):
            sfx = "" if cell_keys else f"_l{k}" + ("_reverse" if d else "")
            part = _to_torch_layer(kind, p, reset_after, where)
            has_bias.add("bias_ih" in part)
            sd.update({name + sfx: v for name, v in part.items()})
    if len(has_bias) > 1:
        raise ValueError(
            f"{where}: some layers have biases and some do not; PyTorch's bias= is one "
            "flag for all layers (give the others zero biases)."
        )
    if module is not None:
        _load_into(module, sd, kind, where)
    return sd


def _load_into(module, sd, kind, where):
    import torch

    mode = getattr(module, "mode", None)
    if mode is None:
        mode = {"LSTMCell": "LSTM", "GRUCell": "GRU", "RNNCell": "RNN_TANH"}.get(
            type(module).__name__
        )
    if mode is None or _TORCH_MODES[mode][0] != kind:
        raise ValueError(
            f"{where}: module {type(module).__name__} ({mode}) cannot hold {kind} weights."
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"{where}: the module is an nn.LSTM with proj_size={module.proj_size}; jaxrnn's LSTM "
            "has no projection. Build it with proj_size=0."
        )
    own = module.state_dict()
    if set(own) != set(sd):
        raise ValueError(
            f"{where}: the module's keys {sorted(own)} differ from the converted "
            f"{sorted(sd)} (num_layers, bidirectional or bias differ)."
        )
    for k, v in sd.items():
        if tuple(own[k].shape) != v.shape:
            raise ValueError(
                f"{where}: {k} has shape {tuple(own[k].shape)} in the module but {v.shape} "
                "converted (input_size or hidden_size differ)."
            )
    module.load_state_dict(
        {k: torch.from_numpy(np.array(v, copy=True)).to(own[k].dtype) for k, v in sd.items()},
        strict=True,
    )


def from_torch_state(hx: Any, *, num_layers: int = 1, bidirectional: bool = False) -> list:
    """jaxrnn per-layer states from PyTorch's ``h_n`` or ``(h_n, c_n)``.

    PyTorch stacks states as ``(num_layers * D, B, H)`` with ``D = 2`` when
    bidirectional, layer-major: entry ``k * D + d`` is layer ``k``, direction ``d``.
    The result has one entry per layer: an array ``(B, H)`` (RNN/GRU) or
    ``LSTMState(h, c)``, and a ``(forward, backward)`` pair when bidirectional —
    the ``initial_state`` that ``jaxrnn.stacked`` takes and the finals it returns.
    Float64 states are refused while JAX's 64-bit mode is off (as in ``from_torch``).

    Examples:
        >>> import numpy as np
        >>> h = np.arange(8, dtype=np.float32).reshape(4, 1, 2)  # 2 layers x 2 dirs, B=1, H=2
        >>> s = from_torch_state(h, num_layers=2, bidirectional=True)
        >>> s[1][0].tolist(), s[1][1].tolist()
        ([[4.0, 5.0]], [[6.0, 7.0]])
        >>> np.array_equal(to_torch_state(s), h)
        True
    """
    D = 2 if bidirectional else 1
    where = "from_torch_state"
    lstm_state = isinstance(hx, (tuple, list))
    if lstm_state:
        h_n, c_n = hx
        arrays = {"h_n": to_numpy(h_n), "c_n": to_numpy(c_n)}
    else:
        arrays = {"h_n": to_numpy(hx)}
    n = arrays["h_n"].shape[0]
    if n != num_layers * D:
        raise ValueError(
            f"{where}: {n} stacked states, but num_layers={num_layers} x "
            f"{D} direction(s) = {num_layers * D}."
        )
    refuse_float64(arrays, where, "h_n.float(), c_n.float() (.astype(np.float32) for NumPy)")
    if lstm_state:
        h, c = arrays["h_n"], arrays["c_n"]
        parts = [LSTMState(jnp.asarray(h[i]), jnp.asarray(c[i])) for i in range(n)]
    else:
        parts = [jnp.asarray(arrays["h_n"][i]) for i in range(n)]
    if bidirectional:
        return [(parts[2 * k], parts[2 * k + 1]) for k in range(num_layers)]
    return parts


def to_torch_state(states: Any) -> Any:
    """PyTorch's ``h_n`` (or ``(h_n, c_n)`` for an LSTM) from jaxrnn per-layer states.

    The inverse of ``from_torch_state``: ``states`` is the list ``jaxrnn.stacked``
    returns with ``return_state=True`` (pairs when bidirectional); a single state
    is taken as one layer.
    """
    if not isinstance(states, list):
        states = [states]
    flat = []
    for s in states:
        if isinstance(s, tuple) and not hasattr(s, "_fields"):
            flat.extend(s)
        else:
            flat.append(s)
    if isinstance(flat[0], LSTMState):
        return (
            np.stack([np.asarray(s.h) for s in flat]),
            np.stack([np.asarray(s.c) for s in flat]),
        )
    return np.stack([np.asarray(s) for s in flat])


def _torch_kind(gates: int) -> str | None:
    """The kind of the torch.nn recurrent module with ``gates`` gates (None if none)."""
    return next((s.kind for s in specs() if s.torch is not None and s.gates == gates), None)
