"""Newton evaluation over time (``jaxrnn._time.newton``, ``unroll(method=...)``).

Every result is checked against the sequential ``lax.scan`` of the same step
(itself checked against float64 NumPy, Keras and PyTorch elsewhere): values to
1e-5, gradients (parameters, inputs, initial state) to 1e-5 relative
(``max|g − g_ref| / max|g_ref|``); the closed-form Jacobians against
``jax.jacfwd``. float32 throughout; no timings.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn._cells.spec import spec_of
from jaxrnn._time import jacobians, linear_blocks, newton
from jaxrnn._unroll import scan_segment

INIT = {"rnn": jaxrnn.init_rnn, "lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru}
STEP = {"rnn": jaxrnn.rnn_step, "lstm": jaxrnn.lstm_step, "gru": jaxrnn.gru_step}
I = 3


def _normal(seed, shape, scale=1.0):
    """float32 normal samples from NumPy (no compile per shape, unlike eager jax.random)."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _params(cell, hidden, *, scale=1.0, seed=0, **init_options):
    """Keras' initialisation, small random biases (so that every term is tested)."""
    p = INIT[cell](jax.random.key(seed), I, hidden, **init_options)
    biases = {
        name: _normal(seed + k + 1, getattr(p, name).shape, 0.1)
        for k, name in enumerate(p._fields)
        if "bias" in name and getattr(p, name) is not None
    }
    return p._replace(recurrent_kernel=scale * p.recurrent_kernel, **biases)


def _carry(p, batch, seed=7):
    zeros = spec_of(p).zero_state(p, (batch,))
    leaves = [_normal(seed + i, a.shape, 0.5) for i, a in enumerate(jax.tree.leaves(zeros))]
    return jax.tree.unflatten(jax.tree.structure(zeros), leaves)


def _relative(got, want):
    """The largest ``max|g − w| / max|w|`` over the leaves."""
    worst = 0.0
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = float(jnp.max(jnp.abs(w))) if w.size else 0.0
        worst = max(worst, float(jnp.max(jnp.abs(g - w))) / scale if scale else 0.0)
    return worst


def _loss_and_grads(step, method, **kw):
    """jit(value_and_grad) of a loss of every output and the final carry, with the outputs."""

    def loss(p, xs, carry, w):
        out = jaxrnn.unroll(step, p, xs, carry, method=method, return_info=True, **kw)
        final, ys, info = out
        total = jnp.sum(ys * w) + sum(jnp.sum(1.3 * a) for a in jax.tree.leaves(final))
        return total, (final, ys, info)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _compare(step, p, xs, carry, method, *, atol=1e-5, grad_rtol=1e-5, **kw):
    """Values and gradients of ``method`` against ``"sequential"``; returns the NewtonInfo.

    With ``seq_lengths``, the padding of ``xs`` is NaN: it must reach no value and no
    gradient (the gradient of the padding is exactly zero).
    """
    if kw.get("seq_lengths") is not None:
        lengths = np.asarray(kw["seq_lengths"])
        pad = (np.arange(xs.shape[1])[None, :] >= lengths[:, None])[..., None]  # (B, T, 1)
        xs = jnp.where(pad, jnp.nan, xs)
    w = _normal(99, xs.shape[:2] + (p.recurrent_kernel.shape[0],))
    (_, (final, ys, info)), grads = _loss_and_grads(step, method, **kw)(p, xs, carry, w)
    (_, (final_ref, ys_ref, _)), grads_ref = _loss_and_grads(step, "sequential", **kw)(
        p, xs, carry, w
    )
    assert bool(info.converged), info
    np.testing.assert_allclose(ys, ys_ref, atol=atol)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(final_ref), strict=True):
        np.testing.assert_allclose(a, b, atol=atol)
    for name, g, g_ref in zip(("params", "xs", "carry"), grads, grads_ref, strict=True):
        assert all(np.isfinite(a).all() for a in jax.tree.leaves(g)), name
        assert _relative(g, g_ref) <= grad_rtol, (name, _relative(g, g_ref))
    if kw.get("seq_lengths") is not None:
        np.testing.assert_array_equal(jnp.where(pad, grads[1], 0.0), 0.0)
    return info


