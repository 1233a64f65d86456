"""`TorchProblem` on single-input data: models, masked and per-task losses, weighting, bad models."""

import numpy as np
import pytest
import torch
from torch import nn

from taskrel.affinity import EtapAffinity
from taskrel.data.single import SingleInputDataset
from taskrel.errors import ConfigError, ModelError
from taskrel.models import MultiTaskModel
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import TrainConfig
from taskrel.weighting import NashMTL

QUICK = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, max_epochs=2, patience=5)


def data(mask=None, classes=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = np.stack([x[:, 0] + 0.1 * rng.normal(size=90), x[:, 1] * x[:, 2]], axis=1).astype(np.float32)
    if classes:
        y[:, 1] = (x[:, 3] > 0).astype(np.float32) + (x[:, 3] > 1)
    parts = [(x[a:b], y[a:b], None if mask is None else mask[a:b]) for a, b in ((0, 50), (50, 70), (70, 90))]
    return SingleInputDataset("toy-rows", ["a", "b"], *parts)


class DictModel(nn.Module):
    """A user's module: forward returns {task: predictions}, shared_parameters() names the trunk."""

    def __init__(self, group, width=3):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.heads = nn.ModuleDict({t: nn.Linear(8, width if t == "b" else 1) for t in group})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h).squeeze(-1) for t, head in self.heads.items()}

    def shared_parameters(self):
        return list(self.trunk.parameters())


def test_masked_rows_do_not_count_and_ce_reports_accuracy():
    mask = np.ones((90, 2), dtype=bool)
    mask[::3, 0] = False
    problem = TorchProblem(
        data(mask, classes=True), lambda g, s: DictModel(g), loss={"a": "mse", "b": "ce"}, config=QUICK
    )
    trainer = problem.trainer(["a", "b"], 0)
    losses, metrics = trainer.evaluate("test")
    model, part = trainer.model, problem.data.test
    with torch.no_grad():
        out = model(torch.from_numpy(part.x))
    keep = part.mask[:, 0]
    expected_a = np.mean((out["a"].numpy()[keep] - part.y[keep, 0]) ** 2)
    logits = out["b"].double().numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected_b = -np.mean(log_softmax[np.arange(20), part.y[:, 1].astype(int)])
    assert losses["a"] == pytest.approx(expected_a, rel=1e-5)
    assert losses["b"] == pytest.approx(expected_b, rel=1e-5)
    assert metrics["b"] == pytest.approx(np.mean(logits.argmax(axis=1) == part.y[:, 1]))
    result = problem.train(["a", "b"], 0)
    assert result.steps == 2 * 2 and set(result.test_loss) == {"a", "b"}


def test_a_dict_model_and_a_multitask_model_with_the_same_weights_train_alike():
    def multitask(group, seed):
        user = DictModel(group, width=1)
        return MultiTaskModel(user.trunk, dict(user.heads.items()))

    ours = TorchProblem(data(), multitask, loss="mse", config=QUICK).train(["a", "b"], 4)
    theirs = TorchProblem(data(), lambda g, s: DictModel(g, width=1), loss="mse", config=QUICK).train(["a", "b"], 4)
    assert ours.test_loss == pytest.approx(theirs.test_loss, rel=1e-6)


def test_weighting_runs_on_single_input_data():
    problem = TorchProblem(data(), lambda g, s: DictModel(g, width=1), loss="mse", config=QUICK)
    result = problem.train(["a", "b"], 0, weighting=NashMTL(["a", "b"]))
    assert all(np.isfinite(v) for v in result.val_loss.values())


@pytest.mark.parametrize(
    ("factory", "loss", "error", "message"),
    [
        (lambda g, s: nn.Linear(4, 2), "mse", ModelError, "must return {task: predictions}"),
        (lambda g, s: DictModel(g, width=3), "mse", ModelError, "do not fit targets"),
        (lambda g, s: DictModel(g, width=1), "hinge", ConfigError, "unknown loss 'hinge'"),
        (lambda g, s: DictModel(g, width=1), {"a": "mse"}, ConfigError, r"no loss given for task\(s\) \['b'\]"),
    ],
)
def test_models_that_do_not_fit_the_data_are_refused_before_training(factory, loss, error, message):
    with pytest.raises(error, match=message):
        TorchProblem(data(), factory, loss=loss, config=QUICK).trainer(["a", "b"], 0)


def test_collectors_need_to_know_the_shared_parameters():
    problem = TorchProblem(data(), lambda g, s: nn.ModuleDict(), loss="mse", config=QUICK)
    with pytest.raises(ModelError, match="has no shared_parameters"):
        problem.trainer(["a"], 0, callbacks=[EtapAffinity()])


def test_devices_are_checked():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        TorchProblem(data(), DictModel, device="cuda")


def test_the_default_model_is_an_mlp_with_heads_shaped_like_the_targets():
    problem = TorchProblem(data(), config=QUICK)
    model = problem.make_model(["a", "b"], 0)
    assert isinstance(model, MultiTaskModel) and model.task_names == ("a", "b")
    assert problem.fingerprint()["model"]["factory"] == "mlp" and problem.fingerprint()["loss"] == "auto"
    result = problem.train(["b"], 0)
    assert result.steps == 4 and np.isfinite(result.test_loss["b"])


