"""Shared test fixtures: real data from $TASKREL_DATA (../shared/external_data when present, else the user cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "external_data"
if DEFAULT_DATA.is_dir():  # else taskrel's own default, the user cache (files downloaded on first use)
    os.environ.setdefault("TASKREL_DATA", str(DEFAULT_DATA))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from taskrel.data import data_root

    return data_root()


@pytest.fixture(scope="session")
def chemical(data_dir):
    from taskrel.data import load_chemical

    return load_chemical()
