"""The batched engine: every member equals its own one-at-a-time run; failures and fallbacks stay per run.

The reference is always the one-at-a-time trainer (`TorchProblem.train`) on the same (group, seed),
which never touches the batched code.
"""

import itertools
import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from taskrel.errors import NonFiniteError
from taskrel.models import MultiTaskModel, loss_function, mlp_model
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import TrainConfig
from taskrel.train.batched import BatchedTrainer, NotBatchable, train_runs
from taskrel.train.stacked import StackedMLPLosses
from tests.user_problems import forecast_data, forecaster

#: fixed training length, no early stopping: every member runs the same number of steps
FIXED = dict(max_epochs=4, max_steps=10_000, patience=100, patience_steps=10_000)
#: Chemical groups of one size (one model layout), with two seeds each
RUNS = [(g, s) for g in (["87", "55", "80"], ["81", "83", "55"], ["80", "81", "87"]) for s in (0, 1)]


def relative_gap(a: dict, b: dict) -> float:
    return max(abs(a[t] - b[t]) / max(abs(a[t]), 1e-12) for t in a)


def assert_same_runs(problem: TorchProblem, runs, outcomes) -> None:
    for (group, seed), batched in zip(runs, outcomes, strict=True):
        assert not isinstance(batched, Exception), batched
        alone = problem.train(group, seed)
        assert (batched.steps, batched.epochs, batched.best_epoch) == (alone.steps, alone.epochs, alone.best_epoch)
        assert relative_gap(alone.test_loss, batched.test_loss) < 1e-5
        assert relative_gap(alone.val_loss, batched.val_loss) < 1e-5
        for task, rows in alone.val_rows.items():
            np.testing.assert_allclose(batched.val_rows[task], rows, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_multi_input_members_equal_their_runs_alone(chemical, optimizer):
    problem = TorchProblem(chemical, config=TrainConfig(optimizer=optimizer, lr=3e-3, **FIXED))
    trainers = [problem.trainer(g, s) for g, s in RUNS]
    for trainer, (group, seed) in zip(trainers, RUNS, strict=True):  # initial weights: those of the run alone
        fresh = problem.make_model(group, seed)
        for (name, p), q in zip(trainer.model.named_parameters(), fresh.parameters(), strict=True):
            assert torch.equal(p, q), name
    engine = BatchedTrainer.of(trainers)
    assert engine._direct is not None  # the built-in MLP: batched matrix products
    assert_same_runs(problem, RUNS, engine.fit())


class _OwnLosses(nn.Module):
    def __init__(self, trainer) -> None:
        super().__init__()
        self.model = trainer.model
        self.trainer = [trainer]

    def forward(self, *batch):
        return self.trainer[0]._losses(batch, self.model)


def _tanh_factory(group, seed):
    torch.manual_seed(seed)
    return MultiTaskModel(nn.Sequential(nn.Linear(180, 16), nn.Tanh()), {t: nn.Linear(16, 1) for t in group})


def test_multi_input_members_of_a_user_model_equal_their_runs_alone(chemical):
    """A batchable model other than the built-in MLP: computed under vmap, same numbers as alone."""
    problem = TorchProblem(chemical, _tanh_factory, config=TrainConfig(lr=3e-3, **FIXED))
    trainers = [problem.trainer(g, s) for g, s in RUNS]
    engine = BatchedTrainer.of(trainers)
    assert engine._direct is None
    assert_same_runs(problem, RUNS, engine.fit())


@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_the_built_in_mlp_is_computed_directly_as_vmap_computes_it(chemical, kind):
    """Losses and gradients of `StackedMLPLosses` against vmap(functional_call) of each model's own losses,
    on padded blocks (mask) of members with different weights."""
    problem = TorchProblem(chemical, config=TrainConfig(hidden=(32, 16)))
    trainers = [problem.trainer(g, s) for g, s in RUNS]
    trainer = trainers[0]
    trainer.loss_fn = loss_function(kind)
    direct = StackedMLPLosses.of(trainer)
    assert direct is not None
    names = [n for n, _ in trainers[0].model.named_parameters()]
    params = {f"model.{n}": torch.stack([dict(t.model.named_parameters())[n].detach() for t in trainers])
              .requires_grad_(True) for n in names}  # fmt: skip
    rng = torch.Generator().manual_seed(0)
    g, w, b = len(trainers), 3, 7
    inputs = torch.randn(g, w, b, 180, generator=rng)
    targets = (torch.rand(g, w, b, generator=rng) > 0.5).float() if kind == "binary" else torch.randn(g, w, b)
    mask = (torch.rand(g, w, b, generator=rng) > 0.3).float()
    losses = _OwnLosses(trainer)  # the model's own forward and the trainer's own loss, per member under vmap
    reference = vmap(lambda p, *batch: functional_call(losses, p, batch))(params, inputs, targets, mask)
    ours = direct(params, (inputs, targets, mask))
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-7)
    for a, r in zip(torch.autograd.grad(ours.sum(), list(params.values())),
                    torch.autograd.grad(reference.sum(), list(params.values())), strict=True):  # fmt: skip
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_single_input_members_equal_their_runs_alone(optimizer):
    """Single-input data with a user's factory; seeds 0 and 1 draw different rows, so inputs are per member."""
    config = TrainConfig(optimizer=optimizer, lr=3e-3, batch_size=128, stop_fraction=0.5, **FIXED)
    problem = TorchProblem(forecast_data(), forecaster, loss="mse", config=config)
    runs = [(g, s) for g in (["HUFL", "OT"], ["MUFL", "OT"], ["HUFL", "MUFL"]) for s in (0, 1)]
    assert_same_runs(problem, runs, BatchedTrainer.of([problem.trainer(g, s) for g, s in runs]).fit())


