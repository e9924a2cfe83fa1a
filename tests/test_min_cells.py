"""minGRU and minLSTM (Feng et al. 2024): the equations, every time method, the Keras
options, the modules and the rest of what the other cells have.

References are independent of jaxrnn's code: a float64 NumPy loop written from
the paper's equations, and (for gradients) ``jax.grad`` of a plain ``lax.scan`` of
the same equations written here. The methods (sequential, associative, chunked)
are then held to each other on values and gradients, up to T = 1e5.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn._cells.spec import spec_named
from tests.helpers import assert_tree_close, rel_err

CELLS = ("min_gru", "min_lstm")
METHODS = ("sequential", "associative", "chunked")
INIT = {"min_gru": jaxrnn.init_min_gru, "min_lstm": jaxrnn.init_min_lstm}
LAYER = {"min_gru": jaxrnn.min_gru, "min_lstm": jaxrnn.min_lstm}
STEP = {"min_gru": jaxrnn.min_gru_step, "min_lstm": jaxrnn.min_lstm_step}


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def np_coefficients(cell, k):
    """(a, b) of h_t = a h_{t-1} + b, float64, from the paper's equations."""
    if cell == "min_gru":
        k_z, k_h = np.split(k, 2, axis=-1)
        z = _sigmoid(k_z)
        return 1.0 - z, z * k_h
    k_f, k_i, k_h = np.split(k, 3, axis=-1)
    f, i = _sigmoid(k_f), _sigmoid(k_i)
    return f / (f + i), i / (f + i) * k_h


def np_layer(cell, params, x, h0, valid, reverse):
    """All outputs (B, T, H) and the final h, float64: a masked step keeps h, outputs 0."""
    w = np.asarray(params.kernel, np.float64)
    b = 0.0 if params.bias is None else np.asarray(params.bias, np.float64)
    x = np.asarray(x, np.float64)
    h = np.asarray(h0, np.float64).copy()
    batch, steps, _ = x.shape
    ys = np.zeros((batch, steps, h.shape[-1]))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        a_t, b_t = np_coefficients(cell, x[:, t] @ w + b)
        new = a_t * h + b_t
        m = valid[:, t][:, None]
        h = np.where(m, new, h)
        ys[:, t] = np.where(m, new, 0.0)
    return ys, h


def scan_reference(cell, params, x, h0):
    """A plain lax.scan of the equations (float32, differentiable), for gradients."""

    def step(h, x_t):
        k = x_t @ params.kernel + params.bias
        if cell == "min_gru":
            k_z, k_h = jnp.split(k, 2, axis=-1)
            z = jax.nn.sigmoid(k_z)
            h = (1 - z) * h + z * k_h
        else:
            k_f, k_i, k_h = jnp.split(k, 3, axis=-1)
            f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
            h = f / (f + i) * h + i / (f + i) * k_h
        return h, h

    h, ys = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1), h


