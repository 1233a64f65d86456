"""Single-input data: shapes, masks and non-finite values are checked where they enter."""

import numpy as np
import pytest
import torch

from taskrel.data.single import SingleInputDataset
from taskrel.errors import DataError, NonFiniteError, ShapeError


def arrays(n=8, k=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, k)).astype(np.float32)


def test_a_dataset_keeps_columns_in_task_order_and_kind():
    x, y = arrays()
    data = SingleInputDataset("d", ["a", "b"], (x, y), (x, y), (x, y))
    assert data.columns(["b", "a"]) == [0, 1] and data.task_kind == "regression"
    labels = (y > 0).astype(np.float32)
    assert SingleInputDataset("d", ["a", "b"], (x, labels), (x, labels), (x, labels)).task_kind == "binary"
    assert data.input_shape == (3,) and data.target_shape == ()


def test_masked_labels_may_be_nan_and_are_zeroed():
    x, y = arrays()
    y[2, 1] = np.nan
    mask = np.ones((8, 2), dtype=bool)
    mask[2, 1] = False
    data = SingleInputDataset("d", ["a", "b"], (x, y, mask), (x, y, mask), (x, y, mask))
    assert data.train.y[2, 1] == 0.0 and not data.train.mask[2, 1]
    with pytest.raises(NonFiniteError, match=r"train split: non-finite target of task 'b' in row 2"):
        SingleInputDataset("d", ["a", "b"], (x, y), (x, y), (x, y))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda x, y: (x, y[:, :1]), ShapeError, "y has 1 task columns, expected 2"),
        (lambda x, y: (x[:5], y), ShapeError, "5 input rows but 8 target rows"),
        (lambda x, y: (x[:0], y[:0]), DataError, "val split is empty"),
        (lambda x, y: (np.where(x > 1, np.inf, x), y), NonFiniteError, "non-finite input in row"),
        (
            lambda x, y: (x, y, np.zeros((8, 2), dtype=bool)),
            DataError,
            r"task\(s\) \['a', 'b'\] have no labelled row",
        ),
        (lambda x, y: (x, y, np.ones((8, 3), dtype=bool)), ShapeError, r"mask must have shape \(8, 2\)"),
        (lambda x, y: x, DataError, r"expected \(x, y\) or \(x, y, mask\)"),
    ],
)
def test_bad_splits_are_refused_naming_the_split(change, error, message):
    x, y = arrays()
    with pytest.raises(error, match=message):
        SingleInputDataset("d", ["a", "b"], (x, y), change(x, y), (x, y))


def test_torch_datasets_are_materialised():
    x, y = arrays()
    items = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    data = SingleInputDataset.from_torch("d", ["a", "b"], items, items, items)
    np.testing.assert_array_equal(data.test.x, x)
    np.testing.assert_array_equal(data.test.y, y)
