"""Haiku ``hk.LSTM``, ``hk.GRU``, ``hk.VanillaRNN`` <-> jaxrnn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._cells.gru import GRUParams
from .._cells.lstm import LSTMParams
from .._cells.simple_rnn import RNNParams
from ._common import Converted, blocks, gru_reset_after, kind_of, layer_of, refuse_float64, to_numpy


def _negate_z(a: np.ndarray, axis: int) -> np.ndarray:
    """Negate the first (z) of three gate blocks: sigma(-a) = 1 - sigma(a)."""
    z, r, n = np.split(a, 3, axis=axis)
    return np.concatenate([-z, r, n], axis=axis)


def _cores(tree: dict[str, dict[str, np.ndarray]]) -> dict[str, tuple[str, dict]]:
    """``{name: (kind, parts)}`` for every Haiku recurrent core found in ``tree``."""
    found: dict[str, tuple[str, dict]] = {}
    for mod, leaves in tree.items():
        if set(leaves) == {"w_i", "w_h", "b"}:
            found[mod] = ("gru", leaves)
    groups: dict[str, dict[str, dict]] = {}
    for mod, leaves in tree.items():
        if "/" in mod and mod.rsplit("/", 1)[1] in ("linear", "linear_1"):
            prefix, child = mod.rsplit("/", 1)
            groups.setdefault(prefix.removesuffix("/~"), {})[child] = leaves
    for prefix, children in groups.items():
        if set(children) == {"linear", "linear_1"}:
            found[prefix] = ("rnn", children)
        elif set(children) == {"linear"} and set(children["linear"]) == {"w", "b"}:
            w, b = children["linear"]["w"], children["linear"]["b"]
            if b.ndim == 1 and b.size % 4 == 0 and w.shape[0] > b.size // 4:
                found[prefix] = ("lstm", children["linear"])
    return found


def _exact(params: Any, parts: dict, layer: Any, layer_kwargs: dict) -> Converted:
    """``Converted`` with JAX arrays, refusing float64 while JAX's 64-bit mode is off."""
    flat = {}
    for name, v in parts.items():
        flat.update({f"{name}/{n}": a for n, a in v.items()} if isinstance(v, dict) else {name: v})
    refuse_float64(flat, "from_haiku", "jax.tree.map(lambda a: np.asarray(a, np.float32), params)")
    return Converted(jax.tree.map(jnp.asarray, params), layer, layer_kwargs)


def from_haiku(source: Mapping, name: str | None = None) -> Converted:
    """jaxrnn parameters from Haiku ``hk.LSTM``, ``hk.GRU`` or ``hk.VanillaRNN`` params.

    Mapping (``H`` hidden size, ``I`` input size)::

        hk.LSTM  "<name>/linear": w (I+H, 4H) on concat[x, h], b (4H,), gates i, g, f, o,
                 forget gate sigma(f + 1):
            kernel = w[:I], recurrent_kernel = w[I:]  (blocks i, g, f, o -> i, f, g, o)
            bias   = b (reordered) with 1 added to the f block
        hk.GRU   "<name>": w_i (I, 3H), w_h (H, 3H), b (3H,), gates z, r, a; reset-before
                 with h' = (1 - z) h + z a, i.e. jaxrnn's z is Haiku's 1 - z = sigma(-.):
            kernel, recurrent_kernel, bias = w_i, w_h, b with the z block negated,
            recurrent_bias = None; run with reset_after=False
        hk.VanillaRNN "<name>/linear", "<name>/linear_1": h' = relu(x w + b + h w_1 + b_1):
            kernel = linear.w, recurrent_kernel = linear_1.w, bias = b + b_1
            (b_1 absent with double_bias=False); run with activation="relu"

    All three are exact (the z negation uses sigma(-a) = 1 - sigma(a), equal to
    float32 rounding). Haiku's carries map directly: ``hk.LSTMState(hidden, cell)``
    is ``jaxrnn.LSTMState(h, c)``.

    Args:
        source: the params dict of ``hk.transform(...).init`` (one module name per
            entry) or the inner dict of one core.
        name: the core's module name when ``source`` holds several
            (``"lstm"``, ``"gru"``, ``"vanilla_rnn"`` or your own).

    Returns:
        ``Converted(params, layer, layer_kwargs)`` with ``reset_after=False`` (GRU)
        or ``activation="relu"`` (VanillaRNN) in ``layer_kwargs``.

    Raises:
        ValueError: no core found, several without ``name``, or an unknown ``name``.
        TypeError: float64 parameters while JAX's 64-bit mode is off (they would
            silently become float32).

    Examples:
        >>> import jax, numpy as np, jaxrnn
        >>> from jaxrnn.interop import from_haiku, to_haiku
        >>> p = jaxrnn.init_gru(jax.random.key(0), 2, 3, reset_after=False)
        >>> tree = to_haiku(p)
        >>> {k: {n: v.shape for n, v in d.items()} for k, d in tree.items()}
        {'gru': {'w_i': (2, 9), 'w_h': (3, 9), 'b': (9,)}}
        >>> conv = from_haiku(tree)
        >>> conv.layer_kwargs, all(np.array_equal(a, b) for a, b in zip(conv.params[:3], p[:3]))
        ({'reset_after': False}, True)
    """
    where = "from_haiku"
    if all(not isinstance(v, Mapping) for v in source.values()):  # the inner dict of one core
        inner = {str(n): to_numpy(v) for n, v in source.items()}
        tree = {"gru" if "w_i" in inner else "lstm/linear": inner}
    else:
        tree = {str(m): {str(n): to_numpy(v) for n, v in d.items()} for m, d in source.items()}
    cores = _cores(tree)
    if name is not None:
        if name not in cores:
            raise ValueError(f"{where}: no Haiku core named {name!r}; found {sorted(cores)}.")
        kind, parts = cores[name]
    elif len(cores) == 1:
        kind, parts = next(iter(cores.values()))
    else:
        raise ValueError(
            f"{where}: found {len(cores)} Haiku recurrent cores ({sorted(cores)}) in "
            f"{sorted(tree)}; pass name= to pick one."
            if cores
            else f"{where}: no hk.LSTM, hk.GRU or hk.VanillaRNN parameters in {sorted(tree)}."
        )
    if kind == "gru":
        params = GRUParams(
            _negate_z(parts["w_i"], 1),
            _negate_z(parts["w_h"], 1),
            _negate_z(parts["b"], 0),
            None,
        )
        return _exact(params, parts, layer_of("gru"), {"reset_after": False})
    if kind == "lstm":
        w, b = parts["w"], parts["b"]
        H = b.size // 4
        I = w.shape[0] - H
        b = blocks(b, "igfo", "ifgo", 0).copy()
        b[H : 2 * H] += np.asarray(1, b.dtype)
        params = LSTMParams(
            blocks(w[:I], "igfo", "ifgo", 1),
            blocks(w[I:], "igfo", "ifgo", 1),
            np.asarray(b),
        )
        return _exact(params, parts, layer_of("lstm"), {})
    lin, lin1 = parts["linear"], parts["linear_1"]
    bias = lin["b"] + lin1["b"] if "b" in lin1 else lin["b"]
    params = RNNParams(np.asarray(lin["w"]), np.asarray(lin1["w"]), np.asarray(bias))
    return _exact(params, parts, layer_of("rnn"), {"activation": "relu"})


