"""Cross-framework parity: jaxrnn against PyTorch's nn.RNN / nn.LSTM / nn.GRU (and cells).

Every test builds a PyTorch module under ``torch.manual_seed``, overwrites all
its parameters with U(-0.8, 0.8) values (larger than PyTorch's U(+-1/sqrt(H)) =
+-0.5 at H = 4, with non-zero biases), maps them into jaxrnn's Keras-layout
NamedTuples and compares outputs, final states and gradients in float32
(atol = rtol = 1e-5). The largest absolute difference seen in each group is
printed when the module finishes.

Mapping (PyTorch -> jaxrnn), per layer ``k`` and direction (``_reverse`` = backward):

* RNN / LSTM: ``kernel = weight_ih.T``, ``recurrent_kernel = weight_hh.T``,
  ``bias = bias_ih + bias_hh`` (LSTM gate order i, f, g, o is the same).
* GRU: PyTorch's gate blocks ``r, z, n`` are reordered to ``z, r, n``;
  ``kernel = perm(weight_ih).T``, ``recurrent_kernel = perm(weight_hh).T``,
  ``bias = perm(bias_ih)``, ``recurrent_bias = perm(bias_hh)``.
* States: PyTorch's ``h_n[k * D + d]`` (``D`` = 2 if bidirectional) is jaxrnn's
  state of layer ``k``, direction ``d``; LSTM ``(h, c)`` is ``LSTMState(h, c)``.
* Gradients map the same way, except that ``d bias`` of RNN/LSTM equals both
  ``bias_ih.grad`` and ``bias_hh.grad`` (each, not their sum).
"""

from __future__ import annotations

import collections
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import jaxrnn  # noqa: E402
from jaxrnn import BidirectionalParams, GRUParams, LSTMParams, LSTMState, RNNParams  # noqa: E402
from tests.helpers import eager_unless, max_diff_reporter  # noqa: E402

ATOL = RTOL = 1e-5
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
IMPLS = ("auto", "scan")  # the fused path (custom VJP) and the generic scan of the steps
B, T, I, H = 3, 5, 3, 4
LENGTHS = [5, 2, 4]  # unsorted: pack_padded_sequence(enforce_sorted=False) must re-order
SCALE = 0.8

torch.set_num_threads(1)

# ---------------------------------------------------------------------------
# max |jaxrnn - torch| per group, reported at module teardown
# ---------------------------------------------------------------------------

MAX_DIFF: dict[str, float] = collections.defaultdict(float)


_report_max_diffs = max_diff_reporter(MAX_DIFF, "torch")

COMPILED_TESTS = {"test_jit_matches_torch", "test_jit_gradients_match_torch"}
_eager_unless_compiled = eager_unless(COMPILED_TESTS)


