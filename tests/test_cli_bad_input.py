"""Bad input through the real command line: exit 2, one stderr line naming the problem, nothing half-written."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER = str(ROOT / "tests" / "user_problems.py")
GAINS = "group,task,seed,val_loss,test_loss,gain\n83,83,0,0.3,0.3,0\n78,78,0,0.4,0.4,0\n83|78,83,0,0.2,0.2,0\n"


def files(tmp: Path) -> None:
    (tmp / "junk.db").write_bytes(os.urandom(4096))
    with sqlite3.connect(tmp / "foreign.db") as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    (tmp / "gains_bad.csv").write_text(GAINS.replace("0.2,0.2", "0.2,abc"))
    (tmp / "groups.txt").write_text("83|99\n")
    (tmp / "empty.csv").write_text("")
    (tmp / "short_row.csv").write_text("source,a,b\na,0,1\nb,1\n")
    (tmp / "nan_matrix.csv").write_text("source,a,b\na,0,nan\nb,1,0\n")


CASES = [
    (["train", "--problem", "chemical", "--group", "83|99"], "unknown task(s) '99' in --group"),
    (["train", "--problem", "chemicals", "--group", "83"], "unknown problem 'chemicals'"),
    (["train", "--problem", "chemical", "--group", "83||78"], "empty member name"),
    (["train", "--problem", "chemical", "--group", "83", "--lr", "-1"], "invalid training configuration: lr=-1.0"),
    (["train", "--problem", "chemical", "--group", "83", "--optimizer", "lbfgs"], "optimizer='lbfgs'"),
    (["train", "--problem", f"{USER}:nothing", "--group", "OT"], "has no attribute 'nothing'"),
    (["train", "--problem", "chemical"], "the following arguments are required: --group"),
    (
        ["sweep", "--problem", "chemical", "--groups", "triples", "--seeds", "1", "--store", "{tmp}/s.db"],
        "unknown group spec 'triples'",
    ),
    (
        ["sweep", "--problem", "chemical", "--groups", "{tmp}/groups.txt", "--seeds", "1", "--store", "{tmp}/s.db"],
        "groups.txt line 1",
    ),
    (
        ["sweep", "--problem", "chemical", "--groups", "pairs", "--seeds", "0", "--store", "{tmp}/s.db"],
        "at least one seed",
    ),
    (["sweep", "--problem", "chemical", "--groups", "pairs", "--seeds", "1", "--store", "{tmp}/junk.db"], "junk.db"),
    (
        ["sweep", "--problem", "chemical", "--groups", "pairs", "--seeds", "1", "--store", "{tmp}/foreign.db"],
        "another application",
    ),
    (
        ["sweep", "--problem", "chemical", "--groups", "pairs", "--seeds", "abc", "--store", "{tmp}/s.db"],
        "invalid int value: 'abc'",
    ),
    (["gains", "--problem", "chemical", "--store", "{tmp}/none.db", "--out", "{tmp}/g.csv"], "no run store at"),
    (["gains", "--problem", "chemical", "--store", "{tmp}/foreign.db", "--out", "{tmp}/g.csv"], "not a taskrel"),
    (
        ["affinity", "--problem", "chemical", "--method", "etap", "--epochs", "0", "--out", "{tmp}/aff"],
        "epochs must be ≥ 1",
    ),
    (["affinity", "--problem", "chemical", "--method", "hoa", "--out", "{tmp}/aff"], "invalid choice: 'hoa'"),
    (["pipeline", "--problem", "chemical", "--train-groups", "0", "--out", "{tmp}/rep"], "--train-groups must be ≥ 1"),
    (["evaluate-predictors", "--gains", "{tmp}/gains_bad.csv", "--affinity", "{tmp}/empty.csv"], "empty.csv"),
    (["select", "--table", "{tmp}/empty.csv", "--max-groups", "2"], "empty.csv"),
    (["select", "--pairwise", "{tmp}/short_row.csv"], "short_row.csv: row 3 has 2 cells, expected 3"),
    (["select", "--pairwise", "{tmp}/nan_matrix.csv"], "nan_matrix.csv: row 2, column 3 (source 'a', target 'b')"),
    (["select", "--pairwise", "{tmp}/empty.csv"], "empty.csv: empty file; expected a header 'source,<task>"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0][:2]) + f" {i}" for i, c in enumerate(CASES)])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, argv, message):
    files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(tmp=tmp_path) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "taskrel", *argv], env=env, capture_output=True, text=True,
                            timeout=300, cwd=ROOT)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, table or folder half-written
