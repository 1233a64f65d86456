import csv

import numpy as np
import pytest

from taskrel.data.ett import ETT_TASKS, load_ett
from taskrel.errors import ConfigError, DataError, NonFiniteError


@pytest.fixture(scope="module")
def raw(data_dir):
    """ETTh1 read with the csv module (independently of the loader): header and float rows."""
    with open(data_dir / "ett" / "ETTh1.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def etth1():
    return load_ett("ETTh1")


def test_split_sizes_follow_the_standard_twelve_four_four_months(etth1, raw):
    header, rows = raw
    assert header == ["date", *ETT_TASKS] and len(rows) == 17420
    assert etth1.tasks == ETT_TASKS
    # train windows: 8640 rows - 96 - 24 + 1; val/test start 96 rows early: 2880 - 24 + 1
    assert etth1.train[0].shape == (8521, 96, 7) and etth1.train[1].shape == (8521, 7, 24)
    assert etth1.val[0].shape == (2857, 96, 7) and etth1.test[1].shape == (2857, 7, 24)


def test_windows_and_standardisation_match_a_direct_reading_of_the_file(etth1, raw):
    _, rows = raw
    values = np.array([[float(v) for v in row[1:]] for row in rows])
    train = values[:8640]
    mean, std = train.mean(axis=0), np.sqrt(((train - train.mean(axis=0)) ** 2).mean(axis=0))
    np.testing.assert_allclose(etth1.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(etth1.std, std, rtol=1e-6)
    z = (values - mean) / std
    x, y = etth1.val
    # the first validation window ends at the last training row; its target is the split's first 24 rows
    np.testing.assert_allclose(x[0], z[8640 - 96 : 8640], atol=1e-5)
    np.testing.assert_allclose(y[0], z[8640 : 8640 + 24].T, atol=1e-5)
    x, y = etth1.test
    last = len(x) - 1
    np.testing.assert_allclose(y[last, :, -1], z[8640 + 2880 + 2880 - 1], atol=1e-5)  # the test split's last row
    np.testing.assert_allclose(x[17], z[11520 - 96 + 17 : 11520 + 17], atol=1e-5)
    x, y = etth1.train
    np.testing.assert_allclose(x[0], z[:96], atol=1e-5)
    np.testing.assert_allclose(y[-1], z[8640 - 24 : 8640].T, atol=1e-5)  # training targets stay inside train


def test_etth2_has_the_same_layout_and_its_own_values(etth1):
    etth2 = load_ett("ETTh2")
    assert etth2.train[0].shape == etth1.train[0].shape and etth2.tasks == etth1.tasks
    assert not np.allclose(etth2.mean, etth1.mean)


def _write(tmp_path, raw, edit):
    header, rows = raw
    rows = [list(r) for r in rows]
    header = list(header)
    edit(header, rows)
    folder = tmp_path / "ett"
    folder.mkdir()
    with open(folder / "ETTh1.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return tmp_path


def _set(row, col, value):
    def edit(header, rows):
        rows[row][col] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "error", "words"),
    [
        (lambda h, r: h.__setitem__(3, "MUFX"), DataError, ["missing column", "MUFL"]),
        (_set(99, 4, "n/a"), DataError, ["line 101", "'MULL'", "n/a", "not a number"]),
        (_set(5, 7, "nan"), NonFiniteError, ["line 7", "'OT'"]),
        (_set(5, 1, ""), DataError, ["line 7", "'HUFL'"]),
        (_set(40, 0, "2016-07-02 17:30:00"), DataError, ["line 42", "'date'", "hour"]),
        (lambda h, r: r.__delitem__(slice(14000, None)), DataError, ["14000 data rows", "14400"]),
    ],
)
def test_malformed_files_name_the_file_line_and_column(tmp_path, raw, edit, error, words):
    folder = _write(tmp_path, raw, edit)
    with pytest.raises(error) as caught:
        load_ett("ETTh1", data_dir=folder)
    message = str(caught.value)
    assert "ETTh1.csv" in message
    for word in words:
        assert word in message


def test_missing_file_and_bad_arguments(tmp_path):
    (tmp_path / "ett").mkdir()
    with pytest.raises(DataError, match=r"missing data file.*ETTh1\.csv"):
        load_ett("ETTh1", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="ETTm1"):
        load_ett("ETTm1")
    with pytest.raises(ConfigError, match="exceeds"):
        load_ett("ETTh1", input_len=3000)