def np32(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    return np.asarray(a)


def assert_close(group: str, actual, expected) -> None:
    a, e = np32(actual), np32(expected)
    assert a.shape == e.shape, f"{group}: shape {a.shape} != torch {e.shape}"
    assert a.dtype == np.float32, f"{group}: dtype {a.dtype}"
    assert np.all(np.isfinite(e)), f"{group}: torch reference is not finite"
    diff = float(np.max(np.abs(a.astype(np.float64) - e))) if a.size else 0.0
    MAX_DIFF[group] = max(MAX_DIFF[group], diff)
    np.testing.assert_allclose(a, e, atol=ATOL, rtol=RTOL, err_msg=group)


# ---------------------------------------------------------------------------
# PyTorch -> jaxrnn mapping
# ---------------------------------------------------------------------------


def gru_perm(a: np.ndarray) -> np.ndarray:
    """PyTorch's gate blocks ``r, z, n`` along axis 0 -> jaxrnn/Keras' ``z, r, n``."""
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def map_params(kind, w_ih, w_hh, b_ih, b_hh, *, grads=False):
    """jaxrnn params from PyTorch tensors (or from their ``.grad``s when ``grads``).

    For gradients, RNN/LSTM's single bias gets ``bias_ih.grad`` (equal to
    ``bias_hh.grad``: the two biases enter only through their sum).
    """
    w_ih, w_hh = np32(w_ih), np32(w_hh)
    b_ih = None if b_ih is None else np32(b_ih)
    b_hh = None if b_hh is None else np32(b_hh)
    if kind == "gru":
        return GRUParams(
            kernel=jnp.asarray(gru_perm(w_ih).T),
            recurrent_kernel=jnp.asarray(gru_perm(w_hh).T),
            bias=None if b_ih is None else jnp.asarray(gru_perm(b_ih)),
            recurrent_bias=None if b_hh is None else jnp.asarray(gru_perm(b_hh)),
        )
    bias = None
    if b_ih is not None:
        bias = jnp.asarray(b_ih if grads else b_ih + b_hh)
    cls = LSTMParams if kind == "lstm" else RNNParams
    return cls(jnp.asarray(w_ih.T), jnp.asarray(w_hh.T), bias)


def module_params(kind, mod, *, num_layers=1, bidirectional=False, grads=False):
    """Per-layer jaxrnn params (``BidirectionalParams`` when bidirectional) of a torch module."""
    out = []
    for k in range(num_layers):
        dirs = []
        for sfx in ("", "_reverse") if bidirectional else ("",):
            tensors = [
                getattr(mod, f"{n}_l{k}{sfx}", None)
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            if grads:
                if tensors[2] is not None and kind != "gru":
                    np.testing.assert_allclose(
                        np32(tensors[2].grad), np32(tensors[3].grad), atol=1e-6, rtol=1e-6
                    )
                tensors = [None if t is None else t.grad for t in tensors]
            dirs.append(map_params(kind, *tensors, grads=grads))
        out.append(BidirectionalParams(*dirs) if bidirectional else dirs[0])
    return out


def module_states(kind, hx, *, num_layers=1, bidirectional=False, grads=False):
    """Per-layer jaxrnn states from PyTorch's ``h0`` / ``(h0, c0)`` (or their grads)."""
    if kind == "lstm":
        h, c = hx
        h, c = (h.grad, c.grad) if grads else (h, c)
        h, c = np32(h), np32(c)
        parts = [LSTMState(jnp.asarray(h[i]), jnp.asarray(c[i])) for i in range(len(h))]
    else:
        h = np32(hx.grad if grads else hx)
        parts = [jnp.asarray(h[i]) for i in range(len(h))]
    if bidirectional:
        return [(parts[2 * k], parts[2 * k + 1]) for k in range(num_layers)]
    return parts


def flat_finals(finals, bidirectional):
    """jaxrnn's per-layer final states in PyTorch's ``h_n`` order (layer-major)."""
    return [s for f in finals for s in (f if bidirectional else (f,))]


def assert_states(group, kind, jax_states, torch_hn):
    """Compare a list of jaxrnn states with PyTorch's stacked ``h_n`` / ``(h_n, c_n)``."""
    if kind == "lstm":
        h_n, c_n = torch_hn
        assert len(jax_states) == len(h_n)
        for i, s in enumerate(jax_states):
            assert isinstance(s, LSTMState)
            assert_close(group, s.h, h_n[i])
            assert_close(group, s.c, c_n[i])
    else:
        assert len(jax_states) == len(torch_hn)
        for i, s in enumerate(jax_states):
            assert_close(group, s, torch_hn[i])


# ---------------------------------------------------------------------------
# building matching modules, inputs and runs
# ---------------------------------------------------------------------------


def randomise(mod) -> None:
    with torch.no_grad():
        for p in mod.parameters():
            p.uniform_(-SCALE, SCALE)


def torch_module(kind, *, num_layers=1, bidirectional=False, batch_first=True, bias=True):
    kw = dict(
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias
    )
    if kind.startswith("rnn"):
        mod = nn.RNN(I, H, nonlinearity=kind[4:], **kw)
    elif kind == "lstm":
        mod = nn.LSTM(I, H, **kw)
    else:
        mod = nn.GRU(I, H, **kw)
    randomise(mod)
    return mod


def torch_state(kind, n, requires_grad=False):
    def one():
        return (0.7 * torch.randn(n, B, H)).requires_grad_(requires_grad)

    return (one(), one()) if kind == "lstm" else one()


def jax_layer(kind, impl="auto"):
    if kind.startswith("rnn"):
        return functools.partial(jaxrnn.simple_rnn, activation=kind[4:], impl=impl)
    return functools.partial(jaxrnn.lstm if kind == "lstm" else jaxrnn.gru, impl=impl)


def jax_forward(
    kind,
    params,
    x,
    states,
    *,
    num_layers=1,
    bidirectional=False,
    time_major=False,
    seq_lengths=None,
    impl="auto",
    return_sequences=True,
):
    """Run jaxrnn like the torch module: a layer, ``bidirectional`` or ``stacked``.

    Returns ``(outputs, final states in h_n order)``.
    """
    base = jax_layer(kind, impl)
    layer = functools.partial(jaxrnn.bidirectional, base) if bidirectional else base
    kw = dict(
        return_sequences=return_sequences,
        return_state=True,
        time_major=time_major,
        seq_lengths=seq_lengths,
    )
    if num_layers == 1:
        out, final = layer(params[0], x, initial_state=states[0], **kw)
        finals = [final]
    else:
        out, finals = jaxrnn.stacked(layer, params, x, initial_state=states, **kw)
        assert len(finals) == num_layers
    return out, flat_finals(finals, bidirectional)


def torch_forward(mod, x, hx, lengths=None, batch_first=True):
    """``(padded outputs, h_n)``; with ``lengths`` via pack_padded_sequence."""
    if lengths is None:
        return mod(x, hx)
    packed = pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
    )
    out, hn = mod(packed, hx)
    out, out_lengths = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    assert out_lengths.tolist() == list(lengths)
    return out, hn


class Case:
    """A random torch module, input and initial state with their jaxrnn counterparts."""

    def __init__(
        self,
        kind,
        seed,
        *,
        num_layers=1,
        bidirectional=False,
        batch_first=True,
        bias=True,
        requires_grad=False,
    ):
        torch.manual_seed(seed)
        self.kind, self.num_layers, self.bidirectional = kind, num_layers, bidirectional
        self.batch_first = batch_first
        self.mod = torch_module(
            kind,
            num_layers=num_layers,
            bidirectional=bidirectional,
            batch_first=batch_first,
            bias=bias,
        )
        self.d = 2 if bidirectional else 1
        self.x = torch.randn(*((B, T, I) if batch_first else (T, B, I)))
        self.x.requires_grad_(requires_grad)
        self.hx = torch_state(kind, num_layers * self.d, requires_grad)
        self.params = module_params(
            kind, self.mod, num_layers=num_layers, bidirectional=bidirectional
        )
        self.states = module_states(
            kind, self.hx, num_layers=num_layers, bidirectional=bidirectional
        )
        self.jx = jnp.asarray(np32(self.x))

    def torch(self, lengths=None):
        return torch_forward(self.mod, self.x, self.hx, lengths, self.batch_first)

    def jax(self, lengths=None, impl="auto", **kw):
        return jax_forward(
            self.kind,
            self.params,
            self.jx,
            self.states,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            time_major=not self.batch_first,
            seq_lengths=None if lengths is None else jnp.array(lengths),
            impl=impl,
            **kw,
        )


# ---------------------------------------------------------------------------
# 1. cells
# ---------------------------------------------------------------------------


def torch_cell(kind, bias=True):
    if kind.startswith("rnn"):
        cell = nn.RNNCell(I, H, bias=bias, nonlinearity=kind[4:])
    elif kind == "lstm":
        cell = nn.LSTMCell(I, H, bias=bias)
    else:
        cell = nn.GRUCell(I, H, bias=bias)
    randomise(cell)
    return cell


def jax_step(kind):
    if kind.startswith("rnn"):
        return functools.partial(jaxrnn.rnn_step, activation=kind[4:])
    return jaxrnn.lstm_step if kind == "lstm" else jaxrnn.gru_step


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_step_matches_torch(kind, batched, bias):
    torch.manual_seed(200 + 4 * KINDS.index(kind) + 2 * batched + bias)
    cell = torch_cell(kind, bias)
    lead = (B,) if batched else ()
    x = torch.randn(*lead, I)
    hx = [0.7 * torch.randn(*lead, H) for _ in range(2 if kind == "lstm" else 1)]
    params = map_params(kind, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert (params.bias is None) == (not bias)
    step = jax_step(kind)
    with torch.no_grad():
        if kind == "lstm":
            h_ref, c_ref = cell(x, (hx[0], hx[1]))
            carry, y = step(
                params,
                LSTMState(jnp.asarray(np32(hx[0])), jnp.asarray(np32(hx[1]))),
                jnp.asarray(np32(x)),
            )
            assert_close("cell states", carry.h, h_ref)
            assert_close("cell states", carry.c, c_ref)
        else:
            h_ref = cell(x, hx[0])
            carry, y = step(params, jnp.asarray(np32(hx[0])), jnp.asarray(np32(x)))
            assert_close("cell states", carry, h_ref)
    assert y.shape == (*lead, H)
    assert_close("cell outputs", y, h_ref)
    assert float(np.abs(np32(h_ref)).max()) > 0.05  # values are not tiny


def test_gru_gate_order_matters():
    """The r/z permutation is needed: without it the GRU cell disagrees with torch."""
    torch.manual_seed(3)
    cell = torch_cell("gru")
    x, h = torch.randn(B, I), torch.randn(B, H)
    wrong = GRUParams(
        jnp.asarray(np32(cell.weight_ih).T),
        jnp.asarray(np32(cell.weight_hh).T),
        jnp.asarray(np32(cell.bias_ih)),
        jnp.asarray(np32(cell.bias_hh)),
    )
    right = map_params("gru", cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    ref = np32(cell(x, h))
    jx, jh = jnp.asarray(np32(x)), jnp.asarray(np32(h))
    assert_close("cell outputs", jaxrnn.gru_step(right, jh, jx)[1], ref)
    assert np.abs(np32(jaxrnn.gru_step(wrong, jh, jx)[1]) - ref).max() > 1e-2


# ---------------------------------------------------------------------------
# 2. single layers, batch-first and time-major
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "time-major"])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_matches_torch(kind, batch_first, impl):
    case = Case(kind, 20 + KINDS.index(kind), batch_first=batch_first)
    with torch.no_grad():
        out_ref, hn_ref = case.torch()
    out, finals = case.jax(impl=impl)
    assert_close("layer outputs", out, out_ref)
    assert_states("layer states", kind, finals, hn_ref)
    # the last output (return_sequences=False) is the top layer's final h
    last, _ = case.jax(impl=impl, return_sequences=False)
    assert_close("layer outputs", last, (hn_ref[0] if kind == "lstm" else hn_ref)[-1])


@pytest.mark.parametrize("kind", KINDS)
def test_layer_without_bias_matches_torch(kind):
    case = Case(kind, 30 + KINDS.index(kind), bias=False)
    assert case.params[0].bias is None
    with torch.no_grad():
        out_ref, hn_ref = case.torch()
    out, finals = case.jax()
    assert_close("layer outputs", out, out_ref)
    assert_states("layer states", kind, finals, hn_ref)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_default_zero_state_matches_torch(kind):
    case = Case(kind, 35)
    with torch.no_grad():
        out_ref, hn_ref = case.mod(case.x)  # hx=None: zeros
    zero = jaxrnn.zero_state(case.params[0], (B,))
    out, finals = jax_forward(kind, case.params, case.jx, [zero])
    assert_close("layer outputs", out, out_ref)
    assert_states("layer states", kind, finals, hn_ref)
    out_none = jax_layer(kind)(case.params[0], case.jx, return_sequences=True)
    assert_close("layer outputs", out_none, out_ref)


# ---------------------------------------------------------------------------
# 3. stacked and bidirectional
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_stacked_matches_torch(kind, num_layers):
    case = Case(kind, 40 + num_layers, num_layers=num_layers, batch_first=num_layers == 2)
    with torch.no_grad():
        out_ref, hn_ref = case.torch()
    out, finals = case.jax()
    assert_close("stacked outputs", out, out_ref)
    assert_states("stacked states", kind, finals, hn_ref)


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "time-major"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_matches_torch(kind, num_layers, batch_first):
    case = Case(
        kind, 50 + num_layers, num_layers=num_layers, bidirectional=True, batch_first=batch_first
    )
    with torch.no_grad():
        out_ref, hn_ref = case.torch()
    out, finals = case.jax()
    assert out.shape == (*case.jx.shape[:2], 2 * H)
    assert_close("bidirectional outputs", out, out_ref)
    assert_states("bidirectional states", kind, finals, hn_ref)
    # the reverse direction's final h is its output at step 0
    h_top = (hn_ref[0] if kind == "lstm" else hn_ref)[-1]
    first = out_ref[:, 0] if batch_first else out_ref[0]
    np.testing.assert_allclose(np32(h_top), np32(first[:, H:]), atol=1e-6)


# ---------------------------------------------------------------------------
# 4. variable lengths: pack_padded_sequence vs seq_lengths
# ---------------------------------------------------------------------------


def padding_mask(batch_first):
    valid = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]  # (B, T)
    return valid if batch_first else valid.T