# -- values and gradients against the sequential scan ---------------------------------
#
# Compiling a Newton program (iterations, fallback, adjoint) takes a second or two, so
# each case below packs several properties into one compiled program.


def _case(cell, options, steps, batch, hidden, seed=0):
    init = {"reset_after": options["reset_after"]} if "reset_after" in options else {}
    p = _params(cell, hidden, seed=seed, **init)
    step = functools.partial(STEP[cell], **options) if options else STEP[cell]
    xs = _normal(seed + 10, (batch, steps, I))
    return step, p, xs, _carry(p, batch)


LONG = [  # (cell, method, reverse): T = 1000, lengths (NaN padding), a random initial state
    ("rnn", "quasi_deer", False),
    ("rnn", "deer", True),
    ("lstm", "quasi_deer", True),
    ("lstm", "deer", False),
    ("gru", "quasi_deer", False),
    ("gru", "deer", True),
]


@pytest.mark.parametrize("cell, method, reverse", LONG)
def test_long_sequences(cell, method, reverse):
    step, p, xs, carry = _case(cell, {}, 1000, 3, 8)
    lengths = jnp.array([1000, 613, 0])
    info = _compare(step, p, xs, carry, method, seq_lengths=lengths, reverse=reverse)
    assert 2 <= int(info.iterations) <= 60, info


@pytest.mark.parametrize("cell, method", [("lstm", "quasi_deer")])
def test_associative_linear_solves(cell, method):
    # the default on CPU is "chunked"; the associative scan (GPU/TPU) gives the same
    # (test_linear_solvers_equal_a_loop checks both solvers of both structures)
    step, p, xs, carry = _case(cell, {}, 500, 2, 8, seed=5)
    spec, xs_t = spec_of(p), jnp.swapaxes(xs, 0, 1)
    valid = jnp.arange(500)[:, None] < jnp.array([500, 321])[None]
    xs_t = jnp.where(valid[..., None], xs_t, 0.0)

    def loss(p, xs, carry, linear_method):
        if linear_method is None:
            final, ys = scan_segment(step, p, carry, xs, valid, reverse=True, unroll=1)
        else:
            final, ys, _ = newton.solve(spec, {}, p, carry, xs, valid, method=method,
                                        reverse=True, linear_method=linear_method)  # fmt: skip
        return jnp.sum(ys**2) + jnp.sum(final.h if cell == "lstm" else final), ys

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    (_, ys), grads = run(p, xs_t, carry, "associative")
    (_, ys_ref), grads_ref = run(p, xs_t, carry, None)
    np.testing.assert_allclose(ys, ys_ref, atol=1e-5)
    assert _relative(grads, grads_ref) < 1e-5


SHORT = [  # (cell, options, method): T = 7, reversed within the lengths; the closed forms
    # LONG leaves out, and activations other than the defaults (differentiated by jvp)
    ("rnn", {"activation": "relu"}, "quasi_deer"),
    ("lstm", {"activation": jax.nn.soft_sign, "recurrent_activation": "hard_sigmoid"}, "deer"),
    ("gru", {"reset_after": False, "activation": "elu"}, "quasi_deer"),
    ("gru", {"reset_after": False, "activation": "elu"}, "deer"),
]


@pytest.mark.parametrize("cell, options, method", SHORT)
def test_short_sequences(cell, options, method):
    step, p, xs, carry = _case(cell, options, 7, 3, 8, seed=1)
    info = _compare(step, p, xs, carry, method, reverse=True, seq_lengths=jnp.array([7, 4, 0]))
    assert int(info.iterations) <= 8  # causality: T iterations make all states exact