def _data(cell, batch, steps, inputs=4, hidden=5, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    params = INIT[cell](k[0], inputs, hidden)
    # non-zero biases so that every term of the equations is exercised
    params = params._replace(bias=0.5 * jax.random.normal(k[1], params.bias.shape))
    x = jax.random.normal(k[2], (batch, steps, inputs))
    h0 = jax.random.normal(k[3], (batch, hidden))
    return params, x, h0


# -- equations -------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "go_backwards"])
def test_layer_equals_float64_equations(cell, method, reverse):
    params, x, h0 = _data(cell, 3, 7)
    lengths = np.array([7, 3, 0])
    valid = np.arange(7)[None] < lengths[:, None]
    ys, h = LAYER[cell](
        params, x, initial_state=h0, seq_lengths=jnp.asarray(lengths), go_backwards=reverse,
        return_sequences=True, return_state=True, method=method,
    )  # fmt: skip
    ref_ys, ref_h = np_layer(cell, params, x, h0, valid, reverse)
    if reverse:  # Keras: go_backwards outputs come in processing order
        ref_ys = ref_ys[:, ::-1]
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(h[2], h0[2])  # a zero-length sequence keeps h0


@pytest.mark.parametrize("cell", CELLS)
def test_step_equals_float64_equations(cell):
    params, x, h0 = _data(cell, 3, 1)
    h, y = STEP[cell](params, h0, x[:, 0])
    a, b = np_coefficients(cell, np.asarray(x[:, 0], np.float64) @ params.kernel + params.bias)
    np.testing.assert_allclose(h, a * np.asarray(h0, np.float64) + b, rtol=1e-5, atol=1e-6)
    assert y is h


def test_min_lstm_gates_stay_finite_when_both_underflow():
    # k_f, k_i far below float32's sigmoid range: f + i = 0 in floating point
    k = jnp.array([[-200.0, -150.0, 1.0], [60.0, -300.0, 2.0], [0.0, 0.0, 2.0]])
    a, b = jaxrnn._cells.min_lstm.min_lstm_coefficients(k)
    np.testing.assert_allclose(a[:, 0], [_sigmoid(-50.0), 1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(b[:, 0], [1.0, 0.0, 1.0], rtol=1e-6)
    g = jax.grad(
        lambda k: sum(jnp.sum(v) for v in jaxrnn._cells.min_lstm.min_lstm_coefficients(k))
    )(k)
    assert np.isfinite(g).all()


# -- the methods against each other and a plain scan ---------------------------------


def _loss(cell, method, lengths, params, x, h0):
    ys, h = LAYER[cell](
        params, x, initial_state=h0, seq_lengths=lengths, return_sequences=True,
        return_state=True, method=method,
    )  # fmt: skip
    # a loss reading every output and the final state, with varying weights
    w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return jnp.sum(w * ys) + jnp.sum(jnp.sin(h))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("steps", [0, 1, 7, 1000, 10000])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_methods_agree_on_values_and_gradients(cell, steps, with_lengths):
    batch = 2
    params, x, h0 = _data(cell, batch, steps, hidden=8)
    lengths = jnp.array([steps, steps // 2]) if with_lengths else None
    grads = {}
    for method in METHODS:
        fn = jax.jit(jax.value_and_grad(functools.partial(_loss, cell, method), (1, 2, 3)))
        grads[method] = fn(lengths, params, x, h0)
    for method in METHODS[1:]:
        assert_tree_close(grads[method], grads["sequential"], 1e-5, f"{method} vs sequential")
    if steps <= 1000 and not with_lengths:

        def ref_loss(params, x, h0):
            ys, h = scan_reference(cell, params, x, h0)
            w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
            return jnp.sum(w * ys) + jnp.sum(jnp.sin(h))

        ref = jax.value_and_grad(ref_loss, (0, 1, 2))(params, x, h0)
        assert_tree_close(grads["sequential"], ref, 1e-5, "sequential vs plain scan")


def test_min_gru_exact_at_t_1e5():
    params, x, h0 = _data("min_gru", 1, 100_000, inputs=3, hidden=4, seed=3)
    ref = jaxrnn.min_gru(params, x, initial_state=h0, return_sequences=True, method="sequential")
    for method in ("associative", "chunked"):
        got = jaxrnn.min_gru(params, x, initial_state=h0, return_sequences=True, method=method)
        assert rel_err(got, ref) <= 1e-5, method
    # and against the float64 equations over the first and the last 200 steps
    valid = np.ones((1, 200), bool)
    ys, _ = np_layer("min_gru", params, x[:, :200], h0, valid, False)
    np.testing.assert_allclose(ref[:, :200], ys, rtol=1e-5, atol=1e-6)
    _, h_before = np_layer("min_gru", params, x[:, :-200], h0, np.ones((1, 99_800), bool), False)
    ys_end, _ = np_layer("min_gru", params, x[:, -200:], h_before, valid, False)
    np.testing.assert_allclose(ref[:, -200:], ys_end, rtol=1e-4, atol=1e-5)


# few distinct shapes (each compiles once); the lengths, seeds and options vary freely
@settings(max_examples=25, deadline=None)
@given(
    cell=st.sampled_from(CELLS),
    steps=st.sampled_from([0, 1, 6, 23]),
    lengths=st.lists(st.integers(0, 23), min_size=3, max_size=3),
    reverse=st.booleans(),
    method=st.sampled_from(METHODS[1:]),
    seed=st.integers(0, 2**16),
)
def test_property_methods_agree(cell, steps, lengths, reverse, method, seed):
    batch = len(lengths)
    params, x, h0 = _data(cell, batch, steps, inputs=2, hidden=3, seed=seed)
    kw = dict(
        initial_state=h0, seq_lengths=jnp.array(lengths), go_backwards=reverse,
        return_sequences=True, return_state=True,
    )  # fmt: skip
    ys, h = LAYER[cell](params, x, method=method, **kw)
    ref_ys, ref_h = LAYER[cell](params, x, method="sequential", **kw)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)


# -- the Keras options, for every method ------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_nan_padding_reaches_no_value_and_no_gradient(method):
    params, x, h0 = _data("min_lstm", 3, 9)
    lengths = jnp.array([9, 4, 0])
    pad = jnp.arange(9)[None, :, None] >= lengths[:, None, None]
    dirty = jnp.where(pad, jnp.nan, x)
    clean = jnp.where(pad, 0.0, x)
    for reverse in (False, True):
        loss = functools.partial(_loss_rev, method, lengths, reverse)
        v, g = jax.value_and_grad(loss, (0, 1, 2))(params, dirty, h0)
        v0, g0 = jax.value_and_grad(loss, (0, 1, 2))(params, clean, h0)
        assert np.isfinite(v) and all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(g))
        np.testing.assert_allclose(v, v0, rtol=1e-6)
        assert_tree_close(g, g0, 1e-6, "dirty vs clean padding")
        assert float(jnp.abs(jnp.where(pad, g[1], 0)).max()) == 0.0


def _loss_rev(method, lengths, reverse, params, x, h0):
    ys = jaxrnn.min_lstm(
        params, x, initial_state=h0, seq_lengths=lengths, go_backwards=reverse,
        return_sequences=True, method=method,
    )  # fmt: skip
    return jnp.sum(ys * ys)


@pytest.mark.parametrize("cell", CELLS)
def test_mask_keeps_state_and_outputs_zeros_anywhere(cell):
    params, x, h0 = _data(cell, 2, 6)
    mask = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 1, 1]], bool)
    ref_ys, ref_h = np_layer(cell, params, x, h0, mask, False)
    for method in METHODS:
        ys, h = LAYER[cell](
            params, x, initial_state=h0, mask=jnp.asarray(mask), return_sequences=True,
            return_state=True, method=method,
        )  # fmt: skip
        np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)