PACKED_LAYOUTS = {  # (num_layers, bidirectional, batch_first)
    "uni": (1, False, True),
    "uni-time-major": (1, False, False),
    "uni-2-layers": (2, False, True),
    "bi": (1, True, True),
    "bi-time-major": (1, True, False),
    "bi-2-layers": (2, True, True),
}
PACKED_CASES = [(kind, name) for kind in ("lstm", "gru") for name in PACKED_LAYOUTS]
PACKED_CASES += [("rnn_tanh", "bi"), ("rnn_relu", "uni-2-layers")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind,layout", PACKED_CASES, ids=[f"{k}-{n}" for k, n in PACKED_CASES])
def test_packed_sequences_match_torch(kind, layout, impl):
    num_layers, bidirectional, batch_first = PACKED_LAYOUTS[layout]
    case = Case(
        kind,
        60 + num_layers + 2 * bidirectional,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
    )
    with torch.no_grad():
        out_ref, hn_ref = case.torch(LENGTHS)
    out, finals = case.jax(LENGTHS, impl=impl)
    valid = padding_mask(batch_first)
    out, out_ref = np32(out), np32(out_ref)
    assert_close("packed outputs", out[valid], out_ref[valid])
    assert np.all(out_ref[~valid] == 0)  # pad_packed_sequence pads with zeros
    assert np.all(out[~valid] == 0), "jaxrnn: padded outputs are not zero"
    MAX_DIFF["packed outputs"] = max(MAX_DIFF["packed outputs"], float(np.abs(out - out_ref).max()))
    assert_states("packed states", kind, finals, hn_ref)
    # the final state differs from the unpacked run: the lengths are really used
    with torch.no_grad():
        _, hn_full = case.torch()
    h_full = np32(hn_full[0] if kind == "lstm" else hn_full)
    assert np.abs(h_full - np32(hn_ref[0] if kind == "lstm" else hn_ref)).max() > 1e-3
    # return_sequences=False: forward's last valid output (+ backward's output at 0)
    last, _ = case.jax(LENGTHS, impl=impl, return_sequences=False)
    h_top = np32(hn_ref[0] if kind == "lstm" else hn_ref)
    expected = np.concatenate([h_top[-2], h_top[-1]], -1) if bidirectional else h_top[-1]
    assert_close("packed outputs", last, expected)


# ---------------------------------------------------------------------------
# 5. gradients
# ---------------------------------------------------------------------------


def loss_weights(case, seed):
    g = torch.Generator().manual_seed(seed)
    out_shape = (*case.x.shape[:2], case.d * H)
    n = case.num_layers * case.d
    wy = torch.randn(out_shape, generator=g)
    wh = torch.randn(n, B, H, generator=g)
    wc = torch.randn(n, B, H, generator=g)
    return wy, wh, wc


def torch_loss(case, lengths, weights):
    wy, wh, wc = weights
    out, hn = case.torch(lengths)
    if case.kind == "lstm":
        return (out * wy).sum() + (hn[0] * wh).sum() + (hn[1] * wc).sum()
    return (out * wy).sum() + (hn * wh).sum()


def make_jax_loss(case, lengths, weights, impl, jit=False):
    wy, wh, wc = (jnp.asarray(np32(w)) for w in weights)
    seq_lengths = None if lengths is None else jnp.array(lengths)

    def loss(params, x, states):
        out, finals = jax_forward(
            case.kind,
            params,
            x,
            states,
            num_layers=case.num_layers,
            bidirectional=case.bidirectional,
            time_major=not case.batch_first,
            seq_lengths=seq_lengths,
            impl=impl,
        )
        total = jnp.sum(out * wy)
        for i, s in enumerate(finals):
            if case.kind == "lstm":
                total = total + jnp.sum(s.h * wh[i]) + jnp.sum(s.c * wc[i])
            else:
                total = total + jnp.sum(s * wh[i])
        return total

    fn = jax.value_and_grad(loss, argnums=(0, 1, 2))
    return jax.jit(fn) if jit else fn


def check_gradients(case, lengths, impl, *, jit=False, group="gradients"):
    weights = loss_weights(case, 7)
    ref = torch_loss(case, lengths, weights)
    ref.backward()
    value, (g_params, g_x, g_states) = make_jax_loss(case, lengths, weights, impl, jit)(
        case.params, case.jx, case.states
    )
    np.testing.assert_allclose(float(value), float(ref.detach()), rtol=1e-5, atol=1e-4)
    exp_params = module_params(
        case.kind,
        case.mod,
        num_layers=case.num_layers,
        bidirectional=case.bidirectional,
        grads=True,
    )
    exp_states = module_states(
        case.kind, case.hx, num_layers=case.num_layers, bidirectional=case.bidirectional, grads=True
    )
    assert len(g_params) == len(exp_params)
    for got, exp in zip(g_params, exp_params, strict=True):
        for d_got, d_exp in zip(
            *(((p.forward, p.backward) if case.bidirectional else (p,)) for p in (got, exp)),
            strict=True,
        ):
            assert type(d_got) is type(d_exp)
            for field in d_exp._fields:
                e = getattr(d_exp, field)
                if e is None:
                    assert getattr(d_got, field) is None
                    continue
                assert_close(f"{group} params", getattr(d_got, field), e)
    assert_close(f"{group} x", g_x, case.x.grad)
    if lengths is not None:  # padded inputs get no gradient in either library
        pad = ~padding_mask(case.batch_first)
        assert np.all(np32(g_x)[pad] == 0)
    for got, exp in zip(g_states, exp_states, strict=True):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(exp), strict=True):
            assert_close(f"{group} state", a, b)
    assert float(np.abs(np32(case.x.grad)).max()) > 1e-3  # the check is not vacuous


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "seq_lengths"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_torch(kind, lengths, impl):
    case = Case(kind, 70 + KINDS.index(kind), requires_grad=True)
    check_gradients(case, lengths, impl)


