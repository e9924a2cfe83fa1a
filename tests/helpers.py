"""Code shared by the test modules (imported as ``from tests.helpers import ...``).

* Float64 NumPy references of the three cells and of a layer run, written from
  the equations, independent of jaxrnn's code (``rnn_ref``, ``lstm_ref``,
  ``gru_ref``, ``run_ref``).
* The cells' test cases: randomised parameters (``make``) and carries
  (``random_carry``), each cell with its reference (``CELLS``).
* Fixtures of the cross-framework parity modules (``max_diff_reporter``,
  ``eager_unless``).
* The Python code blocks of Markdown files (README, docs/) and how they run
  (``python_blocks``, ``run_block``).

``tests`` is a package, so pytest's default import mode puts the repository
root on ``sys.path`` and ``tests.helpers`` imports without editing it.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import LSTMState

# ---------------------------------------------------------------------------
# float64 NumPy references
# ---------------------------------------------------------------------------


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def relu(a):
    return np.maximum(a, 0)


def np64(p):
    """A params NamedTuple as float64 NumPy arrays (None stays None)."""
    return type(p)(*(None if v is None else np.asarray(v, np.float64) for v in p))


def rnn_ref(p, h, x, act=np.tanh, m_x=None, m_h=None):
    p = np64(p)
    x = x if m_x is None else x * m_x
    hh = h if m_h is None else h * m_h
    a = x @ p.kernel + hh @ p.recurrent_kernel
    if p.bias is not None:
        a = a + p.bias
    return act(a)


def _gate(v, w, m, g, hidden):
    """(v * m_g) @ w_g for gate g (m: None, shared (..., D) or per gate (..., G, D))."""
    if m is not None:
        v = v * (m if m.ndim == v.ndim else m[..., g, :])
    return v @ w[:, g * hidden : (g + 1) * hidden]


def lstm_ref(p, h, c, x, act=np.tanh, rec=sigmoid, m_x=None, m_h=None):
    p = np64(p)
    hidden = p.recurrent_kernel.shape[0]
    b = np.zeros(4 * hidden) if p.bias is None else p.bias
    pre = [
        _gate(x, p.kernel, m_x, g, hidden)
        + _gate(h, p.recurrent_kernel, m_h, g, hidden)
        + b[g * hidden : (g + 1) * hidden]
        for g in range(4)
    ]
    i, f, g, o = rec(pre[0]), rec(pre[1]), act(pre[2]), rec(pre[3])
    c = f * c + i * g
    h = o * act(c)
    return h, c


def gru_ref(p, h, x, act=np.tanh, rec=sigmoid, reset_after=True, m_x=None, m_h=None):
    p = np64(p)
    hidden = p.recurrent_kernel.shape[0]
    bx = np.zeros(3 * hidden) if p.bias is None else p.bias
    bh = np.zeros(3 * hidden) if p.recurrent_bias is None else p.recurrent_bias
    xs = [_gate(x, p.kernel, m_x, g, hidden) + bx[g * hidden : (g + 1) * hidden] for g in range(3)]
    u = p.recurrent_kernel
    hz = _gate(h, u, m_h, 0, hidden) + bh[:hidden]
    hr = _gate(h, u, m_h, 1, hidden) + bh[hidden : 2 * hidden]
    z, r = rec(xs[0] + hz), rec(xs[1] + hr)
    if reset_after:
        n = act(xs[2] + r * (_gate(h, u, m_h, 2, hidden) + bh[2 * hidden :]))
    else:
        hn = h if m_h is None else h * (m_h if m_h.ndim == h.ndim else m_h[..., 2, :])
        n = act(xs[2] + (r * hn) @ u[:, 2 * hidden :] + bh[2 * hidden :])
    return z * h + (1 - z) * n


def run_ref(step, carry, xs, lengths=None, reverse=False):
    """Batch-major loop with the documented semantics; carry is a tuple of (B, H) arrays.

    step(carry_tuple, x_b) -> carry_tuple, output is carry[0]. Each sequence is
    processed alone, over its own valid steps, reversed within its length.
    """
    xs = np.asarray(xs, np.float64)
    batch, steps = xs.shape[:2]
    carry = tuple(np.asarray(c, np.float64) for c in carry)
    hidden = carry[0].shape[-1]
    ys = np.zeros((batch, steps, hidden))
    finals = [np.array(c) for c in carry]
    for b in range(batch):
        n = steps if lengths is None else int(np.clip(lengths[b], 0, steps))
        cb = tuple(c[b] for c in carry)
        order = range(n - 1, -1, -1) if reverse else range(n)
        for t in order:
            cb = step(cb, xs[b, t])
            ys[b, t] = cb[0]
        for k, c in enumerate(cb):
            finals[k][b] = c
    return tuple(finals), ys


# ---------------------------------------------------------------------------
# the cells' test cases
# ---------------------------------------------------------------------------


def randomise(params, key, scale=0.5):
    """Non-zero biases and O(1) weights so every term of the equations matters."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree,
        [scale * jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, leaves, strict=True)],
    )


