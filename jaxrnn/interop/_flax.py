"""Flax (NNX and Linen) ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell`` <-> jaxrnn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._cells.gru import GRUParams
from .._cells.lstm import LSTMParams, LSTMState
from .._cells.simple_rnn import RNNParams
from ._common import (
    Converted,
    blocks,
    kind_of,
    layer_of,
    refuse_float64,
    refuse_reset_before,
    to_numpy,
)

TARGETS = (
    "nnx.LSTMCell",
    "nnx.OptimizedLSTMCell",
    "nnx.GRUCell",
    "nnx.SimpleCell",
    "linen.LSTMCell",
    "linen.OptimizedLSTMCell",
    "linen.GRUCell",
    "linen.SimpleCell",
)
_TARGET_KIND = {
    "LSTMCell": "lstm",
    "OptimizedLSTMCell": "lstm",
    "GRUCell": "gru",
    "SimpleCell": "rnn",
}


def _plain(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _plain(v) for k, v in tree.items()}
    if hasattr(tree, "value") and not hasattr(tree, "shape"):  # an nnx.Variable
        tree = tree.value
    return to_numpy(tree)


def _z(n: int, like: np.ndarray) -> np.ndarray:
    return np.zeros((n,), like.dtype)


def _exact(params: Any, tree: dict, layer: Any, layer_kwargs: dict) -> Converted:
    """``Converted`` with JAX arrays, refusing float64 while JAX's 64-bit mode is off."""
    flat = {f"{a}/{n}": v for a, d in tree.items() for n, v in d.items()}
    refuse_float64(flat, "from_flax", "jax.tree.map(lambda a: np.asarray(a, np.float32), tree)")
    return Converted(jax.tree.map(jnp.asarray, params), layer, layer_kwargs)


