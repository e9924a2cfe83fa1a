"""The layer options (``jaxrnn._options``) against the code that must agree with them.

* every layer function's explicit signature equals its cell's options then
  ``LAYER_OPTIONS`` (names, order, defaults);
* the docstrings document them: ``jaxrnn.lstm`` every option as ``name: doc``,
  ``simple_rnn``/``gru`` their cell options so and the common options by name;
* every ``Option.check`` refuses a bad value, naming the option, and the static
  options are exactly the options held in ``_layers._Plan``;
* the layering of the package (which module may import which);
* adding a cell is one ``register(CellSpec(...))``;
* the Flax modules take the same definitions (``_flax_common.module_options``).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pathlib
import re
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import _layers, _options
from jaxrnn._cells import spec as cell_spec
from jaxrnn._fused import dispatch

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxrnn"

SPECS = cell_spec.specs()
SPEC_IDS = [s.kind for s in SPECS]


def _norm(text: str) -> str:
    """Runs of whitespace collapsed to one space."""
    return re.sub(r"\s+", " ", text).strip()


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", text) is not None


# -- (a) signatures ----------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_layer_signature_is_params_x_then_the_declared_options(spec):
    fn = _layers.layer_for(spec)
    assert fn is getattr(jaxrnn, spec.layer), f"layer_for({spec.kind!r}) is not jaxrnn.{spec.layer}"
    params = list(inspect.signature(fn).parameters.values())
    head = [(p.name, p.kind, p.default) for p in params[:2]]
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert head == [
        ("params", positional, inspect.Parameter.empty),
        ("x", positional, inspect.Parameter.empty),
    ], f"{spec.layer}: expected (params, x, *, ...), got {head}"
    rest = params[2:]
    bad_kind = [p.name for p in rest if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not bad_kind, f"{spec.layer}: not keyword-only: {bad_kind}"
    declared = _options.layer_options(spec.options)
    assert [p.name for p in rest] == [o.name for o in declared], (
        f"{spec.layer}: keyword names/order differ from _options.layer_options({spec.options})"
    )
    for p, o in zip(rest, declared, strict=True):
        assert p.default == o.default, (
            f"{spec.layer}({o.name}=...): signature default {p.default!r}, "
            f"Option default {o.default!r}"
        )


def test_every_spec_has_its_layer_and_the_layer_runs_its_cell():
    for spec in SPECS:
        fn = _layers.layer_for(spec)
        params = spec.init(jax.random.key(0), 3, 2)
        out = fn(params, jnp.ones((2, 4, 3)), return_sequences=True, return_state=True)
        ys, state = out
        assert ys.shape == (2, 4, 2), spec.layer
        assert tuple(spec.state_parts(state))[0].shape == (2, 2), spec.layer


def test_cell_options_are_declared():
    for spec in SPECS:
        unknown = set(spec.options) - set(_options.CELL_OPTIONS)
        assert not unknown, f"{spec.kind}: options {unknown} missing from CELL_OPTIONS"
        step_kw = inspect.signature(spec.step).parameters
        for name in spec.options:
            assert name in step_kw, f"{spec.kind}: step {spec.step.__name__} lacks {name}"
            assert step_kw[name].kind is inspect.Parameter.KEYWORD_ONLY, (spec.kind, name)
    names = [o.name for o in _options.LAYER_OPTIONS]
    assert len(set(names)) == len(names), "duplicate LAYER_OPTIONS"
    assert not set(names) & set(_options.CELL_OPTIONS), "a name is a cell and a layer option"
    assert _options.LAYER_OPTION_NAMES == tuple(names)


# -- (b) docstrings ----------------------------------------------------------------


def test_lstm_docstring_documents_every_option():
    doc = _norm(jaxrnn.lstm.__doc__ or "")
    spec = cell_spec.spec_named("lstm")
    entries = [f"{o.name}: {_norm(o.doc)}" for o in _options.layer_options(spec.options)]
    missing = [e for e in entries if e not in doc]
    assert not missing, "jaxrnn.lstm.__doc__ lacks the lines (Option.doc verbatim):\n" + "\n".join(
        missing
    )
    positions = [doc.index(e) for e in entries]
    assert positions == sorted(positions), "jaxrnn.lstm's Args are not in signature order"


@pytest.mark.parametrize("spec", [s for s in SPECS if s.layer != "lstm"], ids=lambda s: s.kind)
def test_other_docstrings_document_cell_options_and_name_the_common_ones(spec):
    fn = _layers.layer_for(spec)
    doc = _norm(fn.__doc__ or "")
    for name in spec.options:
        entry = f"{name}: {_norm(_options.CELL_OPTIONS[name].doc)}"
        assert entry in doc, f"jaxrnn.{spec.layer}.__doc__ lacks the line {entry!r}"
    found = re.search(r"common options(.*?)Returns:", doc)
    assert found, f"jaxrnn.{spec.layer}.__doc__ has no sentence naming the common options"
    sentence = found.group(1)
    assert "help(jaxrnn.lstm)" in sentence, f"jaxrnn.{spec.layer}: no pointer to help(jaxrnn.lstm)"
    positions = []
    for o in _options.LAYER_OPTIONS:
        assert _has_word(sentence, o.name), (
            f"jaxrnn.{spec.layer}.__doc__ does not name the common option {o.name!r}"
        )
        positions.append(re.search(rf"(?<![\w.]){o.name}(?!\w)", sentence).start())
    assert positions == sorted(positions), f"jaxrnn.{spec.layer}: common options out of order"


# -- (c) checks and the static plan --------------------------------------------------

# option -> (an obviously bad value, the exception it raises)
BAD = {
    "activation": ("nope", ValueError),
    "recurrent_activation": ("nope", ValueError),
    "reset_after": ("True", TypeError),
    "unit_forget_bias": ("yes", TypeError),
    "return_sequences": ("False", TypeError),
    "return_state": ("False", TypeError),
    "go_backwards": ("False", TypeError),
    "time_major": ("False", TypeError),
    "unroll": (0, ValueError),
    "dropout": (1.5, ValueError),
    "recurrent_dropout": (-0.1, ValueError),
    "impl": ("fastest", ValueError),
    "remat": ("all", ValueError),
    "matmul_dtype": (jnp.int8, TypeError),
    "method": ("parallel", ValueError),
    "tol": (0.0, ValueError),
    "max_iter": (0, ValueError),
    "fallback": ("scan", ValueError),
    "return_info": ("yes", TypeError),
}

CHECKED = [
    o for o in (*_options.CELL_OPTIONS.values(), *_options.LAYER_OPTIONS) if o.check is not None
]


def test_every_checked_option_has_a_bad_value_here():
    missing = {o.name for o in CHECKED} - set(BAD)
    assert not missing, f"add a bad value for {sorted(missing)} to BAD"
    assert set(BAD) <= {o.name for o in CHECKED}, "BAD names an option without a check"


def _names_option(message: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message) is not None


@pytest.mark.parametrize("option", CHECKED, ids=lambda o: o.name)
def test_check_rejects_a_bad_value_naming_the_option(option):
    bad, error = BAD[option.name]
    callers = [
        s for s in SPECS if option.name in {o.name for o in _options.layer_options(s.options)}
    ]
    if not callers:  # an option of the initialisers only (unit_forget_bias)
        with pytest.raises(error) as info:
            option.validate(bad, "where")
        assert _names_option(str(info.value), option.name), str(info.value)
        return
    for spec in callers:
        fn = _layers.layer_for(spec)
        params = spec.init(jax.random.key(0), 3, 2)
        with pytest.raises(error) as info:
            fn(params, jnp.ones((1, 2, 3)), **{option.name: bad})
        msg = str(info.value)
        assert _names_option(msg, option.name), f"{spec.layer}({option.name}={bad!r}): {msg}"
        assert msg.startswith(spec.layer), f"{spec.layer}: message does not say where: {msg}"


@pytest.mark.parametrize("option", CHECKED, ids=lambda o: o.name)
def test_check_accepts_the_default(option):
    value = option.validate(option.default, "where")
    if option.name == "matmul_dtype":
        assert value is None
    else:
        assert value == option.default


def test_matmul_dtype_is_normalised_to_a_hashable_name():
    (o,) = [o for o in _options.LAYER_OPTIONS if o.name == "matmul_dtype"]
    assert o.validate(jnp.bfloat16, "where") == "bfloat16"


def test_static_options_are_exactly_the_plan_fields():
    fields = set(_layers._Plan._fields)
    for o in (*_options.CELL_OPTIONS.values(), *_options.LAYER_OPTIONS):
        if o.static:
            assert o.name in fields, f"static option {o.name} is not a field of _Plan"
        else:
            assert o.name not in fields, f"non-static option {o.name} is a field of _Plan"


def test_a_non_static_option_value_does_not_change_the_plan():
    # dropout rates are traced values: two rates, one compiled program
    spec = cell_spec.spec_named("lstm")
    params = spec.init(jax.random.key(0), 3, 2)
    x = jnp.ones((2, 4, 3))
    key = jax.random.key(1)
    before = _layers._run._cache_size()
    jaxrnn.lstm(params, x, dropout=0.1, key=key)
    middle = _layers._run._cache_size()
    jaxrnn.lstm(params, x, dropout=0.3, key=key)
    assert _layers._run._cache_size() == middle >= before
    jaxrnn.lstm(params, x, dropout=0.3, key=key, unroll=2)  # static: a new plan
    assert _layers._run._cache_size() == middle + 1


# -- (d) layering ------------------------------------------------------------------

UTILITIES = {"jaxrnn._checks", "jaxrnn._dropout", "jaxrnn._context", "jaxrnn._remat"}
LAYERS_LEVEL = {"jaxrnn._layers", "jaxrnn._compose", "jaxrnn._options"}
UPPER_NAMES = {
    "nnx",
    "linen",
    "_module_config",
    "losses",
    "train",
    "_train_core",
    "_fit",
    "tbptt",
    "resets",
    "sweep",
    "parallel",
    "checkpoint",
    "interop",
    "diagnostics",
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _all_imports(name: str) -> set[str]:
    """Every module (and package) ``name`` imports anywhere in its source, absolute names."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            for alias in node.names:  # ``from . import parallel`` imports a module
                if f"{target}.{alias.name}" in MODULES:
                    found.add(f"{target}.{alias.name}")
    return found