# name -> (init, step, step kwargs, reference(p, carry_tuple, x) -> carry_tuple)
CELLS = {
    "rnn": (jaxrnn.init_rnn, jaxrnn.rnn_step, {}, lambda p, c, x: (rnn_ref(p, c[0], x),)),
    "rnn_relu": (
        jaxrnn.init_rnn,
        jaxrnn.rnn_step,
        {"activation": "relu"},
        lambda p, c, x: (rnn_ref(p, c[0], x, act=relu),),
    ),
    "lstm": (jaxrnn.init_lstm, jaxrnn.lstm_step, {}, lambda p, c, x: lstm_ref(p, c[0], c[1], x)),
    "gru": (jaxrnn.init_gru, jaxrnn.gru_step, {}, lambda p, c, x: (gru_ref(p, c[0], x),)),
    "gru_reset_before": (
        functools.partial(jaxrnn.init_gru, reset_after=False),
        jaxrnn.gru_step,
        {"reset_after": False},
        lambda p, c, x: (gru_ref(p, c[0], x, reset_after=False),),
    ),
}


def make(name, input_size=3, hidden=4, seed=0, dtype=jnp.float32):
    """Randomised parameters of cell ``name``, its step function and its reference."""
    init, step, kwargs, ref = CELLS[name]
    p = randomise(
        init(jax.random.key(seed), input_size, hidden, dtype=dtype), jax.random.key(seed + 1)
    )
    return p, functools.partial(step, **kwargs), ref


def random_carry(p, batch_shape, key):
    zero = jaxrnn.zero_state(p, batch_shape)
    leaves, tree = jax.tree.flatten(zero)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, leaves, strict=True)]
    )


def as_tuple(carry):
    """A carry as the tuple of arrays the references take (LSTM: (h, c))."""
    return tuple(carry) if isinstance(carry, LSTMState) else (carry,)


# ---------------------------------------------------------------------------
# fixtures of the cross-framework parity modules
# ---------------------------------------------------------------------------


def max_diff_reporter(max_diff: dict[str, float], other: str):
    """A module fixture printing ``max |jaxrnn - other|`` per group at teardown."""

    @pytest.fixture(scope="module", autouse=True)
    def _report_max_diffs(request):
        yield
        lines = ["", f"max |jaxrnn - {other}| per group (float32):"]
        lines += [f"  {group:<30s} {max_diff[group]:.3e}" for group in sorted(max_diff)]
        capman = request.config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            with capman.global_and_fixture_disabled():
                print("\n".join(lines))
        else:  # pragma: no cover
            print("\n".join(lines))

    return _report_max_diffs


def eager_unless(compiled_tests: set[str]):
    """An autouse fixture running tests op by op (``jax.disable_jit``), except ``compiled_tests``.

    Eager execution runs ``lax.scan`` as a Python loop over cached primitive
    kernels instead of compiling one XLA program per configuration (0.1-0.5 s
    each), which keeps the parity modules fast; the listed tests cover the
    compiled path.
    """

    @pytest.fixture(autouse=True)
    def _eager_unless_compiled(request):
        if request.function.__name__ in compiled_tests:
            yield
        else:
            with jax.disable_jit():
                yield

    return _eager_unless_compiled


def rel_err(a, b) -> float:
    """max |a - b| / max |b| in float64 (0 for empty arrays)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def assert_tree_close(got, ref, tol, what):
    """Every leaf of ``got`` within relative error ``tol`` (``rel_err``) of ``ref``'s."""
    for (path, g), r in zip(
        jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(ref), strict=True
    ):
        err = rel_err(g, r)
        assert err <= tol, f"{what}{jax.tree_util.keystr(path)}: relative error {err:.2e}"


# ---------------------------------------------------------------------------
# Python code blocks of Markdown files
# ---------------------------------------------------------------------------

# A ```python fence, possibly indented (inside a list item or an admonition), up to
# the closing fence at the same indentation. An HTML comment ``<!-- no-test -->`` on
# the line before the fence marks a block that is shown but not run.
_FENCE = re.compile(
    r"^(?P<skip>[ \t]*<!-- no-test -->[ \t]*\n)?(?P<indent>[ \t]*)```python[ \t]*\n"
    r"(?P<code>.*?)^(?P=indent)```[ \t]*$",
    flags=re.S | re.M,
)


@dataclasses.dataclass(frozen=True)
class CodeBlock:
    """One ```python block of a Markdown file; ``line`` is its first code line (1-based)."""

    path: pathlib.Path
    line: int
    code: str
    skip: bool

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def python_blocks(path: pathlib.Path) -> list[CodeBlock]:
    """The ```python blocks of the Markdown file ``path``, in order, dedented."""
    text = path.read_text()
    return [
        CodeBlock(
            path=path,
            line=text.count("\n", 0, m.start("code")) + 1,
            code=textwrap.dedent(m.group("code")),
            skip=m.group("skip") is not None,
        )
        for m in _FENCE.finditer(text)
    ]


def run_block(block: CodeBlock, namespace: dict) -> None:
    """Execute ``block`` in ``namespace``; tracebacks point at the Markdown file's lines."""
    source = "\n" * (block.line - 1) + block.code
    exec(compile(source, str(block.path), "exec"), namespace)
