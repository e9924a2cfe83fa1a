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
"""

import os

import pytest

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX: no lock, the order alone keeps them apart)
    fcntl = None

os.environ.setdefault("KERAS_BACKEND", "jax")


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
