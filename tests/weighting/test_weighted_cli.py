"""`--weighting` on `taskrel train` and `taskrel sweep`, and `taskrel auxinash run`: the weighting reaches the
trainer, a store keeps weighted and unweighted runs apart, and the JSON contracts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskrel.cli import main
from taskrel.train.store import RunStore

PROBLEM = str(Path(__file__).with_name("aux_problems.py")) + ":regression"


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_train_with_a_weighting_trains_differently_and_says_so(capsys):
    plain = _json(capsys, ["train", "--problem", PROBLEM, "--group", "main|helpful", "--json"])
    weighted = _json(capsys, ["train", "--problem", PROBLEM, "--group", "main|helpful", "--json",
                              "--weighting", "nash-mtl", "--main", "main"])  # fmt: skip
    assert plain["weighting"] is None and plain["preferences"] is None
    assert weighted["weighting"] == {"method": "nash-mtl", "main": "main", "options": {}}
    assert weighted["test_loss"]["main"] != plain["test_loss"]["main"]
    auxinash = _json(capsys, ["train", "--problem", PROBLEM, "--group", "main|helpful|noise", "--json",
                              "--weighting", "auxinash", "--main", "main"])  # fmt: skip
    assert set(auxinash["preferences"]) == {"main", "helpful", "noise"}
    assert sum(auxinash["preferences"].values()) == pytest.approx(1.0)


def _records(path: Path) -> dict:
    with RunStore.open(path) as store:
        return {r.group: r.test_loss for r in store.records("done")}


def test_a_weighted_sweep_records_weighted_runs_and_its_store_refuses_unweighted_ones(tmp_path, capsys):
    groups = tmp_path / "groups.txt"
    groups.write_text("main|helpful\n")
    common = ["sweep", "--problem", PROBLEM, "--groups", str(groups), "--seeds", "1", "--quiet", "--json"]
    weighted_store, plain_store = tmp_path / "weighted.db", tmp_path / "plain.db"
    assert _json(capsys, [*common, "--store", str(weighted_store), "--weighting", "nash-mtl"])["done"] == 3
    assert _json(capsys, [*common, "--store", str(plain_store)])["done"] == 3
    weighted, plain = _records(weighted_store), _records(plain_store)
    for single in ("main", "helpful"):  # groups of one train unweighted (batched in the plain sweep: float sums)
        assert weighted[single] == pytest.approx(plain[single], rel=1e-6)
    assert weighted["main|helpful"]["main"] != pytest.approx(plain["main|helpful"]["main"], rel=1e-3)
    assert main([*common, "--store", str(weighted_store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weighting" in err
    assert main([*common, "--store", str(plain_store), "--weighting", "ls"]) == 2
    assert "weighting" in capsys.readouterr().err


def test_auxinash_run_prints_preferences_and_main_task_losses(tmp_path, capsys):
    plot = tmp_path / "preferences.png"
    payload = _json(capsys, ["auxinash", "run", "--problem", PROBLEM, "--main", "main", "--json", "--plot", str(plot),
                             "--meta-lr", "0.05"])  # fmt: skip
    assert set(payload["preferences"]) == {"helpful", "noise"}
    assert set(payload["main_test_loss"]) == {"stl", "ls", "auxinash"}
    assert all(v > 0 for v in payload["main_test_loss"].values())
    assert sum(payload["preferences"].values()) + payload["main_preference"] == pytest.approx(1.0)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--problem", PROBLEM, "--group", "main|helpful", "--main", "main"], "--main"),
        (["train", "--problem", PROBLEM, "--group", "main|helpful", "--weighting", "auxinash"], "main task"),
        (
            ["train", "--problem", PROBLEM, "--group", "helpful|noise", "--weighting", "gcs", "--main", "main"],
            "lacks the main task",
        ),
        (["auxinash", "run", "--problem", PROBLEM, "--main", "depth"], "'depth'"),
        (["auxinash", "run", "--problem", PROBLEM, "--main", "main", "--auxiliaries", "main"], "auxiliaries"),
        (["auxinash", "run", "--problem", PROBLEM, "--main", "main", "--methods", "stl,mgda"], "mgda"),
    ],
)
def test_bad_weighting_arguments_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
