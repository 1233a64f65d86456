"""Where data is looked for (data_dir=, else $TASKREL_DATA, else the user cache); a missing file names where."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskrel.data import location
from taskrel.data.location import cache_dir, data_file, data_root
from taskrel.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
CHEMICAL_FILE = "etap/chemical_task_splits/83_X_train.npy"


def test_the_order_is_data_dir_then_the_variable_then_the_user_cache(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("TASKREL_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "mine") == tmp_path / "mine"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("TASKREL_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root() == cache_dir() == tmp_path / "cache" / "taskrel"


def test_a_missing_folder_or_file_names_where_it_was_looked_for(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=rf"data folder {tmp_path / 'nope'} \(from data_dir=\) does not exist"):
        data_root(tmp_path / "nope")
    monkeypatch.setenv("TASKREL_DATA", str(tmp_path))
    expected = tmp_path / CHEMICAL_FILE
    with pytest.raises(DataError) as raised:
        data_file(CHEMICAL_FILE)
    searched = f"missing data file {CHEMICAL_FILE}: looked for {expected} (data folder from $TASKREL_DATA)"
    assert str(raised.value).startswith(searched)
    assert str(cache_dir()) in str(raised.value)


def test_the_user_cache_is_filled_from_the_public_source_and_a_failed_download_names_both(tmp_path, monkeypatch):
    monkeypatch.delenv("TASKREL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    (mirror / "83_X_train.npy").parent.mkdir(parents=True)
    (mirror / "83_X_train.npy").write_bytes(b"payload")
    monkeypatch.setitem(location.SOURCES, "etap/chemical_task_splits/", mirror.as_uri() + "/")  # a local "server"
    path = data_file(CHEMICAL_FILE)
    assert path == tmp_path / "cache" / "taskrel" / CHEMICAL_FILE and path.read_bytes() == b"payload"
    (mirror / "83_X_train.npy").unlink()
    with pytest.raises(DataError) as raised:
        data_file("etap/chemical_task_splits/78_X_train.npy")
    message = str(raised.value)
    assert message.startswith("missing data file etap/chemical_task_splits/78_X_train.npy: not in the user cache")
    assert "$TASKREL_DATA is not set" in message and f"downloading {mirror.as_uri()}/78_X_train.npy failed" in message
    assert not (tmp_path / "cache" / "taskrel" / "etap/chemical_task_splits/78_X_train.npy.part").exists()
    with pytest.raises(DataError, match="no public source is known"):
        data_file("elsewhere/file.csv")


def test_the_command_reports_a_missing_dataset_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TASKREL_DATA": str(tmp_path)}
    command = [sys.executable, "-m", "taskrel", "train", "--problem", "chemical", "--group", "83", "--json"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"looked for {tmp_path / 'etap'}" in result.stderr and "$TASKREL_DATA" in result.stderr
