"""Shared test fixtures: real data from $TASKREL_DATA (../shared/external_data by default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "external_data"
os.environ.setdefault("TASKREL_DATA", str(DEFAULT_DATA))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["TASKREL_DATA"])
    assert path.is_dir(), f"TASKREL_DATA={path} does not exist; tests need the shared external data"
    return path


@pytest.fixture(scope="session")
def chemical(data_dir):
    from taskrel.data import load_chemical

    return load_chemical()
