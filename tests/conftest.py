"""Suite-wide setup: Keras on JAX, and how the tests are shared out over xdist workers.

pyproject's addopts run the suite on two worker processes (``-n 2 --dist loadgroup
--no-loadscope-reorder``); a unit of work is a group of tests (``xdist_group``) or
one test. Most of the time goes into XLA compilations, so:

* the tests that start multi-process or multi-device JAX programs (marked
  ``xdist_group("subprocesses")`` in their modules) run one after another on one
  worker, first (the longest unit), so that they never compete with each other
  for the cores (their timeouts) nor race for a free port;
* every other test module is one unit: its tests share compiled programs and
  eager op kernels (the same shapes and options), which a second worker would
  compile again;
* except the modules in ``ONE_TEST_AT_A_TIME``, whose tests are big and compile
  their own programs: those are handed out test by test, which keeps both
  workers busy to the end.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

SUBPROCESSES = "subprocesses"
ONE_TEST_AT_A_TIME = {
    "tests/test_examples.py",
    "tests/test_fast.py",
    "tests/test_padding_nonfinite.py",
    "tests/test_properties.py",
    "tests/test_readme.py",
    "tests/test_train.py",
}


def _group(item):
    mark = item.get_closest_marker("xdist_group")
    return None if mark is None else (mark.args[0] if mark.args else mark.kwargs.get("name"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        if (
            _group(item) is None
            and module.startswith("tests/")
            and module not in ONE_TEST_AT_A_TIME
        ):
            item.add_marker(pytest.mark.xdist_group(module))
    items.sort(key=lambda item: _group(item) != SUBPROCESSES)  # stable: the rest keeps its order
