import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from taskrel.affinity import EtapAffinity
from taskrel.data import load_parkinsons
from taskrel.errors import ConfigError, NonFiniteError, UnknownTaskError
from taskrel.train import Callback, TrainConfig, Trainer
from taskrel.train.batches import BatchPlan, upsample_rows

QUICK = TrainConfig(max_steps=60, patience_steps=0)


def test_same_seed_same_numbers_other_seed_other_numbers(chemical):
    a = Trainer(chemical, "87|55", QUICK, seed=3).fit()
    b = Trainer(chemical, ["55", "87"], QUICK, seed=3).fit()
    c = Trainer(chemical, "87|55", QUICK, seed=4).fit()
    assert a.group == ("87", "55") and a.test_loss == b.test_loss
    assert a.test_loss != c.test_loss


def test_best_weights_are_restored(chemical):
    trainer = Trainer(chemical, "80|55", TrainConfig(max_steps=400, patience=3, patience_steps=0), seed=0)
    result = trainer.fit()
    totals = [sum(h["val_loss"].values()) for h in result.history]  # on the rows early stopping watches
    assert result.best_epoch == int(np.argmin(totals))
    assert sum(trainer.evaluate("stop")[0].values()) == pytest.approx(min(totals), abs=1e-6)
    # the reported validation losses are those of the other rows, which did not choose the weights
    assert result.val_loss == trainer.evaluate("val")[0] and result.val_loss != trainer.evaluate("stop")[0]
    assert len(result.history) == result.epochs and result.steps == result.history[-1]["step"]


def test_step_patience_trains_small_tasks_past_the_plateau(chemical):
    """ETAP's pitfall: epoch-only patience stops task 55 (2 batches/epoch) near BCE = ln 2."""
    every_row = TrainConfig(stop_fraction=1.0)  # ETAP's protocol: every validation row watched and reported
    epochs_only = Trainer(chemical, "55", replace(every_row, patience_steps=0), seed=0).fit()
    with_steps = Trainer(chemical, "55", every_row, seed=0).fit()
    assert epochs_only.val_loss["55"] > 0.65  # stopped on the plateau
    assert with_steps.val_loss["55"] < 0.6 < math.log(2)
    assert with_steps.steps - 2 * with_steps.best_epoch >= TrainConfig().patience_steps - 2


def test_upsampling_keeps_rows_and_class_balance():
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 10, dtype=np.float32)
    rows = upsample_rows(y, 400, rng)
    assert len(rows) == 400 and set(range(40)) <= set(rows.tolist())
    assert abs(y[rows].mean() - 0.25) < 0.01
    assert np.array_equal(upsample_rows(y, 10, rng), np.arange(40))


def test_batch_plan_covers_each_row_once_per_epoch_and_cycles_small_tasks():
    plan = BatchPlan([10, 4], batch_size=3, rng=np.random.default_rng(1))
    batches = list(plan.epoch())
    assert plan.steps_per_epoch == len(batches) == 4
    assert [len(b[0]) for b in batches] == [3, 3, 3, 1]
    assert sorted(np.concatenate([b[0] for b in batches]).tolist()) == list(range(10))
    small = np.concatenate([b[1] for b in batches])
    assert len(small) == 10 and set(small.tolist()) == set(range(4))


def test_callbacks_see_every_step_before_its_update(chemical):
    class Spy(Callback):
        def __init__(self):
            self.steps, self.epochs, self.moved = [], [], []

        def on_step(self, ctx):
            self.steps.append(ctx.step)
            self.moved.append(ctx.shared_parameters[0].detach().clone())

        def on_epoch_end(self, epoch, logs):
            self.epochs.append(epoch)

    spy = Spy()
    result = Trainer(chemical, "87|55", TrainConfig(max_epochs=3, patience=5), callbacks=[spy]).fit()
    assert spy.steps == list(range(result.steps)) and spy.epochs == [0, 1, 2]
    assert not torch.equal(spy.moved[0], spy.moved[1])  # snapshots taken before successive updates


