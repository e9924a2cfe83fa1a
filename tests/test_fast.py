"""The fused path (impl='auto') equals the generic scan of the step functions, for every option."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import BidirectionalParams
from jaxrnn._cells.spec import spec_named
from jaxrnn._fused import lstm as fused_lstm
from jaxrnn._layers import run_layer
from tests.helpers import make, random_carry

LAYERS = {
    "rnn_tanh": (jaxrnn.simple_rnn, "rnn", {}),
    "rnn_relu": (jaxrnn.simple_rnn, "rnn", {"activation": "relu"}),
    "rnn_sigmoid": (jaxrnn.simple_rnn, "rnn", {"activation": jax.nn.sigmoid}),
    "lstm": (jaxrnn.lstm, "lstm", {}),
    # the LSTM's other backward pass (autodiff of an in-loop projection), which the
    # layers take from AUTODIFF_MIN_BATCH on, forced here at the tests' small batch
    # through the internal dispatch's keyword
    "lstm_autodiff": (
        functools.partial(run_layer, spec_named("lstm"), autodiff_min_batch=1),
        "lstm",
        {},
    ),
    "gru": (jaxrnn.gru, "gru", {}),
}
B, T, I = 3, 6, 3


def both(layer, *args, **kw):
    return layer(*args, impl="fast", **kw), layer(*args, impl="scan", **kw)


def assert_trees_close(a, b, atol=1e-5):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_allclose(u, v, atol=atol, rtol=1e-5)


OPTIONS = {
    "plain": {},
    "backwards": {"go_backwards": True},
    "lengths": {"seq_lengths": [6, 2, 0]},
    "lengths-backwards": {"seq_lengths": [4, 6, 1], "go_backwards": True},
    "mask": {"mask": [[1, 0, 1, 1, 0, 1], [1] * 6, [0] * 6]},
    "time-major": {"time_major": True, "seq_lengths": [3, 6, 5]},
    "unroll3": {"unroll": 3, "seq_lengths": [5, 6, 2]},
    "dropout": {"dropout": 0.4, "seq_lengths": [6, 5, 3]},
    "no-bias": {"no_bias": True},
}
# The simple RNN's other activations change the cell's equations only: they run with the
# options that meet them (padding in both directions, a mask's gaps, no bias); the options
# that only move data around (time-major, unroll, dropout's masks) run with tanh and the cells.
OTHER_ACTIVATIONS = {"rnn_relu", "rnn_sigmoid"}
OPTIONS_OF_OTHER_ACTIVATIONS = {"plain", "lengths-backwards", "mask", "no-bias"}


@pytest.mark.parametrize(
    "name, opts",
    [
        pytest.param(name, opts, id=f"{opt_id}-{name}")
        for opt_id, opts in OPTIONS.items()
        for name in LAYERS
        if name not in OTHER_ACTIVATIONS or opt_id in OPTIONS_OF_OTHER_ACTIVATIONS
    ],
)
def test_fast_equals_scan_outputs_and_gradients(name, opts):
    layer, cell, kw = LAYERS[name]
    opts = dict(opts)
    p, _, _ = make(cell)
    if opts.pop("no_bias", False):
        p = p._replace(bias=None)
        if cell == "gru":
            p = p._replace(recurrent_bias=None)
    s0 = random_carry(p, (B,), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (B, T, I))
    if opts.get("time_major"):
        x = jnp.swapaxes(x, 0, 1)
    if "seq_lengths" in opts:
        opts["seq_lengths"] = jnp.array(opts["seq_lengths"])
    if "mask" in opts:
        opts["mask"] = jnp.array(opts["mask"], bool)
    if "dropout" in opts:
        opts["key"] = jax.random.key(3)
    w = jax.random.normal(jax.random.key(4), (T, B, 4) if opts.get("time_major") else (B, T, 4))

    def run(p, x, s0, impl):
        return layer(
            p,
            x,
            initial_state=s0,
            return_sequences=True,
            return_state=True,
            impl=impl,
            **kw,
            **opts,
        )

    def loss(p, x, s0, impl):
        seq, final = run(p, x, s0, impl)
        return jnp.sum(seq * w) + sum(jnp.sum(jnp.sin(v)) for v in jax.tree.leaves(final))

    # the outputs (a plain call) and the gradients (the custom VJP): one compile per impl
    out_and_grad = jax.jit(
        lambda p, x, s0, impl: (
            run(p, x, s0, impl),
            jax.grad(loss, argnums=(0, 1, 2))(p, x, s0, impl),
        ),
        static_argnums=3,
    )
    (fast, g_fast), (scan, g_scan) = out_and_grad(p, x, s0, "fast"), out_and_grad(p, x, s0, "scan")
    assert_trees_close(fast, scan)
    assert_trees_close(g_fast, g_scan)


@pytest.mark.parametrize("name", ["lstm", "lstm_autodiff", "gru"])
def test_fast_bidirectional_and_stacked(name):
    layer, cell, _ = LAYERS[name]
    init = {"lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru}[cell]
    ks = jax.random.split(jax.random.key(0), 4)
    ps = [
        BidirectionalParams(init(ks[0], I, 4), init(ks[1], I, 4)),
        BidirectionalParams(init(ks[2], 8, 4), init(ks[3], 8, 4)),
    ]
    x = jax.random.normal(jax.random.key(2), (B, T, I))
    sl = jnp.array([6, 3, 1])

    def loss(ps, impl):
        bi = functools.partial(jaxrnn.bidirectional, layer, impl=impl)
        out = jaxrnn.stacked(
            bi, ps, x, seq_lengths=sl, return_sequences=True, dropout=0.3, key=ks[0]
        )
        return jnp.sum(out**2)

    # the loss (a plain call) and its gradient (the custom VJP): one compile per impl
    both = jax.jit(lambda ps, impl: (loss(ps, impl), jax.grad(loss)(ps, impl)), static_argnums=1)
    (l_fast, g_fast), (l_scan, g_scan) = both(ps, "fast"), both(ps, "scan")
    assert_trees_close(l_fast, l_scan)
    assert_trees_close(g_fast, g_scan)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "lstm_autodiff", "gru"])
def test_fast_under_vmap_over_params_jit_and_checkpoint(name):
    layer, cell, kw = LAYERS[name]
    ps = [make(cell, seed=s)[0] for s in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *ps)
    x = jax.random.normal(jax.random.key(2), (B, T, I))

    def loss(p, impl):
        return jnp.mean(layer(p, x, return_sequences=True, impl=impl, **kw) ** 2)

    g_v = jax.jit(jax.vmap(jax.grad(loss), in_axes=(0, None)), static_argnums=1)(stacked, "fast")
    g_scan = jax.jit(jax.grad(loss), static_argnums=1)  # compiled once, for every ps[k]
    for k, p in enumerate(ps):
        assert_trees_close(jax.tree.map(lambda a, k=k: a[k], g_v), g_scan(p, "scan"))
    g_ckpt = jax.jit(jax.grad(jax.checkpoint(loss, static_argnums=1)), static_argnums=1)
    assert_trees_close(g_ckpt(ps[0], "fast"), g_scan(ps[0], "scan"))


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "lstm_autodiff", "gru"])
def test_grad_of_grad_through_fast_path(name):
    """Reverse-over-reverse works through the custom VJP (its backward is differentiable)."""
    layer, cell, kw = LAYERS[name]
    p, _, _ = make(cell)
    x = jax.random.normal(jax.random.key(2), (B, T, I))

    def inner(x, impl):
        return jnp.sum(layer(p, x, impl=impl, **kw) ** 2)

    def outer(x, impl):  # a gradient penalty: ||d inner / dx||²
        return jnp.sum(jax.grad(inner)(x, impl) ** 2)

    grad = jax.jit(jax.grad(outer), static_argnums=1)  # one compile per impl, not op by op
    np.testing.assert_allclose(grad(x, "fast"), grad(x, "scan"), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_forward_mode_autodiff_runs_the_generic_scan(name):
    """jax.jvp / jacfwd / jvp of vmap / hessian through impl='auto' equal the generic
    scan's (the fused path's custom VJP has no forward mode, so 'auto' picks the scan)."""
    layer, cell, kw = LAYERS[name]
    p, _, _ = make(cell)
    x = jax.random.normal(jax.random.key(2), (B, T, I))
    lengths = jnp.array([T, 2, 0])

    def f(x, impl="auto"):
        return jnp.sum(layer(p, x, impl=impl, seq_lengths=lengths, **kw) ** 2)

    scan = functools.partial(f, impl="scan")
    t = jax.random.normal(jax.random.key(3), x.shape)
    assert_trees_close(jax.jvp(f, (x,), (t,)), jax.jvp(scan, (x,), (t,)))
    assert_trees_close(jax.jacfwd(f)(x), jax.grad(scan)(x))
    assert_trees_close(jax.jit(jax.jacfwd(f))(x), jax.grad(scan)(x))
    batched = jax.jvp(jax.vmap(f), (x[None],), (t[None],))[1][0]
    assert_trees_close(batched, jax.jvp(scan, (x,), (t,))[1])
    one = lambda x, impl="auto": jnp.sum(layer(p, x, impl=impl, **kw) ** 2)  # noqa: E731
    hess = jax.hessian(one)(x[:1])
    assert_trees_close(hess, jax.hessian(functools.partial(one, impl="scan"))(x[:1]), atol=1e-4)
    assert hess.shape == (1, T, I, 1, T, I)
    # the forward-mode choice is its own plan: a plain call keeps the fused path
    fresh = lambda x: f(x)  # noqa: E731  (not cached by an earlier trace)
    assert "custom_vjp" in str(jax.make_jaxpr(fresh)(x))
    assert "custom_vjp" not in str(jax.make_jaxpr(lambda x: jax.jvp(f, (x,), (t,)))(x))


def test_auto_falls_back_and_fast_refuses_unsupported_options():
    p, _, _ = make("lstm")
    x = jax.random.normal(jax.random.key(2), (B, T, I))
    a = jaxrnn.lstm(p, x, activation="relu")  # auto -> scan
    np.testing.assert_array_equal(a, jaxrnn.lstm(p, x, activation="relu", impl="scan"))
    with pytest.raises(ValueError, match="impl='fast' cannot run activations other than tanh"):
        jaxrnn.lstm(p, x, activation="relu", impl="fast")
    with pytest.raises(ValueError, match="recurrent_dropout"):
        jaxrnn.lstm(p, x, recurrent_dropout=0.2, key=jax.random.key(0), impl="fast")
    g = make("gru_reset_before")[0]
    with pytest.raises(ValueError, match="reset_after=False"):
        jaxrnn.gru(g, x, reset_after=False, impl="fast")
    with pytest.raises(ValueError, match="unknown impl='cudnn'"):
        jaxrnn.gru(g, x, impl="cudnn")


@pytest.mark.parametrize("name", ["rnn_relu", "lstm", "lstm_autodiff", "gru"])
@pytest.mark.parametrize(
    "steps,opts", [(7, {}), (10, {"go_backwards": True, "lengths": [10, 3, 0]}), (1, {}), (0, {})]
)
def test_remat_gives_the_same_values_and_gradients(name, steps, opts):
    """remat='step' and remat='sqrt' against no remat (compiled once for both)."""
    layer, cell, kw = LAYERS[name]
    p, _, _ = make(cell)
    x = jax.random.normal(jax.random.key(2), (B, steps, I))
    opts = dict(opts)
    if "lengths" in opts:
        opts["seq_lengths"] = jnp.array(opts.pop("lengths"))

    def loss(p, x, remat):
        seq, fin = layer(p, x, return_sequences=True, return_state=True, remat=remat, **kw, **opts)
        return jnp.sum(seq**2) + sum(jnp.sum(v) for v in jax.tree.leaves(fin))

    # the value (a plain call) and the gradient: one compile per remat option
    both = jax.jit(
        lambda p, x, remat: (loss(p, x, remat), jax.grad(loss, argnums=(0, 1))(p, x, remat)),
        static_argnums=2,
    )
    v_none, g_none = both(p, x, None)
    for remat in ("step", "sqrt"):
        v_remat, g_remat = both(p, x, remat)
        assert_trees_close(v_remat, v_none)
        assert_trees_close(g_remat, g_none)


def test_remat_in_the_generic_driver_with_a_custom_step():
    def ema(alpha, c, x):
        c = alpha * c + x
        return c, c

    xs = jax.random.normal(jax.random.key(0), (2, 11, 1))
    sl = jnp.array([11, 4])
    ref = jaxrnn.unroll(ema, 0.9, xs, jnp.zeros((2, 1)), seq_lengths=sl, reverse=True)
    for remat in ("step", "sqrt"):
        got = jaxrnn.unroll(
            ema, 0.9, xs, jnp.zeros((2, 1)), seq_lengths=sl, reverse=True, remat=remat
        )
        assert_trees_close(got, ref, atol=1e-6)
    with pytest.raises(ValueError, match="unknown remat='half'"):
        jaxrnn.unroll(ema, 0.9, xs, jnp.zeros((2, 1)), remat="half")


def test_remat_sqrt_reduces_compiled_memory():
    """The O(√T) option stores far less for the backward pass (XLA's own accounting)."""
    p, _, _ = make("lstm", input_size=4, hidden=32)
    x = jax.random.normal(jax.random.key(2), (8, 1024, 4))

    def temp_bytes(remat):
        f = jax.jit(
            jax.grad(lambda p: jnp.sum(jaxrnn.lstm(p, x, return_sequences=True, remat=remat) ** 2))
        )
        return f.lower(p).compile().memory_analysis().temp_size_in_bytes

    full, sqrt = temp_bytes(None), temp_bytes("sqrt")
    assert sqrt < 0.5 * full, (full, sqrt)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "lstm_autodiff", "gru"])
