"""jaxrnn over several processes (jax.distributed, gloo CPU collectives): 2 local processes.

Each test launches one pair of processes (``multiprocess_harness.run_processes``)
with a timeout; the children join with ``jaxrnn.parallel.initialize`` (short
heartbeat/shutdown timeouts, fail-fast hook), so a failure ends a test in seconds
rather than hanging it. All scenarios of one setup run inside one pair of
processes (``python -m tests.multiprocess_worker``), which asserts every value
itself and prints its measured differences from a one-process run (``pytest -s``
shows them).
"""

import pathlib
import re
import time

import pytest

from tests.multiprocess_harness import run_processes

HERE = pathlib.Path(__file__).resolve().parent
# multi-process / multi-device programs: run first, one at a time (tests/conftest.py)
pytestmark = pytest.mark.subprocesses

WORKER = "tests.multiprocess_worker"  # run as python -m from the repository root
SCALE_PAGE = HERE.parent / "docs" / "scale.md"  # the multi-host guide


# what the worker compares with one process (max |difference| printed for each)
CHECKS = {
    *(
        f"step_{opt}_{what}"
        for opt in ("sgd", "adam")
        for what in ("loss", "grad_norm_rel", "params")
    ),
    "global_batch_vs_whole_batch",
    "unsplit_small_batch_params",
    "data_parallel_step_loss",
    "data_parallel_step_params",
    "fit_loss",
    "fit_val_loss",
    "fit_params",
    "sweep_histories",
    "sweep_results",
    "sweep_metrics",
    "sweep_callable_metric",
    "checkpoint_sharded_leaf",
    "checkpoint_resume_params",
}


def _launch(script, args, tmp_path, *, local_devices=1, timeout=150.0):
    start = time.monotonic()
    results = run_processes(
        str(script),
        2,
        args,
        timeout=timeout,
        local_devices=local_devices,
        env={"MP_TMP": str(tmp_path)},
    )
    return results, time.monotonic() - start


def _report(results):
    return "\n".join(
        f"--- process {i}: rc={rc}\nstdout:\n{out}\nstderr:\n{err[-4000:]}"
        for i, (rc, out, err) in enumerate(results)
    )


def _diffs(out):
    return {name: float(value) for name, value in re.findall(r"^DIFF (\S+) (\S+)$", out, re.M)}


@pytest.mark.parametrize("local_devices", [1, 2], ids=["2x1", "2x2"])
def test_two_processes_equal_one_process(local_devices, tmp_path):
    results, wall = _launch(WORKER, ["all"], tmp_path, local_devices=local_devices)
    for rc, out, _ in results:
        assert rc == 0 and out.rstrip().endswith("OK"), _report(results)
    diffs = [_diffs(out) for _, out, _ in results]
    assert diffs[0] == diffs[1], _report(results)  # every process ends with the same results
    assert set(diffs[0]) == CHECKS, set(diffs[0]) ^ CHECKS  # every scenario ran
    for name in (
        "global_batch_vs_whole_batch",
        "checkpoint_sharded_leaf",
        "checkpoint_resume_params",
    ):
        assert diffs[0][name] == 0.0, (name, diffs[0])  # bit-identical
    assert max(diffs[0].values()) <= 1e-4, diffs[0]
    best = {re.search(r"^SWEEP_BEST .*$", out, re.M).group() for _, out, _ in results}
    assert len(best) == 1
    print(f"2 processes x {local_devices} device(s): {wall:.1f} s; max |diff| per check:")
    for name, value in diffs[0].items():
        print(f"  {name}: {value:.3g}")


@pytest.mark.parametrize("how", ["crash", "killed"])
def test_a_failing_process_ends_the_run_within_seconds(how, tmp_path):
    # process 1 raises (or is killed); process 0 is then waiting in a collective with it
    results, wall = _launch(WORKER, [how], tmp_path, timeout=60.0)
    (rc0, _, err0), (rc1, _, err1) = results
    if how == "crash":
        assert rc1 == 1 and "process 1 fails on purpose" in err1, _report(results)
    else:
        assert rc1 == -9, _report(results)
    assert rc0 == 1 and "[harness] killed" not in err0, _report(results)
    assert "leaving at once" in err0, _report(results)  # its own fail-fast hook, not a kill
    assert wall < 30, wall  # JAX's default timeouts would take 100-300 s
    print(f"{how}: both processes ended in {wall:.1f} s")


def test_docs_multi_host_script_on_two_processes(tmp_path):
    blocks = re.findall(r"```python\n(# train.py: .*?)```", SCALE_PAGE.read_text(), flags=re.S)
    assert len(blocks) == 1
    script = tmp_path / "train.py"
    script.write_text(blocks[0])
    ckpt = tmp_path / "run.ckpt"
    results, _ = _launch(script, ["--checkpoint", str(ckpt)], tmp_path, timeout=120.0)
    for rc, _, _ in results:
        assert rc == 0, _report(results)
    lines = [re.search(r"^process (\d): loss (\S+)$", out, re.M) for _, out, _ in results]
    assert [m.group(1) for m in lines] == ["0", "1"], _report(results)
    assert lines[0].group(2) == lines[1].group(2)  # the same history on both processes
    assert "Epoch 2/2" in results[0][1] and "Epoch" not in results[1][1]
    assert ckpt.exists()
