"""`taskrel select` command-line contract."""

import json

import numpy as np
import pytest

from taskrel.cli import main
from taskrel.select import write_matrix_csv

TABLE = """candidate,task,value,cost
ab,a,0.2,1
ab,b,0.1,1
bc,b,0.3,1
bc,c,-0.1,1
abc,a,0.0,2
abc,b,0.0,2
abc,c,0.05,2
"""


def _run(capsys, *argv):
    code = main(["select", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_json_contract(tmp_path, capsys):
    path = tmp_path / "gains.csv"
    path.write_text(TABLE)
    code, out, _ = _run(capsys, "--table", str(path), "--max-groups", "2", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"selected", "serving", "objective", "status", "gap", "seconds"}
    assert sorted(result["selected"]) == ["ab", "bc"]  # a 0.2 + b 0.3 + c −0.1 beats every other pair
    assert result["serving"] == {"a": "ab", "b": "bc", "c": "bc"}
    assert result["objective"] == pytest.approx(0.4) and result["status"] == "optimal"
    code, out, _ = _run(capsys, "--table", str(path), "--budget", "2", "--partition", "--json")
    assert json.loads(out)["selected"] == ["abc"]  # the only partition within budget


def test_infeasible_exits_2_and_names_the_constraint(tmp_path, capsys):
    path = tmp_path / "gains.csv"
    path.write_text(TABLE)
    code, out, err = _run(capsys, "--table", str(path), "--partition", "--budget", "1", "--json")
    assert code == 2
    result = json.loads(out)
    assert result["status"] == "infeasible" and result["constraint"] == "budget[cost]"
    assert "budget cost" in err


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("candidate,task\nab,a\n", "missing column 'value'"),
        ("candidate,task,value\nab,a,1\nab,a,2\n", "row 3: duplicate row"),
        ("candidate,task,value\nab,a,nan\n", "row 2: value is 'nan'"),
        ("candidate,task,value,cost\nab,a,1,-1\n", "row 2: negative cost"),
    ],
)
def test_malformed_tables_are_rejected(tmp_path, capsys, text, reason):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, _, err = _run(capsys, "--table", str(path), "--json")
    assert code == 2
    assert str(path) in err and reason in err


def test_pairwise_runs_the_compact_program(tmp_path, capsys):
    S = np.array([[0.0, 1.0, -1.0, -1.0], [1.0, 0.0, -1.0, -1.0], [-1.0, -1.0, 0.0, 2.0], [-1.0, -1.0, 2.0, 0.0]])
    path = tmp_path / "affinity.csv"
    write_matrix_csv(path, ["a", "b", "c", "d"], S)
    code, out, _ = _run(capsys, "--pairwise", str(path), "--max-groups", "2", "--rule", "tag", "--json")
    assert code == 0
    result = json.loads(out)
    assert sorted(result["selected"]) == ["a|b", "c|d"]
    assert result["objective"] == pytest.approx(1 + 1 + 2 + 2)
    code, out, _ = _run(capsys, "--pairwise", str(path), "--max-groups", "1", "--apart", "a,b", "--json")
    assert code == 2 and json.loads(out)["constraint"] == "max_groups"