def _imports(name: str) -> set[str]:
    """The jaxrnn modules (and packages) ``name`` imports anywhere in its source."""
    return {m for m in _all_imports(name) if m == "jaxrnn" or m.startswith("jaxrnn.")}


def _is_upper(module: str) -> bool:
    parts = module.split(".")
    if len(parts) < 2:
        return False
    top = parts[1]
    return top in UPPER_NAMES or top.startswith("_flax")


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


LOWER = sorted(
    m
    for m in MODULES
    if m in UTILITIES
    or m in LAYERS_LEVEL
    or m == "jaxrnn._unroll"
    or _in(m, "jaxrnn._cells")
    or _in(m, "jaxrnn._fused")
)


def test_the_layering_scan_sees_the_package():
    assert len(LOWER) >= 20, LOWER
    assert _imports("jaxrnn._layers") >= {"jaxrnn._fused.dispatch", "jaxrnn._cells.spec"}
    assert "jaxrnn.parallel" in _imports("jaxrnn._fit")  # ``from . import parallel``
    assert "jaxrnn._checks" in _imports("jaxrnn._cells.lstm")  # ``from .._checks import``
    assert any(_is_upper(m) for m in MODULES) and not any(_is_upper(m) for m in LOWER)


@pytest.mark.parametrize("module", LOWER)
def test_lower_layers_import_nothing_above_them(module):
    upper = sorted(m for m in _imports(module) if _is_upper(m))
    assert not upper, f"{module} imports {upper} from above the layers"