@pytest.mark.parametrize("method", ["quasi_deer", "deer"])
def test_one_step_without_lengths(method):
    step, p, xs, carry = _case("lstm", {}, 1, 2, 8, seed=2)
    _compare(step, p, xs, carry, method)


def test_gru_quasi_deer_ten_thousand_steps():
    step, p, xs, carry = _case("gru", {}, 10_000, 2, 8, seed=3)
    info = _compare(step, p, xs, carry, "quasi_deer")
    assert int(info.iterations) <= 16, info  # 10 at Keras' initialisation


@pytest.mark.parametrize("method", ["quasi_deer", "deer"])
def test_zero_steps(method):
    p = _params("lstm", 4)
    carry = _carry(p, 2)
    xs = jnp.zeros((2, 0, I))
    final, ys, info = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, method=method,
                                    return_info=True)  # fmt: skip
    assert ys.shape == (2, 0, 4)
    np.testing.assert_array_equal(final.c, carry.c)
    assert int(info.iterations) == 0 and bool(info.converged)
    grad = jax.grad(lambda c: jnp.sum(jaxrnn.unroll(jaxrnn.lstm_step, p, xs, c,
                                                    method=method)[0].h))(carry)  # fmt: skip
    np.testing.assert_array_equal(grad.h, 1.0)


# -- vmap, jit, batch axes ----------------------------------------------------------


def test_vmap_and_jit_equal_the_sequential_loop():
    p = _params("gru", 6)
    xs = _normal(6, (3, 2, 40, I))  # 3 problems of batch 2
    carry = jnp.zeros((2, 6))

    def run(xs, method="quasi_deer"):
        return jaxrnn.unroll(jaxrnn.gru_step, p, xs, carry, method=method)[1]

    sequential = jax.jit(functools.partial(run, method="sequential"))
    want = jnp.stack([sequential(x) for x in xs])
    np.testing.assert_allclose(jax.jit(jax.vmap(run))(xs), want, atol=1e-5)
    g = jax.jit(jax.vmap(jax.grad(lambda x: jnp.sum(run(x) ** 2))))(xs)
    g_ref = jax.jit(jax.vmap(jax.grad(lambda x: jnp.sum(sequential(x) ** 2))))(xs)
    assert _relative(g, g_ref) < 1e-5


def test_several_batch_axes_and_builtin_deer():
    p = _params("lstm", 5)
    xs = _normal(8, (30, 2, 3, I))  # time-major, batch (2, 3)
    carry = spec_of(p).zero_state(p, (2, 3))
    out = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, time_major=True, method="deer")
    ref = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, time_major=True)
    np.testing.assert_allclose(out[1], ref[1], atol=1e-5)
    np.testing.assert_allclose(out[0].c, ref[0].c, atol=1e-5)


# -- convergence, fallback, non-finite iterates ---------------------------------------


@pytest.fixture(scope="module")
def unstable_lstm():
    """The recurrent kernel ×4: quasi-DEER does not converge in 30 iterations."""
    p = _params("lstm", 16, scale=4.0)
    xs = _normal(9, (2, 1000, I))
    return p, xs, spec_of(p).zero_state(p, (2,))


def test_no_convergence_falls_back_to_the_sequential_scan(unstable_lstm):
    p, xs, carry = unstable_lstm
    kw = dict(method="quasi_deer", max_iter=30, return_info=True)
    final, ys, info = jax.jit(lambda p, xs: jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, **kw))(
        p, xs
    )
    final_ref, ys_ref = jax.jit(lambda p, xs: jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry))(p, xs)
    assert not bool(info.converged) and int(info.iterations) <= 30
    np.testing.assert_allclose(ys, ys_ref, atol=1e-6)
    np.testing.assert_allclose(final.c, final_ref.c, atol=1e-6)
    # the adjoint falls back too: the gradients are the sequential scan's
    grad = jax.jit(jax.grad(lambda p: jnp.sum(jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry,
                                                            method="quasi_deer", max_iter=30)[1])))  # fmt: skip
    grad_ref = jax.jit(
        jax.grad(lambda p: jnp.sum(jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry)[1]))
    )
    assert _relative(grad(p), grad_ref(p)) < 1e-5


