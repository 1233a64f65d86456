"""`taskrel auxinash toy`: the JSON contract and the behaviour it reports."""

from __future__ import annotations

import json

import pytest

from taskrel.cli import main


def test_auxinash_toy_json_reports_learned_preferences_and_baselines(capsys):
    assert main(["auxinash", "toy", "--seed", "3", "--epochs", "60", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"preferences", "main_test_mse", "baselines"}
    assert set(payload["baselines"]) == {"ls", "nash_mtl"}
    main_p, _, harmful_p = payload["preferences"]
    assert sum(payload["preferences"]) == pytest.approx(1.0)
    assert min(payload["preferences"]) > 0
    assert harmful_p < 1 / 3 < main_p  # the harmful task lost bargaining power, the main task gained
    # the harmful task pulls LS far from the main task's optimum; AuxiNash resists it
    assert payload["main_test_mse"] < payload["baselines"]["ls"]


def test_auxinash_toy_rejects_a_bad_meta_learning_rate(capsys):
    assert main(["auxinash", "toy", "--epochs", "1", "--meta-lr", "-1", "--json"]) == 2
    assert "lr" in capsys.readouterr().err