@pytest.mark.parametrize("module", LOWER)
def test_lower_layers_import_neither_flax_nor_optax(module):
    # not even lazily, inside a function: ``import jaxrnn`` needs only JAX
    bad = sorted(m for m in _all_imports(module) if m.split(".")[0] in ("flax", "optax"))
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", [m for m in LOWER if _in(m, "jaxrnn._cells")])
def test_cells_import_nothing_from_driver_fused_or_layers(module):
    above = ("jaxrnn._unroll", "jaxrnn._fused", *sorted(LAYERS_LEVEL))
    bad = sorted(m for m in _imports(module) if any(_in(m, a) for a in above))
    assert not bad, f"{module} imports {bad}"


def test_cell_spec_imports_nothing_from_jaxrnn():
    # the checks (below the cells) read the registry, so it must stand alone
    assert not _imports("jaxrnn._cells.spec")


@pytest.mark.parametrize("module", sorted(UTILITIES))
def test_utilities_read_only_the_registry_of_the_cells(module):
    bad = sorted(
        m
        for m in _imports(module)
        if m != "jaxrnn._cells.spec" and not (m in UTILITIES or m == "jaxrnn._cells")
    )
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize(
    "module", ["jaxrnn._unroll"] + [m for m in LOWER if _in(m, "jaxrnn._fused")]
)
def test_driver_and_fused_import_nothing_from_the_layers(module):
    bad = sorted(m for m in _imports(module) if any(_in(m, a) for a in LAYERS_LEVEL))
    if module == "jaxrnn._unroll":
        bad += sorted(m for m in _imports(module) if _in(m, "jaxrnn._fused"))
    assert not bad, f"{module} imports {bad}"


