"""Affinity collectors against closed forms and hand-written lookaheads."""

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity, update_directions
from taskrel.errors import ConfigError, NonFiniteError
from taskrel.gradients import unflatten
from taskrel.models import MultiTaskModel, loss_function, mlp_model
from taskrel.train import StepContext, TrialEvaluator

TASKS = ("a", "b", "c")


def tiny_problem(seed=0):
    """A float64 MLP with three regression tasks and one fixed mini-batch per task."""
    model = mlp_model(TASKS, 5, (6, 4), seed=seed).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 12, 5, generator=g, dtype=torch.float64)
    y = torch.randn(3, 12, generator=g, dtype=torch.float64)
    return model, x, y


def context(model, x, y, optimizer):
    loss = loss_function("regression")

    def losses(module, tasks):
        index = list(tasks)
        out = module.forward_stacked(x[index], [TASKS[k] for k in index])
        return loss(out, y[index], reduction="none").mean(dim=1)

    return StepContext(
        TASKS,
        list(losses(model, (0, 1, 2))),
        model.shared_parameters(),
        optimizer,
        TrialEvaluator(model, losses, separable=True),
        task_parameters=[model.task_parameters(t) for t in TASKS],
    )


def matrix_of(collector, ctx):
    collector.on_step(ctx)
    return collector.matrix("steps").values


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_tag_converges_to_etap_as_the_step_shrinks(momentum):
    model, x, y = tiny_problem()
    errors = []
    for lr in (1e-1, 1e-2, 1e-3, 1e-4):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        if momentum:  # give the optimizer a momentum buffer, as after a few steps
            for p in model.parameters():
                opt.state[p]["momentum_buffer"] = torch.randn_like(p) * 0.1
        tag = matrix_of(TagAffinity(), context(model, x, y, opt))
        etap = matrix_of(EtapAffinity(momentum=bool(momentum)), context(model, x, y, opt))
        errors.append(np.abs(tag - etap).max() / np.abs(etap).max())
    assert all(later < 0.2 * earlier for earlier, later in itertools.pairwise(errors))
    assert errors[-1] < 1e-3


def test_tag_and_ptg_match_hand_written_lookaheads():
    model, x, y = tiny_problem(seed=1)
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    ctx = context(model, x, y, opt)
    before = ctx.loss_values
    tag = matrix_of(TagAffinity(), ctx)
    ptg = matrix_of(PtgTransferGain(), context(model, x, y, opt))
    loss = loss_function("regression")

    grads = {}  # task -> (trunk gradients, head gradients), by a plain backward on a copy
    for k, task in enumerate(TASKS):
        clone = copy.deepcopy(model)
        loss(clone(x[k], task), y[k]).backward()
        grads[task] = ([p.grad for p in clone.trunk.parameters()], [p.grad for p in clone.head(task).parameters()])

    def losses_after(update, heads):  # update: [(task, multiple)]; the trunk gets all, each head its own
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for task, w in update:
                for p, g in zip(moved.trunk.parameters(), grads[task][0], strict=True):
                    p -= lr * w * g
                if heads:
                    for p, g in zip(moved.head(task).parameters(), grads[task][1], strict=True):
                        p -= lr * w * g
            return torch.stack([loss(moved(x[k], t), y[k]) for k, t in enumerate(TASKS)])

    for i, source in enumerate(TASKS):
        after = losses_after([(source, 1.0)], heads=False)
        assert np.allclose(tag[i], ((1 - after / before) / lr).numpy(), atol=1e-9)
    for i, source in enumerate(TASKS):
        for j, target in enumerate(TASKS):
            if i == j:
                assert ptg[i, j] == 0
                continue
            pair = losses_after([(source, 1.0), (target, 1.0)], heads=True)[j]
            doubled = losses_after([(target, 2.0)], heads=True)[j]
            assert ptg[i, j] == pytest.approx(float(1 - pair / doubled), abs=1e-9)


