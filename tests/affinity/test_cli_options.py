"""Every option of `taskrel affinity` changes the matrix it claims to change (and only through the collector)."""

import json

import numpy as np
import pytest

from taskrel.affinity import AffinityMatrix
from taskrel.cli import main


def affinity(tmp_path, capsys, *options):
    out = tmp_path / "-".join(options).replace("--", "")
    code = main(["affinity", "--dataset", "chemical", "--epochs", "20", "--out", str(out), "--json", *options])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    return AffinityMatrix.read_csv(out / "affinity.csv").values, payload


@pytest.mark.slow
def test_every_affinity_option_changes_the_matrix(tmp_path, capsys):
    etap, payload = affinity(tmp_path, capsys, "--method", "etap")
    assert payload["steps"] == 120  # 20 epochs of 6 steps; the validation loss of every task improved by then
    for option in (["--weighting", "steps"], ["--momentum"], ["--no-normalize"]):
        other, _ = affinity(tmp_path, capsys, "--method", "etap", *option)
        assert not np.allclose(other, etap, rtol=1e-3), option
    explicit, _ = affinity(tmp_path, capsys, "--method", "etap", "--weighting", "validation")
    assert np.array_equal(explicit, etap)  # validation is ETAP's default
    halved, payload = affinity(tmp_path, capsys, "--method", "etap", "--every", "2")
    assert payload["steps"] == 60 and not np.allclose(halved, etap, rtol=1e-3)

    tag, _ = affinity(tmp_path, capsys, "--method", "tag", "--every", "5")
    for option in (["--weighting", "validation"], ["--sample", "0.5"]):
        other, _ = affinity(tmp_path, capsys, "--method", "tag", "--every", "5", *option)
        assert not np.allclose(other, tag, rtol=1e-3), option
    ptg, _ = affinity(tmp_path, capsys, "--method", "ptg", "--every", "5")
    for option in (["--reference", "single"], ["--sample", "0.6"], ["--weighting", "validation"]):
        other, _ = affinity(tmp_path, capsys, "--method", "ptg", "--every", "5", *option)
        assert not np.allclose(other, ptg, rtol=1e-3), option


def test_bad_sample_exits_2_with_one_line(tmp_path, capsys):
    code = main(["affinity", "--dataset", "chemical", "--method", "tag", "--sample", "1.5", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "sample" in err