def test_lookahead_collectors_that_step_the_heads_leave_single_input_training_unchanged():
    from taskrel.affinity import PtgTransferGain

    def factory(group, seed):
        return MultiTaskModel(nn.Sequential(nn.Linear(4, 8), nn.Tanh()), {t: nn.Linear(8, 1) for t in group})

    problem = TorchProblem(data(), factory, loss="mse", config=QUICK)
    plain = problem.train(["a", "b"], 0)
    ptg = PtgTransferGain()
    watched = problem.train(["a", "b"], 0, callbacks=[ptg])
    assert watched.val_loss == plain.val_loss and watched.test_loss == plain.test_loss
    matrix = ptg.matrix()
    assert np.isfinite(matrix.values).all() and (matrix.values[~np.eye(2, dtype=bool)] != 0).all()


def _factory(width):
    def make(group, seed):  # one name and source for every width, as a file edited in place
        return MultiTaskModel(nn.Sequential(nn.Linear(4, width), nn.Tanh()), {t: nn.Linear(width, 1) for t in group})

    return make


def test_the_fingerprint_names_what_changed_and_a_store_of_another_problem_is_refused(tmp_path):
    from taskrel.errors import StoreError
    from taskrel.train.sweep import run_sweep

    def problem(data_set=None, width=8, loss="mse", config=QUICK):
        return TorchProblem(data_set or data(), _factory(width), name="toy", loss=loss, config=config)

    changed = data()
    changed.train.y[0, 0] += 1.0  # one value
    base = problem()
    variants = {
        "model": problem(width=16),
        "data": problem(changed),
        "loss": problem(loss={"a": "mse", "b": "mse"}),
        "train": problem(config=TrainConfig(**{**QUICK.to_dict(), "lr": 0.02})),
    }
    assert problem().fingerprint() == base.fingerprint()  # rebuilt from scratch: the same runs
    for part, other in variants.items():
        a, b = base.fingerprint(), other.fingerprint()
        assert [k for k in a if a[k] != b[k]] == [part]
    store = tmp_path / "runs.db"
    assert run_sweep(base, [["a", "b"]], 1, store, progress=False).done == 3
    for part, other in variants.items():
        with pytest.raises(StoreError, match=rf"different problem \({part}\b.*start a new store"):
            run_sweep(other, [["a", "b"]], 1, store, progress=False)
    assert run_sweep(problem(), [["a", "b"]], 1, store, progress=False).nothing_to_do


def test_predictions_shaped_n_by_1_for_n_targets_are_refused_not_broadcast():
    class Columns(nn.Module):
        def __init__(self, group, seed):
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
            self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in group})

        def shared_parameters(self):
            return list(self.trunk.parameters())

        def forward(self, x):
            return {t: head(self.trunk(x)) for t, head in self.heads.items()}  # (n, 1) for targets (n,)

    with pytest.raises(ModelError, match=r"task 'a'.*\(2, 1\) for targets \(2,\) \(squeeze the trailing 1\)"):
        TorchProblem(data(), Columns, loss="mse", config=QUICK).train(["a"], 0)


def test_the_reported_mse_is_the_mse_of_the_restored_model():
    trainer = TorchProblem(data(), _factory(8), loss="mse", config=QUICK).trainer(["a", "b"], 0)
    result = trainer.fit()
    test = data().test
    with torch.no_grad():
        predictions = [p.numpy() for p in trainer.model.eval().forward_all(torch.from_numpy(test.x), ["a", "b"])]
    for k, task in enumerate(["a", "b"]):
        reference = np.mean((predictions[k].astype(np.float64) - test.y[:, k]) ** 2)
        assert result.test_loss[task] == pytest.approx(reference, rel=1e-5)


def test_a_problem_file_imports_the_modules_beside_it_in_every_executor(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "helper.py").write_text(
        "import numpy as np\n"
        "from taskrel.data.single import SingleInputDataset\n"
        "def toy():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x = rng.normal(size=(60, 3)).astype(np.float32)\n"
        "    y = np.stack([x[:, 0], x[:, 1] - x[:, 2]], axis=1).astype(np.float32)\n"
        "    parts = [(x[a:b], y[a:b]) for a, b in ((0, 40), (40, 50), (50, 60))]\n"
        "    return SingleInputDataset('beside', ['p', 'q'], *parts)\n"
    )
    (tmp_path / "problem.py").write_text(
        "from helper import toy\n"
        "from taskrel.problems.torch_problem import TorchProblem\n"
        "from taskrel.train import TrainConfig\n"
        "problem = TorchProblem(toy(), loss='mse', config=TrainConfig(max_epochs=2, batch_size=16))\n"
    )
    for executor in ("local", "ray"):
        store = tmp_path / f"{executor}.db"
        result = subprocess.run(
            [sys.executable, "-m", "taskrel", "sweep", "--problem", f"{tmp_path / 'problem.py'}:problem", "--groups",
             "pairs", "--seeds", "1", "--store", str(store), "--workers", "2", "--executor", executor, "--json"],
            capture_output=True, text=True, cwd=tmp_path.parent, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["done"] == 3
