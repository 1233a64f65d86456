"""Per-row validation losses (`GroupResult.val_rows`) of both trainers and of a sweep's stored runs.

The references are computed here, independently of the trainers: the restored model is forwarded on
the validation split's arrays and the losses are written out with numpy.
"""

import numpy as np
import pytest
import torch

from taskrel.data.dataset import MultiTaskDataset, Split, TaskData
from taskrel.data.single import SingleInputDataset
from taskrel.errors import ConfigError
from taskrel.problems.protocol import check_result
from taskrel.problems.registry import load_problem
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import TrainConfig
from taskrel.train.store import RunKey, RunStore
from taskrel.train.sweep import SweepJob, run_job

QUICK = TrainConfig(max_steps=30, patience_steps=0)


def bce_rows(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary cross-entropy on logits, per row, in float64 (the numerically stable form)."""
    z = logits.astype(np.float64)
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def reported(part, config):
    """The validation rows a run reports (those early stopping did not watch), as (x, y[, mask])."""
    k = config.stop_rows(len(part.x))
    keep = slice(k, None) if k < len(part.x) else slice(None)
    return tuple(None if a is None else a[keep] for a in (part.x, part.y, getattr(part, "mask", None)))


def regression_dataset() -> MultiTaskDataset:
    """Three regression tasks with their own inputs and different validation sizes (multi-input)."""
    rng = np.random.default_rng(5)

    def split(n, w):
        x = rng.normal(size=(n, 3)).astype(np.float32)
        return Split(x, (x @ w + 0.3 * rng.normal(size=n)).astype(np.float32))

    tasks = []
    for k, (name, n_val) in enumerate([("r0", 11), ("r1", 7), ("r2", 16)]):
        w = np.array([1.0, -0.5, 0.2 * k])
        tasks.append(TaskData(name, split(40 + 5 * k, w), split(n_val, w), split(9, w)))
    return MultiTaskDataset("toy-multi", "regression", tuple(tasks))


def test_multi_input_binary_rows_match_an_independent_bce(chemical):
    problem = TorchProblem(chemical, config=QUICK)
    trainer = problem.trainer(["87", "55", "80"], 0)
    result = trainer.fit()
    assert check_result(result, ["87", "55", "80"], "train") is result
    assert list(result.val_rows) == list(trainer.tasks) == ["80", "87", "55"]  # dataset order
    for task in ("87", "55", "80"):
        x, y, _ = reported(chemical.task(task).val, QUICK)
        rows = result.val_rows[task]
        assert len(rows) == len(y) < len(chemical.task(task).val) and all(type(v) is float for v in rows)
        with torch.no_grad():  # the restored best weights are the trainer's model after fit()
            logits = trainer.model(torch.from_numpy(x), task).numpy()
        np.testing.assert_allclose(rows, bce_rows(logits, y), rtol=1e-5, atol=1e-7)
        assert np.mean(rows) == pytest.approx(result.val_loss[task], rel=1e-6)


def test_multi_input_regression_rows_match_an_independent_squared_error():
    data = regression_dataset()
    config = TrainConfig(max_steps=20, batch_size=8, patience_steps=0)
    problem = TorchProblem(data, config=config)
    trainer = problem.trainer(["r0", "r2"], 1)
    result = trainer.fit()
    check_result(result, ["r0", "r2"], "train")
    for task in ("r0", "r2"):
        x, y, _ = reported(data.task(task).val, config)
        with torch.no_grad():
            out = trainer.model(torch.from_numpy(x), task).numpy().astype(np.float64)
        assert len(result.val_rows[task]) == len(y)
        np.testing.assert_allclose(result.val_rows[task], (out - y) ** 2, rtol=1e-5, atol=1e-7)
        assert np.mean(result.val_rows[task]) == pytest.approx(result.val_loss[task], rel=1e-6)


def test_val_rows_keep_a_fixed_row_order_across_groups_and_seeds(chemical):
    problem = TorchProblem(chemical, config=QUICK)
    alone = problem.train(["55"], 0).val_rows["55"]
    together = problem.train(["87", "55"], 3).val_rows["55"]
    assert len(alone) == len(together) == len(reported(chemical.task("55").val, QUICK)[1])
    assert alone != together  # other weights, the same rows: a pairing by index is meaningful


def masked_data() -> SingleInputDataset:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], (x[:, 2] > 0)], axis=1).astype(np.float32)
    mask = rng.random((120, 2)) > 0.3
    bounds = ((0, 70), (70, 100), (100, 120))
    parts = [(x[a:b], y[a:b], mask[a:b]) for a, b in bounds]
    return SingleInputDataset("toy-masked", ["reg", "cls"], *parts)


@pytest.mark.parametrize("eval_batch", [4096, 7])  # one evaluation batch, and rows spread over several
def test_single_input_rows_are_the_observed_rows_in_order(eval_batch):
    data = masked_data()
    config = TrainConfig(optimizer="adam", lr=1e-2, batch_size=16, max_epochs=3, patience=5)
    problem = TorchProblem(data, loss={"reg": "mse", "cls": "bce"}, config=config)
    trainer = problem.trainer(["reg", "cls"], 0)
    trainer.eval_batch = eval_batch
    result = trainer.fit()
    check_result(result, ["reg", "cls"], "train")
    x, y, mask = reported(data.val, config)
    with torch.no_grad():
        outputs = trainer.model.forward_all(torch.from_numpy(x), ["reg", "cls"])
    out = {t: v.numpy().astype(np.float64).reshape(len(x)) for t, v in zip(["reg", "cls"], outputs, strict=True)}
    expected = {"reg": (out["reg"] - y[:, 0]) ** 2, "cls": bce_rows(out["cls"], y[:, 1])}
    for k, task in enumerate(["reg", "cls"]):
        keep = mask[:, k]
        assert 0 < keep.sum() < len(keep)
        rows = result.val_rows[task]
        assert len(rows) == keep.sum() and all(type(v) is float for v in rows)
        np.testing.assert_allclose(rows, expected[task][keep], rtol=1e-5, atol=1e-7)
        assert np.mean(rows) == pytest.approx(result.val_loss[task], rel=1e-9)


def test_evaluate_keeps_its_signature_and_agrees_with_evaluate_rows(chemical):
    trainer = TorchProblem(chemical, config=QUICK).trainer(["87", "55"], 0)
    losses, metrics = trainer.evaluate("val")
    again, metrics_again, rows = trainer.evaluate_rows("val")
    assert losses == again and metrics == metrics_again
    lengths = {t: len(reported(chemical.task(t).val, QUICK)[1]) for t in ("87", "55")}
    assert {t: len(v) for t, v in rows.items()} == lengths


def test_a_sweep_stores_the_rows_of_each_run(tmp_path):
    problem = load_problem("chemical", max_steps=25, patience_steps=0)
    (record,) = run_job(SweepJob(problem, (RunKey("87|55", 0),)))
    assert record.status == "done" and set(record.val_rows) == {"87", "55"}
    with RunStore(tmp_path / "runs.db", problem.fingerprint()) as store:
        store.record(record)
        (back,) = store.records()
    assert back.val_rows == record.val_rows
    for task, rows in back.val_rows.items():
        assert np.mean(rows) == pytest.approx(back.val_loss[task], rel=1e-6)


def test_a_task_without_a_labelled_reported_validation_row_is_refused():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], (x[:, 2] > 0)], axis=1).astype(np.float32)
    mask = np.ones((120, 2), bool)
    mask[85:100, 0] = False  # task "reg": labelled validation rows only among the 15 early stopping watches
    parts = [(x[a:b], y[a:b], mask[a:b]) for a, b in ((0, 70), (70, 100), (100, 120))]
    data = SingleInputDataset("toy-masked", ["reg", "cls"], *parts)
    problem = TorchProblem(data, loss={"reg": "mse", "cls": "bce"}, config=TrainConfig(max_epochs=1))
    with pytest.raises(ConfigError, match=r"task\(s\) \['reg'\] have no labelled validation row among the val rows"):
        problem.trainer(["reg", "cls"], 0)
