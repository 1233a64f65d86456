"""Weighting methods in a plain PyTorch loop: the gradients they write, compared with an independent
per-task computation; update_every; state_dict; non-finite input; the Trainer integration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskrel.data import load_school
from taskrel.errors import ConfigError, NonFiniteError, ShapeError, SolverError
from taskrel.models import mlp_model
from taskrel.train import Trainer
from taskrel.train.config import TrainConfig
from taskrel.weighting import (
    GCS,
    AuxiNash,
    LinearScalarisation,
    NashMTL,
    NearStationaryWarning,
    PCGrad,
    make_method,
    solve_bargaining,
    task_specific_parameters,
)

TASKS = ("a", "b", "c")


def problem(seed: int = 0):
    torch.manual_seed(seed)
    model = mlp_model(TASKS, 4, (6, 5), seed=seed).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    targets = {t: torch.randn(16, dtype=torch.float64) * (k + 1) for k, t in enumerate(TASKS)}

    def losses():
        return [torch.mean((model(x, t) - targets[t]) ** 2) for t in TASKS]

    return model, losses


def per_task_gradients(model, losses):
    """Each task's gradient on all parameters, by one plain backward per task."""
    rows = []
    for loss in losses:
        model.zero_grad()
        loss.backward(retain_graph=True)
        rows.append({n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in model.named_parameters()})
    model.zero_grad()
    return rows


def flat_shared(model, grads_by_name):
    return torch.cat([grads_by_name[n].reshape(-1) for n, _ in model.trunk.named_parameters(prefix="trunk")])


def written_gradients(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("max_norm", [None, 0.05])
def test_nash_mtl_writes_clipped_alpha_combination_and_weighted_heads(max_norm):
    model, losses = problem()
    reference = per_task_gradients(model, losses())
    shared = torch.stack([flat_shared(model, r) for r in reference]).numpy()
    alpha = solve_bargaining(shared @ shared.T).alpha
    method = NashMTL(TASKS, max_norm=max_norm)
    weights = method.backward(losses(), model.shared_parameters())
    np.testing.assert_allclose(weights.numpy(), alpha, rtol=1e-9)
    update = alpha @ shared
    if max_norm is not None:
        assert np.linalg.norm(update) > max_norm
        update = update * max_norm / np.linalg.norm(update)
    written = written_gradients(model)
    np.testing.assert_allclose(flat_shared(model, written).numpy(), update, rtol=1e-9, atol=1e-12)
    for k in range(len(TASKS)):
        head = f"heads.{k}.weight"
        np.testing.assert_allclose(written[head].numpy(), alpha[k] * reference[k][head].numpy(), rtol=1e-9)


def test_linear_scalarisation_equals_plain_backward_of_weighted_sum():
    model, losses = problem(1)
    weights = [0.5, 2.0, 1.0]
    sum(w * loss for w, loss in zip(weights, losses(), strict=True)).backward()
    expected = written_gradients(model)
    model.zero_grad()
    LinearScalarisation(TASKS, weights).backward(losses(), model.shared_parameters())
    for name, grad in written_gradients(model).items():
        torch.testing.assert_close(grad, expected[name])


def test_backward_accumulates_like_tensor_backward():
    model, losses = problem(2)
    LinearScalarisation(TASKS).backward(losses(), model.shared_parameters())
    once = written_gradients(model)
    LinearScalarisation(TASKS).backward(losses(), model.shared_parameters())
    for name, grad in written_gradients(model).items():
        torch.testing.assert_close(grad, 2 * once[name])


def test_precomputed_gradients_give_the_same_update():
    model, losses = problem(3)
    computed = NashMTL(TASKS).backward(losses(), model.shared_parameters())
    first = written_gradients(model)
    model.zero_grad()
    current = losses()
    grads = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, model.shared_parameters(), retain_graph=True)])
            for loss in current
        ]
    )
    given = NashMTL(TASKS).backward(current, model.shared_parameters(), grads=grads)
    torch.testing.assert_close(given, computed)
    for name, grad in written_gradients(model).items():
        torch.testing.assert_close(grad, first[name])
    with pytest.raises(ShapeError, match="grads must have shape"):
        NashMTL(TASKS).backward(losses(), model.shared_parameters(), grads=grads[:, :5])


def pcgrad_on_vectors(grads: np.ndarray, seed: int) -> np.ndarray:
    """PCGrad as published: project each gradient off the ones it conflicts with, then sum."""
    rng = np.random.default_rng(seed)
    total = np.zeros(grads.shape[1])
    for i in range(len(grads)):
        projected = grads[i].copy()
        for j in rng.permutation(len(grads)):
            dot = projected @ grads[j]
            if dot < 0:
                projected -= dot / (grads[j] @ grads[j]) * grads[j]
        total += projected
    return total


