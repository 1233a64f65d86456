"""torchjd: collectors on torchjd's Jacobian against the generic route; aggregators as a taskrel weighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("torchjd")

from torchjd.aggregation import UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward

from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity
from taskrel.errors import ConfigError
from taskrel.integrations.torchjd import AggregatorWeighting, step_context
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import StepContext, TrialEvaluator
from taskrel.train.loop import torch_threads

from .examples import load_example


@pytest.fixture(scope="module")
def example():
    return load_example("torchjd_example")


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def jacobian_descent(example, route, epochs=2):
    """The example's torchjd loop with collectors on the `route`: "torchjd" (`step_context` after mtl_backward),
    "generic" (a plain `StepContext` before it, the collectors computing their own gradients) or None."""
    tasks = example.TASKS
    torch.manual_seed(0)
    model = example.forecaster(tasks, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    aggregator, shared = UPGrad(), model.shared_parameters()
    heads = [model.task_parameters(t) for t in tasks]
    (x, y), (x_val, y_val), _ = example.windows()
    collectors = [EtapAffinity(), EtapAffinity(momentum=True), TagAffinity(), PtgTransferGain()] if route else []

    def validation():
        with torch.no_grad():
            return {"val_loss": dict(zip(tasks, map(float, example.task_losses(model, x_val, y_val)), strict=True))}

    for c in collectors:
        c.on_train_begin(validation())
    order = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        for rows in torch.randperm(len(x), generator=order).split(128):
            features = model.trunk(x[rows])
            losses = [nn.functional.mse_loss(model.head(t)(features)[:, 0], y[rows, k]) for k, t in enumerate(tasks)]
            evaluator = TrialEvaluator(
                model, lambda m, ts, r=rows: torch.stack(example.task_losses(m, x[r], y[r]))[list(ts)]
            )
            optimizer.zero_grad()
            if route == "generic":
                ctx = StepContext(tasks, losses, shared, optimizer, evaluator, task_parameters=heads)
                for c in collectors:
                    c.on_step(ctx)
            mtl_backward(losses, features)
            if route == "torchjd":
                ctx = step_context(tasks, losses, shared, optimizer, evaluator, task_parameters=heads)
                for c in collectors:
                    c.on_step(ctx)
            jac_to_grad(shared, aggregator)
            optimizer.step()
        for c in collectors:
            c.on_epoch_end(epoch, validation())
    return model, collectors


def test_torchjd_route_gives_the_generic_matrices_and_leaves_training_bit_identical(example):
    observed, on_jacobian = jacobian_descent(example, "torchjd")
    reference, generic = jacobian_descent(example, "generic")
    alone, _ = jacobian_descent(example, None)
    for name, value in alone.state_dict().items():
        assert torch.equal(observed.state_dict()[name], value), name
        assert torch.equal(reference.state_dict()[name], value), name
    for mine, theirs in zip(on_jacobian, generic, strict=True):
        np.testing.assert_allclose(mine.matrix().values, theirs.matrix().values, rtol=1e-6, atol=1e-9)


def test_the_documented_loop_is_the_torchjd_route(example):
    model, matrix = example.train(epochs=2)
    reference, collectors = jacobian_descent(example, "torchjd")
    np.testing.assert_array_equal(matrix.values, collectors[0].matrix().values)
    assert matrix.tasks == example.TASKS and matrix.update == "gradient"
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_aggregator_weighting_fills_grad_as_mtl_backward_and_jac_to_grad(example):
    (x, y), _, _ = example.windows()
    grads = []
    for route in ("torchjd", "taskrel"):
        torch.manual_seed(0)
        model = example.forecaster(example.TASKS, 0)
        features = model.trunk(x[:128])
        heads = [model.head(t)(features)[:, 0] for t in example.TASKS]
        losses = [nn.functional.mse_loss(out, y[:128, k]) for k, out in enumerate(heads)]
        if route == "torchjd":
            mtl_backward(losses, features)
            weights = jac_to_grad(model.shared_parameters(), UPGrad())
        else:
            weights = AggregatorWeighting(UPGrad()).backward(losses, model.shared_parameters())
        grads.append([(p.grad, weights) for p in model.parameters()])
    for (mine, w_mine), (theirs, w_theirs) in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(w_mine, w_theirs, rtol=1e-5, atol=1e-7)


def test_a_problem_with_an_aggregator_trains_every_run_with_it(example):
    problem = example.problem.with_config(max_epochs=1)
    plain = TorchProblem(problem.data, example.forecaster, loss="mse", config=problem.config)
    group = ["HUFL", "OT"]
    weighted = problem.train(group, 0)
    assert weighted.test_loss == plain.train(group, 0, weighting=AggregatorWeighting(UPGrad())).test_loss
    assert weighted.test_loss != plain.train(group, 0).test_loss
    (batched,) = problem.train_many([(group, 0)])  # the sweeps' and the pipeline's path
    assert batched.test_loss == weighted.test_loss
    assert "UPGrad" in problem.fingerprint()["weighting"] and "weighting" not in plain.fingerprint()


def test_misuse_is_named(example):
    model = example.forecaster(example.TASKS, 0)
    optimizer = torch.optim.Adam(model.parameters())
    losses = [torch.tensor(1.0)] * 3
    with pytest.raises(ConfigError, match=r"no \.jac: call step_context after torchjd's mtl_backward"):
        step_context(example.TASKS, losses, model.shared_parameters(), optimizer)
    with pytest.raises(ConfigError, match=r"takes a torchjd\.aggregation\.Aggregator"):
        AggregatorWeighting("upgrad")
