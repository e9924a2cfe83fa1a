"""The benchmark scripts run end to end in --quick mode (CI keeps them from rotting).

No timing is asserted: only that every implementation ran, agreed with jaxrnn
where it loads the same weights (the scripts exit 1 otherwise) and that the
report has its tables. The scripts run in one process on the default device
each (one after another), so, unlike the multi-process and multi-device tests,
these need not wait for the others (tests/conftest.py): they run in any order.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def test_benchmark_suite_quick(tmp_path):
    out, png = tmp_path / "results.md", tmp_path / "ratios.png"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "suite.py"), "--quick", "--out", str(out), "--png", str(png)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    for title in ("SimpleRNN", "LSTM", "GRU"):
        assert f"## {title} — forward" in report
        assert f"## {title} — training step" in report
    assert "| 4, 8, 3, 8 |" in report
    assert "- error:" not in report and "| err" not in report
    assert "## Memory: LSTM training step" in report
    assert "jaxrnn, remat='sqrt'" in report
    assert "## Sweeps: N configurations vmapped" in report
    assert "## Memory options: training-step time by sequence length" in report
    assert "| lstm | 200, 4, 3, 8 |" in report


def test_lstm_backward_choice_quick():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "lstm_backward.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [
        line
        for line in proc.stdout.splitlines()
        if line.startswith("| 8, ") or line.startswith("| 64, ")
    ]
    assert len(rows) == 2 and rows[0].endswith("| hand |") and rows[1].endswith("| autodiff |")


@pytest.mark.parametrize("script", ["parallel_time.py", "min_cells.py"])
def test_parallel_in_time_benchmarks_quick(script):
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    if script == "parallel_time.py":  # every cell, both Newton methods, converged
        for cell in ("gru", "lstm", "rnn"):
            for method in ("quasi_deer", "deer"):
                row = next(r for r in rows if r.startswith(f"| {cell} |") and f"| {method} |" in r)
                assert "| yes |" in row, row
        # far from contraction: whatever Newton did, the default fallback returns the
        # scan's result (exactly when unconverged)
        stress = [r.strip("| ").split(" | ") for r in rows if r.count("|") == 9][1:]
        assert len(stress) == 6, rows
        for cell, _, method, _, conv, _, _, with_fallback in stress:
            assert float(with_fallback) <= (1e-4 if conv == "yes" else 0.0), (cell, method)
    else:  # every variant timed, GRU and LSTM ratios reported
        names = [r.split("|")[2].strip() for r in rows[1:]]
        assert {"gru", "lstm", "naive", "min_gru[chunked]", "min_lstm[associative]"} <= set(names)


def test_long_memory_quick_replaces_its_section(tmp_path):
    out = tmp_path / "results.md"
    title = "## Long sequences: memory and time by option"
    out.write_text(f"# Results\n\n{title}\n\nold table\n\n## Other section\n\nkept\n")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "long_memory.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    assert report.count(title) == 1 and "old table" not in report
    assert "## Other section\n\nkept" in report
    for cell in ("lstm", "rnn", "gru"):
        for run in ("forward, last output", "forward, all outputs", "training step"):
            rows = [r for r in report.splitlines() if r.startswith(f"| {cell} | {run} |")]
            assert len(rows) == 3, rows  # two timed lengths, one memory only
            assert rows[-1].endswith("| – | – | – | – |"), rows[-1]


def test_chunk_length_quick():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "chunk_length.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| rnn ")]
    assert len(rows) == 4 and any("| 4, 300, 3, 8 | 4/32 |" in r for r in rows), rows