def test_fused_modules_named_by_specs_provide_the_interface():
    for spec in SPECS:
        if spec.fused is None:
            continue
        assert _in(spec.fused, "jaxrnn._fused"), spec.fused
        mod = importlib.import_module(spec.fused)
        for name in ("unsupported", "segment"):
            assert callable(getattr(mod, name, None)), f"{spec.fused} lacks {name}"
        assert dispatch.fused_module(spec) is mod


def test_import_jaxrnn_needs_neither_flax_nor_optax():
    code = (
        "import sys\n"
        "import jax, jax.numpy as jnp, jaxrnn\n"
        "p = jaxrnn.init_lstm(jax.random.key(0), 3, 2)\n"
        "y = jaxrnn.lstm(p, jnp.ones((1, 4, 3)))\n"
        "assert y.shape == (1, 2), y.shape\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'optax')))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout


# -- (e) adding a cell is one registration -----------------------------------------------


class ToyParams(NamedTuple):
    kernel: jax.Array
    recurrent_kernel: jax.Array
    bias: jax.Array | None


def _toy_step(params, carry, x, **options):
    return jaxrnn.rnn_step(jaxrnn.RNNParams(*params), carry, x, **options)


def _toy_init(key, input_size, hidden_size, **kwargs):
    return ToyParams(*jaxrnn.init_rnn(key, input_size, hidden_size, **kwargs))


@pytest.fixture
def toy_spec():
    spec = cell_spec.CellSpec(
        kind="toy_rnn",
        layer="toy_rnn",
        keras="ToyRNN",
        torch=None,
        step=_toy_step,
        init=_toy_init,
        params_type=ToyParams,
        gates=1,
        state_fields=("h",),
        state_type=None,
        options=("activation",),
        fused=None,
    )
    assert "toy_rnn" not in cell_spec._SPECS
    assert cell_spec.register(spec) is spec
    try:
        yield spec
    finally:
        cell_spec._SPECS.pop("toy_rnn")


def test_a_registered_cell_is_found_by_the_registry(toy_spec):
    params = toy_spec.init(jax.random.key(0), 3, 5)
    assert cell_spec.spec_of(params) is toy_spec
    assert cell_spec.spec_named("toy_rnn") is toy_spec
    assert cell_spec.spec_with(keras="ToyRNN") is toy_spec
    assert cell_spec.specs()[-1] is toy_spec
    assert "ToyParams" in cell_spec.param_type_names()
    # registering it again is a no-op; another cell of the same kind is refused
    assert cell_spec.register(toy_spec) is toy_spec
    other = dataclasses.replace(toy_spec, gates=2)
    with pytest.raises(ValueError, match="toy_rnn"):
        cell_spec.register(other)


def test_zero_state_of_a_registered_cell(toy_spec):
    params = toy_spec.init(jax.random.key(0), 3, 5, dtype=jnp.bfloat16)
    h = jaxrnn.zero_state(params, (2,))
    assert isinstance(h, jax.Array) and h.shape == (2, 5) and h.dtype == jnp.bfloat16
    assert not np.any(np.asarray(h))


def test_zero_state_refuses_an_unregistered_type():
    params = ToyParams(jnp.zeros((3, 5)), jnp.zeros((5, 5)), jnp.zeros(5))
    with pytest.raises(TypeError, match="ToyParams"):
        jaxrnn.zero_state(params, (2,))


def test_a_cell_without_fused_recurrence_is_dispatched_to_the_scan(toy_spec):
    reason = dispatch.unsupported(toy_spec, {}, None, None, None, "x")
    assert reason is not None and "no fused recurrence" in reason and "ToyRNN" in reason
    assert dispatch.fused_module(toy_spec) is None
    # the built-in cells with their defaults do have one
    for spec in SPECS:
        assert dispatch.unsupported(spec, {}, None, None, None, "x") is None, spec.kind


def test_the_layer_machinery_runs_a_registered_cell(toy_spec):
    params = toy_spec.init(jax.random.key(0), 3, 5)
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    got = _layers.run_layer(toy_spec, params, x, return_sequences=True, activation="relu")
    want = jaxrnn.simple_rnn(
        jaxrnn.RNNParams(*params), x, return_sequences=True, activation="relu", impl="scan"
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="no fused recurrence"):
        _layers.run_layer(toy_spec, params, x, impl="fast")


# -- the Flax modules take the same definitions ------------------------------------


def _module_classes(flavour: str):
    module = importlib.import_module(f"jaxrnn.{flavour}")
    return [(spec, getattr(module, spec.keras)) for spec in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_nnx_constructor_signature_is_the_declared_options(spec):
    from flax import nnx

    from jaxrnn._flax_common import module_options

    cls = dict((s.kind, c) for s, c in _module_classes("nnx"))[spec.kind]
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params[:3]] == ["in_features", "units", "rngs"]
    options = module_options(spec)
    assert [p.name for p in params[3:]] == [o.name for o in options]
    for p, o in zip(params[3:], options, strict=True):
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default == o.default, o.name
    layer = cls(3, 4, rngs=nnx.Rngs(0))
    assert set(layer.get_config()) == {"units"} | {o.name for o in options}
    with pytest.raises(TypeError, match="unexpected keyword argument 'return_sequence'"):
        cls(3, 4, rngs=nnx.Rngs(0), return_sequence=True)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_linen_fields_are_the_declared_options(spec):
    from jaxrnn._flax_common import RECURRENT_ONLY, module_options

    cls = dict((s.kind, c) for s, c in _module_classes("linen"))[spec.kind]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("parent", "name")}
    # Linen reads the batch size from x; deterministic is None (required with dropout)
    options = {o.name: o for o in module_options(spec) if o.name != "batch_size"}
    # a cell without recurrent kernel inherits the recurrent fields, and refuses them set
    inherited = set() if spec.recurrent else set(RECURRENT_ONLY)
    assert set(fields) == {"units"} | set(options) | inherited
    for name in inherited:
        layer = cls(2, **{name: "zeros" if name.endswith("initializer") else 0.5})
        with pytest.raises(ValueError, match=f"{name}=.*no recurrent kernel"):
            layer.init(jax.random.key(0), jnp.ones((1, 2, 3)))
    for name, option in options.items():
        expected = None if name == "deterministic" else option.default
        assert fields[name].default == expected, name


