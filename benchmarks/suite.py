"""Run the whole benchmark suite into one report: speed, memory, sweeps.

    python benchmarks/suite.py [--quick] [--out benchmarks/RESULTS.md] [--png benchmarks/ratios.png]

Runs ``run.py`` (which writes the report and the chart), then ``memory.py``,
``sweep.py`` and ``remat_speed.py`` (which append their sections), each in its own process so that one
measurement's memory and compiled programs do not weigh on the next. Extra
arguments after ``--`` go to ``run.py`` (e.g. ``-- --cells lstm``). The exit
status is 1 if any script reported a problem.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--png", default=str(HERE / "ratios.png"))
    ap.add_argument("run_args", nargs="*", help="after --: more arguments for run.py")
    args = ap.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    steps = [
        ["run.py", *quick, "--out", args.out, "--png", args.png, *args.run_args],
        ["memory.py", *quick, "--out", args.out],
        ["sweep.py", *quick, "--out", args.out],
        ["remat_speed.py", *quick, "--out", args.out],
    ]
    status = 0
    for script, *rest in steps:
        print(f"== {script} {' '.join(rest)}", file=sys.stderr, flush=True)
        status |= subprocess.run([sys.executable, str(HERE / script), *rest]).returncode
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
