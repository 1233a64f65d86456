import numpy as np
import pytest

from taskrel.affinity import AffinityMatrix
from taskrel.errors import DataError, NonFiniteError, ShapeError

from ..images import assert_drawn

TASKS = ("x", "y", "z")
VALUES = np.arange(9.0).reshape(3, 3)


def test_csv_round_trip_keeps_orientation(tmp_path):
    matrix = AffinityMatrix(VALUES, TASKS, "etap", steps=4, seconds=1.5)
    matrix.to_csv(tmp_path / "a.csv")
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == "source,x,y,z" and lines[2].startswith("y,3,4,5")  # row = source
    back = AffinityMatrix.read_csv(tmp_path / "a.csv")
    assert back.tasks == TASKS and np.array_equal(back.values, VALUES)
    assert back["y", "z"] == 5.0  # A[source, target]


def test_incoming_is_mean_inflow_from_other_members():
    matrix = AffinityMatrix(VALUES, TASKS)
    assert matrix.incoming({"x", "y", "z"}, "z") == pytest.approx((VALUES[0, 2] + VALUES[1, 2]) / 2)
    assert matrix.incoming({"y"}, "y") == 0.0
    with pytest.raises(DataError, match="not a member"):
        matrix.incoming({"x", "y"}, "z")


def test_bad_matrices_are_refused(tmp_path):
    with pytest.raises(ShapeError, match="3×3"):
        AffinityMatrix(np.zeros((3, 2)), TASKS)
    with pytest.raises(NonFiniteError, match="'y' → 'x'"):
        AffinityMatrix(np.where(VALUES == 3, np.nan, VALUES), TASKS)
    (tmp_path / "skew.csv").write_text("source,x,y\nx,1,2\nz,3,4\n")
    with pytest.raises(DataError, match="row 3, column 1: source 'z' is not in the header"):
        AffinityMatrix.read_csv(tmp_path / "skew.csv")
    (tmp_path / "text.csv").write_text("source,x,y\nx,1,high\ny,3,4\n")
    with pytest.raises(DataError, match="not a number"):
        AffinityMatrix.read_csv(tmp_path / "text.csv")
    (tmp_path / "inf.csv").write_text("source,x,y\nx,1,inf\ny,3,4\n")
    with pytest.raises(NonFiniteError, match=r"row 2, column 3 \(source 'x', target 'y'\): 'inf' is not finite"):
        AffinityMatrix.read_csv(tmp_path / "inf.csv")


def test_heat_map_is_written_with_both_signs_coloured(tmp_path):
    AffinityMatrix(VALUES - 4, TASKS, "tag").plot(tmp_path / "a.png")  # off-diagonal entries −3 … 3
    image = assert_drawn(tmp_path / "a.png", min_painted=0.2)
    reds = (image[..., 0] > 0.6) & (image[..., 2] < 0.4)
    blues = (image[..., 2] > 0.6) & (image[..., 0] < 0.4)
    assert reds.sum() > 1000 and blues.sum() > 1000  # RdBu_r: positive red, negative blue