def test_bfloat16_matmuls_keep_float32_state_and_stay_close(name):
    layer, cell, kw = LAYERS[name]
    init = {"rnn": jaxrnn.init_rnn, "lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru}[cell]
    p = init(jax.random.key(0), I, 16)  # Keras' initialisation: a well-conditioned network
    x = jax.random.normal(jax.random.key(2), (B, 20, I))

    def run(p, md):
        return layer(
            p,
            x,
            return_sequences=True,
            return_state=True,
            matmul_dtype=md,
            seq_lengths=jnp.array([20, 9, 0]),
            **kw,
        )

    loss = lambda p, md: jnp.sum(run(p, md)[0] ** 2)  # noqa: E731
    # the outputs (a plain call) and the gradients: one compile per matmul dtype
    both = jax.jit(lambda p, md: (run(p, md), jax.grad(loss)(p, md)), static_argnums=1)
    ((seq, fin), g), ((seq32, _), g32) = both(p, jnp.bfloat16), both(p, None)
    assert seq.dtype == jnp.float32 and all(v.dtype == jnp.float32 for v in jax.tree.leaves(fin))
    err = float(jnp.abs(seq - seq32).max())
    assert 0 < err < 0.1, err  # bf16 has an 8-bit mantissa: differs, but only slightly
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g32), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, atol=0.05 * float(jnp.abs(b).max()) + 1e-3)


