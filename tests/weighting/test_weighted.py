"""Task weighting inside the flow (`taskrel.weighting.weighted`): learned preferences against an exactly
harmful auxiliary, the bargaining identity at every step of a user's loop, the identity of weighted runs,
and the held-out meta batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from taskrel.errors import ConfigError, UnknownTaskError
from taskrel.problems.protocol import GroupResult
from taskrel.problems.registry import load_problem, problem_spec
from taskrel.train.multi_input import Trainer
from taskrel.weighting.weighted import (
    WeightedProblem,
    WeightingSpec,
    held_out_loss,
    needs_meta_loss,
    train_weighted,
)

from .aux_problems import TASKS, regression, regression_data, small_model


@pytest.mark.parametrize("seed", [0, 1])
def test_an_exactly_harmful_auxiliary_loses_its_bargaining_power(seed):
    """`noise` has labels drawn independently of the inputs: its preference falls below 0.05 in 300 steps."""
    spec = WeightingSpec("auxinash", "main", {"meta_lr": 0.05, "hypergrad_every": 5})
    run = train_weighted(regression(), list(TASKS), seed, spec)
    assert run.result.steps >= 300
    assert run.final_preferences["noise"] < 0.05
    assert sum(run.final_preferences.values()) == pytest.approx(1.0)
    assert run.history.steps[0] == 0 and run.history.preferences[0] == pytest.approx([1 / 3] * 3)
    assert len(run.history.steps) >= 300 // 5


class UserLoop:
    """A user's problem with its own loop: it calls ``weighting.backward`` and gives AuxiNash a meta loss.

    At every step it checks, from its own per-task gradients, that the coefficients returned solve the
    bargaining problem: α_i (Gα)_i = p_i for G = JJᵀ and the preferences p in force during the step.
    """

    def __init__(self, steps: int = 60) -> None:
        self.tasks = list(TASKS)
        self.data = regression_data()
        self.steps = steps
        self.worst = 0.0
        self.checked = 0

    def fingerprint(self) -> dict:
        return {"name": "aux-regression-user-loop", "steps": self.steps}

    def train(self, group, seed, *, callbacks=(), weighting=None) -> GroupResult:
        torch.manual_seed(seed)
        model = small_model(tuple(group), seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y, mask = (torch.from_numpy(a) for a in (self.data.train.x, self.data.train.y, self.data.train.mask))
        columns = [self.tasks.index(t) for t in group]
        rng = np.random.default_rng(seed)

        def losses_of(rows):
            outputs = model.forward_all(x[rows], tuple(group))
            return [((out - y[rows, c]) ** 2 * mask[rows, c]).sum() / mask[rows, c].sum().clamp(min=1)
                    for out, c in zip(outputs, columns, strict=True)]  # fmt: skip

        if needs_meta_loss(weighting):
            weighting.meta_loss = lambda: losses_of(torch.from_numpy(rng.choice(40, 32)))[0]
        shared = list(model.shared_parameters())
        for _ in range(self.steps):
            optimizer.zero_grad()
            losses = losses_of(torch.from_numpy(rng.choice(len(x), 64)))
            jacobian = torch.stack([
                torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])
                for loss in losses
            ]).double()  # fmt: skip
            preferences = weighting.preferences.copy()
            alpha = weighting.backward(losses, shared).numpy()
            gram = (jacobian @ jacobian.T).numpy()
            self.worst = max(self.worst, float(np.max(np.abs(alpha * (gram @ alpha) - preferences) / preferences)))
            self.checked += 1
            optimizer.step()
        with torch.no_grad():
            test = {t: float(v) for t, v in zip(group, losses_of(torch.arange(len(x))), strict=True)}
        return GroupResult(test, test, steps=self.steps)


def test_the_bargaining_solution_holds_at_every_step_of_a_users_loop():
    problem = UserLoop()
    spec = WeightingSpec("auxinash", "main", {"meta_lr": 0.05, "hypergrad_every": 3})
    run = train_weighted(problem, list(TASKS), 0, spec)
    assert problem.checked == problem.steps
    assert problem.worst < 1e-6
    assert run.method.regularised_steps == 0 and run.method.sat_out_steps == 0
    assert list(run.final_preferences.values()) != pytest.approx([1 / 3] * 3)  # the loop's meta loss moved p


def test_a_users_loop_that_gives_auxinash_no_meta_loss_is_stopped():
    class Forgetful(UserLoop):
        def train(self, group, seed, *, callbacks=(), weighting=None):
            weighting.meta_loss()  # what the first preference update would do

    with pytest.raises(ConfigError, match=r"weighting\.meta_loss"):
        train_weighted(Forgetful(), list(TASKS), 0, WeightingSpec("auxinash", "main"))


def test_a_weighted_problem_is_identified_by_its_weighting_and_trains_groups_of_one_plainly():
    base = regression()
    weighted = WeightedProblem(base, WeightingSpec("nash-mtl", "main"))
    assert weighted.fingerprint() == {**base.fingerprint(),
                                      "weighting": {"method": "nash-mtl", "main": "main", "options": {}}}  # fmt: skip
    assert weighted.train(["main"], 0).test_loss == base.train(["main"], 0).test_loss
    pair_weighted, pair_plain = weighted.train(["main", "helpful"], 0), base.train(["main", "helpful"], 0)
    assert pair_weighted.test_loss["main"] != pair_plain.test_loss["main"]
    with pytest.raises(ConfigError, match="lacks the main task"):
        weighted.train(["helpful", "noise"], 0)


def test_weighting_specs_are_checked():
    with pytest.raises(ConfigError, match="needs the main task"):
        WeightingSpec("auxinash")
    with pytest.raises(ConfigError, match="unknown weighting 'mgda'"):
        WeightingSpec("mgda")
    with pytest.raises(UnknownTaskError, match="'depth'"):
        WeightedProblem(regression(), WeightingSpec("gcs", "depth"))
    assert WeightingSpec("nash_mtl").method == "nash-mtl"


def test_held_out_meta_batches_are_the_main_tasks_stop_rows():
    """The multi-input trainer's held-out meta loss is the BCE of the main head on stop rows, by hand."""
    from taskrel.data.dataset import MultiTaskDataset, Split, TaskData

    rng = np.random.default_rng(0)

    def task(name: str) -> TaskData:
        parts = [Split(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 2, n).astype(np.float32))
                 for n in (30, 20, 20)]  # fmt: skip
        return TaskData(name, *parts)

    data = MultiTaskDataset("tiny", "binary", (task("a"), task("b")))
    trainer = Trainer(data, ["a", "b"], seed=0)
    loss = held_out_loss(trainer, 1, np.random.default_rng(5))
    rows = np.random.default_rng(5).permutation(10)  # stop_fraction 0.5 of 20 validation rows
    x, y = data.task("b").val.x[rows], data.task("b").val.y[rows]
    logits = trainer.model(torch.from_numpy(x), "b").detach().double().numpy()
    by_hand = np.mean(np.logaddexp(0, logits) - y * logits)
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-5)
    assert loss.requires_grad


def test_a_weighted_problem_from_a_spec_can_be_rebuilt_by_a_sweep_worker():
    spec_text = str(Path(__file__).with_name("aux_problems.py")) + ":regression"
    weighted = WeightedProblem(load_problem(spec_text), WeightingSpec("auxinash", "main", {"meta_lr": 0.05}, "val"))
    spec, options = problem_spec(weighted)
    rebuilt = load_problem(spec, **options)
    assert isinstance(rebuilt, WeightedProblem) and rebuilt.fingerprint() == weighted.fingerprint()
    assert rebuilt.fingerprint()["weighting"]["meta"] == "val"
