"""Shape and dtype checks shared by the cells and layers.

Every check reads only static information (shapes, dtypes, pytree structure), so
it runs in Python before or during tracing and costs nothing under ``jit``.
Shape problems raise ``ValueError``, dtype and structure problems ``TypeError``;
each message names the function and argument, shows actual against expected,
and says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._cells.spec import spec_of, spec_of_type


def shape_of(a: Any) -> tuple[int, ...]:
    return tuple(np.shape(a))


def dtype_of(a: Any):
    return jnp.result_type(a) if not hasattr(a, "dtype") else a.dtype


def is_float(a: Any) -> bool:
    return jnp.issubdtype(dtype_of(a), jnp.floating)


def positive_int(value: Any, where: str, arg: str, *, minimum: int = 1, what: str = "") -> int:
    """``value`` as an int when it is an integer ``>= minimum`` (bools refused), else
    ``ValueError: {where}: {arg}=...; it must be an integer >= {minimum}{what}.``

    ``what`` is appended to the message, e.g. ``" (steps per window)"``.

    Examples:
        >>> positive_int(3, "fit", "epochs")
        3
        >>> positive_int(True, "fit", "epochs")
        Traceback (most recent call last):
        ...
        ValueError: fit: epochs=True; it must be an integer >= 1.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {arg}={value!r}; it must be an integer >= {minimum}{what}.")
    return int(value)


def lookup(
    table: Mapping[str, Any], value: Any, where: str, arg: str, *, alternative: str, expected: str
) -> Any:
    """``table[value]`` for a known name, ``value`` itself when it is callable.

    An unknown name raises ``ValueError: {where}: unknown {arg}=...`` listing the
    known names and ending ``or pass {alternative}.``; anything else raises
    ``TypeError: {where}: {arg} must be {expected}, got <type>.``

    Examples:
        >>> table = {"one": 1}
        >>> lookup(table, "one", "f", "x", alternative="a callable", expected="a name")
        1
        >>> lookup(table, "two", "f", "x", alternative="a callable", expected="a name")
        Traceback (most recent call last):
        ...
        ValueError: f: unknown x='two'. Use one of one, or pass a callable.
    """
    if isinstance(value, str):
        try:
            return table[value]
        except KeyError:
            known = ", ".join(sorted(table))
            raise ValueError(
                f"{where}: unknown {arg}={value!r}. Use one of {known}, or pass {alternative}."
            ) from None
    if callable(value):
        return value
    raise TypeError(f"{where}: {arg} must be {expected}, got {type(value).__name__}.")


def _is_cell_params(p: Any) -> bool:
    return hasattr(p, "_fields") and (
        spec_of(p) is not None or {"kernel", "recurrent_kernel"} <= set(p._fields)
    )


def check_params_type(params: Any, params_type: type, where: str) -> None:
    """Refuse anything but the cell's parameter NamedTuple, naming what it looks like.

    The usual mix-ups: a Flax module or its state, Linen variables, a list of
    parameter sets (``jaxrnn.stacked``'s, or ``from_torch(...).params``), a
    ``Converted`` from ``jaxrnn.interop``, bidirectional parameters, or another
    cell's parameters.
    """
    spec = spec_of_type(params_type)
    expected, init, layer = params_type.__name__, spec.init.__name__, spec.layer
    got = type(params).__name__
    if _is_cell_params(params):
        other = spec_of(params)
        if other is not None and other is not spec:
            raise TypeError(
                f"{where}: params is {got}, but {where} runs {expected}. Use "
                f"jaxrnn.{other.layer} for {got}, or build {expected} with jaxrnn.{init}."
            )
        return
    want = f"params must be jaxrnn.{expected} (from jaxrnn.{init}(key, input_size, hidden_size))"
    if hasattr(params, "_fields") and {"forward", "backward"} <= set(params._fields):
        hint = (
            f"these are bidirectional parameters: run them with "
            f"jaxrnn.bidirectional(jaxrnn.{layer}, params, x)."
        )
    elif got == "Converted" and hasattr(params, "layer_kwargs"):
        hint = (
            "this is a jaxrnn.interop conversion: call it, conv(x), or pass its params "
            "(conv.params; for a one-layer PyTorch module, conv.params[0])."
        )
    elif isinstance(params, (list, tuple)) and not hasattr(params, "_fields"):
        n = len(params)
        if n and all(hasattr(a, "shape") and not hasattr(a, "_fields") for a in params):
            hint = (
                f"got a {got} of {n} arrays. Keras' layer.get_weights() lists convert with "
                "jaxrnn.interop.from_keras(weights); otherwise build the NamedTuple, e.g. "
                f"jaxrnn.{expected}(kernel, recurrent_kernel, ...)."
            )
        elif n == 1:
            hint = (
                f"got a {got} of one parameter set. from_torch(...).params is a list with "
                "one entry per layer: pass conv.params[0], or call conv(x)."
            )
        else:
            hint = (
                f"got a {got} of {n} entries. One parameter set per layer is the input of "
                f"jaxrnn.stacked(jaxrnn.{layer}, params, x); for one layer pass params[k]."
            )
    elif isinstance(getattr(params, "params", None), tuple):
        hint = (
            f"got the module {got}: pass its parameters, module.params, or call the module itself."
        )
    elif type(params).__module__.startswith("flax") and got == "State":
        hint = (
            "got Flax's nnx.State (nnx.state(model)): pass model.params, the functional "
            "NamedTuple of a jaxrnn.nnx module."
        )
    elif hasattr(params, "keys") and ("params" in params or "kernel" in params):
        hint = (
            "got a dict of Linen variables: convert them with "
            "jaxrnn.linen.to_params(variables) (variables or variables['params'])."
        )
    else:
        hint = f"got {got}."
    raise TypeError(f"{where}: {want}; {hint}")