def to_haiku(
    params: Any,
    *,
    name: str | None = None,
    activation: str | None = None,
    reset_after: bool | None = None,
    double_bias: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """Haiku params (NumPy arrays) for ``hk.LSTM``, ``hk.GRU`` or ``hk.VanillaRNN``.

    The inverse of ``from_haiku`` (see its mapping): the LSTM's f block of the bias
    gets 1 subtracted (Haiku adds it back at every step), the GRU's z blocks are
    negated, and a VanillaRNN gets ``linear_1.b = 0``. Missing biases are zeros.

    Args:
        params: LSTMParams, GRUParams (reset-before) or RNNParams.
        name: the module name (default ``"lstm"``, ``"gru"``, ``"vanilla_rnn"``).
        activation: RNNParams only, and required: ``hk.VanillaRNN`` computes
            ``relu``, so only ``activation="relu"`` converts.
        reset_after: GRU only; by default a GRU with ``recurrent_bias`` is
            reset-after and refused; one without biases needs ``reset_after=False``.
        double_bias: VanillaRNN only, as ``hk.VanillaRNN(double_bias=...)``.

    Raises:
        ValueError: a reset-after GRU (``hk.GRU`` is reset-before); an RNN whose
            activation is not relu.

    Examples:
        >>> import jax, numpy as np, jaxrnn
        >>> from jaxrnn.interop import to_haiku
        >>> p = jaxrnn.init_lstm(jax.random.key(0), 2, 3)       # Keras init: forget bias 1
        >>> to_haiku(p)["lstm/linear"]["b"].tolist()             # Haiku adds the 1 itself
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    where = "to_haiku"
    kind = kind_of(params, where)
    k, rk = np.asarray(params.kernel), np.asarray(params.recurrent_kernel)
    H = rk.shape[0]
    if kind == "gru":
        if gru_reset_after(params, reset_after, where):  # no bias at all: reset-after assumed
            raise ValueError(
                f"{where}: hk.GRU is reset-before, n = tanh(x Wn + (r*h) Un + bn), but this "
                "GRU is (or may be) reset-after, n = tanh(x Wn + bin + r*(h Un + bhn)): a "
                "different function. Only GRUParams with recurrent_bias=None used with "
                "jaxrnn.gru(..., reset_after=False) convert; pass reset_after=False if that "
                "is what these weights are."
            )
        b = np.asarray(params.bias) if params.bias is not None else np.zeros(3 * H, k.dtype)
        return {
            name or "gru": {"w_i": _negate_z(k, 1), "w_h": _negate_z(rk, 1), "b": _negate_z(b, 0)}
        }
    if kind == "lstm":
        b = np.asarray(params.bias) if params.bias is not None else np.zeros(4 * H, k.dtype)
        b = b.copy()
        b[H : 2 * H] -= np.asarray(1, b.dtype)
        w = np.concatenate([k, rk], 0)
        return {
            f"{name or 'lstm'}/linear": {
                "w": blocks(w, "ifgo", "igfo", 1),
                "b": blocks(b, "ifgo", "igfo", 0),
            }
        }
    if activation != "relu":
        raise ValueError(
            f"{where}: hk.VanillaRNN computes h' = relu(x W + h U + b); jaxrnn parameters do "
            f"not record their activation, and activation={activation!r} is not relu. Pass "
            "activation='relu' if the RNN is run with activation='relu'."
        )
    b = np.asarray(params.bias) if params.bias is not None else np.zeros(H, k.dtype)
    prefix = name or "vanilla_rnn"
    lin1: dict[str, np.ndarray] = {"w": rk}
    if double_bias:
        lin1["b"] = np.zeros_like(b)
    return {f"{prefix}/linear": {"w": k, "b": b}, f"{prefix}/linear_1": lin1}
