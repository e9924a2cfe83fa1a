"""jaxrnn.orthogonal: jax.nn.initializers.orthogonal without a LAPACK call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn


@pytest.mark.parametrize("shape", [(4, 4), (4, 16), (16, 4), (64, 256), (100, 400), (3, 5, 7)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_jax_orthogonal(shape, seed):
    key = jax.random.key(seed)
    got = jaxrnn.orthogonal()(key, shape)
    want = jax.nn.initializers.orthogonal()(key, shape)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, atol=1e-5)
    m = np.asarray(got, np.float64).reshape(-1, shape[-1])
    small = min(m.shape)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(small), atol=2e-5)


def test_scale_column_axis_and_errors():
    key = jax.random.key(3)
    got = jaxrnn.orthogonal(scale=2.0, column_axis=0)(key, (6, 3))
    want = jax.nn.initializers.orthogonal(scale=2.0, column_axis=0)(key, (6, 3))
    np.testing.assert_allclose(got, want, atol=2e-5)
    with pytest.raises(ValueError, match=r"orthogonal: shape=\(5,\); .* at least 2 axes"):
        jaxrnn.orthogonal()(key, (5,))


def test_no_lapack_call_under_vmap_and_in_the_default_inits():
    """A batched LAPACK call can deadlock several host devices (see jaxrnn/_cells/orthogonal.py)."""
    keys = jax.random.split(jax.random.key(0), 4)
    for init in (jaxrnn.init_rnn, jaxrnn.init_lstm, jaxrnn.init_gru):
        text = jax.jit(jax.vmap(lambda k, init=init: init(k, 3, 100))).lower(keys).as_text()
        assert "lapack" not in text and "custom_call" not in text
    # the jax initialiser does call LAPACK: the check above can fail
    text = jax.jit(jax.vmap(lambda k: jax.nn.initializers.orthogonal()(k, (100, 400)))).lower(keys)
    assert "lapack" in text.as_text()
    # same values as before the change, under vmap too
    got = jax.vmap(lambda k: jaxrnn.init_lstm(k, 3, 8).recurrent_kernel)(keys)
    want = jax.vmap(
        lambda k: (
            jaxrnn.init_lstm(
                k, 3, 8, recurrent_init=jax.nn.initializers.orthogonal()
            ).recurrent_kernel
        )
    )(keys)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_half_precision():
    p = jaxrnn.init_gru(jax.random.key(0), 3, 8, dtype=jnp.bfloat16)  # drawn in float32, cast
    assert p.recurrent_kernel.dtype == jnp.bfloat16
    u = p.recurrent_kernel.astype(jnp.float32)  # (H, 3H): orthonormal rows
    np.testing.assert_allclose(u @ u.T, np.eye(8), atol=3e-2)