def test_matmul_dtype_needs_the_fused_path():
    p, _, _ = make("lstm")
    x = jnp.ones((B, T, I))
    with pytest.raises(
        ValueError, match="matmul_dtype='bfloat16' needs the fused path.*activations other"
    ):
        jaxrnn.lstm(p, x, activation="relu", matmul_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="impl='scan'"):
        jaxrnn.lstm(p, x, impl="scan", matmul_dtype=jnp.bfloat16)
    with pytest.raises(TypeError, match="not a floating dtype"):
        jaxrnn.lstm(p, x, matmul_dtype=jnp.int8)


def test_lstm_backward_switches_to_autodiff_at_large_batches(monkeypatch):
    """From AUTODIFF_MIN_BATCH on, the fused LSTM's gradient comes from autodiff of the
    in-loop projection (faster there, see benchmarks/lstm_backward.py): same values."""
    calls = []
    original = fused_lstm._project_in_loop
    monkeypatch.setattr(fused_lstm, "_project_in_loop", lambda *a: calls.append(1) or original(*a))
    p, _, _ = make("lstm")
    for batch, expected in [
        (fused_lstm.AUTODIFF_MIN_BATCH, 1),
        (fused_lstm.AUTODIFF_MIN_BATCH - 1, 0),
    ]:
        calls.clear()
        x = jax.random.normal(jax.random.key(2), (batch, T, I))
        sl = jnp.arange(batch) % (T + 1)

        def loss(p, x, impl, sl=sl):
            return jnp.sum(
                jnp.sin(jaxrnn.lstm(p, x, seq_lengths=sl, return_sequences=True, impl=impl))
            )

        assert_trees_close(
            jaxrnn.lstm(p, x, seq_lengths=sl, impl="fast"),
            jaxrnn.lstm(p, x, seq_lengths=sl, impl="scan"),
        )
        assert len(calls) == 0  # the forward alone never takes it
        g_fast = jax.grad(loss, argnums=(0, 1))(p, x, "fast")
        assert len(calls) == expected
        assert_trees_close(g_fast, jax.grad(loss, argnums=(0, 1))(p, x, "scan"))