def test_pcgrad_matches_projection_on_the_gradient_vectors():
    model, losses = problem(4)
    reference = per_task_gradients(model, losses())
    shared = torch.stack([flat_shared(model, r) for r in reference]).numpy()
    PCGrad(TASKS, seed=7).backward(losses(), model.shared_parameters())
    written = written_gradients(model)
    np.testing.assert_allclose(flat_shared(model, written).numpy(), pcgrad_on_vectors(shared, 7), rtol=1e-9)
    for k in range(len(TASKS)):  # heads keep their own plain gradients
        head = f"heads.{k}.weight"
        torch.testing.assert_close(written[head], reference[k][head])


def test_gcs_drops_auxiliary_tasks_that_conflict_with_the_main_task():
    grads = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-0.6, 0.8]], dtype=torch.float64)
    gram = (grads @ grads.T).numpy()
    np.testing.assert_allclose(GCS(TASKS, main="a").combine(gram), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(GCS(TASKS, main="a", weighted=True).combine(gram), [1.0, 0.6, 0.0])
    np.testing.assert_allclose(GCS(TASKS, main="c").combine(gram), [0.0, 1.0, 1.0])


def test_update_every_reuses_weights_between_refreshes():
    model, losses = problem(5)
    method = NashMTL(TASKS, update_every=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = []
    for _ in range(7):
        optimizer.zero_grad()
        history.append(method.backward(losses(), model.shared_parameters()).numpy())
        optimizer.step()
    for step in (1, 2, 4, 5):
        np.testing.assert_array_equal(history[step], history[step - 1 if step % 3 else step])
    assert not np.allclose(history[3], history[0])
    assert not np.allclose(history[6], history[3])


def test_state_dict_round_trip_continues_identically():
    def run(steps: int, method, model, losses):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        out = None
        for _ in range(steps):
            optimizer.zero_grad()
            out = method.backward(losses(), model.shared_parameters())
            optimizer.step()
        return out

    model, losses = problem(6)
    method = PCGrad(TASKS, seed=1, update_every=2)
    run(3, method, model, losses)
    state = method.state_dict()
    parameters = {k: v.clone() for k, v in model.state_dict().items()}
    expected = run(3, method, model, losses)
    model.load_state_dict(parameters)
    restored = PCGrad(TASKS, seed=99, update_every=2)
    restored.load_state_dict(state)
    torch.testing.assert_close(run(3, restored, model, losses), expected)


def test_nan_loss_raises_naming_the_task():
    model, losses = problem(7)
    current = losses()
    current[1] = current[1] * torch.tensor(float("nan"), dtype=torch.float64)
    for method in (NashMTL(TASKS), LinearScalarisation(TASKS)):
        with pytest.raises(NonFiniteError, match="'b'"):
            method.backward(current, model.shared_parameters())


@pytest.mark.parametrize("name", ["ls", "nash_mtl", "pcgrad"])
def test_infinite_gradient_with_finite_loss_raises_naming_the_task(name):
    model, losses = problem(8)
    current = losses()
    # sqrt at 0: the loss value stays finite (0) but its gradient is infinite
    broken = torch.sqrt(torch.clamp(model(torch.zeros(1, 4, dtype=torch.float64), "c").sum() * 0, min=0))
    current[2] = current[2] + broken
    with pytest.raises(NonFiniteError, match="'c'"):
        make_method(name, TASKS).backward(current, model.shared_parameters())


def test_task_specific_parameters_are_found_from_the_graph():
    model, losses = problem(9)
    found = {id(p) for p in task_specific_parameters(losses(), model.shared_parameters())}
    heads = {id(p) for t in TASKS for p in model.task_parameters(t)}
    assert found == heads


def test_bad_configuration_is_rejected():
    with pytest.raises(ConfigError, match="unknown weighting method"):
        make_method("mgda", TASKS)
    with pytest.raises(ConfigError, match="update_every"):
        NashMTL(TASKS, update_every=0)
    with pytest.raises(ShapeError, match="2 losses for 3 tasks"):
        model, losses = problem(0)
        NashMTL(TASKS).backward(losses()[:2], model.shared_parameters())
    with pytest.raises(ConfigError, match="preferences"):
        AuxiNash(TASKS, [1.0, -1.0, 1.0])


def test_trainer_accepts_a_weighting_method_on_real_data():
    dataset = load_school().subset(["1", "2", "3"])
    config = TrainConfig(lr=0.01, batch_size=32, max_steps=40, patience_steps=0, patience=1000)
    method = AuxiNash(("1", "2", "3"), [2.0, 1.0, 1.0])
    result = Trainer(dataset, "1|2|3", config, seed=0, weighting=method).fit()
    assert method.step == result.steps == 40
    assert np.isfinite(list(result.test_loss.values())).all()
    np.testing.assert_allclose(method.preferences, [1.5, 0.75, 0.75])


def test_pareto_stationary_step_is_regularised_warned_and_counted():
    # Three tasks pulling a shared 2-D map towards optima around the origin: at w = 0 a positive
    # combination of their gradients vanishes exactly.
    model = torch.nn.Linear(2, 1, bias=False).double()
    torch.nn.init.zeros_(model.weight)
    x = torch.eye(2, dtype=torch.float64)
    optima = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    losses = [torch.mean((model(x).squeeze(-1) - x @ u) ** 2) for u in optima]
    method = NashMTL(TASKS)
    with pytest.warns(NearStationaryWarning):
        method.backward(losses, list(model.parameters()))
    assert method.regularised_steps == 1
    assert method.solution.ridge > 0
    assert torch.isfinite(model.weight.grad).all()
    with pytest.raises(SolverError, match="Pareto-stationary"):
        NashMTL(TASKS, on_near_stationary="raise").backward(
            [torch.mean((model(x).squeeze(-1) - x @ u) ** 2) for u in optima], list(model.parameters())
        )


def test_a_task_whose_gradient_vanishes_sits_out_and_the_others_still_bargain():
    g = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1e-20]])  # c: below float32's resolution
    method = NashMTL(["a", "b", "c"])
    method.step = 1
    with pytest.raises(SolverError, match="task 'c' has a zero gradient"):
        method.combine(g * np.array([1, 1, 0]))  # an exactly zero gradient on the first step is a setup error
    method.step = 2
    alpha = method.combine(g)
    assert alpha[2] == 0 and method.sat_out_steps == 1
    active = g[:2, :2]
    assert alpha[:2] * (active @ alpha[:2]) == pytest.approx([1.0, 1.0], rel=1e-9)
    assert np.all(np.isfinite(method.combine(g * np.array([1, 1, 0])))) and method.sat_out_steps == 2