def from_flax(source: Any) -> Converted:
    """jaxrnn parameters from a Flax recurrent cell's parameters (NNX or Linen).

    The cell is recognised by its parameter names; ``H`` is the hidden size::

        LSTMCell (NNX, Linen) and Linen OptimizedLSTMCell, gates i, f, g, o:
            kernel = [ii|if|ig|io].kernel   recurrent_kernel = [hi|hf|hg|ho].kernel
            bias   = [hi|hf|hg|ho].bias     (the input denses have no bias)
        NNX OptimizedLSTMCell: kernel = dense_i.kernel, recurrent_kernel =
            dense_h.kernel, bias = dense_h.bias (already i, f, g, o)
        GRUCell (reset-after), Flax gates r, z, n -> jaxrnn z, r, n:
            NNX:   kernel = dense_i.kernel, recurrent_kernel = dense_h.kernel,
                   bias = dense_i.bias, recurrent_bias = 0 (NNX has no h-side bias)
            Linen: kernel = [iz|ir|in], recurrent_kernel = [hz|hr|hn],
                   bias = [iz|ir|in].bias, recurrent_bias = [0|0|hn.bias]
        SimpleCell: kernel = i.kernel, recurrent_kernel = h.kernel, bias = i.bias
            (NNX: dense_i, dense_h). Its activation is a module attribute the
            parameters do not record (Flax's default, tanh, is assumed).

    The LSTM carry is ``(c, h)`` in Flax and ``LSTMState(h, c)`` in jaxrnn: see
    ``from_flax_carry`` / ``to_flax_carry``.

    Args:
        source: a pure dict of the cell's parameters (NNX ``nnx.state(cell,
            nnx.Param).to_pure_dict()``, Linen ``variables`` or
            ``variables["params"]``) or a live NNX cell.

    Returns:
        ``Converted(params, layer, layer_kwargs)`` (``layer`` is
        ``jaxrnn.simple_rnn``/``lstm``/``gru``; a GRU has ``reset_after=True``).

    Raises:
        ValueError: parameter names of no supported cell.
        TypeError: float64 parameters while JAX's 64-bit mode is off (they would
            silently become float32).

    Examples:
        >>> import jax, numpy as np, jaxrnn
        >>> from jaxrnn.interop import from_flax, to_flax
        >>> p = jaxrnn.init_lstm(jax.random.key(0), 2, 3)
        >>> tree = to_flax(p, "linen.LSTMCell")
        >>> sorted(tree["params"]), tree["params"]["hf"]["bias"].tolist()
        (['hf', 'hg', 'hi', 'ho', 'if', 'ig', 'ii', 'io'], [1.0, 1.0, 1.0])
        >>> all(np.array_equal(a, b) for a, b in zip(from_flax(tree).params, p))
        True
    """
    where = "from_flax"
    if not isinstance(source, Mapping):
        from flax import nnx

        source = nnx.state(source, nnx.Param).to_pure_dict()
    t = _plain(source)
    if set(t) == {"params"}:
        t = t["params"]
    keys = set(t)
    if keys in (
        {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"},
        {"ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"},
    ):
        f_in = "if" if "if" in keys else "if_"
        params = LSTMParams(
            kernel=np.concatenate([t[g]["kernel"] for g in ("ii", f_in, "ig", "io")], 1),
            recurrent_kernel=np.concatenate([t[g]["kernel"] for g in ("hi", "hf", "hg", "ho")], 1),
            bias=np.concatenate([t[g]["bias"] for g in ("hi", "hf", "hg", "ho")]),
        )
        return _exact(params, t, layer_of("lstm"), {})
    if keys == {"ir", "iz", "in", "hr", "hz", "hn"}:
        hn_b = t["hn"]["bias"]
        params = GRUParams(
            kernel=np.concatenate([t[g]["kernel"] for g in ("iz", "ir", "in")], 1),
            recurrent_kernel=np.concatenate([t[g]["kernel"] for g in ("hz", "hr", "hn")], 1),
            bias=np.concatenate([t[g]["bias"] for g in ("iz", "ir", "in")]),
            recurrent_bias=np.concatenate([_z(hn_b.size, hn_b), _z(hn_b.size, hn_b), hn_b]),
        )
        return _exact(params, t, layer_of("gru"), {"reset_after": True})
    if keys == {"i", "h"}:
        params = RNNParams(
            np.asarray(t["i"]["kernel"]),
            np.asarray(t["h"]["kernel"]),
            np.asarray(t["i"]["bias"]),
        )
        return _exact(params, t, layer_of("rnn"), {})
    if keys == {"dense_i", "dense_h"}:
        di, dh = t["dense_i"], t["dense_h"]
        H = dh["kernel"].shape[0]
        gates = dh["kernel"].shape[1] // H if H else 0
        if gates == 4 and "bias" in dh:  # OptimizedLSTMCell
            params = LSTMParams(
                np.asarray(di["kernel"]), np.asarray(dh["kernel"]), np.asarray(dh["bias"])
            )
            return _exact(params, t, layer_of("lstm"), {})
        if gates == 3 and "bias" in di:  # GRUCell
            b = blocks(di["bias"], "rzn", "zrn", 0)
            params = GRUParams(
                blocks(di["kernel"], "rzn", "zrn", 1),
                blocks(dh["kernel"], "rzn", "zrn", 1),
                np.asarray(b),
                np.zeros_like(b),
            )
            return _exact(params, t, layer_of("gru"), {"reset_after": True})
        if gates == 1 and "bias" in di:  # SimpleCell
            params = RNNParams(
                np.asarray(di["kernel"]), np.asarray(dh["kernel"]), np.asarray(di["bias"])
            )
            return _exact(params, t, layer_of("rnn"), {})
    raise ValueError(
        f"{where}: parameter names {sorted(keys)} (dense_h kernel shapes aside) are not "
        "those of a Flax LSTMCell, OptimizedLSTMCell, GRUCell or SimpleCell."
    )


def to_flax(
    params: Any,
    target: str | None = None,
    *,
    module: Any = None,
    reset_after: bool | None = None,
) -> dict:
    """A Flax cell's parameter dict (NumPy arrays) from jaxrnn parameters.

    The inverse of ``from_flax`` (see its mapping). Missing jaxrnn biases become
    zeros. For a GRU, the recurrent biases of ``r`` and ``z`` are folded into
    the input biases (Flax has no h-side bias there); NNX's GRUCell has no
    h-side candidate bias at all.

    Args:
        params: LSTMParams, GRUParams (reset-after) or RNNParams.
        target: one of ``"nnx.LSTMCell"``, ``"nnx.OptimizedLSTMCell"``,
            ``"nnx.GRUCell"``, ``"nnx.SimpleCell"``, ``"linen.LSTMCell"``,
            ``"linen.OptimizedLSTMCell"``, ``"linen.GRUCell"``, ``"linen.SimpleCell"``.
            Linen targets give ``{"params": {...}}`` (ready for ``cell.apply``); NNX
            targets give the pure dict for ``nnx.replace_by_pure_dict``.
        module: a live NNX cell instead of ``target``: the parameters are written
            into it (``nnx.update``) and its dict is returned.
        reset_after: GRU only; by default read from the biases (a GRU with only
            ``bias`` is reset-before, which Flax does not have).

    Raises:
        ValueError: unknown target or a kind that does not fit it; a reset-before
            GRU; a non-zero candidate recurrent bias (``recurrent_bias`` block n)
            into ``nnx.GRUCell``; sizes that differ from ``module``'s.

    Examples:
        >>> import jax, numpy as np, jaxrnn
        >>> from jaxrnn.interop import from_flax, to_flax
        >>> p = jaxrnn.init_gru(jax.random.key(0), 2, 3)        # zero biases
        >>> tree = to_flax(p, "nnx.GRUCell")
        >>> {k: {n: v.shape for n, v in d.items()} for k, d in tree.items()}
        {'dense_i': {'kernel': (2, 9), 'bias': (9,)}, 'dense_h': {'kernel': (3, 9)}}
        >>> all(np.array_equal(a, b) for a, b in zip(from_flax(tree).params, p))
        True
    """
    where = "to_flax"
    if module is not None:
        from flax import nnx

        target = "nnx." + type(module).__name__
    if target not in TARGETS:
        raise ValueError(f"{where}: unknown target={target!r}; use one of {', '.join(TARGETS)}.")
    ns, cell = target.split(".")
    kind = kind_of(params, where)
    if _TARGET_KIND[cell] != kind:
        raise ValueError(f"{where}: {type(params).__name__} cannot go into a Flax {cell}.")
    k, rk = np.asarray(params.kernel), np.asarray(params.recurrent_kernel)
    H = rk.shape[0]
    if kind == "lstm":
        b = np.asarray(params.bias) if params.bias is not None else _z(4 * H, k)
        if target == "nnx.OptimizedLSTMCell":
            out = {"dense_i": {"kernel": k}, "dense_h": {"kernel": rk, "bias": b}}
        else:
            kb, rkb, bb = np.split(k, 4, 1), np.split(rk, 4, 1), np.split(b, 4)
            f_in = "if_" if ns == "nnx" else "if"
            out = {n: {"kernel": kb[j]} for j, n in enumerate(("ii", f_in, "ig", "io"))}
            out.update(
                {
                    n: {"kernel": rkb[j], "bias": bb[j]}
                    for j, n in enumerate(("hi", "hf", "hg", "ho"))
                }
            )
    elif kind == "gru":
        refuse_reset_before(params, reset_after, where, "Flax's GRUCell", "Flax")
        b = np.asarray(params.bias) if params.bias is not None else _z(3 * H, k)
        rb = (
            np.asarray(params.recurrent_bias) if params.recurrent_bias is not None else _z(3 * H, k)
        )
        (bz, br, bn), (rbz, rbr, rbn) = np.split(b, 3), np.split(rb, 3)
        bz, br = (bz + rbz, br + rbr) if params.recurrent_bias is not None else (bz, br)
        if ns == "nnx":
            if np.any(rbn != 0):
                raise ValueError(
                    f"{where}: flax.nnx.GRUCell has no recurrent candidate bias (its dense_h has "
                    "no bias, although its docstring shows b_hn), but this GRU's recurrent_bias "
                    f"block n is non-zero (max |b_hn| = {float(np.max(np.abs(rbn))):.3g}): "
                    "n = tanh(x Wn + bin + r*(h Un + bhn)) cannot be represented. Use "
                    "'linen.GRUCell', which has it, or jaxrnn directly."
                )
            out = {
                "dense_i": {
                    "kernel": blocks(k, "zrn", "rzn", 1),
                    "bias": np.concatenate([br, bz, bn]),
                },
                "dense_h": {"kernel": blocks(rk, "zrn", "rzn", 1)},
            }
        else:
            kz, kr, kn = np.split(k, 3, 1)
            uz, ur, un = np.split(rk, 3, 1)
            out = {
                "ir": {"kernel": kr, "bias": br},
                "iz": {"kernel": kz, "bias": bz},
                "in": {"kernel": kn, "bias": bn},
                "hr": {"kernel": ur},
                "hz": {"kernel": uz},
                "hn": {"kernel": un, "bias": rbn},
            }
    else:
        b = np.asarray(params.bias) if params.bias is not None else _z(H, k)
        if ns == "nnx":
            out = {"dense_i": {"kernel": k, "bias": b}, "dense_h": {"kernel": rk}}
        else:
            out = {"i": {"kernel": k, "bias": b}, "h": {"kernel": rk}}
    if module is not None:
        state = nnx.state(module, nnx.Param)
        own = state.to_pure_dict()
        own_shapes = {a: {n: tuple(v.shape) for n, v in d.items()} for a, d in own.items()}
        new_shapes = {a: {n: tuple(v.shape) for n, v in d.items()} for a, d in out.items()}
        if own_shapes != new_shapes:
            raise ValueError(
                f"{where}: the module's parameters {own_shapes} differ from the converted "
                f"{new_shapes} (input or hidden size differ)."
            )
        nnx.replace_by_pure_dict(
            state, {a: {n: jnp.asarray(v) for n, v in d.items()} for a, d in out.items()}
        )
        nnx.update(module, state)
    return {"params": out} if ns == "linen" else out


def from_flax_carry(carry: Any) -> Any:
    """A Flax carry as a jaxrnn state: LSTM ``(c, h)`` -> ``LSTMState(h, c)``; else as is.

    Examples:
        >>> from_flax_carry(("c", "h"))
        LSTMState(h='h', c='c')
        >>> to_flax_carry(from_flax_carry(("c", "h")))
        ('c', 'h')
    """
    if isinstance(carry, (tuple, list)) and not isinstance(carry, LSTMState):
        c, h = carry
        return LSTMState(h, c)
    return carry


def to_flax_carry(state: Any) -> Any:
    """A jaxrnn state as a Flax carry: ``LSTMState(h, c)`` -> ``(c, h)``; else as is."""
    if isinstance(state, LSTMState):
        return (state.c, state.h)
    return state
