"""No hang on several host devices: sweeps, data-parallel steps and fit, repeated.

The sharded-sweep hang (jaxlib 0.10.2: a batched LAPACK call, such as the QR of
an orthogonal initialiser under ``vmap``, splits its batch over XLA:CPU's shared
worker pool and blocks; two host devices doing so at once deadlock the pool) is
a race, so every program runs several times, in a fresh process per device count
with a timeout (a hang fails the test instead of stalling CI). Keras-default
initialisation inside ``train_fn`` at H = 32, 100, 256 (the hang needed H >= 54
with two configurations per device), a ``train_fn`` with its own batched QR, and
the data-parallel training steps.
"""

import os
import pathlib
import subprocess
import sys

import pytest

# multi-process / multi-device programs: run first, one at a time (tests/conftest.py)
pytestmark = pytest.mark.subprocesses

WORKER = pathlib.Path(__file__).with_name("no_hang_worker.py")


def xla_default_flags():
    """XLA_FLAGS without the faster-compile flags of tests/conftest.py: XLA's own pipeline."""
    added = os.environ.get("JAXRNN_TESTS_XLA_FLAGS_ADDED", "").split()
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f not in added)


@pytest.mark.parametrize("devices,repeats", [(2, 4), (4, 2)])
def test_parallel_programs_finish_repeatedly(devices, repeats):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu", WATCHDOG="170")
    env["XLA_FLAGS"] = xla_default_flags()  # the hang it looks for is XLA:CPU's, as users run it
    try:
        res = subprocess.run(
            [sys.executable, str(WORKER), str(repeats)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    except subprocess.TimeoutExpired as e:  # the watchdog should have fired first
        pytest.fail(f"hung on {devices} devices:\n{e.stdout}\n{e.stderr}")
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), (
        res.stdout + res.stderr[-4000:]
    )
    assert res.stdout.count(f"{devices} devices:") == 6, res.stdout
