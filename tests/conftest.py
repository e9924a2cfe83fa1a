"""Suite-wide setup: Keras on JAX, and the tests marked ``subprocesses``.

pyproject's addopts run the suite on two pytest-xdist workers (``-n 2 --dist
worksteal``): each worker starts with one contiguous half of the collected tests
(so the tests of a module mostly run in one process and share its compiled
programs) and, once its own half is done, takes over half of what the other has
left. (Not ``--dist loadgroup``: with pytest >= 9.2, pytest-xdist 3.8 silently
stops grouping, pytest-dev/pytest-xdist#1386.)

Tests marked ``subprocesses`` start multi-process or multi-device JAX programs
(several busy processes each). They are moved to the front of the collection, so
that one worker runs them one after another while the other starts on the rest,
and a lock shared by the workers makes sure two of them never run at once (they
would compete for the cores against their timeouts, and race for a free port).

XLA:CPU compiles the test programs with two flags added to ``XLA_FLAGS``
(``FAST_COMPILE_FLAGS`` below; set in the run's first process before JAX starts,
so the workers and the subprocesses that tests start inherit them): the legacy
elemental emitters instead of the MLIR fusion emitters, and no LLVM
optimisation. Compiling is most of the suite's work (thousands of small
programs, each compiled once), and these flags make it 3-4 times cheaper; the
programs compute the same values to a few float32 ulps (the tests' tolerances
are far wider). The optimised HLO is the same but for fusion: the legacy
emitters leave some reductions and single ops unfused (the memory analyses
that tests compare came out the same, byte for byte). ``JAXRNN_TESTS_DEFAULT_XLA=1``
runs the suite with XLA's default pipeline instead; tests/test_no_hang.py always
does (a hang in XLA:CPU's runtime is what it looks for). An XLA that does not
know a flag aborts, so the flags are tried once in a subprocess first, and left
out if it fails.
"""

import os
import subprocess
import sys

import pytest

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX: no lock, the order alone keeps them apart)
    fcntl = None

os.environ.setdefault("KERAS_BACKEND", "jax")


# XLA:CPU compiles each program 3-4 times faster with these (see the docstring)
FAST_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0")


def _compile_faster():
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("JAXRNN_TESTS_DEFAULT_XLA") or FAST_COMPILE_FLAGS[0] in flags:
        return  # asked for XLA's defaults, or set already (by the run's first process)
    candidate = " ".join([flags, *FAST_COMPILE_FLAGS]).strip()
    # an XLA that does not know a flag aborts the process: try them once in a subprocess
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.jit(lambda x: x + 1)(1.0)"],
        env=dict(os.environ, XLA_FLAGS=candidate),
        capture_output=True,
        timeout=300,
    )
    if probe.returncode == 0:
        os.environ["XLA_FLAGS"] = candidate
        os.environ["JAXRNN_TESTS_XLA_FLAGS_ADDED"] = " ".join(FAST_COMPILE_FLAGS)
    else:  # the workers need not try again
        os.environ["JAXRNN_TESTS_DEFAULT_XLA"] = "1 (this XLA refused the faster flags)"


_compile_faster()


def pytest_collection_modifyitems(config, items):
    # a stable sort: the subprocess tests first, everything else keeps its order
    items.sort(key=lambda item: item.get_closest_marker("subprocesses") is None)


@pytest.fixture(autouse=True)
def _one_subprocess_test_at_a_time(request, tmp_path_factory):
    if fcntl is None or request.node.get_closest_marker("subprocesses") is None:
        yield
        return
    # the parent of a worker's basetemp is this run's directory, shared by the workers
    lock = tmp_path_factory.getbasetemp().parent / "subprocesses.lock"
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