def test_no_convergence_without_fallback_returns_a_finite_iterate(unstable_lstm):
    p, xs, carry = unstable_lstm
    final, ys, info = jaxrnn.unroll(jaxrnn.lstm_step, p, xs, carry, method="quasi_deer",
                                    max_iter=30, fallback=None, return_info=True)  # fmt: skip
    assert not bool(info.converged) and int(info.iterations) <= 30
    assert np.isfinite(ys).all() and np.isfinite(final.c).all()


def test_a_non_finite_iterate_is_never_returned():
    # SimpleRNN ×4: the first linearisation (about the zero guess) has |J_ii| > 1, so
    # its linear recurrence overflows over 1000 steps
    p = _params("rnn", 16, scale=4.0)
    xs = _normal(10, (2, 1000, I))
    carry = jnp.zeros((2, 16))

    @functools.partial(jax.jit, static_argnames=("method", "fallback"))
    def run(p, xs, method, fallback="sequential"):
        return jaxrnn.unroll(jaxrnn.rnn_step, p, xs, carry, method=method, fallback=fallback,
                             return_info=True)  # fmt: skip

    for method in ("quasi_deer", "deer"):
        final, ys, info = run(p, xs, method, None)
        assert not bool(info.converged) and not np.isfinite(info.residual)
        assert np.isfinite(ys).all() and np.isfinite(final).all()
    final, ys, info = run(p, xs, "quasi_deer")
    np.testing.assert_allclose(ys, run(p, xs, "sequential")[1], atol=1e-6)


def test_return_info_of_the_sequential_method():
    p = _params("gru", 4)
    out = jaxrnn.unroll(jaxrnn.gru_step, p, jnp.ones((2, 5, I)), jnp.zeros((2, 4)),
                        return_info=True)  # fmt: skip
    assert len(out) == 3 and int(out[2].iterations) == 0 and bool(out[2].converged)


# -- your own step: DEER by jax.linearize ----------------------------------------------


def _own_step(p, carry, x):
    """A two-leaf carry of different feature shapes; an output that is not the carry."""
    a, b = carry["a"], carry["b"]  # (B, 3), (B, 2, 2)
    a_new = jnp.tanh(a @ p["w"] + x @ p["u"] + b.reshape(b.shape[0], 4)[:, :3])
    b_new = 0.9 * b * jax.nn.sigmoid(a_new[:, :1, None]) + 0.1
    return {"a": a_new, "b": b_new}, jnp.concatenate([a_new, 2.0 * a], -1)


def test_deer_of_your_own_step():
    p = {"w": _normal(11, (3, 3), 0.5), "u": _normal(12, (I, 3))}
    xs = _normal(13, (2, 200, I))
    carry = {"a": jnp.zeros((2, 3)), "b": jnp.ones((2, 2, 2))}
    lengths = jnp.array([200, 77])

    def loss(p, xs, carry, method):
        final, ys, info = jaxrnn.unroll(_own_step, p, xs, carry, seq_lengths=lengths,
                                        reverse=True, method=method, return_info=True)  # fmt: skip
        return jnp.sum(ys**2) + jnp.sum(final["b"]), (final, ys, info)

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    (_, (final, ys, info)), grads = run(p, xs, carry, "deer")
    (_, (final_ref, ys_ref, _)), grads_ref = run(p, xs, carry, "sequential")
    assert bool(info.converged) and int(info.iterations) < 20
    np.testing.assert_allclose(ys, ys_ref, atol=1e-5)
    np.testing.assert_allclose(final["b"], final_ref["b"], atol=1e-5)
    assert _relative(grads, grads_ref) < 1e-5