@pytest.mark.parametrize(
    "layout",
    [(2, False, False), (1, True, True), (2, True, True)],
    ids=["2-layers-time-major", "bi", "bi-2-layers"],
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradients_stacked_bidirectional_packed_match_torch(kind, layout):
    num_layers, bidirectional, batch_first = layout
    case = Case(
        kind,
        80 + num_layers,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        requires_grad=True,
    )
    check_gradients(case, LENGTHS, "auto")


# ---------------------------------------------------------------------------
# 6. jax.jit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_jit_matches_torch(kind):
    case = Case(kind, 90 + KINDS.index(kind), num_layers=2, bidirectional=True)
    with torch.no_grad():
        out_ref, hn_ref = case.torch(LENGTHS)

    @jax.jit
    def run(params, x, states, seq_lengths):
        return jax_forward(
            kind, params, x, states, num_layers=2, bidirectional=True, seq_lengths=seq_lengths
        )

    out, finals = run(case.params, case.jx, case.states, jnp.array(LENGTHS))
    assert_close("jit outputs", out, out_ref)
    assert_states("jit states", kind, finals, hn_ref)


@pytest.mark.parametrize("kind", KINDS)
def test_jit_gradients_match_torch(kind):
    case = Case(kind, 95 + KINDS.index(kind), requires_grad=True)
    check_gradients(case, LENGTHS, "auto", jit=True, group="jit gradients")
