"""Newton evaluation of a nonlinear recurrence over time: DEER and quasi-DEER.

A scan computes ``s_t = f(s_{t-1}, x_t)`` in T dependent steps. Newton's method
(DEER, Lim et al. 2024) instead guesses all the states ``s_0 … s_{T-1}`` at once
and improves the guess ``s^k`` by linearising ``f`` around it::

    P_t = s^k_{t-1}   (P_0 = s_{-1}, the initial state)
    J_t = ∂f/∂s (P_t, x_t)
    s^{k+1}_t = J_t s^{k+1}_{t-1} + (f(P_t, x_t) − J_t P_t)

a *linear* recurrence, solved by an associative scan in O(log T) depth (on
CPU by default in √T-step chunks, which do less work: ``default_linear_method``). The
first ``k`` states of ``s^k`` are exact (causality), so at most T iterations are
ever needed; near the solution DEER converges quadratically. Quasi-DEER
(Gonzalez et al. 2024) keeps only a cheap part of ``J_t``: its diagonal (the
SimpleRNN and the GRU) or the ``2 × 2`` blocks coupling each LSTM unit's ``h_i``
and ``c_i``; it converges linearly, needing more but much cheaper iterations
(O(T·H) memory instead of DEER's O(T·H²)).

At a masked step (``valid`` False) the state passes through: ``J_t = I`` and the
offset is 0.

**Stopping.** Iterate until the relative change of the states,
``max_field max|s^{k+1} − s^k| / max|s^{k+1}|`` (each state field, e.g. ``h`` and
``c``, relative to its own scale), is at most ``tol``, or ``max_iter``
iterations. Once below ``tol``, the iterations continue towards ``tol / 10`` for as
long as each one at least halves the change: where convergence is fast (DEER, and
quasi-DEER on the GRU and LSTM) that costs two or three iterations and brings the
error of the states, and of the gradients computed around them, from about ``tol``
to the float32 rounding floor (measured: gradients 2.3e-5 → 1.2e-6 relative for
the GRU at T = 1000); at that floor, or converging slowly, they stop at once.
An iterate with a non-finite value ends the iterations unconverged;
it is never returned. Unconverged, ``fallback="sequential"`` returns the
step-by-step scan's result instead (chosen by ``lax.cond`` in the same compiled
program), ``fallback=None`` the last finite iterate. ``NewtonInfo`` tells which.

**Gradients** are exact, by the adjoint of the converged trajectory, never by
differentiating through the iterations: with ``g_t`` the cotangent of ``s_t``,
``λ_t = g_t + J_{t+1}ᵀ λ_{t+1}`` is again a linear recurrence (backwards in time),
and one ``jax.vjp`` of ``f`` over all steps at once with the ``λ``'s as
cotangents gives the gradients of the parameters, the inputs and the initial
state (``J_0ᵀ λ_0``). DEER solves it in one associative scan with the dense
``J``. Quasi-DEER's ``J`` is only approximate, so its adjoint iterates the same
way as its forward pass (exact products ``J_tᵀ λ_t`` from the vjp, the
approximate part inverted by the scan) under the same relative ``tol``,
``max_iter`` and ``fallback`` (the sequential adjoint scan).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._cells.spec import CellSpec, specs
from . import jacobians, linear, linear_blocks

METHODS = ("quasi_deer", "deer")
FALLBACKS = ("sequential", None)
# Keras' initialisation, T = 1e4 (benchmarks/parallel_time.py): quasi-DEER takes ~10 (GRU),
# ~13 (LSTM) and ~35-47 (SimpleRNN) iterations, DEER 4-6; the GRU with its recurrent
# kernel ×4 took 87. Past 100 iterations the sequential fallback is the cheaper answer.
DEFAULT_MAX_ITER = 100
LINEAR_METHODS = ("associative", "chunked")


def default_linear_method() -> str:
    """How each iteration's linear recurrence is solved when ``linear_method=None``.

    ``"chunked"`` on the CPU backend: it runs as fast as the associative scan
    there (within 5% for quasi-DEER and DEER at T = 1e4, B = 16, H = 32:
    ``benchmarks/parallel_time.py --linear associative,chunked``) and its
    programs compile 1.5-2.5x faster (a gradient at T = 1e3: 1.1-2.0 s instead of
    2.6-3.3 s); it is ``linear.diagonal``'s default too. ``"associative"``
    (O(log T) depth against the chunks' O(√T)) elsewhere: on GPU/TPU depth is
    what counts.
    """
    return "chunked" if jax.default_backend() == "cpu" else "associative"


class NewtonInfo(NamedTuple):
    """How the Newton iterations of ``method="quasi_deer"`` / ``"deer"`` ended.

    Appended to a layer's (or ``unroll``'s) outputs by ``return_info=True``. With
    the default ``fallback="sequential"`` an unconverged call still returns the
    sequential result; ``converged`` says which one you got.

    Examples:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> x = jax.numpy.ones((2, 50, 3))
        >>> y, info = jaxrnn.gru(p, x, method="deer", return_info=True)
        >>> bool(info.converged), int(info.iterations) <= 10
        (True, True)
    """

    iterations: jax.Array  # shape=(), int32: Newton iterations run
    residual: jax.Array  # shape=(), float: the last relative change (inf: non-finite iterate)
    converged: jax.Array  # shape=(), bool: residual <= tol within max_iter


def default_tol(dtype) -> float:
    """The default ``tol`` for states of ``dtype``.

    ``1e-5`` for float32: about 80 ulps, above the rounding noise of the
    associative scans at T = 1e5, and where quadratic (DEER) or fast linear
    (quasi-DEER at Keras' initialisation) convergence leaves errors of ~1e-6
    against the sequential scan. ``1e-10`` for float64; ``10 eps`` for 16-bit
    floats.

    Examples:
        >>> default_tol(jnp.float32), default_tol(jnp.float64)
        (1e-05, 1e-10)
    """
    eps = float(jnp.finfo(dtype).eps)
    if eps < 1e-10:
        return 1e-10
    return max(1e-5, 10 * eps)


def check_options(method: Any, tol: Any, max_iter: Any, fallback: Any, where: str) -> None:
    """``ValueError`` naming the argument for a bad ``method``, ``tol``, ``max_iter`` or ``fallback``.

    ``method`` may be ``"sequential"`` too (the callers' default, which ignores the others).

    Examples:
        >>> check_options("deer", 0.0, None, "sequential", "unroll")
        Traceback (most recent call last):
        ...
        ValueError: unroll: tol=0.0; it must be a number > 0 (the relative change of the states at which the Newton iterations stop), or None for the default (1e-5 in float32).
    """
    if method not in ("sequential", *METHODS):
        raise ValueError(
            f"{where}: unknown method={method!r}; use 'sequential', 'quasi_deer' or 'deer'."
        )
    if tol is not None and (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float, np.floating, np.integer))
        or not math.isfinite(tol)
        or tol <= 0
    ):
        raise ValueError(
            f"{where}: tol={tol!r}; it must be a number > 0 (the relative change of the states "
            "at which the Newton iterations stop), or None for the default (1e-5 in float32)."
        )
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1
    ):
        raise ValueError(
            f"{where}: max_iter={max_iter!r}; it must be an integer >= 1 (Newton iterations), "
            f"or None for the default ({DEFAULT_MAX_ITER})."
        )
    if fallback not in FALLBACKS:
        raise ValueError(
            f"{where}: fallback={fallback!r}; use 'sequential' (run the step-by-step scan when "
            "the iterations do not converge) or None (return the last iterate)."
        )


def _check_linear_method(linear_method: Any, where: str) -> None:
    if linear_method is not None and linear_method not in LINEAR_METHODS:
        raise ValueError(f"{where}: linear_method={linear_method!r}; use one of {LINEAR_METHODS}.")


def solve(
    spec: CellSpec,
    cell_options: dict,
    params: Any,
    carry0: Any,
    xs: jax.Array,
    valid: jax.Array | None,
    *,
    method: str,
    tol: float | None = None,
    max_iter: int | None = None,
    fallback: str | None = "sequential",
    reverse: bool = False,
    linear_method: str | None = None,
    where: str = "solve",
) -> tuple[Any, jax.Array, NewtonInfo]:
    """A built-in cell over a sequence by Newton's method: the scan's result, in O(log T) depth.

    Computes the same as ``scan_segment(partial(spec.step, **cell_options),
    params, carry0, xs, valid, reverse=reverse, unroll=1)``: for each sequence,
    ``carry, ys[t] = step(params, carry, xs[t])`` at valid steps, ``ys[t] = 0``
    and the carry unchanged at the others (see the module docstring for the
    method).

    Args:
        spec: the cell (``spec_of(params)``); SimpleRNN, LSTM or GRU.
        cell_options: the step's keyword options (``activation``,
            ``recurrent_activation``, ``reset_after``), any subset.
        params: the cell's parameters.
        carry0: the initial carry, ``(B, H)`` or ``LSTMState``; any batch axes ``(..., H)``.
        xs: ``(T, B, I)`` time-major inputs, already zero at invalid steps.
        valid: ``(T, B)`` bool, or None (all valid).
        method: ``"quasi_deer"`` (diagonal / LSTM ``(h_i, c_i)`` block Jacobians)
            or ``"deer"`` (dense Jacobians, ``T·B·(k·H)²`` memory).
        tol: relative change of the states at which to stop (None: ``default_tol``).
        max_iter: Newton iterations at most (None: 100).
        fallback: ``"sequential"`` or None, when the iterations do not converge.
        reverse: run from the end (``lax.scan(reverse=True)``; outputs stay aligned).
        linear_method: how each iteration's linear recurrence is solved:
            ``"associative"`` (``lax.associative_scan``, O(log T) depth),
            ``"chunked"`` (√T-step chunks, O(√T) depth, less work and faster
            to compile; see ``linear_blocks``) or None (``default_linear_method``:
            chunked on CPU, associative on GPU/TPU).
        where: the caller's name for error messages.

    Returns:
        ``(carry, ys, info)``: the final carry, ``ys`` ``(T, B, H)`` and a ``NewtonInfo``.

    Raises:
        ValueError: a bad method, tol, max_iter or fallback; a cell without
            closed-form Jacobians; a cell option the closed forms do not know.

    Examples:
        >>> import jaxrnn
        >>> from jaxrnn._cells.spec import spec_of
        >>> p = jaxrnn.init_gru(jax.random.key(0), 3, 4)
        >>> xs = jax.random.normal(jax.random.key(1), (50, 2, 3))
        >>> h, ys, info = solve(spec_of(p), {}, p, jnp.zeros((2, 4)), xs, None,
        ...                     method="quasi_deer")
        >>> h_ref, ys_ref = jax.lax.scan(lambda h, x: jaxrnn.gru_step(p, h, x), jnp.zeros((2, 4)), xs)
        >>> bool(info.converged), bool(jnp.abs(ys - ys_ref).max() < 1e-5)
        (True, True)
    """
    check_options(method, tol, max_iter, fallback, where)
    _check_linear_method(linear_method, where)
    if method not in METHODS:
        raise ValueError(f"{where}: method={method!r} is not a Newton method; use {METHODS}.")
    closed = jacobians.CLOSED_FORMS.get(spec.kind)
    if closed is None:
        raise ValueError(
            f"{where}: method={method!r} needs closed-form Jacobians, which the {spec.keras} "
            f"cell does not have (only {', '.join(jacobians.CLOSED_FORMS)}). Use its own "
            f"methods {spec.methods} or method='sequential'."
        )
    unknown = sorted(set(cell_options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"{where}: method={method!r} cannot take the cell option(s) {unknown} (the "
            f"closed-form Jacobians know {spec.options}); use method='sequential'."
        )
    system = _CellSystem(
        step=functools.partial(spec.step, **cell_options),
        closed=functools.partial(closed, **cell_options),
        k=len(spec.state_fields),
        structure="blocks" if method == "quasi_deer" else "dense",
    )
    return _run(
        system, params, carry0, xs, valid, reverse=reverse, tol=tol, max_iter=max_iter,
        fallback=fallback, unroll=1, linear_method=linear_method,
    )  # fmt: skip


def solve_step(
    step: Callable,
    params: Any,
    carry0: Any,
    xs: Any,
    valid: jax.Array | None,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    fallback: str | None = "sequential",
    reverse: bool = False,
    unroll: int | bool = 1,
    linear_method: str | None = None,
    where: str = "solve_step",
) -> tuple[Any, Any, NewtonInfo]:
    """Any step ``(params, carry, x) -> (carry, y)`` over a sequence by DEER (dense Jacobians).

    As ``solve`` with ``method="deer"``, for your own step: ``J_t`` comes from
    ``jax.linearize`` of the step, one column per state component (the carry's
    leaves raveled per sequence into ``D`` numbers), so the step must treat
    the batch elements independently (each sequence's new carry reads only its
    own carry) for Newton's fast convergence; the result is checked either way.
    ``unroll`` applies to the sequential fallback.

    Args:
        step: the step function.
        params: passed to ``step`` unchanged.
        carry0: a pytree of float leaves, each ``(*batch, ...)``.
        xs: time-major inputs ``(T, *batch, ...)``, a pytree of such arrays too,
            already zero at invalid steps.
        valid: ``(T, *batch)`` bool, or None.

    Returns:
        ``(carry, ys, info)``.

    Raises:
        ValueError: a bad tol, max_iter or fallback; a carry leaf without the batch axes.
        TypeError: carry leaves that are not all of one floating dtype.

    Examples:
        >>> def step(p, h, x):
        ...     h = jnp.tanh(p * h + x)
        ...     return h, 2 * h
        >>> xs = jnp.linspace(-1.0, 1.0, 24).reshape(12, 2, 1)
        >>> h, ys, info = solve_step(step, 0.5, jnp.zeros((2, 1)), xs, None)
        >>> h_ref, ys_ref = jax.lax.scan(lambda h, x: step(0.5, h, x), jnp.zeros((2, 1)), xs)
        >>> bool(info.converged), bool(jnp.abs(ys - ys_ref).max() < 1e-5)
        (True, True)
    """
    check_options("deer", tol, max_iter, fallback, where)
    _check_linear_method(linear_method, where)
    batch_ndim = np.ndim(valid) - 1 if valid is not None else np.ndim(jax.tree.leaves(xs)[0]) - 2
    _check_carry(carry0, batch_ndim, where)
    system = _StepSystem(step=step)
    return _run(
        system, params, carry0, xs, valid, reverse=reverse, tol=tol, max_iter=max_iter,
        fallback=fallback, unroll=unroll, linear_method=linear_method,
    )  # fmt: skip


def builtin(step: Callable) -> tuple[CellSpec, dict] | None:
    """``(spec, options)`` when ``step`` is a built-in cell's step, or a
    ``functools.partial`` of one with only its options as keywords; else None.

    Examples:
        >>> import functools, jaxrnn
        >>> spec, options = builtin(functools.partial(jaxrnn.gru_step, reset_after=False))
        >>> spec.kind, options
        ('gru', {'reset_after': False})
    """
    options: dict = {}
    if isinstance(step, functools.partial) and not step.args:
        options = dict(step.keywords)
        step = step.func
    for spec in specs():
        if spec.step is step and set(options) <= set(spec.options):
            return spec, options
    return None


# --- the two kinds of system: the built-in cells (closed forms) and any step (jvp) -----


@dataclasses.dataclass(frozen=True)
class _CellSystem:
    """A built-in cell: ``J`` in closed form (``jacobians.py``)."""

    step: Callable  # (params, carry, x) -> (carry, y), options bound
    closed: Callable  # jacobians.rnn / lstm / gru, options bound
    k: int  # state fields: 1 (h) or 2 (h, c)
    structure: str  # "blocks" or "dense"

    y_is_h = True  # the step's output is its new h, the first field of the state

    def prepare(self, params, xs):
        return jacobians.project(params, xs)  # x W: the same at every iteration

    def linearise(self, params, xw, prev, layout):
        lin = self.closed(params, xw, *jnp.split(prev, self.k, -1), structure=self.structure)
        return _concat(lin.state), lin.jac


@dataclasses.dataclass(frozen=True)
class _StepSystem:
    """Any step: ``J`` column by column, by ``jax.linearize`` and a vmap over the columns."""

    step: Callable

    k = None
    structure = "dense"
    y_is_h = False

    def prepare(self, params, xs):
        return xs

    def linearise(self, params, xs, prev, layout):
        def f(p):
            return layout.pack(_vstep(self.step)(params, layout.unpack(p), xs)[0], lead=1)

        new, f_jvp = jax.linearize(f, prev)
        size = prev.shape[-1]
        eye = jnp.eye(size, dtype=prev.dtype).reshape(size, *[1] * (prev.ndim - 1), size)
        basis = jnp.broadcast_to(eye, (size, *prev.shape))  # column j: e_j at every (t, b)
        columns = jax.vmap(f_jvp)(basis)  # (D_in, T, ..., D_out)
        return new, jnp.moveaxis(columns, 0, -1)


class _Layout(NamedTuple):
    """How a carry pytree ravels into ``(*batch, D)`` (its leaves concatenated) and back."""

    treedef: Any
    shapes: tuple  # each leaf's feature shape (after the batch axes)
    batch_ndim: int

    def pack(self, carry, lead: int = 0):
        n = lead + self.batch_ndim
        return _concat([a.reshape(*a.shape[:n], -1) for a in jax.tree.leaves(carry)])

    def unpack(self, s):
        ends = np.cumsum([math.prod(shape) for shape in self.shapes]).tolist()
        parts = jnp.split(s, ends[:-1], -1) if len(ends) > 1 else [s]
        leaves = [
            a.reshape(*a.shape[:-1], *shape) for a, shape in zip(parts, self.shapes, strict=True)
        ]
        return jax.tree.unflatten(self.treedef, leaves)

    def fields(self):
        """The slice of each leaf in ``D``."""
        ends = np.cumsum([math.prod(shape) for shape in self.shapes]).tolist()
        return tuple(slice(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True))


def _concat(parts):
    return jnp.concatenate(parts, -1) if len(parts) > 1 else parts[0]


def _check_carry(carry: Any, batch_ndim: int, where: str) -> None:
    leaves = jax.tree.leaves(carry)
    if not leaves:
        raise ValueError(f"{where}: method='deer' needs a carry holding arrays, got {carry!r}.")
    dtypes = sorted({str(jnp.result_type(a)) for a in leaves})
    if len(dtypes) != 1 or not jnp.issubdtype(dtypes[0], jnp.floating):
        raise TypeError(
            f"{where}: method='deer' needs the carry's leaves to share one floating dtype "
            f"(Newton's method differentiates the step by the carry); got {dtypes}. Use "
            "method='sequential' for integer or mixed carries."
        )
    for path, leaf in jax.tree_util.tree_flatten_with_path(carry)[0]:
        if np.ndim(leaf) <= batch_ndim:
            raise ValueError(
                f"{where}: carry{jax.tree_util.keystr(path)}.shape={np.shape(leaf)}; "
                f"method='deer' needs every carry leaf to have the {batch_ndim} batch axes of "
                "xs and then feature axes, (*batch, features...). Give it one (a[..., None]) "
                "or use method='sequential'."
            )


# --- the driver ---------------------------------------------------------------------------


class _Config(NamedTuple):
    """The static choices of one solve."""

    tol: float
    max_iter: int
    fallback: str | None
    unroll: int | bool
    linear_method: str  # "associative" or "chunked"


@dataclasses.dataclass(frozen=True)
class _Problem:
    """A system, its carry layout and the solve's options: everything static."""

    system: Any  # _CellSystem or _StepSystem
    layout: _Layout
    config: _Config

    @property
    def structure(self):
        return self.system.structure

    def linearise(self, params, ctx, prev):
        """``(f(P_t, x_t), J_t)`` for all ``t`` (unmasked)."""
        return self.system.linearise(params, ctx, prev, self.layout)

    def step(self, params, prev, x, v):
        """The exact masked step on packed states: ``where(v, f(P, x), P)``."""
        layout = self.layout
        new = layout.pack(self.system.step(params, layout.unpack(prev), x)[0])
        return new if v is None else _where(v, new, prev)

    def steps(self, params, prev, xs, valid):
        """``step`` at every time step at once, ``(T, ..., D)``."""
        return jax.vmap(self.step, in_axes=(None, 0, 0, 0 if valid is not None else None))(
            params, prev, xs, valid
        )


def _run(system, params, carry0, xs, valid, *, reverse, **options):
    """Both ``solve``s after their checks: ``options`` are ``_Config``'s fields (None: default)."""
    dtype = jnp.result_type(jax.tree.leaves(carry0)[0])
    tol, max_iter = options.pop("tol"), options.pop("max_iter")
    config = _Config(
        tol=float(default_tol(dtype) if tol is None else tol),
        max_iter=int(DEFAULT_MAX_ITER if max_iter is None else max_iter),
        linear_method=options.pop("linear_method") or default_linear_method(),
        **options,
    )
    first = jax.tree.leaves(xs)[0]
    batch_ndim = valid.ndim - 1 if valid is not None else first.ndim - 2
    leaves, treedef = jax.tree.flatten(carry0)
    layout = _Layout(treedef, tuple(np.shape(a)[batch_ndim:] for a in leaves), batch_ndim)
    # one abstract step: the step's own checks (shapes, dtypes) and the outputs' shapes
    x_shape = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
    y_shape = jax.eval_shape(system.step, params, carry0, x_shape)[1]
    if first.shape[0] == 0:  # T = 0: the initial carry, no outputs
        ys = jax.tree.map(lambda s: jnp.zeros((0, *s.shape), s.dtype), y_shape)
        info = NewtonInfo(jnp.zeros((), jnp.int32), jnp.zeros((), dtype), jnp.ones((), bool))
        return carry0, ys, info
    if reverse:
        xs = jax.tree.map(lambda a: jnp.flip(a, 0), xs)
        valid = None if valid is None else jnp.flip(valid, 0)
    problem = _Problem(system, layout, config)
    s0 = layout.pack(carry0)
    states, info = _trajectory(problem, params, s0, xs, valid)  # (T, ..., D)
    if system.y_is_h:
        ys = states[..., : states.shape[-1] // system.k]
        if valid is not None:
            ys = _where(valid, ys, jnp.zeros((), ys.dtype))
    else:
        ys = _vstep(system.step)(params, layout.unpack(_previous(s0, states)), xs)[1]
        if valid is not None:
            ys = jax.tree.map(lambda y: _where(valid, y, jnp.zeros_like(y)), ys)
    if reverse:
        ys = jax.tree.map(lambda a: jnp.flip(a, 0), ys)
    return layout.unpack(states[-1]), ys, info


def _vstep(step):
    return jax.vmap(step, in_axes=(None, 0, 0))


def _previous(s0, states):
    """``P_t = s_{t-1}``: the state each step reads, ``(T, ..., D)``."""
    return jnp.concatenate([s0[None], states[:-1]], 0)


def _shift_back(a, axis=0):
    """``a_{t+1}`` at ``t``, zero at ``T-1`` (time along ``axis``)."""
    a = jnp.moveaxis(a, axis, 0)
    return jnp.moveaxis(jnp.concatenate([a[1:], jnp.zeros_like(a[:1])], 0), 0, axis)


def _where(valid, new, old):
    """``where(valid, new, old)``, ``valid`` ``(T, *batch)`` broadcast over trailing axes."""
    return jnp.where(valid.reshape(valid.shape + (1,) * (jnp.ndim(new) - valid.ndim)), new, old)


# --- the linear structures --------------------------------------------------------------
#
# States are (T, ..., D). "dense" Jacobians are (T, ..., D, D); "blocks" Jacobians are
# (k, k, T, ..., H), the block axes first (see linear_blocks), acting on the fields
# (k, T, ..., H) of the state.


def _time_axis(problem):
    """The time axis of the Jacobians."""
    return 2 if problem.structure == "blocks" else 0


def _mask(problem, valid, f, jac, prev):
    """Pass the state through at invalid steps: ``f = P``, ``J = I``."""
    if valid is None:
        return f, jac
    if problem.structure == "blocks":
        k = problem.system.k
        eye = jnp.eye(k, dtype=jac.dtype).reshape(k, k, *[1] * (jac.ndim - 2))
        v = valid.reshape(1, 1, *valid.shape, *[1] * (jac.ndim - 2 - valid.ndim))
        return _where(valid, f, prev), jnp.where(v, jac, eye)
    return _where(valid, f, prev), _where(valid, jac, jnp.eye(jac.shape[-1], dtype=jac.dtype))


def _fields(problem, s):
    """``(..., k·H) -> (k, ..., H)``."""
    return jnp.stack(jnp.split(s, problem.system.k, -1))


def _apply(problem, jac, s):
    """``J_t s_t`` for all ``t``, ``(T, ..., D)``."""
    if problem.structure == "blocks":
        s_k = jnp.split(s, problem.system.k, -1)
        return _concat([sum(j_ab * s_b for j_ab, s_b in zip(row, s_k, strict=True)) for row in jac])
    return jnp.einsum("...ij,...j->...i", jac, s)


def _transpose(problem, jac):
    axes = (0, 1) if problem.structure == "blocks" else (-2, -1)
    return jnp.swapaxes(jac, *axes)


def _linear_solve(problem, jac, b, s0, *, reverse=False):
    """All states of ``s_t = J_t s_{t-1} + b_t`` (``s_{t+1}`` when ``reverse``), ``(T, ..., D)``."""
    method = problem.config.linear_method
    if problem.structure == "dense":
        return linear_blocks.dense(jac, b, s0, method=method, reverse=reverse)
    if problem.system.k == 1:
        return linear.diagonal(jac[0, 0], b, s0, method=method, reverse=reverse)
    s = linear_blocks.blocks(
        jac, _fields(problem, b), _fields(problem, s0), method=method, reverse=reverse
    )
    return _concat(list(s))


# --- the iterations -----------------------------------------------------------------------


def _relative_change(problem, new, old):
    """``max over fields of max|new − old| / max|new|``; inf when ``new`` is not finite."""
    tiny = jnp.finfo(new.dtype).tiny
    worst = jnp.zeros((), new.dtype)
    for field in problem.layout.fields():
        change = jnp.max(jnp.abs(new[..., field] - old[..., field]))
        worst = jnp.maximum(worst, change / (jnp.max(jnp.abs(new[..., field])) + tiny))
    return jnp.where(jnp.all(jnp.isfinite(new)), worst, jnp.inf)


def _iterate(problem, update, start):
    """``s ← update(s)`` until the relative change is at most ``tol``, or ``max_iter``
    times, or a non-finite iterate (which is dropped). Returns ``(s, NewtonInfo)``.

    Below ``tol`` the iterations go on towards ``tol / 10`` while each still at least
    halves the change (see "Stopping" above): converging fast, a few more iterations
    cut the error several-fold; at the rounding floor, or converging slowly, they stop.
    """
    config = problem.config

    def cond(carry):
        k, _, residual, previous = carry
        refining = (residual > config.tol / 10) & (residual <= 0.5 * previous)
        return (
            (k < config.max_iter) & ((residual > config.tol) | refining) & ~jnp.isposinf(residual)
        )

    def body(carry):
        k, s, residual, _ = carry
        new = update(s)
        change = _relative_change(problem, new, s)
        return k + 1, jnp.where(jnp.isfinite(change), new, s), change, residual

    big = jnp.full((), jnp.finfo(start.dtype).max, start.dtype)  # "not yet measured"
    zero = jnp.zeros((), jnp.int32)
    k, s, residual, _ = jax.lax.while_loop(cond, body, (zero, start, big, big))
    return s, NewtonInfo(k, residual, residual <= config.tol)


def _forward(problem, params, s0, xs, valid):
    """Newton's iterations, then the fallback: ``(states (T, ..., D), NewtonInfo)``."""
    ctx = problem.system.prepare(params, xs)

    def newton_step(states):
        prev = _previous(s0, states)
        f, jac = _mask(problem, valid, *problem.linearise(params, ctx, prev), prev)
        return _linear_solve(problem, jac, f - _apply(problem, jac, prev), s0)

    num_steps = jax.tree.leaves(xs)[0].shape[0]
    states, info = _iterate(problem, newton_step, jnp.broadcast_to(s0, (num_steps, *s0.shape)))
    if problem.config.fallback == "sequential":
        states = jax.lax.cond(
            info.converged, lambda: states, lambda: _sequential(problem, params, s0, xs, valid)
        )
    return states, info


def _sequential(problem, params, s0, xs, valid):
    """The step-by-step scan: all states ``(T, ..., D)``."""

    def body(s, inp):
        new = problem.step(params, s, *inp)
        return new, new

    return jax.lax.scan(body, s0, (xs, valid), unroll=problem.config.unroll)[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _trajectory(problem, params, s0, xs, valid):
    return _forward(problem, params, s0, xs, valid)


def _trajectory_fwd(problem, params, s0, xs, valid):
    states, info = _forward(problem, params, s0, xs, valid)
    return (states, info), (params, s0, xs, valid, states)


def _trajectory_bwd(problem, residuals, cotangents):
    params, s0, xs, valid, states = residuals
    g = cotangents[0]  # (T, ..., D); NewtonInfo carries no gradient
    prev = _previous(s0, states)
    _, vjp = jax.vjp(lambda p, pr, x: problem.steps(p, pr, x, valid), params, prev, xs)
    lam = _adjoint(problem, params, xs, valid, prev, g)
    d_params, d_prev, d_xs = vjp(lam)
    d_valid = None if valid is None else np.zeros(valid.shape, jax.dtypes.float0)
    return d_params, d_prev[0], d_xs, d_valid


_trajectory.defvjp(_trajectory_fwd, _trajectory_bwd)


def _adjoint(problem, params, xs, valid, prev, g):
    """``λ_t = g_t + J_{t+1}ᵀ λ_{t+1}`` (``λ_{T-1} = g_{T-1}``), ``(T, ..., D)``."""
    ctx = problem.system.prepare(params, xs)
    _, jac = _mask(problem, valid, prev, problem.linearise(params, ctx, prev)[1], prev)
    jac_t = _transpose(problem, jac)
    zero = jnp.zeros_like(g[0])
    if problem.structure == "dense":  # the exact J: one solve
        return _linear_solve(problem, _shift_back(jac_t), g, zero, reverse=True)
    jac_next = _shift_back(jac_t, _time_axis(problem))  # J_{t+1}ᵀ at t
    # quasi-DEER's blocks are part of J: λ ← solve(blocksᵀ, g + (Jᵀλ − blocksᵀλ)_{t+1}),
    # the exact products Jᵀλ by one vjp of all the steps
    _, vjp_prev = jax.vjp(lambda pr: problem.steps(params, pr, xs, valid), prev)

    def update(lam):
        rest = vjp_prev(lam)[0] - _apply(problem, jac_t, lam)
        return _linear_solve(problem, jac_next, g + _shift_back(rest), zero, reverse=True)

    lam, info = _iterate(problem, update, jnp.zeros_like(g))
    if problem.config.fallback == "sequential":
        lam = jax.lax.cond(
            info.converged,
            lambda: lam,
            lambda: _sequential_adjoint(problem, params, prev, xs, valid, g),
        )
    return lam


def _sequential_adjoint(problem, params, prev, xs, valid, g):
    """``λ_t = g_t + J_{t+1}ᵀ λ_{t+1}`` step by step, from the end."""

    def body(jt_lam, inp):  # jt_lam = J_{t+1}ᵀ λ_{t+1}
        p, x, v, g_t = inp
        lam = g_t + jt_lam
        _, vjp = jax.vjp(lambda p: problem.step(params, p, x, v), p)
        return vjp(lam)[0], lam

    return jax.lax.scan(body, jnp.zeros_like(g[0]), (prev, xs, valid, g), reverse=True)[1]
