"""Shared fixtures of the cross-framework parity modules."""

from __future__ import annotations

import jax
import pytest


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
