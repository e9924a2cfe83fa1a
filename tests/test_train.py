"""Optax training: the train step, fit, early stopping, clipping, compile counts, errors."""

from __future__ import annotations

import functools
import gc
import importlib.util
import subprocess
import sys
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import _train_core, losses
from jaxrnn.train import (
    EarlyStopping,
    History,
    TrainState,
    evaluate,
    fit,
    get_optimizer,
    make_eval_step,
    make_train_step,
)

N, T, HID = 48, 5, 8


def _sum_task(n=N, seed=0):
    """Learn y = sum_t x_t over a short sequence: x (n, T, 1), y (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, T, 1)).astype(np.float32)
    return x, x.sum(axis=1)


def _init(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "rnn": jaxrnn.init_rnn(k1, 1, HID),
        "w": 0.1 * jax.random.normal(k2, (HID, 1)),
        "b": jnp.zeros((1,)),
    }


def _apply(params, x, key=None):
    h = jaxrnn.simple_rnn(
        params["rnn"], x, dropout=0.1, key=key, training=key is not None
    )  # (B, H)
    return h @ params["w"] + params["b"]  # (B, 1)


def _loss(params, x, y, key):
    return jnp.mean((_apply(params, x, key) - y) ** 2)


def _mae(params, x, y):
    return jnp.mean(jnp.abs(_apply(params, x) - y))


def test_import_jaxrnn_does_not_import_optax():
    code = (
        "import sys, jaxrnn, jaxrnn.losses, jaxrnn.resets; "
        "assert 'optax' not in sys.modules, 'optax imported'; "
        "import jaxrnn.train; assert 'optax' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_learns_to_sum_with_validation_metrics():
    x, y = _sum_task()
    xv, yv = _sum_task(16, seed=1)
    params, hist = fit(
        _loss,
        _init(),
        optax.adam(0.02),
        x,
        y,
        epochs=25,
        batch_size=16,
        key=jax.random.key(1),
        validation_data=(xv, yv),
        metrics={"mae": _mae},
        verbose=0,
    )
    h = hist.history
    assert set(h) == {"loss", "mae", "val_loss", "val_mae"}
    assert all(len(v) == 25 for v in h.values()) and hist.epoch == list(range(25))
    assert h["loss"][-1] < 0.1 * h["loss"][0], h["loss"]
    assert h["val_loss"][-1] < 0.1 * h["val_loss"][0], h["val_loss"]
    # the recorded validation values are those of the returned parameters
    ev = evaluate(_loss, params, xv, yv, batch_size=5, metrics={"mae": _mae})
    np.testing.assert_allclose(ev["loss"], h["val_loss"][-1], rtol=1e-5)
    np.testing.assert_allclose(ev["mae"], h["val_mae"][-1], rtol=1e-5)


def test_fit_is_deterministic_given_the_key():
    x, y = _sum_task(16)

    def run(seed):
        kw = dict(epochs=2, batch_size=8, key=jax.random.key(seed), verbose=0)
        return fit(_loss, _init(), "adam", x, y, **kw)[0]

    a, b, c = run(3), run(3), run(4)
    jax.tree.map(np.testing.assert_array_equal, a, b)  # bit-identical
    assert not np.array_equal(a["w"], c["w"])


def _scalar_problem():
    """p is pulled to 1 by training; the validation optimum is 0.5, passed on the way."""
    loss = lambda p, x, y, key: jnp.mean((p * x - y) ** 2)  # noqa: E731
    x = np.ones((8, 1), np.float32)
    return loss, x, np.ones((8, 1), np.float32), (x, np.full((8, 1), 0.5, np.float32))


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_stops_and_restores_best(restore_best):
    loss, x, y, val = _scalar_problem()
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best=restore_best)
    p, hist = fit(
        loss,
        jnp.array(0.0),
        optax.sgd(0.05),
        x,
        y,
        epochs=50,
        batch_size=4,
        key=jax.random.key(0),
        validation_data=val,
        early_stopping=es,
        verbose=0,
    )
    vl = hist.history["val_loss"]
    best = int(np.argmin(vl))
    assert hist.best_epoch == best and 0 < best < 49
    assert hist.stopped_epoch == best + 2 and len(vl) == best + 3
    assert all(vl[i + 1] < vl[i] for i in range(best)) and vl[best + 1] > vl[best]
    # the same run cut at the best epoch gives the restored parameters, bit for bit
    p_best, _ = fit(
        loss,
        jnp.array(0.0),
        optax.sgd(0.05),
        x,
        y,
        epochs=best + 1,
        batch_size=4,
        key=jax.random.key(0),
        verbose=0,
    )
    p_last, _ = fit(
        loss,
        jnp.array(0.0),
        optax.sgd(0.05),
        x,
        y,
        epochs=best + 3,
        batch_size=4,
        key=jax.random.key(0),
        verbose=0,
    )
    np.testing.assert_array_equal(p, p_best if restore_best else p_last)


def test_early_stopping_min_delta_and_max_mode():
    loss, x, y, val = _scalar_problem()
    # "neg" grows while the validation loss falls: mode 'max' must track it like val_loss
    metrics = {"neg": lambda p, x, y: -jnp.mean((p * x - 0.5) ** 2)}
    _, h1 = fit(
        loss,
        jnp.array(0.0),
        optax.sgd(0.05),
        x,
        y,
        epochs=50,
        batch_size=8,
        key=jax.random.key(0),
        validation_data=val,
        metrics=metrics,
        early_stopping=EarlyStopping("val_neg", mode="max"),
        verbose=0,
    )
    _, h2 = fit(
        loss,
        jnp.array(0.0),
        optax.sgd(0.05),
        x,
        y,
        epochs=50,
        batch_size=8,
        key=jax.random.key(0),
        validation_data=val,
        early_stopping=EarlyStopping("val_loss"),
        verbose=0,
    )
    assert h1.stopped_epoch == h2.stopped_epoch is not None
    # a large min_delta: the second epoch's improvement is too small, so it stops at once
    _, h3 = fit(
        loss,
        jnp.array(0.0),
        optax.sgd(0.05),
        x,
        y,
        epochs=50,
        batch_size=8,
        key=jax.random.key(0),
        validation_data=val,
        early_stopping=EarlyStopping(min_delta=10.0),
        verbose=0,
    )
    assert h3.stopped_epoch == 1 and h3.best_epoch == 0


def test_clipnorm_clips_like_the_optax_chain():
    x, y = _sum_task(16)
    params = _init()
    batch = (x, 10 * y)  # large targets: large gradients
    c = 0.05
    s0 = TrainState.create(params, optax.sgd(1.0))
    s1, m = make_train_step(_loss, optax.sgd(1.0), clipnorm=c)(s0, batch, None)
    assert float(m["grad_norm"]) > 10 * c  # clipping is active
    delta = jax.tree.map(lambda a, b: a - b, s1.params, params)
    # sgd(1): the update is minus the clipped gradient, of norm c
    assert float(optax.tree.norm(delta)) == pytest.approx(c, rel=1e-4)
    chain = optax.chain(optax.clip_by_global_norm(c), optax.sgd(1.0))
    s2, _ = make_train_step(_loss, chain)(TrainState.create(params, chain), batch, None)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), s1.params, s2.params
    )
    # and through fit, with an optimizer that has state
    pa, _ = fit(
        _loss,
        params,
        optax.adam(0.01),
        x,
        10 * y,
        epochs=2,
        batch_size=8,
        key=jax.random.key(0),
        clipnorm=c,
        verbose=0,
    )
    pb, _ = fit(
        _loss,
        params,
        optax.chain(optax.clip_by_global_norm(c), optax.adam(0.01)),
        x,
        10 * y,
        epochs=2,
        batch_size=8,
        key=jax.random.key(0),
        verbose=0,
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), pa, pb)


@pytest.mark.parametrize("drop_remainder, traces, steps", [(False, 2, 3 * 3), (True, 1, 3 * 2)])
def test_step_compiles_once_across_epochs(drop_remainder, traces, steps):
    count = {"n": 0}

    def loss(params, x, y, key):
        count["n"] += 1  # runs only when the step is traced
        return _loss(params, x, y, key)

    x, y = _sum_task(10)  # batch_size 4: batches of 4, 4 and a remainder of 2
    state, hist = fit(
        loss,
        TrainState.create(_init(), "sgd"),
        "sgd",
        x,
        y,
        epochs=3,
        batch_size=4,
        key=jax.random.key(0),
        drop_remainder=drop_remainder,
        verbose=0,
    )
    assert count["n"] == traces
    assert isinstance(state, TrainState) and int(state.step) == steps
    assert len(hist.history["loss"]) == 3


def test_resume_from_train_state_and_evaluate_weights_partial_batches():
    x, y = _sum_task(10)
    s, _ = fit(
        _loss,
        TrainState.create(_init(), "adam"),
        "adam",
        x,
        y,
        epochs=1,
        batch_size=5,
        key=jax.random.key(0),
        verbose=0,
    )
    s, _ = fit(_loss, s, "adam", x, y, epochs=1, batch_size=5, key=jax.random.key(1), verbose=0)
    assert int(s.step) == 4
    full = float(_loss(s.params, x, y, None))
    assert evaluate(_loss, s, x, y, batch_size=3)["loss"] == pytest.approx(full, rel=1e-5)


def test_train_step_uses_the_key_for_dropout():
    x, y = _sum_task(8)
    step = make_train_step(_loss, "sgd")
    s = TrainState.create(_init(), "sgd")
    _, m1 = step(s, (x, y), jax.random.key(0))
    _, m2 = step(s, (x, y), jax.random.key(1))
    _, m3 = step(s, (x, y), None)
    assert float(m1["loss"]) != float(m2["loss"])
    assert float(m3["loss"]) == pytest.approx(float(_loss(s.params, x, y, None)), rel=1e-6)


def test_sequence_loss_with_lengths_in_x():
    """x may be a pytree: (inputs, lengths) with a per-step masked loss."""
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(12, T, 1)).astype(np.float32)
    lengths = rng.integers(0, T + 1, size=12).astype(np.int32)
    ys = np.cumsum(xs, axis=1)  # running sum, per step

    def loss(p, x, y, key):
        seq, ln = x
        h = jaxrnn.simple_rnn(p["rnn"], seq, seq_lengths=ln, return_sequences=True)
        return losses.mse(h @ p["w"] + p["b"], y, seq_lengths=ln)

    _, hist = fit(
        loss,
        _init(),
        optax.adam(0.02),
        (xs, lengths),
        ys,
        epochs=15,
        batch_size=4,
        key=jax.random.key(0),
        verbose=0,
    )
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]


def test_verbose_output(capsys, monkeypatch):
    loss, x, y, val = _scalar_problem()
    fit(
        loss,
        jnp.array(0.0),
        "sgd",
        x,
        y,
        epochs=2,
        batch_size=4,
        key=jax.random.key(0),
        validation_data=val,
        verbose=2,
    )
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "val_loss:" in out
    if importlib.util.find_spec("tqdm") is not None:  # in the test extra
        fit(
            loss,
            jnp.array(0.0),
            "sgd",
            x,
            y,
            epochs=2,
            batch_size=4,
            key=jax.random.key(0),
            verbose=1,
        )
        err = capsys.readouterr().err
        assert "Epoch 1/2" in err and "loss=" in err  # the tqdm bar
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    fit(loss, jnp.array(0.0), "sgd", x, y, epochs=2, batch_size=4, key=jax.random.key(0), verbose=1)
    assert "Epoch 2/2" in capsys.readouterr().out  # one line per epoch without tqdm
    fit(loss, jnp.array(0.0), "sgd", x, y, epochs=2, batch_size=4, key=jax.random.key(0), verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_history_plot(monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    h = History()
    for e in range(3):
        h.append(e, {"loss": 1.0 / (e + 1), "val_loss": 1.5 / (e + 1)})
    ax = h.plot()
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "val_loss"]
    with pytest.raises(KeyError, match="no key 'acc'"):
        h.plot(["acc"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        h.plot()


# --- error messages -------------------------------------------------------------------------


def _fit(**kw):
    loss, x, y, val = _scalar_problem()
    args = dict(epochs=1, batch_size=4, key=jax.random.key(0), verbose=0)
    args.update(kw)
    x, y = args.pop("x", x), args.pop("y", y)
    return fit(loss, jnp.array(0.0), args.pop("optimizer", "sgd"), x, y, **args)


def test_error_messages():
    x = np.ones((8, 1), np.float32)
    with pytest.raises(ValueError, match=r"fit: batch_size=0; it must be an integer >= 1"):
        _fit(batch_size=0)
    with pytest.raises(
        ValueError, match=r"x has 8 \(shape \(8, 1\)\), y has 7 \(shape \(7, 1\)\).*first axis"
    ):
        _fit(y=np.ones((7, 1), np.float32))
    with pytest.raises(
        ValueError,
        match=r"arrays in x have different numbers of examples: shapes \[\(8, 1\), \(5,\)\]",
    ):
        _fit(x=(x, np.ones(5)))
    with pytest.raises(
        ValueError,
        match=r"monitor='val_los' is not a logged quantity; available: \['loss', 'val_loss'\]",
    ):
        _fit(validation_data=(x, x), early_stopping=EarlyStopping("val_los"))
    with pytest.raises(
        ValueError, match=r"monitor='val_loss'.*available: \['loss'\].*need validation_data"
    ):
        _fit(early_stopping=EarlyStopping())
    with pytest.raises(
        ValueError,
        match=r"validation_data x has per-example shape\(s\) \[\(3,\)\] but the training x has \[\(1,\)\]",
    ):
        _fit(validation_data=(np.ones((4, 3)), np.ones((4, 1))))
    with pytest.raises(
        ValueError, match=r"validation_data must be a pair \(x_val, y_val\), got tuple of 3"
    ):
        _fit(validation_data=(x, x, x))
    with pytest.raises(TypeError, match=r"key must be a jax.random key.*jax.random.key\(0\)"):
        _fit(key=None)
    with pytest.raises(ValueError, match=r"clipnorm=-1.0; it must be a positive number"):
        _fit(clipnorm=-1.0)
    with pytest.raises(
        ValueError,
        match=r"drop_remainder=True leaves no batch of the 8 examples; use a batch_size <= 8",
    ):
        _fit(batch_size=16, drop_remainder=True)
    with pytest.raises(ValueError, match=r"epochs=-1"):
        _fit(epochs=-1)
    with pytest.raises(ValueError, match=r"metric name 'loss' is reserved"):
        _fit(metrics={"loss": lambda p, x, y: 0.0})
    with pytest.raises(ValueError, match=r"unknown optimizer name 'adamm'; known names: \["):
        get_optimizer("adamm")
    with pytest.raises(TypeError, match="optax GradientTransformation"):
        get_optimizer(0.01)
    with pytest.raises(
        ValueError, match=r"loss_fn must return a scalar, got shape \(4, 1\).*\.mean\(\)"
    ):
        fit(
            lambda p, x, y, k: (p * x - y) ** 2,
            jnp.array(0.0),
            "sgd",
            x,
            x,
            batch_size=4,
            key=jax.random.key(0),
            verbose=0,
        )
    state = TrainState.create(jnp.array(0.0), "sgd")
    with pytest.raises(ValueError, match=r"opt_state does not match.*TrainState.create"):
        fit(lambda p, x, y, k: jnp.mean(p * x), state, "adam", x, x, key=jax.random.key(0))


# --- loss_fn and metric signatures ------------------------------------------------------------


def _linear(p, x, y):
    return jnp.mean((x @ p - y) ** 2)


XL = np.arange(24, dtype=np.float32).reshape(8, 3) / 10
YL = XL @ np.array([1.0, -1.0, 0.5], np.float32)


@pytest.mark.parametrize(
    "call",
    [
        lambda loss: fit(loss, jnp.zeros(3), "sgd", XL, YL, key=jax.random.key(0), verbose=0),
        lambda loss: evaluate(loss, jnp.zeros(3), XL, YL),
        lambda loss: make_train_step(loss, "sgd"),
        lambda loss: make_eval_step(loss),
    ],
    ids=["fit", "evaluate", "make_train_step", "make_eval_step"],
)
def test_loss_fn_without_key_is_refused_before_tracing(call):
    with pytest.raises(TypeError) as info:
        call(lambda p, x, y: _linear(p, x, y))
    msg = str(info.value)
    for words in (
        "loss_fn <lambda>(p, x, y)",
        "takes 3 positional",
        "(params, x, y, key)",
        "None in evaluation",
        "can ignore it",
    ):
        assert words in msg, msg


def test_loss_fn_signatures_that_are_accepted_or_explained():
    def with_default(p, x, y, key, scale=1.0):
        return scale * _linear(p, x, y)

    def needs_scale(p, x, y, key, *, scale):
        return scale * _linear(p, x, y)

    class Model:
        def loss(self, p, x, y, key):
            return _linear(p, x, y)

    class Opaque:  # a callable whose signature cannot be inspected: not refused
        __signature__ = "not a Signature"

        def __call__(self, p, x, y, key):
            return _linear(p, x, y)

    accepted = [
        with_default,
        lambda *args: _linear(*args[:3]),
        lambda p, *rest: _linear(p, *rest[:2]),
        functools.partial(needs_scale, scale=2.0),
        functools.partial(lambda w, p, x, y, key: w * _linear(p, x, y), 3.0),
        Model().loss,
        jax.jit(lambda p, x, y, key: _linear(p, x, y)),
        Opaque(),
    ]
    for loss in accepted:
        out = evaluate(loss, jnp.zeros(3), XL, YL)
        assert np.isfinite(out["loss"])
    with pytest.raises(TypeError, match=r"keyword-only \['scale'\] without a default.*partial"):
        make_train_step(needs_scale, "sgd")
    with pytest.raises(TypeError, match=r"requires 5 arguments; give \['extra'\] a default"):
        make_train_step(lambda p, x, y, key, extra: 0.0, "sgd")
    with pytest.raises(TypeError, match=r"loss_fn must be a function .* got float"):
        make_train_step(0.5, "sgd")


def test_metric_with_a_key_is_refused():
    def loss(p, x, y, key):
        return _linear(p, x, y)

    with pytest.raises(TypeError) as info:
        fit(
            loss,
            jnp.zeros(3),
            "sgd",
            XL,
            YL,
            key=jax.random.key(0),
            verbose=0,
            metrics={"mse": loss},
        )
    msg = str(info.value)
    for words in (
        "fit: metric 'mse'",
        "loss(p, x, y, key)",
        "fn(params, x, y)",
        "without a key",
        "loss_fn(p, x, y, None)",
    ):
        assert words in msg, msg
    # a metric with an optional key is fine
    out = evaluate(loss, jnp.zeros(3), XL, YL, metrics={"mse": lambda p, x, y, key=None: 0.0})
    assert out["mse"] == 0.0


# --- Python lists as data ---------------------------------------------------------------------


def _fit_linear(x, y, **kw):
    def loss(p, x, y, key):
        return _linear(p, x, y)

    return fit(
        loss,
        jnp.zeros(3),
        "sgd",
        x,
        y,
        epochs=2,
        batch_size=4,
        key=jax.random.key(0),
        verbose=0,
        **kw,
    )


def test_a_list_is_one_array():
    ref, h_ref = _fit_linear(XL, YL)
    for x, y in [
        (list(XL), list(YL)),  # a list of per-example arrays
        (XL.tolist(), YL.tolist()),  # nested lists of numbers
        ([jnp.asarray(row) for row in XL], YL),  # of JAX arrays
    ]:
        p, h = _fit_linear(x, y)
        np.testing.assert_array_equal(p, ref)
        assert h.history == h_ref.history
    assert evaluate(lambda p, x, y, k: _linear(p, x, y), ref, list(XL), YL.tolist()) == (
        evaluate(lambda p, x, y, k: _linear(p, x, y), ref, XL, YL)
    )


def test_tuples_and_dicts_stay_containers_and_hold_lists():
    def loss(p, x, y, key):
        return _linear(p, x["a"] + x["b"][0] * x["b"][1], y)

    kw = dict(epochs=1, batch_size=4, key=jax.random.key(0), verbose=0)
    ones = np.ones((8, 1), np.float32)
    p1, _ = fit(loss, jnp.zeros(3), "sgd", {"a": XL, "b": (ones, XL)}, YL, **kw)
    p2, _ = fit(loss, jnp.zeros(3), "sgd", {"a": list(XL), "b": (ones.tolist(), XL)}, YL, **kw)
    np.testing.assert_array_equal(p1, p2)


def test_lists_that_are_not_one_array():
    ragged = [np.ones((5, 3), np.float32), np.ones((4, 3), np.float32)]
    with pytest.raises(ValueError) as info:
        _fit_linear(ragged, YL[:2])
    msg = str(info.value)
    for words in (
        "fit: x is a list of 2 elements with different shapes",
        "element shapes [(5, 3), (4, 3)]",
        "pad them",
        "the longest is 5",
        "x=(padded, lengths)",
        "several inputs, pass them as a tuple x=(x1, x2)",
    ):
        assert words in msg, msg
    many = [np.ones((2 + i % 3, 3)) for i in range(20)]
    with pytest.raises(
        ValueError, match=r"3 distinct element shapes: \(2, 3\) x7 \(first at index 0\)"
    ):
        _fit_linear(many, np.ones(20))
    # two inputs of the same shape in a list read as one array of 2 examples: said so
    with pytest.raises(ValueError) as info:
        _fit_linear([XL, XL], YL)
    msg = str(info.value)
    assert "x has 2 (shape (2, 8, 3)), y has 8" in msg
    assert "x was a list of 2 elements, read as one array of 2 examples" in msg
    assert "use a tuple x=(x1, x2)" in msg
    with pytest.raises(TypeError, match=r"y is a list of <U1 values .*needs numbers"):
        _fit_linear(XL, ["a"] * 8)
    with pytest.raises(ValueError, match=r"val_x is a list of 2 elements with different shapes"):
        _fit_linear(XL, YL, validation_data=(ragged, [0.0, 1.0]))


# --- compiled steps reused across calls -------------------------------------------------------


def _counting_loss():
    traces = []

    def loss(p, x, y, key):
        traces.append(x.shape)  # runs only when JAX traces the step
        return _linear(p, x, y)

    return loss, traces


def test_repeated_fit_reuses_the_compiled_steps():
    loss, traces = _counting_loss()
    tx = optax.sgd(0.1)
    kw = dict(batch_size=3, verbose=0)  # 6 training examples: batches of 3; 2 for validation
    p = jnp.zeros(3)
    for epoch in range(3):  # one fit call per epoch
        p, _ = fit(loss, p, tx, XL, YL, key=jax.random.key(epoch), validation_split=0.25, **kw)
    assert traces == [(3, 3), (2, 3)]  # one train trace, one eval trace, in all
    fit(loss, p, tx, XL[:7], YL[:7], key=jax.random.key(0), **kw)  # a new remainder shape
    assert traces[2:] == [(1, 3)]
    del traces[:]
    fit(loss, p, optax.sgd(0.1), XL, YL, key=jax.random.key(0), **kw)  # another optimizer
    assert traces == [(3, 3), (2, 3)]
    fit(loss, p, tx, XL, YL, key=jax.random.key(0), clipnorm=1.0, **kw)  # clipping
    assert len(traces) == 4
    fit(loss, p, tx, XL, YL, key=jax.random.key(0), metrics={"m": lambda p, x, y: 0.0}, **kw)
    assert len(traces) == 6
    for _ in range(2):  # a name maps to a fresh optimizer object, but is keyed by the name
        fit(loss, p, "adam", XL, YL, key=jax.random.key(0), **kw)
    assert len(traces) == 8
    for _ in range(2):
        evaluate(loss, p, XL, YL, batch_size=4)
    assert len(traces) == 9
    loss2, traces2 = _counting_loss()  # another loss traces again
    fit(loss2, p, tx, XL, YL, key=jax.random.key(0), **kw)
    assert len(traces2) == 2 and len(traces) == 9


def test_bound_method_losses_are_reused_and_the_cache_is_bounded():
    class Model:
        traces = 0

        def loss(self, p, x, y, key):
            Model.traces += 1
            return _linear(p, x, y)

    m = Model()
    for _ in range(2):  # m.loss is a new bound-method object each time
        fit(m.loss, jnp.zeros(3), "sgd", XL, YL, batch_size=8, key=jax.random.key(0), verbose=0)
    assert Model.traces == 1
    for c in range(_train_core._STEP_CACHE_SIZE + 3):  # more setups than the cache keeps
        evaluate(lambda p, x, y, key, c=c: c * _linear(p, x, y), jnp.zeros(3), XL, YL)
    assert len(_train_core._STEP_CACHE) == _train_core._STEP_CACHE_SIZE


def test_the_cache_keeps_no_data_alive():
    loss, _ = _counting_loss()
    x, y = XL.copy(), YL.copy()
    refs = [weakref.ref(x), weakref.ref(y)]
    p, _ = fit(
        loss,
        jnp.zeros(3),
        "sgd",
        x,
        y,
        batch_size=3,
        key=jax.random.key(0),
        verbose=0,
        validation_split=0.25,
    )
    del x, y
    gc.collect()
    assert [r() for r in refs] == [None, None]


# --- validation_split -------------------------------------------------------------------------


def test_validation_split_equals_the_last_examples_as_validation_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    w = rng.uniform(size=10).astype(np.float32)  # a per-example weight: x is a pytree (x, w)
    y = x @ np.array([1.0, -1.0, 0.5], np.float32)

    def loss(p, x, y, key):
        xs, ws = x
        pred = xs @ p
        if key is not None:  # dropout on the output: the per-step keys must match too
            pred = pred * jax.random.bernoulli(key, 0.9, pred.shape) / 0.9
        return jnp.mean(ws * (pred - y) ** 2)

    kw = dict(
        epochs=2,
        batch_size=4,
        key=jax.random.key(3),
        verbose=0,
        metrics={"mae": lambda p, x, y: jnp.mean(jnp.abs(x[0] @ p - y))},
    )
    # floor(10 * (1 - 0.25)) = 7: the last 3 examples validate, as in Keras
    p1, h1 = fit(loss, jnp.zeros(3), "adam", (x, w), y, validation_split=0.25, **kw)
    p2, h2 = fit(
        loss,
        jnp.zeros(3),
        "adam",
        (x[:7], w[:7]),
        y[:7],
        validation_data=((x[7:], w[7:]), y[7:]),
        **kw,
    )
    assert set(h1.history) == {"loss", "mae", "val_loss", "val_mae"}
    assert h1.history == h2.history  # bit-identical
    jax.tree.map(np.testing.assert_array_equal, p1, p2)
    _, h0 = fit(loss, jnp.zeros(3), "adam", (x, w), y, validation_split=0, **kw)
    assert set(h0.history) == {"loss", "mae"}  # 0: off
    _, h3 = fit(
        loss,
        jnp.zeros(3),
        "adam",
        (x, w),
        y,
        validation_split=0.25,
        early_stopping=EarlyStopping("val_loss", patience=5),
        **{**kw, "epochs": 1},
    )
    assert len(h3.history["val_loss"]) == 1


def test_validation_split_errors():
    for bad in (1.0, -0.1, 1.5, float("nan"), True, "0.2"):
        with pytest.raises(ValueError) as info:
            _fit(validation_split=bad)
        msg = str(info.value)
        assert f"fit: validation_split={bad!r}" in msg and "[0, 1)" in msg, msg
    loss, x, y, val = _scalar_problem()
    with pytest.raises(ValueError) as info:
        _fit(validation_split=0.2, validation_data=val)
    msg = str(info.value)
    assert "validation_split=0.2 and validation_data were both given; pass one" in msg
    assert "last 20% of x and y" in msg
    _fit(validation_split=0.0, validation_data=val)  # 0 is off: no conflict
    with pytest.raises(ValueError) as info:
        _fit(x=np.ones((1, 1), np.float32), y=np.ones((1, 1), np.float32), validation_split=0.5)
    msg = str(info.value)
    assert "validation_split=0.5 of 1 examples leaves 0 for training and 1 for validation" in msg
    assert "floor(1 * (1 - 0.5)) = 0" in msg and "smaller validation_split" in msg
    with pytest.raises(ValueError, match=r"leaves 8 for training and 0 for validation.*larger"):
        _fit(validation_split=1e-17)  # floor(8 * (1 - 1e-17)) = 8