def stopping_problem(kind: str, chemical) -> tuple[TorchProblem, list]:
    """A problem whose runs stop early at different epochs: multi-input Chemical or single-input ETTh1 windows."""
    if kind == "multi-input":
        config = TrainConfig(lr=0.05, patience=2, patience_steps=0, max_steps=3000)
        return TorchProblem(chemical, config=config), [(["87"], 0), (["55"], 0), (["80"], 1), (["83"], 2), (["81"], 0)]
    config = TrainConfig(optimizer="adam", lr=1e-2, batch_size=256, patience=2, patience_steps=0, max_steps=3000)
    problem = TorchProblem(forecast_data(), forecaster, loss="mse", config=config)
    return problem, [(["HUFL"], 0), (["OT"], 1), (["MUFL", "OT"], 2), (["HUFL"], 3), (["MUFL"], 0)]


@pytest.mark.parametrize("kind", ["multi-input", "single-input"])
def test_early_stopped_members_are_frozen_and_restore_their_best_weights(chemical, kind):
    """Members stop at different epochs; each equals its run alone, which never trained past its stop.

    The restored weights, evaluated by the member's own trainer, give the stop-row loss the batch
    recorded at the best epoch.
    """
    problem, runs = stopping_problem(kind, chemical)
    trainers = [problem.trainer(g, s) for g, s in runs]
    outcomes = train_runs(lambda i: trainers[i], len(runs))
    assert len({r.epochs for r in outcomes}) > 1  # they did stop at different epochs
    assert all(r.steps < 3000 for r in outcomes)  # early stopping, not the cap
    for trainer, result in zip(trainers, outcomes, strict=True):
        recorded = result.history[result.best_epoch]["val_loss"]
        assert relative_gap(trainer.evaluate("stop")[0], recorded) < 1e-5
    assert_same_runs(problem, runs, outcomes)


def test_a_member_whose_loss_becomes_nan_fails_alone(chemical):
    def factory(group, seed):  # task 83's head has NaN weights: its loss is NaN from the first step
        model = mlp_model(group, chemical.n_features, (32, 16), seed)
        if "83" in group:
            nn.init.constant_(model.head("83").weight, float("nan"))
        return model

    problem = TorchProblem(chemical, factory, config=TrainConfig(**FIXED))
    runs = [(["87", "55"], 0), (["83", "55"], 0), (["80", "81"], 0)]
    outcomes = BatchedTrainer.of([problem.trainer(g, s) for g, s in runs]).fit()
    assert isinstance(outcomes[1], NonFiniteError) and "'83' became nan" in str(outcomes[1])
    with pytest.raises(NonFiniteError, match="'83' became nan"):
        problem.train(*runs[1])
    assert_same_runs(problem, [runs[0], runs[2]], [outcomes[0], outcomes[2]])