def test_time_major_dropout_bidirectional_stacked_and_h1():
    params, x, h0 = _data("min_gru", 3, 5, hidden=1)  # H = 1
    xt = jnp.swapaxes(x, 0, 1)
    key = jax.random.key(7)
    outs = []
    for method in METHODS:
        a = jaxrnn.min_gru(params, x, return_sequences=True, method=method, dropout=0.3, key=key)
        b = jaxrnn.min_gru(
            params, xt, return_sequences=True, method=method, dropout=0.3, key=key,
            time_major=True,
        )  # fmt: skip
        np.testing.assert_allclose(jnp.swapaxes(b, 0, 1), a, rtol=1e-6)
        outs.append(a)
    for a in outs[1:]:
        np.testing.assert_allclose(a, outs[0], rtol=1e-5, atol=1e-6)
    # dropout changes the result and inference ignores it
    plain = jaxrnn.min_gru(params, x, return_sequences=True)
    assert not np.allclose(outs[0], plain)
    off = jaxrnn.min_gru(params, x, return_sequences=True, dropout=0.3, key=key, training=False)
    np.testing.assert_array_equal(off, plain)
    # bidirectional = forward ++ backward; stacked feeds sequences on
    bp = jaxrnn.BidirectionalParams(params, params)
    y = jaxrnn.bidirectional(jaxrnn.min_gru, bp, x, method="associative")
    fw = jaxrnn.min_gru(params, x)
    bw = jaxrnn.min_gru(params, x, go_backwards=True)
    np.testing.assert_allclose(y, jnp.concatenate([fw, bw], -1), rtol=1e-5, atol=1e-6)
    p2 = jaxrnn.init_min_lstm(jax.random.key(1), 1, 4)
    y = jaxrnn.stacked(jaxrnn.min_gru, [params], x, return_sequences=True)
    np.testing.assert_allclose(y, plain, rtol=1e-6)
    assert jaxrnn.stacked(jaxrnn.min_lstm, [p2, p2._replace(kernel=p2.kernel[:1].repeat(4, 0))],
                          x[..., :1]).shape == (3, 4)  # fmt: skip