def check_params(params: Any, params_type: type, where: str) -> tuple[int, int]:
    """Validate a cell's parameters of type ``params_type``; return ``(input_size, hidden_size)``."""
    check_params_type(params, params_type, where)
    spec = spec_of_type(params_type)
    num_gates = spec.gates
    name = type(params).__name__
    kernel = params.kernel
    matrices = {"kernel": kernel}
    if spec.recurrent:
        matrices["recurrent_kernel"] = params.recurrent_kernel
    if any(np.ndim(m) != 2 for m in matrices.values()):
        got = " and ".join(f"{f}.shape={shape_of(m)}" for f, m in matrices.items())
        layout = f"kernel (input_size, {num_gates}*hidden_size)"
        if spec.recurrent:
            layout += f", recurrent_kernel (hidden_size, {num_gates}*hidden_size)"
        raise ValueError(
            f"{where}: params.{' and params.'.join(matrices)} must be 2-D, got {got}. "
            f"{name} uses the Keras layout: {layout}."
        )
    if spec.recurrent:
        recurrent = params.recurrent_kernel
        hidden = shape_of(recurrent)[0]
        source = f"recurrent_kernel.shape={shape_of(recurrent)}"
    else:
        hidden = shape_of(kernel)[1] // num_gates
        source = f"kernel.shape={shape_of(kernel)}"
    gh = num_gates * hidden
    expected = {"kernel": (shape_of(kernel)[0], gh), "recurrent_kernel": (hidden, gh)}
    for field, value in params._asdict().items():
        if value is None:
            continue
        want = expected.get(field, (gh,))
        if shape_of(value) != want:
            raise ValueError(
                f"{where}: params.{field}.shape={shape_of(value)}, expected {want} for "
                f"hidden_size={hidden} ({source}, "
                f"{num_gates} gate(s)). Were the weights transposed or taken from another "
                "cell type? The interop helpers convert PyTorch/Keras layouts."
            )
    dtypes = {f: dtype_of(v) for f, v in params._asdict().items() if v is not None}
    for field, dt in dtypes.items():
        if not jnp.issubdtype(dt, jnp.floating):
            raise TypeError(
                f"{where}: params.{field} has dtype {dt}; parameters must be floating point. "
                "Cast them with jax.tree.map(lambda p: p.astype(jnp.float32), params)."
            )
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{f}={dt}" for f, dt in dtypes.items())
        raise TypeError(
            f"{where}: params mix dtypes ({listing}); all fields must share one dtype. "
            "Cast them together with jax.tree.map(lambda p: p.astype(jnp.float32), params)."
        )
    return shape_of(kernel)[0], hidden


def check_float_input(x: Any, where: str) -> None:
    """Refuse non-float inputs; integer arrays get the token-id hint, whatever their rank."""
    if is_float(x):
        return
    dt = dtype_of(x)
    if jnp.issubdtype(dt, jnp.integer):
        raise TypeError(
            f"{where}: x has integer dtype {dt} (shape {shape_of(x)}): token ids? A recurrent "
            "layer reads floating-point feature vectors, so map ids to vectors first: an "
            "embedding table E of shape (vocab_size, features) gives E[x], or use "
            "jax.nn.one_hot(x, vocab_size), to get (batch, time, features). For numeric "
            "data, convert with x.astype(jnp.float32)."
        )
    raise TypeError(
        f"{where}: x has dtype {dt}, but recurrent layers need floating-point inputs. "
        "Convert with x.astype(jnp.float32)."
    )