def _dropout_factory(group, seed):
    trunk = nn.Sequential(nn.Linear(180, 16), nn.ReLU(), nn.Dropout(0.2))
    return MultiTaskModel(trunk, {t: nn.Linear(16, 1) for t in group})


def _batchnorm_factory(group, seed):
    trunk = nn.Sequential(nn.Linear(180, 16), nn.BatchNorm1d(16), nn.ReLU())
    return MultiTaskModel(trunk, {t: nn.Linear(16, 1) for t in group})


@pytest.mark.parametrize("factory", [_dropout_factory, _batchnorm_factory])
def test_a_model_that_cannot_be_batched_falls_back_with_its_reason(chemical, factory, caplog):
    problem = TorchProblem(chemical, factory, config=TrainConfig(max_steps=40, patience_steps=0))
    runs = [(["87", "55"], 0), (["80", "81"], 1)]
    with pytest.raises(NotBatchable, match="cannot be batched"):
        BatchedTrainer.of([problem.trainer(g, s) for g, s in runs]).fit()
    with caplog.at_level(logging.WARNING, logger="taskrel"):
        outcomes = problem.train_many(runs)
    assert "training 2 runs one at a time" in caplog.text and "cannot be batched" in caplog.text
    for (group, seed), result in zip(runs, outcomes, strict=True):  # the one-at-a-time numbers, exactly
        assert result.test_loss == problem.train(group, seed).test_loss


def test_a_model_whose_outputs_depend_on_more_than_its_parameters_is_refused(chemical):
    """Heads that read a Python attribute: the batched model would give every member the template's."""

    class ShiftedHead(nn.Linear):
        def __init__(self, shift: float) -> None:
            super().__init__(16, 1)
            self.shift = shift

        def forward(self, h):
            return super().forward(h) + self.shift

    def factory(group, seed):
        trunk = nn.Sequential(nn.Linear(180, 16), nn.ReLU())
        return MultiTaskModel(trunk, {t: ShiftedHead(float(seed)) for t in group})

    problem = TorchProblem(chemical, factory, config=TrainConfig(max_steps=40, patience_steps=0))
    with pytest.raises(NotBatchable, match="where the model itself gives"):
        BatchedTrainer.of([problem.trainer(["87", "55"], 0), problem.trainer(["80", "81"], 3)]).fit()


def active_widths(monkeypatch) -> list[list[int]]:
    """Records, at every batched step, the sorted group sizes of the members training in it."""
    widths = []
    original = BatchedTrainer._step

    def spy(self, stack, active):
        widths.append(sorted(len(m.trainer.tasks) for m in active))
        return original(self, stack, active)

    monkeypatch.setattr(BatchedTrainer, "_step", spy)
    return widths


def test_single_input_groups_of_every_size_share_a_batch_and_the_cap_holds(monkeypatch):
    """Narrower members are padded with masked-out heads; a finished member's place goes to the next run.

    Each member still equals its run alone.
    """
    problem, runs = stopping_problem("single-input", None)
    runs = [*runs, (["HUFL", "MUFL", "OT"], 1), (["MUFL", "OT"], 4)]
    widths = active_widths(monkeypatch)
    assert_same_runs(problem, runs, train_runs(lambda i: problem.trainer(*runs[i]), len(runs)))
    assert widths[0] == [1, 1, 1, 1, 2, 2, 3]  # one batch for every size
    widths.clear()
    assert_same_runs(problem, runs, train_runs(lambda i: problem.trainer(*runs[i]), len(runs), max_batch=2))
    assert max(len(w) for w in widths) == 2 and widths[0] == [1, 1]  # by size, two at a time
    assert sum(1 for a, b in itertools.pairwise(widths) if a != b) >= 3  # members left and others took their place


def test_multi_input_groups_share_a_batch_with_groups_of_their_size_only(chemical, monkeypatch):
    """On multi-input data every task brings its own rows through the trunk: no padding across sizes."""
    problem = TorchProblem(chemical, config=TrainConfig(max_steps=30, patience_steps=0))
    runs = [(["87"], 0), (["87", "55", "80"], 0), (["55"], 1), (["80", "81"], 0), (["83"], 0), (["81", "83"], 2)]
    widths = active_widths(monkeypatch)
    assert_same_runs(problem, runs, train_runs(lambda i: problem.trainer(*runs[i]), len(runs)))
    assert {tuple(w) for w in widths} == {(1, 1, 1), (2, 2)}  # the triple trains alone