def test_collector_fast_path_does_not_change_training(chemical):
    cfg = TrainConfig(max_epochs=2, patience=5)
    plain = Trainer(chemical, "80|87|55", cfg, seed=1)
    plain.fit()
    with_etap = Trainer(chemical, "80|87|55", cfg, seed=1, callbacks=[EtapAffinity()])
    with_etap.fit()
    for p, q in zip(plain.model.parameters(), with_etap.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)


def test_diverging_training_names_the_task():
    parkinsons = load_parkinsons()
    trainer = Trainer(parkinsons, ["1", "2"], TrainConfig(lr=1e4, max_steps=200, patience_steps=0))
    with pytest.raises(NonFiniteError, match=r"loss of task '[12]' (is|became) (nan|inf)"):
        trainer.fit()


def test_bad_group_and_config(chemical):
    with pytest.raises(UnknownTaskError, match="'99'"):
        Trainer(chemical, "83|99")
    with pytest.raises(ConfigError, match="lr=-1"):
        TrainConfig(lr=-1)
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 1})


def test_monitor_chooses_the_tasks_that_drive_early_stopping(chemical):
    trainer = Trainer(chemical, "80|55", TrainConfig(max_steps=300, patience=3, patience_steps=0), monitor=["55"])
    result = trainer.fit()
    own = [h["val_loss"]["55"] for h in result.history]
    assert result.best_epoch == int(np.argmin(own))
    assert trainer.evaluate("stop")[0]["55"] == pytest.approx(min(own), abs=1e-6)
    with pytest.raises(UnknownTaskError, match="'83'"):
        Trainer(chemical, "80|55", monitor=["83"])


def test_early_stopping_watches_the_first_validation_rows_and_reports_the_others(chemical):
    config = TrainConfig(max_steps=60, patience_steps=0)
    assert [config.stop_rows(n) for n in (1, 2, 3, 10, 11)] == [1, 1, 2, 5, 6]
    assert TrainConfig(stop_fraction=1.0).stop_rows(10) == 10
    with pytest.raises(ConfigError, match="stop_fraction=0"):
        TrainConfig(stop_fraction=0)
    trainer = Trainer(chemical, "80", config, seed=0)
    result = trainer.fit()
    part = chemical.task("80").val
    k = config.stop_rows(len(part))
    with torch.no_grad():
        logits = trainer.model(torch.from_numpy(part.x), "80").double()
    target = torch.from_numpy(part.y).double()
    rows = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert result.val_loss["80"] == pytest.approx(float(rows[k:].mean()), rel=1e-5)
    assert trainer.evaluate("stop")[0]["80"] == pytest.approx(float(rows[:k].mean()), rel=1e-5)
    assert len(result.val_rows["80"]) == len(part) - k


def _stepwise_epochs(sizes, batch_size, seed, epochs):
    """Reference: each task's rows from a queue refilled with a fresh permutation whenever it runs short."""
    rng, queues, out = np.random.default_rng(seed), [[] for _ in sizes], []
    for _ in range(epochs):
        remaining = max(sizes)
        while remaining > 0:
            count = min(batch_size, remaining)
            remaining -= count
            step = []
            for k, size in enumerate(sizes):
                while len(queues[k]) < count:
                    queues[k] += rng.permutation(size).tolist()
                step.append(queues[k][:count])
                queues[k] = queues[k][count:]
            out.append(step)
    return out


@pytest.mark.parametrize("sizes", [[8, 8, 8], [7], [10, 4], [5, 9, 9]])
def test_batch_plan_draws_the_rows_of_a_step_by_step_queue(sizes):
    plan = BatchPlan(sizes, batch_size=3, rng=np.random.default_rng(7))
    drawn = [np.asarray(step).tolist() for _ in range(3) for step in plan.epoch()]
    assert drawn == _stepwise_epochs(sizes, 3, 7, 3)