class ScalarModel(MultiTaskModel):
    """One shared scalar θ (trunk Linear(1, 1) on input 1); identity heads. L_t = (θ − target_t)²."""

    def __init__(self):
        trunk = nn.Linear(1, 1, bias=False).double()
        nn.init.zeros_(trunk.weight)
        heads = {}
        for t in ("small", "big"):
            heads[t] = nn.Linear(1, 1).double()
            nn.init.ones_(heads[t].weight)
            nn.init.zeros_(heads[t].bias)
            heads[t].requires_grad_(False)
        super().__init__(trunk, heads)


def scalar_context(lr):
    model = ScalarModel()
    targets = {"small": 1.0, "big": 10.0}
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    one = torch.ones(1, 1, dtype=torch.float64)

    def losses(module, tasks):
        names = [("small", "big")[k] for k in tasks]
        return torch.stack([(module(one, t)[0] - targets[t]) ** 2 for t in names])

    return StepContext(
        ("small", "big"),
        list(losses(model, (0, 1))),
        model.shared_parameters(),
        opt,
        TrialEvaluator(model, losses),
        task_parameters=[[], []],
    )


def test_orientation_on_an_asymmetric_construction():
    """θ = 0, L_small = (θ−1)², L_big = (θ−10)²: g_small = −2, g_big = −20 (closed forms below)."""
    etap = matrix_of(EtapAffinity(), scalar_context(0.15))
    # z(i → j) = g_i g_j / L_j: onto 'small' (L = 1) the effect is 100× the effect onto 'big' (L = 100)
    assert etap[1, 0] == pytest.approx(40.0) and etap[0, 1] == pytest.approx(0.4)
    tag = matrix_of(TagAffinity(), scalar_context(0.15))
    # small's step θ → 0.3 helps big; big's step θ → 3 overshoots and hurts small
    assert tag[0, 1] == pytest.approx((1 - 9.7**2 / 100) / 0.15)
    assert tag[1, 0] == pytest.approx((1 - 4.0) / 0.15)
    assert tag[0, 1] > 0 > tag[1, 0]
    ptg = matrix_of(PtgTransferGain(), scalar_context(0.02))
    # pair step θ → 0.44; references: small doubled θ → 0.08, big doubled θ → 0.8
    assert ptg[1, 0] == pytest.approx(1 - 0.56**2 / 0.92**2)
    assert ptg[0, 1] == pytest.approx(1 - 9.56**2 / 9.2**2)
    assert ptg[1, 0] > 0 > ptg[0, 1]


@pytest.mark.parametrize("optimizer", ["adam", "sgd-momentum"])
def test_etap_scores_the_gradient_or_the_optimisers_step_and_says_which(optimizer):
    model, x, y = tiny_problem(seed=4)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():  # one real step: Adam moments and a momentum buffer exist
        p.grad = torch.randn_like(p)
    opt.step()
    ctx = context(model, x, y, opt)
    grads = ctx.task_gradients
    gradient, step = EtapAffinity(weighting="steps"), EtapAffinity(momentum=True, weighting="steps")
    expected = grads @ grads.T / ctx.loss_values[None, :]
    assert np.allclose(matrix_of(gradient, context(model, x, y, opt)), expected.numpy(), rtol=1e-6, atol=1e-10)
    assert gradient.matrix("steps").update == "gradient"
    if optimizer == "adam":  # u_i: Adam's step for task i's gradient alone, by hand
        exp_avg, exp_avg_sq = (torch.cat([opt.state[p][k].reshape(-1) for p in model.shared_parameters()])
                               for k in ("exp_avg", "exp_avg_sq"))  # fmt: skip
        t = float(opt.state[model.shared_parameters()[0]]["step"]) + 1
        m = 0.9 * exp_avg + 0.1 * grads
        v = 0.999 * exp_avg_sq + 0.001 * grads**2
        u = m / (1 - 0.9**t) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
        expected, update = u @ grads.T, "Adam step"
    else:  # SGD's step: the momentum buffer plus the task's gradient
        buffer = torch.cat([opt.state[p]["momentum_buffer"].reshape(-1) for p in model.shared_parameters()])
        expected, update = (0.9 * buffer + grads) @ grads.T, "SGD step"
    expected = expected / ctx.loss_values[None, :]
    assert np.allclose(matrix_of(step, context(model, x, y, opt)), expected.numpy(), rtol=1e-6, atol=1e-10)
    assert step.matrix("steps").update == update


