"""Shape and dtype checks shared by the cells and layers.

Every check reads only static information (shapes, dtypes, pytree structure), so
it runs in Python before or during tracing and costs nothing under ``jit``.
Shape problems raise ``ValueError``, dtype and structure problems ``TypeError``;
each message names the function and argument, shows actual against expected,
and says what to do.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np


def shape_of(a: Any) -> tuple[int, ...]:
    return tuple(np.shape(a))


def dtype_of(a: Any):
    return jnp.result_type(a) if not hasattr(a, "dtype") else a.dtype


def is_float(a: Any) -> bool:
    return jnp.issubdtype(dtype_of(a), jnp.floating)


def check_params(params: Any, num_gates: int, where: str) -> tuple[int, int]:
    """Validate a cell's parameters; return ``(input_size, hidden_size)``."""
    name = type(params).__name__
    kernel, recurrent = params.kernel, params.recurrent_kernel
    if np.ndim(kernel) != 2 or np.ndim(recurrent) != 2:
        raise ValueError(
            f"{where}: params.kernel and params.recurrent_kernel must be 2-D, got "
            f"kernel.shape={shape_of(kernel)} and recurrent_kernel.shape={shape_of(recurrent)}. "
            f"{name} uses the Keras layout: kernel (input_size, {num_gates}*hidden_size), "
            f"recurrent_kernel (hidden_size, {num_gates}*hidden_size)."
        )
    hidden = shape_of(recurrent)[0]
    gh = num_gates * hidden
    expected = {"kernel": (shape_of(kernel)[0], gh), "recurrent_kernel": (hidden, gh)}
    for field, value in params._asdict().items():
        if value is None:
            continue
        want = expected.get(field, (gh,))
        if shape_of(value) != want:
            raise ValueError(
                f"{where}: params.{field}.shape={shape_of(value)}, expected {want} for "
                f"hidden_size={hidden} (recurrent_kernel.shape={shape_of(recurrent)}, "
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


def check_input(x: Any, input_size: int, where: str, *, kernel_shape: tuple[int, ...]) -> None:
    """Validate a step input ``x`` of shape ``(..., input_size)``."""
    if not is_float(x):
        raise TypeError(
            f"{where}: x has dtype {dtype_of(x)}, but recurrent layers need floating-point "
            "inputs. Convert with x.astype(jnp.float32) (token ids need an embedding or "
            "jax.nn.one_hot first)."
        )
    if np.ndim(x) < 1 or shape_of(x)[-1] != input_size:
        got = shape_of(x)[-1] if np.ndim(x) else "no"
        raise ValueError(
            f"{where}: x has {got} features (x.shape={shape_of(x)}) but params.kernel "
            f"expects {input_size} (kernel.shape={kernel_shape}). Was the cell initialised "
            f"with input_size={got}?"
        )


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