def test_auxinash_learns_the_preferences_of_the_tasks_that_bargained_while_one_sits_out():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    model = torch.nn.Linear(4, 1, bias=False)
    targets = [x @ torch.randn(4), x @ torch.randn(4)]

    def losses(step_one: bool):
        out = model(x).squeeze(-1)
        fitted = [torch.mean((out - y) ** 2) for y in targets]
        frozen = torch.mean(out**2) if step_one else (model.weight * 0).sum() + 0.5  # no gradient after step one
        return [*fitted, frozen]

    method = AuxiNash(TASKS, meta_loss=lambda: torch.mean((model(x).squeeze(-1) - targets[0]) ** 2), hypergrad_every=1)
    for step in range(4):
        method.backward(losses(step == 0), list(model.parameters()))
    assert method.sat_out_steps == 3 and not method.active[2]
    assert method.last_hypergradient[2] == 0 and method.last_hypergradient[:2].all()  # no signal from the idle task
    assert np.isfinite(method.preferences).all() and method.preferences[:2] != pytest.approx([1.0, 1.0])
    assert method.preferences.sum() == pytest.approx(3.0)


def test_gradient_norms_and_update_history_record_each_tasks_shared_gradient():
    from taskrel.weighting.weighted import UpdateHistory

    model, losses = problem(3)
    method = NashMTL(TASKS)
    history = UpdateHistory(method, every=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    for _ in range(6):
        current = losses()
        expected = [float(flat_shared(model, g).norm()) for g in per_task_gradients(model, current)]
        optimizer.zero_grad()
        coefficients = method.backward(current, model.shared_parameters())
        assert method.gradient_norms == pytest.approx(expected, rel=1e-10)
        history.on_step(None)
        if method.step % 2 == 0:
            assert history.coefficients[-1] == pytest.approx(coefficients.tolist())
            assert history.gradient_norms[-1] == pytest.approx(expected, rel=1e-10)
        optimizer.step()
    assert history.steps == [2, 4, 6]
    parts = np.abs(np.asarray(history.coefficients)) * np.asarray(history.gradient_norms)
    assert history.shares() == pytest.approx(parts / parts.sum(axis=1, keepdims=True))
    assert LinearScalarisation(TASKS).gradient_norms is None