@pytest.mark.parametrize("flavour", ["nnx", "linen"])
def test_module_docstrings_document_the_options(flavour):
    from jaxrnn._flax_common import MODULE_OPTIONS, module_options

    classes = dict((s.kind, c) for s, c in _module_classes(flavour))
    full = _norm(classes["lstm"].__doc__)
    for option in module_options(cell_spec.spec_named("lstm")):
        if flavour == "linen" and option.name == "batch_size":
            continue
        assert _has_word(full, option.name), f"{flavour}.LSTM: {option.name} undocumented"
        if (
            flavour == "nnx"
            and option in MODULE_OPTIONS
            and option.name not in _options.LAYER_OPTION_NAMES
        ):
            assert f"{option.name}: {_norm(option.doc)}" in full, f"nnx.LSTM: {option.name}"
    for spec, cls in _module_classes(flavour):
        doc = _norm(cls.__doc__)
        for name in spec.options + spec.init_options:
            line = f"{name}: {_norm(_options.CELL_OPTIONS[name].doc)}"
            assert line in doc, f"{flavour}.{spec.keras}: {line}"


@pytest.mark.parametrize("flavour", ["nnx", "linen"])
def test_modules_implement_the_common_interface(flavour):
    from jaxrnn._flax_common import RecurrentModule

    module = importlib.import_module(f"jaxrnn.{flavour}")
    for name in ("SimpleRNN", "LSTM", "GRU", "Bidirectional", "Stacked"):
        cls = getattr(module, name)
        assert issubclass(cls, RecurrentModule), name
        assert not getattr(cls, "__abstractmethods__", None), (name, cls.__abstractmethods__)
