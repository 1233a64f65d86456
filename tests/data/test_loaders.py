import shutil

import numpy as np
import pytest

from taskrel.data import CHEMICAL_TASKS, load_chemical, load_dataset, load_landmine, load_parkinsons, load_school
from taskrel.data.dataset import MultiTaskDataset, Split, TaskData, split_rows
from taskrel.errors import DataError, NonFiniteError, ShapeError, UnknownTaskError

# Train/test sizes from etap/PARSING.md.
CHEMICAL_SIZES = {
    "83": (1657, 711),
    "78": (973, 417),
    "84": (910, 390),
    "85": (894, 384),
    "76": (723, 311),
    "86": (719, 309),
    "81": (698, 300),
    "80": (597, 257),
    "87": (557, 239),
    "55": (295, 127),
}


def test_chemical_matches_published_sizes_and_carves_stratified_validation(chemical):
    assert chemical.task_names == list(CHEMICAL_TASKS)
    assert chemical.n_features == 180 and chemical.kind == "binary"
    for task in chemical.tasks:
        n_train, n_test = CHEMICAL_SIZES[task.name]
        assert len(task.train) + len(task.val) == n_train
        assert len(task.test) == n_test
        assert abs(len(task.val) - 0.1 * n_train) <= 2
        # stratified: the validation class balance follows the training data
        assert abs(task.val.y.mean() - task.train.y.mean()) < 0.06
        assert (task.train.x.reshape(-1, 9, 20).sum(axis=2) == 1).all()


def test_chemical_split_is_seeded(chemical):
    again = load_chemical()
    other = load_chemical(split_seed=7)
    assert np.array_equal(again.task("55").val.x, chemical.task("55").val.x)
    assert not np.array_equal(other.task("55").val.x, chemical.task("55").val.x)


@pytest.mark.parametrize(
    ("loader", "tasks", "features", "rows"),
    [(load_school, 139, 27, 15362), (load_landmine, 29, 9, 14820), (load_parkinsons, 42, 19, 5875)],
)
def test_tabular_sets_keep_every_row_once(loader, tasks, features, rows):
    ds = loader()
    assert len(ds.tasks) == tasks and ds.n_features == features
    assert sum(len(t.train) + len(t.val) + len(t.test) for t in ds.tasks) == rows
    pooled = np.concatenate([t.train.x for t in ds.tasks])
    if ds.name == "landmine":  # all continuous features standardised on pooled training rows
        assert np.allclose(pooled.mean(axis=0), 0, atol=1e-4) and np.allclose(pooled.std(axis=0), 1, atol=1e-3)


def test_split_rows_partitions_and_stratifies():
    y = np.array([0] * 70 + [1] * 30)
    parts = split_rows(y, (0.6, 0.2, 0.2), seed=3, stratify=True)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert [int(y[p].sum()) for p in parts] == [18, 6, 6]


def test_unknown_dataset_and_task():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    ds = load_landmine()
    with pytest.raises(UnknownTaskError, match="'99'"):
        ds.task("99")
    with pytest.raises(UnknownTaskError, match="unknown task\\(s\\) '99' in dataset 'landmine'"):
        ds.subset(["0", "99"])


def _copy_chemical(tmp_path, data_dir):
    target = tmp_path / "etap" / "chemical_task_splits"
    shutil.copytree(data_dir / "etap" / "chemical_task_splits", target)
    return target


def test_malformed_chemical_file_is_named_with_its_row(tmp_path, data_dir):
    folder = _copy_chemical(tmp_path, data_dir)
    x = np.load(folder / "55_X_train.npy")
    x[4, :3] = 1.0  # three amino acids at position 1
    np.save(folder / "55_X_train.npy", x)
    with pytest.raises(DataError, match=r"55_X_train\.npy: row 4"):
        load_chemical(data_dir=tmp_path)


def test_wrong_label_and_shape_in_chemical_files(tmp_path, data_dir):
    folder = _copy_chemical(tmp_path, data_dir)
    y = np.load(folder / "87_y_test.npy")
    y[2] = 3
    np.save(folder / "87_y_test.npy", y)
    with pytest.raises(DataError, match=r"87_y_test\.npy: row 2 has label 3"):
        load_chemical(data_dir=tmp_path)
    np.save(folder / "87_y_test.npy", y[:-1])
    with pytest.raises(ShapeError, match="87_y_test"):
        load_chemical(data_dir=tmp_path)


def test_missing_file_names_the_path(tmp_path, data_dir):
    folder = _copy_chemical(tmp_path, data_dir)
    (folder / "80_X_test.npy").unlink()
    with pytest.raises(DataError, match=r"80_X_test\.npy"):
        load_chemical(data_dir=tmp_path)


def test_non_finite_and_bad_codes_in_csv_sources(tmp_path, data_dir):
    school = tmp_path / "ayman2023" / "school"
    school.mkdir(parents=True)
    lines = (data_dir / "ayman2023" / "school" / "School_Data.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[10].split(",")
    row[header.index("Ethnicity")] = "42"
    (school / "School_Data.csv").write_text("\n".join([lines[0], *lines[1:10], ",".join(row), *lines[11:]]))
    with pytest.raises(DataError, match="row 11 has Ethnicity=42"):
        load_school(data_dir=tmp_path)
    park = tmp_path / "ayman2023" / "parkinsons"
    park.mkdir(parents=True)
    lines = (data_dir / "ayman2023" / "parkinsons" / "parkinsons_updrs.csv").read_text().splitlines()
    row = lines[5].split(",")
    row[4] = "nan"
    (park / "parkinsons_updrs.csv").write_text("\n".join([*lines[:5], ",".join(row), *lines[6:]]))
    with pytest.raises(NonFiniteError, match="row 6"):
        load_parkinsons(data_dir=tmp_path)


def test_dataset_type_rejects_empty_and_inconsistent_tasks():
    good = Split(np.zeros((3, 2), np.float32), np.array([0, 1, 0], np.float32))
    empty = Split(np.zeros((0, 2), np.float32), np.zeros(0, np.float32))
    with pytest.raises(DataError, match="task 'b', val split is empty"):
        MultiTaskDataset("toy", "binary", (TaskData("a", good, good, good), TaskData("b", good, empty, good)))
    wide = Split(np.zeros((3, 5), np.float32), np.array([0, 1, 0], np.float32))
    with pytest.raises(ShapeError, match="feature dimension"):
        MultiTaskDataset("toy", "binary", (TaskData("a", good, good, good), TaskData("b", wide, wide, wide)))
    bad = Split(np.zeros((3, 2), np.float32), np.array([0, 2, 0], np.float32))
    with pytest.raises(DataError, match=r"row 1 has 2\.0"):
        MultiTaskDataset("toy", "binary", (TaskData("a", good, good, bad),))