@pytest.mark.parametrize(
    "settings",
    [
        dict(momentum=0.0),
        dict(momentum=0.9),
        dict(momentum=0.9, nesterov=True),
        dict(momentum=0.8, dampening=0.3, weight_decay=0.01),
        dict(momentum=0.9, nesterov=True, weight_decay=0.1),
    ],
)
def test_update_directions_follow_torch_sgd(settings):
    """u = −Δθ/lr predicted from the SGD state equals what `torch.optim.SGD.step` actually does."""
    model, x, y = tiny_problem(seed=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, **settings)
    shared = model.shared_parameters()
    flat = lambda: torch.cat([p.detach().reshape(-1) for p in shared])  # noqa: E731
    for _ in range(2):  # first step (no momentum buffer yet), then a step with one
        ctx = context(model, x, y, opt)
        predicted = update_directions(opt, shared, ctx.task_gradients)
        for k in range(len(TASKS)):
            state, before = copy.deepcopy(opt.state_dict()), flat()
            for p, g in zip(shared, unflatten(ctx.task_gradients[k], shared), strict=True):
                p.grad = g.clone()
            opt.step()
            assert torch.allclose((before - flat()) / 0.1, predicted[k], atol=1e-10)
            opt.load_state_dict(state)
            with torch.no_grad():
                for p, v in zip(shared, unflatten(before, shared), strict=True):
                    p.copy_(v)
        for p in model.parameters():
            p.grad = torch.full_like(p, 0.01)
        opt.step()