def test_vmap_jit_and_remat_agree():
    params, x, h0 = _data("min_lstm", 4, 30, hidden=6)
    ref = jaxrnn.min_lstm(params, x, return_sequences=True)
    # vmap over single sequences equals the batched layer
    one = jax.vmap(lambda s: jaxrnn.min_lstm(params, s[None], return_sequences=True)[0])(x)
    np.testing.assert_allclose(one, ref, rtol=1e-5, atol=1e-6)
    # vmap over parameter sets (a sweep over seeds), under jit, every method
    stack = jax.vmap(lambda k: jaxrnn.init_min_lstm(k, 4, 6))(
        jax.random.split(jax.random.key(0), 3)
    )
    singles = [jaxrnn.min_lstm(jax.tree.map(lambda a, i=i: a[i], stack), x) for i in range(3)]
    for method in METHODS:
        run = functools.partial(jaxrnn.min_lstm, x=x, method=method)
        got = jax.jit(jax.vmap(run))(stack)
        np.testing.assert_allclose(got, jnp.stack(singles), rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda p: jnp.sum(jaxrnn.min_lstm(p, x, remat="sqrt") ** 2))(params)
    g0 = jax.grad(lambda p: jnp.sum(jaxrnn.min_lstm(p, x) ** 2))(params)
    assert_tree_close(g, g0, 1e-5, "remat='sqrt'")
    # forward-mode autodiff runs the generic scan (the parallel methods' VJP has no JVP)
    tangent = jax.jvp(lambda p: jaxrnn.min_lstm(p, x), (params,), (params,))[1]
    assert tangent.shape == (4, 6) and np.isfinite(tangent).all()


def test_realistic_size_methods_agree_with_gradients():
    params, x, h0 = _data("min_gru", 8, 300, inputs=16, hidden=128, seed=5)
    out = {}
    for method in METHODS:
        fn = jax.jit(jax.value_and_grad(functools.partial(_loss, "min_gru", method, None), (0, 1)))
        out[method] = fn(params, x, h0)
    for method in METHODS[1:]:
        assert_tree_close(out[method], out["sequential"], 1e-5, method)


# -- errors ------------------------------------------------------------------------------


def test_errors_name_the_argument_and_the_fix():
    p = jaxrnn.init_min_gru(jax.random.key(0), 3, 4)
    x = jnp.ones((2, 5, 3))
    with pytest.raises(
        ValueError,
        match=r"recurrent_dropout=0.2, but the MinGRU cell has no recurrent kernel.*Use dropout",
    ):
        jaxrnn.min_gru(p, x, recurrent_dropout=0.2, key=jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"impl='scan' chooses between .* method='sequential' only"
    ):
        jaxrnn.min_gru(p, x, method="chunked", impl="scan")
    with pytest.raises(
        ValueError, match=r"method='associative' cannot run remat='step'.*use method='sequential'"
    ):
        jaxrnn.min_gru(p, x, method="associative", remat="step")
    with pytest.raises(
        ValueError,
        match=r"gru: method='chunked' is not offered by the GRU cell; use one of 'sequential'",
    ):
        jaxrnn.gru(jaxrnn.init_gru(jax.random.key(0), 3, 4), x, method="chunked")
    with pytest.raises(ValueError, match=r"unknown method='fast'; use None"):
        jaxrnn.min_lstm(jaxrnn.init_min_lstm(jax.random.key(0), 3, 4), x, method="fast")
    with pytest.raises(TypeError, match=r"min_gru: params is MinLSTMParams.*jaxrnn.min_lstm"):
        jaxrnn.min_gru(jaxrnn.init_min_lstm(jax.random.key(0), 3, 4), x)
    with pytest.raises(ValueError, match=r"params.bias.shape=\(6,\), expected \(8,\)"):
        jaxrnn.min_gru(p._replace(bias=jnp.zeros(6)), x)
    with pytest.raises(ValueError, match=r"min_gru_step: recurrent_mask must be None"):
        jaxrnn.min_gru_step(p, jnp.zeros((2, 4)), x[:, 0], recurrent_mask=jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"x must be 3-D .* return_sequences=True"):
        jaxrnn.min_gru(p, x[:, 0])
    # the default with impl='scan' is the generic sequential scan, not an error
    np.testing.assert_allclose(jaxrnn.min_gru(p, x, impl="scan"), jaxrnn.min_gru(p, x), rtol=1e-6)


def test_converters_say_there_is_no_peer_format():
    from jaxrnn import interop

    p = jaxrnn.init_min_lstm(jax.random.key(0), 3, 4)
    to_flax = functools.partial(interop.to_flax, target="nnx.GRUCell")
    for convert in (interop.to_keras, to_flax, interop.to_haiku, interop.to_torch):
        with pytest.raises(
            TypeError,
            match=r"MinLSTMParams has no counterpart in Keras, PyTorch, Flax or Haiku.*jaxrnn.checkpoint",
        ):
            convert(p)


# -- modules, state, checkpoints, sweeps ------------------------------------------------------


