"""benchmarks/scaling.py runs end to end in --quick mode: one worker per device count.

No timing is asserted: only that every worker finished (none was killed for
stalling), every variant agreed with the one-device step (the script exits 1
otherwise) and that the report has its tables and the figure was written.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

# multi-process / multi-device programs: run first, one at a time (tests/conftest.py)
pytestmark = pytest.mark.subprocesses

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def test_scaling_benchmark_quick(tmp_path):
    out, png = tmp_path / "results.md", tmp_path / "scaling.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "scaling.py"),
            "--quick",
            "--out",
            str(out),
            "--png",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    for section in (
        "## Scaling: devices on one host",
        "### Training step by device count",
        "### Against PyTorch (CPU, eager)",
        "### Sweeps: `sweep(..., mesh=data_mesh(n))` vs one device",
        "### Checks and notes",
    ):
        assert section in report, section
    for n in (1, 2, 4):
        assert f"| 8, 10, 4, 16 | {n} |" in report, n
    # a stalled or failed item shows as a "hang" / "error" table cell and a note
    assert not re.search(r"\|\s*(hang|error)\s*\|", report), report
    assert not re.search(r"^- (hang|error):", report, re.MULTILINE), report
    assert "MISMATCH" not in report
    assert "- suggestion (n=2, split=True vs 1 device):" in report
    assert png.stat().st_size > 0