def check_input(x: Any, input_size: int, where: str, *, kernel_shape: tuple[int, ...]) -> None:
    """Validate a step input ``x`` of shape ``(..., input_size)``."""
    check_float_input(x, where)
    if np.ndim(x) < 1 or shape_of(x)[-1] != input_size:
        got = shape_of(x)[-1] if np.ndim(x) else "no"
        raise ValueError(
            f"{where}: x has {got} features (x.shape={shape_of(x)}) but params.kernel "
            f"expects {input_size} (kernel.shape={kernel_shape}). Was the cell initialised "
            f"with input_size={got}?"
        )


def check_step(params: Any, params_type: type, x: Any, where: str) -> tuple[int, Any]:
    """The checks opening a cell's step: ``params`` (``check_params``) and the input ``x``
    ``(..., input_size)`` (``check_input``); returns ``(hidden_size, dtype)``, ``dtype``
    being the parameters', which the carry must have and the step computes in."""
    in_size, hidden = check_params(params, params_type, where)
    check_input(x, in_size, where, kernel_shape=shape_of(params.kernel))
    return hidden, params.kernel.dtype


def check_hidden(h: Any, hidden: int, dtype, where: str, arg: str) -> None:
    """Validate a hidden-state array of shape ``(..., hidden)`` and dtype ``dtype``."""
    if not hasattr(h, "shape"):
        raise TypeError(
            f"{where}: {arg} must be an array of shape (..., {hidden}), got {type(h).__name__}."
        )
    if np.ndim(h) < 1 or shape_of(h)[-1] != hidden:
        raise ValueError(
            f"{where}: {arg}.shape={shape_of(h)}, but the params have hidden_size={hidden}, "
            f"so expected (..., {hidden}). Make it with jaxrnn.zero_state(params, batch_shape)."
        )
    if dtype is not None and dtype_of(h) != dtype:
        raise TypeError(
            f"{where}: {arg} has dtype {dtype_of(h)} but the params are {dtype}; the carry must "
            f"match the parameters. Use {arg}.astype(jnp.{jnp.dtype(dtype).name})."
        )


def check_mask_arg(mask: Any, where: str, arg: str, num_gates: int, last: int, lead: tuple) -> None:
    """Validate a dropout mask: ``lead + (last,)`` or ``lead + (num_gates, last)``."""
    shapes = [lead + (last,), lead + (num_gates, last)]
    if shape_of(mask) not in shapes:
        raise ValueError(
            f"{where}: {arg}.shape={shape_of(mask)}, expected {shapes[0]} (one mask shared by "
            f"all gates) or {shapes[1]} (one mask per gate)."
        )


def check_flag(value: Any, where: str, arg: str) -> None:
    """Refuse a non-boolean switch (e.g. the string ``"False"``, which is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{where}: {arg} must be True or False, got {value!r} ({type(value).__name__}). "
            "It is a Python switch decided before tracing; a string such as 'False' would "
            "count as True."
        )


def under_forward_mode(tree: Any) -> bool:
    """Whether any leaf is traced by forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``).

    Walks each tracer's trace and its parents, so a ``vmap`` or ``grad`` inside
    ``jvp`` is seen too. A function jitted *inside* ``jvp`` (``jax.jvp(jax.jit(f))``)
    is traced on its own, before the ``jvp`` applies, and cannot be seen from here:
    put ``jit`` outside (``jax.jit(jax.jacfwd(f))``) or pass ``impl="scan"``.
    """
    from jax import core
    from jax.interpreters import ad

    for leaf in jax.tree.leaves(tree):
        if not isinstance(leaf, core.Tracer):
            continue
        trace = getattr(leaf, "_trace", None)
        for _ in range(64):  # a trace's parents, innermost first
            if trace is None:
                break
            if isinstance(trace, ad.JVPTrace):
                return True
            trace = getattr(trace, "parent_trace", None)
    return False


def varying_axes(tree: Any) -> tuple:
    """The ``shard_map`` mesh axes over which any leaf of ``tree`` varies (sorted).

    Outside ``shard_map`` (or with ``check_vma=False``) this is ``()``.
    """
    axes: set = set()
    for leaf in jax.tree.leaves(tree):
        try:
            aval = jax.typeof(leaf)
        except TypeError:
            continue
        vma = getattr(aval, "vma", None)  # older JAX
        if vma is None:
            vma = getattr(getattr(aval, "mat", None), "varying", ())
        axes.update(vma or ())
    return tuple(sorted(axes, key=str))


def match_varying(tree: Any, like: Any) -> Any:
    """``tree`` cast to vary over every ``shard_map`` axis that ``like`` varies over.

    A scan's carry must keep one type: a zero initial state (the same on every
    device) that meets per-device inputs becomes per-device after one step, so
    it is made per-device (``jax.lax.pcast(..., to="varying")``) up front. A
    no-op outside ``shard_map``.
    """
    axes = varying_axes(like)
    if not axes:
        return tree

    def cast(leaf):
        missing = tuple(a for a in axes if a not in varying_axes(leaf))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf

    return jax.tree.map(cast, tree)
