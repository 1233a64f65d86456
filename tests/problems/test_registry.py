"""The problem protocol: specs, results, and a user's own loop against the built-in trainer."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskrel import gradients
from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity
from taskrel.errors import ConfigError, DataError
from taskrel.problems.protocol import GroupResult, check_result
from taskrel.problems.registry import load_problem, problem_spec, registered_problems
from taskrel.problems.torch_problem import TorchProblem

HERE = Path(__file__).resolve().parent
SPEC = f"{HERE.parent / 'user_problems.py'}"
RESULTS = HERE.parents[1] / "benchmarks" / "results"


def test_specs_resolve_builtins_files_and_modules():
    chemical = load_problem("chemical", max_steps=5)
    assert isinstance(chemical, TorchProblem) and chemical.config.max_steps == 5
    assert problem_spec(chemical) == ("chemical", {"max_steps": 5})
    assert set(registered_problems()) >= {"chemical", "school", "landmine", "parkinsons"}
    by_file = load_problem(f"{SPEC}:forecast")
    assert list(by_file.tasks) == ["HUFL", "MUFL", "OT"]
    assert problem_spec(by_file) == (f"{SPEC}:forecast", {})
    relative = os.path.relpath(SPEC)
    assert problem_spec(load_problem(f"{relative}:forecast"))[0] == f"{SPEC}:forecast"  # made absolute
    by_class = load_problem(f"{SPEC}:UserLoopForecast", epochs=1)
    assert by_class.epochs == 1
    assert load_problem(by_file) is by_file


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("chemicals", {}, "unknown problem 'chemicals'"),
        ("no/such/file.py:make", {}, "no file no/such/file.py"),
        (f"{SPEC}:nothing", {}, "has no attribute 'nothing'"),
        (f"{SPEC}:TASKS", {}, "not a problem: it lacks tasks, fingerprint, train"),
        ("taskrel.nosuchmodule:x", {}, "cannot import module 'taskrel.nosuchmodule'"),
        ("chemical", {"max_stepz": 5}, "max_stepz"),
        (f"{SPEC}:forecast", {"lr": 0.1}, "does not take the options"),
    ],
)
def test_bad_specs_name_what_is_wrong(spec, options, message):
    with pytest.raises(ConfigError, match=message):
        load_problem(spec, **options)


def test_results_are_checked_against_the_group():
    good = GroupResult({"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.5})
    assert check_result(good, ["a", "b"], "train") is good
    with pytest.raises(DataError, match=r"no test_loss for task\(s\) \['b'\]"):
        check_result(GroupResult({"a": 1.0, "b": 2.0}, {"a": 1.5}), ["a", "b"], "train")
    with pytest.raises(DataError, match="non-finite val_loss"):
        check_result(GroupResult({"a": float("nan")}, {"a": 1.0}), ["a"], "train")
    with pytest.raises(DataError, match=r"expected a taskrel\.problems\.GroupResult"):
        check_result({"val_loss": {}}, ["a"], "train")


@pytest.mark.parametrize("route", ["gram", "gradients"])
def test_user_loop_gets_the_builtin_trainers_etap_matrix(route, monkeypatch):
    """The same model, data and seed: a plain PyTorch loop following the callback contract and taskrel's
    single-input trainer give the same ETAP matrices (both aggregations) and the same losses. The
    trainer takes its Gram matrix from the layers' inputs and output gradients, by either route."""
    asked = []
    monkeypatch.setattr(gradients, "cheaper_route", lambda tasks, layers: asked.append(layers) or route)
    builtin = load_problem(f"{SPEC}:forecast")
    user = load_problem(f"{SPEC}:UserLoopForecast")
    ours, theirs = EtapAffinity(), EtapAffinity()
    ours_result = builtin.train(builtin.tasks, 0, callbacks=[ours])
    theirs_result = user.train(user.tasks, 0, callbacks=[theirs])
    assert ours_result.steps == theirs_result.steps == 3 * -(-len(builtin.data.train) // 128)
    for task in builtin.tasks:
        assert ours_result.val_loss[task] == pytest.approx(theirs_result.val_loss[task], rel=1e-6)
    for weighting in ("steps", "validation"):
        a, b = ours.matrix(weighting).values, theirs.matrix(weighting).values
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(a).max())
    assert len(asked) == ours_result.steps  # every step took the route chosen
    # the two aggregations really differ, so the comparison above tests both
    assert not np.allclose(ours.matrix("steps").values, ours.matrix("validation").values, rtol=1e-3)


@pytest.mark.parametrize("collector", [TagAffinity, PtgTransferGain])
def test_user_loop_gets_the_builtin_trainers_lookahead_matrices(collector):
    builtin = load_problem(f"{SPEC}:forecast")
    user = load_problem(f"{SPEC}:UserLoopForecast")
    ours, theirs = collector(), collector()
    builtin.train(builtin.tasks, 0, callbacks=[ours])
    user.train(user.tasks, 0, callbacks=[theirs])
    a, b = ours.matrix("steps").values, theirs.matrix("steps").values
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())


@pytest.mark.slow
def test_builtin_chemical_reproduces_the_committed_ground_truth():
    """Three runs of the committed Chemical table, trained again through the problem protocol (1e-4), with
    the table's protocol: early stopping watched (and reported) every validation row."""
    table = pd.read_csv(RESULTS / "chemical_gains.csv", dtype={"group": str, "task": str})
    chemical = load_problem("chemical", stop_fraction=1.0)
    for group in ("83", "87", "83|87"):
        result = chemical.train(group.split("|"), 0)
        rows = table[(table.group == group) & (table.seed == 0)].set_index("task")
        for task in group.split("|"):
            assert result.test_loss[task] == pytest.approx(rows.loc[task, "test_loss"], rel=1e-4)
            assert result.val_loss[task] == pytest.approx(rows.loc[task, "val_loss"], rel=1e-4)
