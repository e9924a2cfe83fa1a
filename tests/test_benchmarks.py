"""The benchmark scripts run end to end in --quick mode (CI keeps them from rotting).

No timing is asserted: only that every implementation ran, agreed with jaxrnn
where it loads the same weights (the scripts exit 1 otherwise) and that the
report has its tables.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def run(script, *args):
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_speed_benchmark_quick(tmp_path):
    out = tmp_path / "results.md"
    run("run.py", "--out", str(out))
    report = out.read_text()
    for title in ("SimpleRNN", "LSTM", "GRU"):
        assert f"## {title} — forward" in report
        assert f"## {title} — training step" in report
    assert "| 4, 8, 3, 8 |" in report
    assert "- error:" not in report and "| err" not in report


@pytest.mark.parametrize(
    "script,heading",
    [
        ("memory.py", "## Memory: LSTM training step"),
        ("sweep.py", "## Sweeps: N configurations vmapped"),
    ],
)
def test_memory_and_sweep_benchmarks_quick(tmp_path, script, heading):
    out = tmp_path / "results.md"
    run(script, "--out", str(out))
    assert heading in out.read_text()
