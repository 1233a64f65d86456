"""Functional lookaheads: the optimiser's own rule, batched trials equal to the sequential reference, and a
training run that is bit-identical with and without any collector."""

import copy

import numpy as np
import pytest
import torch

from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity, trial_parameters
from taskrel.affinity.updates import flat_trial_parameters, split_rows
from taskrel.errors import ConfigError, ModelError
from taskrel.train import TrainConfig, Trainer
from taskrel.weighting import NashMTL

from . import sequential_reference as reference
from .problems import chemical_problem, ett_problem

OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05),
    "sgd-momentum-wd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01),
    "sgd-nesterov-dampening": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.8, nesterov=True),
    "sgd-dampening-maximize": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.7, dampening=0.3,
                                                             maximize=True),
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
    "adam-amsgrad-l2": lambda params: torch.optim.Adam(params, lr=0.01, amsgrad=True, weight_decay=0.1),
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.1),
}  # fmt: skip


def warm_up(problem, optimizer, steps=2):
    """A few real steps, so momentum buffers and Adam moments exist."""
    for _ in range(steps):
        optimizer.zero_grad()
        problem.losses(problem.model, tuple(range(len(problem.tasks)))).sum().backward()
        optimizer.step()
    optimizer.zero_grad()


def groups_of(params, name):
    """The parameters in two groups (the first one's learning rate halved), or in one for `name` "one"."""
    params = list(params)
    return [{"params": params[:1], "lr": 0.025}, {"params": params[1:]}] if name == "two" else params


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("steps", [0, 2])
@pytest.mark.parametrize("flat", [False, True], ids=["per-parameter", "flat"])
@pytest.mark.parametrize("groups", ["one", "two"])
def test_trial_parameters_equal_what_the_optimizer_does(chemical, name, steps, flat, groups):
    """Both forms of the trial step against the real optimiser on a copy; two groups and, after warm-up, a
    parameter without state make the flat form fall back to the per-parameter rule."""
    problem = chemical_problem(chemical)
    opt = OPTIMIZERS[name](groups_of(problem.model.parameters(), groups))
    warm_up(problem, opt, steps)
    shared = problem.model.shared_parameters()
    if steps and groups == "two":
        opt.state.pop(shared[-1], None)  # as for a parameter that has not had a gradient yet
    size = sum(p.numel() for p in shared)
    grads = torch.randn(3, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    if flat:
        predicted = split_rows(flat_trial_parameters(opt, shared, grads), shared)
    else:
        predicted = trial_parameters(opt, shared, split_rows(grads, shared))
    for n in range(3):  # the real optimiser on a copy, with only the shared parameters given gradients
        model = copy.deepcopy(problem.model)
        real = OPTIMIZERS[name](groups_of(model.parameters(), groups))
        real.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict shares the tensors
        for p, g in zip(model.shared_parameters(), split_rows(grads[n : n + 1], shared), strict=True):
            p.grad = g[0].clone()
        real.step()
        for p, q in zip(model.shared_parameters(), predicted, strict=True):
            assert torch.allclose(p, q[n], atol=1e-12, rtol=0)


def sequential_evaluate(problem):
    def evaluate():
        training = problem.model.training
        problem.model.eval()
        with torch.no_grad():
            out = problem.losses(problem.model, tuple(range(len(problem.tasks))))
        problem.model.train(training)
        return out

    return evaluate


@pytest.mark.parametrize("which", ["chemical", "ett"])
@pytest.mark.parametrize("name", ["sgd-momentum-wd", "adam"])
def test_batched_trials_equal_the_sequential_reference(chemical, which, name):
    problem = chemical_problem(chemical, tasks=6) if which == "chemical" else ett_problem(dtype=torch.float64)
    opt = OPTIMIZERS[name](problem.model.parameters())
    warm_up(problem, opt)
    evaluate = sequential_evaluate(problem)
    expected_tag = reference.tag(problem.context(opt), evaluate)
    expected_ptg = {r: reference.ptg(problem.context(opt), evaluate, r) for r in ("doubled", "single")}
    for mode in ("vmap", "loop"):
        ctx = problem.context(opt, mode)
        tag, _ = TagAffinity().collect(ctx)
        assert torch.allclose(tag, expected_tag, atol=1e-6, rtol=0)
        for ref, expected in expected_ptg.items():
            ptg, observed = PtgTransferGain(reference=ref).collect(ctx)
            assert observed.all() and torch.allclose(ptg, expected, atol=1e-6, rtol=0)
    assert expected_tag.abs().max() > 1e-3 and expected_ptg["doubled"].abs().max() > 1e-6  # non-trivial values


def snapshot(problem, optimizer):
    return (
        {k: v.clone() for k, v in problem.model.state_dict().items()},
        copy.deepcopy(optimizer.state_dict()),
        torch.random.get_rng_state(),
    )


def train(problem, optimizer, collector, steps=4):
    """A user's own loop: losses → collector → backward of the sum → step (Dropout draws from the global RNG)."""
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        ctx = problem.context(optimizer)
        if collector is not None:
            collector.on_step(ctx)
        torch.stack(ctx.losses).sum().backward()
        optimizer.step()
    return snapshot(problem, optimizer)


@pytest.mark.parametrize("name", ["sgd-momentum-wd", "adam"])
def test_training_is_bit_identical_with_and_without_a_collector(name):
    make = lambda: ett_problem(norm=True, dropout=0.2)  # noqa: E731  BatchNorm + Dropout trunk
    plain = make()
    expected = train(plain, OPTIMIZERS[name](plain.model.parameters()), None)
    collectors = [EtapAffinity(weighting="steps"), EtapAffinity(momentum=True), TagAffinity(), PtgTransferGain()]
    for collector in collectors:
        watched = make()
        state, opt_state, rng = train(watched, OPTIMIZERS[name](watched.model.parameters()), collector)
        assert collector.steps == 4
        assert state.keys() == expected[0].keys()
        assert all(torch.equal(state[k], expected[0][k]) for k in state), type(collector).__name__
        assert torch.equal(rng, expected[2])
        for key, values in expected[1]["state"].items():
            assert all(torch.equal(values[n], opt_state["state"][key][n]) for n in values)
        assert watched.model.training and all(m.training for m in watched.model.modules())
    assert expected[0]["trunk.1.num_batches_tracked"] == 4  # the BatchNorm layer did train


def test_trainer_with_nash_weighting_and_tag_runs(chemical):
    tag = TagAffinity()
    tasks = ("83", "78", "84")
    result = Trainer(chemical, tasks, TrainConfig(max_epochs=2, patience=5), weighting=NashMTL(tasks), callbacks=[tag])
    run = result.fit()
    assert tag.steps == run.steps > 0 and np.isfinite(tag.matrix().values).all()


def test_sampled_lookaheads_are_the_full_ones_where_observed(chemical):
    problem = chemical_problem(chemical)
    opt = OPTIMIZERS["sgd-momentum-wd"](problem.model.parameters())
    warm_up(problem, opt)
    ctx = problem.context(opt)
    full_tag, _ = TagAffinity().collect(ctx)
    full_ptg, _ = PtgTransferGain().collect(ctx)
    tag, tag_seen = TagAffinity(sample=0.3, seed=4).collect(ctx)
    ptg, ptg_seen = PtgTransferGain(sample=1 / 3, seed=4).collect(ctx)
    assert tag_seen.sum() == 3 * 10 and tag_seen.all(dim=1).sum() == 3  # three whole source rows
    assert ptg_seen.sum() == 10 + 2 * 15  # the diagonal and both directions of 15 of the 45 pairs
    assert torch.allclose(tag[tag_seen], full_tag[tag_seen], atol=1e-9)
    assert torch.allclose(ptg[ptg_seen], full_ptg[ptg_seen], atol=1e-9)
    again, _ = PtgTransferGain(sample=1 / 3, seed=4).collect(ctx)
    _, other_seen = PtgTransferGain(sample=1 / 3, seed=5).collect(ctx)
    assert torch.equal(again, ptg) and not torch.equal(other_seen, ptg_seen)
    with pytest.raises(ConfigError, match="sample"):
        TagAffinity(sample=0)


def test_sampled_entries_are_averaged_over_the_steps_that_observed_them(chemical):
    problem = chemical_problem(chemical, tasks=5)
    opt = torch.optim.SGD(problem.model.parameters(), lr=0.05)
    collector = PtgTransferGain(sample=0.5, seed=0)
    draws = PtgTransferGain(sample=0.5, seed=0)  # the same sequence of draws, taken on the side
    values, seen = [], []
    for _ in range(8):
        ctx = problem.context(opt)
        values.append(PtgTransferGain().collect(ctx)[0])
        seen.append(draws.collect(ctx)[1])
        collector.on_step(ctx)
        warm_up(problem, opt, 1)
    seen, values = torch.stack(seen).double(), torch.stack(values)
    off_diagonal = seen.sum(0)[~torch.eye(5, dtype=torch.bool)]
    assert off_diagonal.min() >= 1 and off_diagonal.max() < 8  # every entry seen, none at every step
    expected = (seen * values).sum(0) / seen.sum(0)
    assert np.allclose(collector.matrix().values, expected.numpy(), atol=1e-12)


def test_auto_mode_falls_back_to_the_loop_with_a_warning_when_vmap_cannot_batch(chemical):
    problem = chemical_problem(chemical, rows=8)
    plain_losses = problem.losses

    def data_dependent(module, tasks):  # .item() inside the loss: vmap cannot batch it
        values = plain_losses(module, tasks)
        return values * (1.0 if values.sum().item() > 0 else -1.0)

    opt = OPTIMIZERS["sgd"](problem.model.parameters())
    looped, _ = TagAffinity().collect(problem.context(opt, "loop"))
    problem.losses = data_dependent
    with pytest.warns(UserWarning, match="loop"):
        fallen_back, _ = TagAffinity().collect(problem.context(opt, "auto"))
    assert torch.allclose(fallen_back, looped, atol=1e-12)
    with pytest.raises(ModelError, match="vmap"):
        TagAffinity().collect(problem.context(opt, "vmap"))
    with pytest.raises(ConfigError, match="mode"):
        problem.context(opt, "threads")
