"""The fused recurrences run long sequences chunk by chunk (``_fused.common.chunked``):
the SimpleRNN and LSTM project their input one chunk at a time, and the GRU's
backward pass holds its per-step gradients for one chunk at a time.

Sequence lengths around the chunk length (shorter than one chunk, exactly one, not
a multiple, none at all) give the float64 reference's values and the generic
scan's gradients, in both directions and with padding; many small chunks give the
unchunked path's values with masks, ``matmul_dtype`` and ``unroll``; and the
forward pass's scratch memory no longer grows with ``T·G·H``, nor the GRU's
training scratch with its ``(T, B, 3H)`` per-step gradients.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn._cells.spec import spec_named
from jaxrnn._fused import dispatch
from jaxrnn._fused.common import CHUNK_FLOATS, CHUNK_MIN_STEPS, LoopOptions, chunk_steps
from jaxrnn._layers import run_layer
from tests.helpers import as_tuple, assert_tree_close, make, random_carry, run_ref

B, I, H = 3, 3, 4
K = 16  # steps per chunk in these tests
CHUNKS = {"chunk_min_steps": K, "chunk_floats": 0}
LAYERS = {  # the layers with K-step chunks
    "rnn": (functools.partial(run_layer, spec_named("rnn"), **CHUNKS), "rnn"),
    "lstm": (functools.partial(run_layer, spec_named("lstm"), **CHUNKS), "lstm"),
    # the LSTM's autodiff backward pass (taken from AUTODIFF_MIN_BATCH sequences on): its
    # forward pass is chunked, its gradient the VJP of the unchunked in-loop projection
    "lstm_autodiff": (
        functools.partial(run_layer, spec_named("lstm"), autodiff_min_batch=1, **CHUNKS),
        "lstm",
    ),
    "gru": (functools.partial(run_layer, spec_named("gru"), **CHUNKS), "gru"),
}
LENGTHS = {  # T -> valid lengths of the three sequences (all, some, none)
    0: [0, 0, 0],
    5: [5, 3, 0],
    K: [K, K - 1, 0],
    2 * K + 37: [2 * K + 37, K + 1, 0],
}


def _call(layer, p, x, s0, impl, **kw):
    return layer(p, x, initial_state=s0, return_sequences=True, return_state=True, impl=impl, **kw)


@functools.cache
def _compiled(name, go_backwards):
    """Outputs and gradients (params, x, initial state) of a weighted loss, per impl."""
    layer = LAYERS[name][0]

    def run(p, x, s0, lengths, w, impl):
        def loss(p, x, s0):
            seq, final = _call(
                layer, p, x, s0, impl, seq_lengths=lengths, go_backwards=go_backwards
            )
            return jnp.sum(seq * w) + sum(jnp.sum(jnp.sin(v)) for v in jax.tree.leaves(final))

        return _call(layer, p, x, s0, impl, seq_lengths=lengths, go_backwards=go_backwards), (
            jax.grad(loss, argnums=(0, 1, 2))(p, x, s0)
        )

    return jax.jit(run, static_argnums=5)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backwards"])
@pytest.mark.parametrize("steps", list(LENGTHS))
@pytest.mark.parametrize("name", list(LAYERS))
def test_chunked_equals_float64_reference_and_scan_gradients(name, steps, go_backwards):
    cell = LAYERS[name][1]
    p, _, ref = make(cell, input_size=I, hidden=H)
    s0 = random_carry(p, (B,), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (B, steps, I))
    w = jax.random.normal(jax.random.key(3), (B, steps, H))
    lengths = jnp.array(LENGTHS[steps])
    (seq, final), g_fast = _compiled(name, go_backwards)(p, x, s0, lengths, w, "fast")
    (seq_s, final_s), g_scan = _compiled(name, go_backwards)(p, x, s0, lengths, w, "scan")

    want_final, want_seq = run_ref(
        lambda c, xt: ref(p64(p), c, xt), as_tuple(s0), x, lengths=lengths, reverse=go_backwards
    )
    if go_backwards:  # outputs in processing order (Keras), each sequence within its length
        want_seq = want_seq[:, ::-1]
    np.testing.assert_allclose(seq, want_seq, atol=2e-5)
    for got, want in zip(as_tuple(final), want_final, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    assert_tree_close((seq, final), (seq_s, final_s), 1e-5, "outputs vs scan")
    assert_tree_close(g_fast, g_scan, 1e-4, "gradients vs scan")


def p64(p):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), p)


SEGMENT_CASES = {
    "plain": {},
    "reverse": {"reverse": True},
    "mask": {"mask": True},
    "mask-reverse": {"mask": True, "reverse": True},
    "unroll3": {"unroll": 3},
    "bfloat16": {"matmul_dtype": "bfloat16"},
    "autodiff": {"autodiff_min_batch": 1, "mask": True},
}


def test_chunk_steps_hold_chunk_floats_and_at_least_the_minimum():
    opts = LoopOptions()
    assert chunk_steps(16, 4 * 64, opts) == CHUNK_FLOATS // (16 * 4 * 64) == 256
    assert chunk_steps(4, 32, opts) == CHUNK_FLOATS // 128
    assert chunk_steps(64, 4 * 512, opts) == CHUNK_MIN_STEPS  # 8 steps of 2^20 floats
    assert chunk_steps(3, 8, LoopOptions(chunk_min_steps=0, chunk_floats=4 * 24)) == 4
    assert chunk_steps(3, 8, LoopOptions(chunk_min_steps=0, chunk_floats=0)) == 1


@pytest.mark.parametrize(
    "kind,case",
    [  # autodiff_min_batch applies to the LSTM only: for the others it repeats "mask"
        (kind, case)
        for kind in ("rnn", "lstm", "gru")
        for case in SEGMENT_CASES
        if case != "autodiff" or kind == "lstm"
    ],
)
def test_many_small_chunks_equal_one_projection(kind, case):
    """Chunks of 4 steps over T = 0, 3, 4, 11 and 16: the unchunked path's values and gradients."""
    opts = dict(SEGMENT_CASES[case])
    use_mask = opts.pop("mask", False)
    spec = spec_named(kind)
    p, _, _ = make(kind, input_size=I, hidden=H)
    s0 = random_carry(p, (B,), jax.random.key(1))

    def run(p, xs, s0, mask, steps):
        loop = LoopOptions(chunk_min_steps=steps, chunk_floats=0, **opts)
        return dispatch.segment(spec, {}, p, s0, xs, mask, input_mask=None, opts=loop)

    def out_and_grad(steps):
        def loss(p, xs, s0, mask):
            carry, ys = run(p, xs, s0, mask, steps)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(v**2) for v in jax.tree.leaves(carry))

        return jax.jit(lambda *a: (run(*a, steps), jax.grad(loss, argnums=(0, 1, 2))(*a)))

    chunked, whole = out_and_grad(4), out_and_grad(sys.maxsize)
    for steps in (0, 3, 4, 11, 16):
        xs = jax.random.normal(jax.random.key(steps), (steps, B, I))
        mask = jax.random.bernoulli(jax.random.key(9), 0.7, (steps, B)) if use_mask else None
        tol = 2e-2 if "matmul_dtype" in opts else 1e-5
        assert_tree_close(chunked(p, xs, s0, mask), whole(p, xs, s0, mask), tol, f"T={steps}")


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_vmap_bidirectional_and_nan_padding_over_several_chunks(name):
    init = {"rnn": jaxrnn.init_rnn, "lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru}[name]
    layer = LAYERS[name][0]
    steps = 2 * K + 5
    k1, k2 = jax.random.split(jax.random.key(0))
    params = jaxrnn.BidirectionalParams(init(k1, I, H), init(k2, I, H))
    x = jax.random.normal(jax.random.key(1), (2, B, steps, I))
    lengths = jnp.array([[steps, K + 3, 2], [1, 2 * K, K]])
    padded = jnp.where(jnp.arange(steps)[:, None] < lengths[..., None, None], x, jnp.nan)

    def loss(p, x, lengths, impl):
        y = jaxrnn.bidirectional(layer, p, x, seq_lengths=lengths, return_sequences=True, impl=impl)
        return jnp.sum(jnp.tanh(y)), y

    def batched(impl):  # vmap over a leading axis of inputs and lengths, shared parameters
        f = jax.value_and_grad(functools.partial(loss, impl=impl), has_aux=True)
        return jax.jit(jax.vmap(f, in_axes=(None, 0, 0)))

    (_, y_fast), g_fast = batched("fast")(params, padded, lengths)
    (_, y_scan), g_scan = batched("scan")(params, jnp.where(jnp.isnan(padded), 0, padded), lengths)
    for leaf in jax.tree.leaves((y_fast, g_fast)):
        assert bool(jnp.isfinite(leaf).all()), "a padded NaN reached a value or gradient"
    assert_tree_close(y_fast, y_scan, 1e-5, "outputs")
    assert_tree_close(g_fast, g_scan, 1e-4, "gradients (per vmapped row)")
    one = jax.jit(functools.partial(loss, impl="fast"))(params, padded[1], lengths[1])[1]
    np.testing.assert_allclose(y_fast[1], one, atol=1e-6)  # vmap equals a single call


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", ["simple_rnn", "lstm"])
def test_forward_scratch_memory_does_not_grow_with_the_projection(kind, return_sequences):
    """XLA's compiled scratch at T = 200,000 (default chunks): the generic scan's plus a
    few chunk-sized buffers (a chunk's projection and outputs, the tail's), whatever T
    (before chunking the LSTM's projection, T·B·4H floats, made it 33x the scan's)."""
    init, layer = (
        jaxrnn.init_rnn if kind == "simple_rnn" else jaxrnn.init_lstm,
        getattr(jaxrnn, kind),
    )
    params = init(jax.random.key(0), 8, 64)
    x = jax.ShapeDtypeStruct((4, 200_000, 8), jnp.float32)

    def temp(impl):
        f = jax.jit(lambda p, x: layer(p, x, return_sequences=return_sequences, impl=impl))
        return f.lower(params, x).compile().memory_analysis().temp_size_in_bytes

    fast, scan = temp("fast"), temp("scan")
    assert fast <= scan + 4 * (4 * CHUNK_FLOATS), (fast, scan)  # 4 float32 chunks
    assert fast <= 1.5 * scan, (fast, scan)


def test_gru_training_scratch_holds_one_chunk_of_gradients():
    """The GRU's training step at T = 20,000: before chunking its backward pass built the
    per-step pre-activation gradients of all steps, two ``(T, B, 3H)`` arrays; now one
    chunk's. The stored residuals (carries, gates, ``h U_n``) are the same either way."""
    b, t, i, h = 4, 20_000, 8, 64
    params = jaxrnn.init_gru(jax.random.key(0), i, h)
    x = jax.ShapeDtypeStruct((b, t, i), jnp.float32)

    def temp(**kw):
        layer = functools.partial(run_layer, spec_named("gru"), return_sequences=True, **kw)
        f = jax.jit(jax.grad(lambda p, x: jnp.mean(layer(p, x) ** 2)))
        return f.lower(params, x).compile().memory_analysis().temp_size_in_bytes

    chunked, whole, scan = temp(), temp(chunk_min_steps=sys.maxsize), temp(impl="scan")
    per_step_gradients = 2 * t * b * 3 * h * 4  # bytes of float32
    assert chunked <= whole - 0.9 * per_step_gradients, (chunked, whole)
    assert chunked < scan, (chunked, scan)