# -- the closed-form Jacobians against jax.jacfwd -------------------------------------

JACOBIAN_CASES = [
    ("rnn", {}),
    ("rnn", {"activation": "relu"}),
    ("lstm", {}),
    ("lstm", {"activation": jax.nn.soft_sign, "recurrent_activation": "hard_sigmoid"}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("gru", {"reset_after": False, "activation": "elu"}),
]


@pytest.mark.parametrize("cell, options", JACOBIAN_CASES)
def test_closed_form_jacobians_equal_jacfwd(cell, options):
    init = {"reset_after": options["reset_after"]} if "reset_after" in options else {}
    p = _params(cell, 5, **init)
    spec = spec_of(p)
    x = _normal(12, (3, I))
    carry = _carry(p, 3)
    parts = spec.state_parts(carry)
    k, hidden = len(parts), 5
    step = functools.partial(spec.step, **options)
    closed = functools.partial(jacobians.CLOSED_FORMS[cell], **options)

    def flat_step(s, x):  # one sequence: (k·H,) -> (k·H,)
        new = step(p, spec.make_state(tuple(jnp.split(s, k))), x)[0]
        return jnp.concatenate(spec.state_parts(new))

    @jax.jit
    def everything(parts, x):
        xw = jacobians.project(p, x)
        dense = closed(p, xw, *parts, structure="dense")
        blocks = closed(p, xw, *parts, structure="blocks")
        want = jax.vmap(jax.jacfwd(flat_step))(jnp.concatenate(parts, -1), x)  # (B, k·H, k·H)
        return dense, blocks, flat_step(jnp.concatenate(parts, -1)[0], x[0]), want

    dense, blocks, new, want = everything(parts, x)
    for got in (dense.state, blocks.state):
        np.testing.assert_allclose(jnp.concatenate(got, -1)[0], new, atol=1e-6)
    np.testing.assert_allclose(dense.jac, want, atol=1e-5)
    # the blocks: entry (i, j, b, u) = ∂s'_i[u] / ∂s_j[u]
    by_field = want.reshape(3, k, hidden, k, hidden)
    diag = jnp.moveaxis(jnp.diagonal(by_field, axis1=2, axis2=4), 0, 2)  # (k, k, B, H)
    np.testing.assert_allclose(blocks.jac, diag, atol=1e-5)


@pytest.mark.parametrize("method", ["associative", "chunked"])
def test_linear_solvers_equal_a_loop(method):
    a = _normal(13, (9, 2, 3, 3), 0.5)  # dense (T, B, D, D)
    b = _normal(14, (9, 2, 3))
    s0 = _normal(15, (2, 3))
    ab = _normal(16, (2, 2, 9, 2, 3), 0.5)  # blocks (k, k, T, B, H)
    bb = _normal(17, (2, 9, 2, 3))
    s0b = _normal(18, (2, 2, 3))
    dense = jax.jit(linear_blocks.dense, static_argnames=("method", "reverse"))
    blocks = jax.jit(linear_blocks.blocks, static_argnames=("method", "reverse"))
    a64, b64, s064, ab64, bb64, s0b64 = (np.asarray(v, np.float64) for v in (a, b, s0, ab, bb, s0b))
    for reverse in (False, True):  # a float64 NumPy loop
        order = range(8, -1, -1) if reverse else range(9)
        s, sb, want, want_b = s064, s0b64, [None] * 9, [None] * 9
        for t in order:
            s = np.einsum("bij,bj->bi", a64[t], s) + b64[t]
            sb = np.einsum("ijbh,jbh->ibh", ab64[:, :, t], sb) + bb64[:, t]
            want[t], want_b[t] = s, sb
        got = dense(a, b, s0, method=method, reverse=reverse)
        np.testing.assert_allclose(got, jnp.stack(want), atol=1e-5)
        got_b = blocks(ab, bb, s0b, method=method, reverse=reverse)
        np.testing.assert_allclose(got_b, jnp.stack(want_b, 1), atol=1e-5)


# -- errors -------------------------------------------------------------------------


def _unroll(**kw):
    p = _params("gru", 4)
    return jaxrnn.unroll(jaxrnn.gru_step, p, jnp.ones((2, 5, I)), jnp.zeros((2, 4)), **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"method": "newton"}, "method='newton'"),
        ({"method": "deer", "tol": 0.0}, "tol=0.0"),
        ({"method": "deer", "tol": -1e-5}, "tol=-1e-05"),
        ({"method": "deer", "tol": float("nan")}, "tol=nan"),
        ({"method": "deer", "tol": "1e-5"}, "tol='1e-5'"),
        ({"method": "deer", "tol": True}, "tol=True"),
        ({"method": "deer", "max_iter": 0}, "max_iter=0"),
        ({"method": "deer", "max_iter": 2.5}, "max_iter=2.5"),
        ({"method": "deer", "max_iter": True}, "max_iter=True"),
        ({"method": "deer", "fallback": "scan"}, "fallback='scan'"),
        ({"max_iter": -1}, "max_iter=-1"),  # checked with method='sequential' too
        ({"method": "quasi_deer", "remat": "step"}, "remat='step' applies to method='sequential'"),
    ],
)
def test_bad_options_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(".", r"\.")):
        _unroll(**kw)