def test_nnx_modules_equal_the_layers_and_keep_state():
    from flax import nnx

    import jaxrnn.nnx

    x = jax.random.normal(jax.random.key(1), (2, 8, 3))
    for cls, fn in ((jaxrnn.nnx.MinGRU, jaxrnn.min_gru), (jaxrnn.nnx.MinLSTM, jaxrnn.min_lstm)):
        layer = cls(3, 4, rngs=nnx.Rngs(0), return_sequences=True, method="chunked")
        np.testing.assert_allclose(layer(x), fn(layer.params, x, return_sequences=True), rtol=1e-6)
        # stateful over two halves equals one call over the whole sequence
        stateful = cls(3, 4, rngs=nnx.Rngs(0), stateful=True, batch_size=2)
        stateful(x[:, :5])
        np.testing.assert_allclose(stateful(x[:, 5:]), fn(stateful.params, x), rtol=1e-5)
        stateful.reset_state()
        assert float(jnp.abs(stateful.state).max()) == 0.0
        with pytest.raises(TypeError):
            cls(3, 4, rngs=nnx.Rngs(0), recurrent_initializer="orthogonal")
    # a learnt initial state gets a gradient
    layer = jaxrnn.nnx.MinGRU(3, 4, rngs=nnx.Rngs(0), learnable_initial_state=True)
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(layer)
    assert float(jnp.abs(grads.h0[...]).sum()) > 0


def test_linen_modules_equal_the_layers():
    import jaxrnn.linen

    x = jax.random.normal(jax.random.key(1), (2, 8, 3))
    for cls, fn, ptype in (
        (jaxrnn.linen.MinGRU, jaxrnn.min_gru, jaxrnn.MinGRUParams),
        (jaxrnn.linen.MinLSTM, jaxrnn.min_lstm, jaxrnn.MinLSTMParams),
    ):
        layer = cls(4, return_sequences=True, method="associative")
        v = layer.init(jax.random.key(0), x)
        p = jaxrnn.linen.to_params(v, params_type=ptype)
        assert isinstance(p, ptype)
        np.testing.assert_allclose(
            layer.apply(v, x), fn(p, x, return_sequences=True), rtol=1e-5, atol=1e-7
        )
        # round trip through from_params
        back = jaxrnn.linen.from_params(p)
        np.testing.assert_allclose(layer.apply({"params": back}, x), layer.apply(v, x))
        with pytest.raises(ValueError, match="no recurrent_kernel .* params_type="):
            jaxrnn.linen.to_params(v)


def test_zero_state_checkpoint_and_sweep(tmp_path):
    import optax

    from jaxrnn import checkpoint, sweep

    p = jaxrnn.init_min_lstm(jax.random.key(0), 3, 4)
    assert jaxrnn.zero_state(p, (2,)).shape == (2, 4)
    path = tmp_path / "min.ckpt"
    checkpoint.save(path, {"cell": p, "step": jnp.int32(3)})
    back = checkpoint.restore(path, {"cell": p, "step": jnp.int32(0)})
    assert isinstance(back["cell"], jaxrnn.MinLSTMParams) and int(back["step"]) == 3
    np.testing.assert_array_equal(back["cell"].kernel, p.kernel)

    # a sweep over learning rates equals the loop over them
    x = jax.random.normal(jax.random.key(1), (8, 12, 3))
    y = jnp.sum(x, axis=(1, 2))[:, None] / 6.0

    def train(hp):
        params = jaxrnn.init_min_gru(jax.random.key(0), 3, 1)
        opt = optax.sgd(hp["lr"])
        state = opt.init(params)

        def loss(params):
            return jnp.mean((jaxrnn.min_gru(params, x) - y) ** 2)

        def epoch(carry, _):
            params, state = carry
            value, g = jax.value_and_grad(loss)(params)
            updates, state = opt.update(g, state)
            return (optax.apply_updates(params, updates), state), value

        (params, _), history = jax.lax.scan(epoch, (params, state), None, length=20)
        return loss(params), history

    result = sweep.sweep(train, {"lr": [0.01, 0.1, 0.5]})
    for i, lr in enumerate([0.01, 0.1, 0.5]):
        value, _ = train({"lr": jnp.float32(lr)})
        np.testing.assert_allclose(result.results[i], value, rtol=1e-5)
    assert result.results[2] < result.results[0]  # training does something


def test_registered_through_the_registry():
    for cell in CELLS:
        spec = spec_named(cell)
        assert spec.step is STEP[cell] and spec.init is INIT[cell]
        assert not spec.recurrent and not spec.has_peers
        assert spec.methods[0] == "sequential" and set(spec.methods) == set(METHODS)
        assert jaxrnn._cells.spec.spec_of(INIT[cell](jax.random.key(0), 2, 3)) is spec
