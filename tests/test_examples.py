"""Each example runs, and the main job reaches its quality figure."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sine_regression_beats_repeat_last_value_baseline(tmp_path, capsys):
    res = load("sine_regression").main(["--steps", "300", "--seed", "0", "--out", str(tmp_path / "s.png")])
    assert res["val_mse"] < 0.8 * res["baseline_mse"], res
    assert res["train_mse"] < 0.01
    assert "validation MSE" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [1, 2])
def test_sine_regression_other_seeds(seed):
    res = load("sine_regression").main(["--steps", "300", "--seed", str(seed)])
    assert res["val_mse"] < res["baseline_mse"], res