def test_lookaheads_leave_parameters_gradients_and_adam_state():
    model, x, y = tiny_problem(seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    snapshot = copy.deepcopy(opt.state_dict())
    values = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    for collector in (TagAffinity(), PtgTransferGain(), EtapAffinity(momentum=True)):
        matrix_of(collector, context(model, x, y, opt))
    assert all(torch.equal(p, v) for p, v in zip(model.parameters(), values, strict=True))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    restored = opt.state_dict()["state"]
    for key, state in snapshot["state"].items():
        assert all(torch.equal(state[name], restored[key][name]) for name in state)


def test_every_k_and_errors():
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    collector = EtapAffinity(every=3)
    for _ in range(7):
        collector.on_step(context(model, x, y, opt))
    assert collector.steps == 3
    with pytest.raises(ConfigError, match="every"):
        EtapAffinity(every=0)
    with pytest.raises(ConfigError, match="not collected"):
        TagAffinity().matrix()
    with pytest.raises(ConfigError, match="weighting"):
        TagAffinity(weighting="epochs")
    with pytest.raises(ConfigError, match="RMSprop"):
        EtapAffinity(momentum=True).on_step(context(model, x, y, torch.optim.RMSprop(model.parameters())))
    no_eval = context(model, x, y, opt)
    no_eval.evaluator = None
    with pytest.raises(ConfigError, match="evaluator="):
        TagAffinity().on_step(no_eval)
    nan_loss = torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(NonFiniteError, match="'b'"):
        StepContext(TASKS, [torch.tensor(1.0), nan_loss, torch.tensor(2.0)], model.shared_parameters(), opt)


class Constant(EtapAffinity):
    """Returns a preset matrix per step (to check the aggregation by hand)."""

    def __init__(self, values):
        super().__init__()
        self.values = iter(values)

    def collect(self, ctx):
        return torch.from_numpy(next(self.values)), None


def test_step_and_validation_weighted_aggregation_by_hand():
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    epochs = [np.full((3, 3), 1.0), np.full((3, 3), 3.0), np.full((3, 3), 7.0)]
    collector = Constant([epochs[0], epochs[0], epochs[1], epochs[2], epochs[2], epochs[2]])
    val = [{"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 0.5, "b": 0.9, "c": 1.2}, {"a": 0.4, "b": 0.95, "c": 0.7}]
    for steps, logs in zip((2, 1, 3), val, strict=True):
        for _ in range(steps):
            collector.on_step(context(model, x, y, opt))
        collector.on_epoch_end(0, {"val_loss": logs})
    assert np.allclose(collector.matrix("steps").values, (2 * 1 + 3 + 3 * 7) / 6)
    assert collector.matrix().method == "etap-validation"  # ETAP's default weighting
    weighted = collector.matrix("validation").values
    # best-so-far improvements: a: 0.5 then 0.1; b: 0.1 then 0; c: 0 then 0.3 (epoch 0 has no baseline)
    assert np.allclose(weighted[:, 0], (0.5 * 3 + 0.1 * 7) / 0.6)
    assert np.allclose(weighted[:, 1], 3.0) and np.allclose(weighted[:, 2], 7.0)
    assert collector.matrix("validation").method == "etap-validation"
    stuck = Constant([epochs[0], epochs[1]])
    for logs in ({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 0.5, "c": 0.5}):
        stuck.on_step(context(model, x, y, opt))
        stuck.on_epoch_end(0, {"val_loss": logs})
    stalled = stuck.matrix("validation")  # a never improved: its column is the steps' average, and it is named
    assert stalled.stalled == ("a",) and np.allclose(stalled.values[:, 0], stuck.matrix("steps").values[:, 0])
    assert np.allclose(stalled.values[:, 1:], 3.0) and stuck.matrix("steps").stalled == ()
    # with the loss before training as baseline, the first epoch's improvement counts too
    collector.initial_val = {"a": 2.0, "b": 1.0, "c": 1.0}
    assert np.allclose(collector.matrix("validation").values[:, 0], (1.0 * 1 + 0.5 * 3 + 0.1 * 7) / 1.6)


def test_step_context_takes_a_loss_tensor_and_refuses_a_count_that_does_not_match_the_tasks():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    losses = torch.stack([(w**2).sum(), (w - 3).pow(2).sum()])
    ctx = StepContext(["a", "b"], losses, [w], opt)
    assert torch.equal(ctx.loss_values, torch.tensor([5.0, 5.0], dtype=torch.float64))
    # the Gram matrix of the per-task gradients, from closed forms: g_a = 2w = (2, 4), g_b = 2(w − 3) = (−4, −2)
    assert torch.allclose(ctx.task_gram, torch.tensor([[20.0, -16.0], [-16.0, 20.0]], dtype=torch.float64))
    with pytest.raises(ConfigError, match="3 losses given for 2 tasks"):
        StepContext(["a", "b"], torch.cat([losses, losses[:1]]), [w], opt)


def test_common_mistakes_of_a_users_loop_get_errors_that_say_what_to_do():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    x = torch.randn(32, 2)
    per_example = [((x @ w) ** 2), ((x @ w - 1) ** 2)]  # (32,) each: not reduced over the batch
    with pytest.raises(ConfigError, match=r"the loss of task 'a' is \(32,\), not a scalar.*not per-example losses"):
        StepContext(["a", "b"], per_example, [w], opt)
    with pytest.raises(ConfigError, match=r"losses of shape \(2, 32\).*one scalar per task"):
        StepContext(["a", "b"], torch.stack(per_example), [w], opt)
    with pytest.raises(ConfigError, match=r"evaluator is a function: give a taskrel\.train\.TrialEvaluator"):
        StepContext(["a", "b"], [loss.mean() for loss in per_example], [w], opt, lambda: None)
    losses = [loss.mean() for loss in per_example]
    sum(losses).backward()  # the graph is freed before the collector sees the losses
    with pytest.raises(ConfigError, match=r"graph was already freed: call the collectors' on_step .* before"):
        EtapAffinity().on_step(StepContext(["a", "b"], losses, [w], opt))