def test_return_info_must_be_a_bool():
    with pytest.raises(TypeError, match="return_info must be True or False"):
        _unroll(return_info="yes")


def test_quasi_deer_needs_a_builtin_step():
    def my_step(p, h, x):
        return jnp.tanh(h + x), h

    with pytest.raises(ValueError, match="got my_step. Use method='deer'"):
        jaxrnn.unroll(my_step, None, jnp.ones((2, 5, 4)), jnp.zeros((2, 4)), method="quasi_deer")
    # a partial with something other than the step's options is not recognised either
    p = _params("gru", 4)
    step = functools.partial(jaxrnn.gru_step, input_mask=jnp.ones((2, I)))
    with pytest.raises(ValueError, match="method='quasi_deer' needs the closed-form"):
        jaxrnn.unroll(step, p, jnp.ones((2, 5, I)), jnp.zeros((2, 4)), method="quasi_deer")


def test_deer_needs_a_batched_float_carry():
    def step(p, carry, x):
        h, n = carry
        return (jnp.tanh(h + x), n + 1), h

    xs = jnp.ones((2, 5, 4))
    with pytest.raises(TypeError, match="one floating dtype"):
        jaxrnn.unroll(step, None, xs, (jnp.zeros((2, 4)), jnp.zeros((2, 1), jnp.int32)),
                      method="deer")  # fmt: skip
    with pytest.raises(ValueError, match=r"carry\[1\]\.shape=\(\); method='deer' needs"):
        jaxrnn.unroll(step, None, xs, (jnp.zeros((2, 4)), jnp.zeros(())), method="deer")


def test_solve_refuses_unknown_options_and_cells():
    p = _params("gru", 4)
    spec = spec_of(p)
    xs, h = jnp.ones((5, 2, I)), jnp.zeros((2, 4))
    with pytest.raises(ValueError, match=r"cell option\(s\) \['recurrent_mask'\]"):
        newton.solve(spec, {"recurrent_mask": None}, p, h, xs, None, method="deer")
    with pytest.raises(ValueError, match="not a Newton method"):
        newton.solve(spec, {}, p, h, xs, None, method="sequential")
    with pytest.raises(ValueError, match="linear_method='fast'"):
        newton.solve(spec, {}, p, h, xs, None, method="deer", linear_method="fast")
    other = dataclasses.replace(spec, kind="other", keras="Other")  # a cell without closed forms
    with pytest.raises(ValueError, match="needs closed-form Jacobians, which the Other cell"):
        newton.solve(other, {}, p, h, xs, None, method="quasi_deer")
