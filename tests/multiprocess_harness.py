"""Launch N local JAX processes (a multi-process run on XLA:CPU) and collect their output.

Not a test module: ``tests/test_multiprocess.py`` uses it. Parent side::

    from tests.multiprocess_harness import run_processes

    results = run_processes("tests.multiprocess_worker", 2, args=["all"], timeout=120,
                            local_devices=1)
    for rc, out, err in results:
        assert rc == 0, err

A module name runs as ``python -m tests.multiprocess_worker`` from the
repository root (so the worker imports ``tests.*`` like the test modules do); a
path ending in ``.py`` runs as a script. Child side, first thing in the worker
(before any JAX computation)::

    from tests.multiprocess_harness import start_worker
    start_worker()              # watchdog + jaxrnn.parallel.initialize() from the env vars

Each child gets ``JAX_COORDINATOR_ADDRESS`` (``127.0.0.1:<free port>``),
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` (what ``jaxrnn.parallel.initialize``
reads), ``JAX_NUM_CPU_DEVICES`` and ``JAX_PLATFORMS=cpu``. Only the standard
library is imported at module level, so the parent need not start JAX.

Failures never hang a test: the children run with short heartbeat/shutdown
timeouts and ``initialize``'s fail-fast hook (a process that raises leaves with
``os._exit(1)``, so its peers' collectives fail at once); a faulthandler
watchdog dumps every child's Python stack shortly before the parent's timeout;
after one child fails the others get ``fail_grace`` seconds; on timeout every
child's process group is killed (SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["free_port", "run_processes", "start_worker"]

ROOT = Path(__file__).resolve().parent.parent  # the repository root: ``tests`` is a package in it

PROXY_VARIABLES = ("http_proxy", "https_proxy", "grpc_proxy", "all_proxy", "no_proxy")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, close).

    Another program may take it before process 0's coordinator binds it; that
    shows up as a failed run, rare enough not to retry here.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _kill_group(p: subprocess.Popen) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGKILL)  # each child leads its own session
    except (ProcessLookupError, PermissionError):
        try:
            p.kill()
        except ProcessLookupError:
            pass


def run_processes(
    script: str,
    n: int,
    args: Sequence[str] = (),
    timeout: float = 120.0,
    *,
    local_devices: int | None = None,
    env: dict | None = None,
    fail_grace: float = 10.0,
) -> list[tuple[int, str, str]]:
    """Run ``python -u script *args`` as ``n`` cooperating JAX processes.

    ``script`` is a file (``.../train.py``) or a module of the repository run
    with ``python -m`` from its root (``tests.multiprocess_worker``).

    Waits at most ``timeout`` seconds in all. Once a child exits with a non-zero
    code the others get ``fail_grace`` seconds (they may be blocked in a
    collective with it) and are then killed; on timeout all survivors are
    killed. A killed child reports return code -9 and a marker line at the end
    of its stderr. Outputs go through temporary files (a chatty child cannot
    block on a full pipe).

    Returns:
        ``[(returncode, stdout, stderr)]`` in process-id order.
    """
    base = dict(os.environ)
    if env:
        base.update(env)
    # gRPC honours proxy variables and JAX warns they can hang its initialisation:
    # everything here is loopback, so drop them.
    for k in list(base):
        if k.lower() in PROXY_VARIABLES:
            del base[k]
    base["JAX_PLATFORMS"] = "cpu"
    base["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{free_port()}"
    base["JAX_NUM_PROCESSES"] = str(n)
    if local_devices is not None:
        base["JAX_NUM_CPU_DEVICES"] = str(local_devices)
        flags = base.get("XLA_FLAGS", "").split()
        base["XLA_FLAGS"] = " ".join(
            f for f in flags if not f.startswith("--xla_force_host_platform_device_count")
        )
    # the child's own watchdog fires first and prints where each thread is stuck
    base["MP_WATCHDOG"] = str(max(5.0, timeout - 8.0))

    if script.endswith(".py"):
        command, cwd = [sys.executable, "-u", script], None
    else:
        command, cwd = [sys.executable, "-u", "-m", script], ROOT
    procs: list[subprocess.Popen] = []
    files = []
    try:
        for i in range(n):
            out = tempfile.TemporaryFile(mode="w+b")
            err = tempfile.TemporaryFile(mode="w+b")
            files.append((out, err))
            procs.append(
                subprocess.Popen(
                    [*command, *map(str, args)],
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=dict(base, JAX_PROCESS_ID=str(i)),
                    start_new_session=True,  # its own process group: killpg is safe
                )
            )
        deadline = time.monotonic() + timeout
        fail_deadline = None
        killed = [""] * n
        while True:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes):
                break
            now = time.monotonic()
            if fail_deadline is None and any(c not in (None, 0) for c in codes):
                fail_deadline = now + fail_grace
            if now >= deadline or (fail_deadline is not None and now >= fail_deadline):
                why = "timeout" if now >= deadline else "peer failure"
                for i, p in enumerate(procs):
                    if p.poll() is None:
                        killed[i] = f"\n[harness] killed after {why}\n"
                        _kill_group(p)
                for p in procs:
                    p.wait()
                break
            time.sleep(0.05)
        results = []
        for i, (p, (out, err)) in enumerate(zip(procs, files, strict=True)):
            out.seek(0)
            err.seek(0)
            results.append(
                (
                    p.returncode,
                    out.read().decode(errors="replace"),
                    err.read().decode(errors="replace") + killed[i],
                )
            )
        return results
    finally:
        for p in procs:
            _kill_group(p)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for out, err in files:
            out.close()
            err.close()


def start_worker(
    *,
    initialization_timeout: float = 30,
    heartbeat_timeout: float = 10,
    shutdown_timeout: float = 10,
) -> tuple[int, int]:
    """Child side: arm the watchdog and join the run with ``jaxrnn.parallel.initialize()``.

    Must run before any JAX computation. Returns ``(process_id, num_processes)``.
    """
    import faulthandler

    if os.environ.get("MP_WATCHDOG"):
        faulthandler.dump_traceback_later(float(os.environ["MP_WATCHDOG"]), exit=True)
    import jax

    import jaxrnn.parallel

    jaxrnn.parallel.initialize(
        initialization_timeout=initialization_timeout,
        heartbeat_timeout=heartbeat_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    return jax.process_index(), jax.process_count()
