"""The hierarchical model against its weight-space closed form, and the default predictor's rule."""

import functools

import numpy as np
import pandas as pd
import pytest

from taskrel.affinity import AffinityMatrix
from taskrel.errors import ConfigError
from taskrel.groups import all_groups, group_name
from taskrel.predict import DefaultPredictor, HierarchicalPredictor, SurrogatePredictor
from taskrel.predict.hierarchical import _evidence

TASKS = tuple(f"t{i}" for i in range(7))
GROUPS = [group_name(g, TASKS) for g in all_groups(TASKS, range(2, 8))]


def table(gain, seed=0, noise=0.0):
    """Every multi-task group of seven tasks with gain(G, t) from `gain(members, t)` plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    rows = [(name, t, gain(name.split("|"), t) + noise * rng.normal()) for name in GROUPS for t in name.split("|")]
    return pd.DataFrame(rows, columns=["group", "task", "gain"])


def membership_effects(rng):
    """gain(G, t) = offset_t + Σ_{u ∈ G∖t} effect[t, u]: no role for any affinity."""
    effect, offset = rng.normal(scale=0.05, size=(7, 7)), rng.normal(scale=0.1, size=7)
    return lambda g, t: offset[TASKS.index(t)] + sum(effect[TASKS.index(t), TASKS.index(u)] for u in g if u != t)


def split(n_train, seed=0):
    order = np.random.default_rng(seed).permutation(len(GROUPS))
    return [GROUPS[i] for i in order[:n_train]], [GROUPS[i] for i in order[n_train:]]


def weight_space(train, query, tasks, variances, centre=None, latent=False):
    """Posterior mean and predictive std of the linear model with offset + specific + mean terms.

    Gains are centred on `centre` (default: the mean training gain) before the Gaussian prior applies.
    With `latent`, the posterior covariance of the noise-free gains of the query rows is returned as well.
    """

    def design(frame):
        target = np.array([[t == u for u in tasks] for t in frame.task], float)
        pairs = zip(frame.group, frame.task, strict=True)
        others = np.array([[u in g.split("|") and u != t for u in tasks] for g, t in pairs], float)
        specific = (target[:, :, None] * others[:, None, :]).reshape(len(frame), -1)
        return np.hstack([target, specific, np.ones((len(frame), 1))])

    x, q = design(train), design(query)
    prior = np.concatenate([np.full(len(tasks), variances["offset"]), np.full(len(tasks) ** 2, variances["specific"]),
                            [variances["mean"]]])  # fmt: skip
    y = train.gain.to_numpy()
    centre = y.mean() if centre is None else centre
    precision = x.T @ x / variances["noise"] + np.diag(1 / prior)
    cov = np.linalg.inv(precision)
    mean = q @ cov @ x.T @ (y - centre) / variances["noise"] + centre
    std = np.sqrt(np.einsum("ij,jk,ik->i", q, cov, q) + variances["noise"])
    return (mean, std, q @ cov @ q.T) if latent else (mean, std)


def test_hierarchical_model_is_the_bayesian_linear_model_it_describes():
    rng = np.random.default_rng(0)
    frame = table(membership_effects(rng), noise=0.01)
    train, test = split(15)
    model = HierarchicalPredictor(terms=("offset", "specific")).fit(None, frame[frame.group.isin(train)])
    predicted = model.predict(test, return_std=True)
    query = predicted[["group", "task"]]
    mean, std = weight_space(frame[frame.group.isin(train)], query, TASKS, model.variances())
    assert np.allclose(predicted.gain, mean, atol=1e-8) and np.allclose(predicted.gain_std, std, atol=1e-8)


def test_means_in_weight_space_equal_the_kernel_form_for_every_term():
    rng = np.random.default_rng(3)
    frame = table(membership_effects(rng), noise=0.01)
    affinity = AffinityMatrix(rng.normal(size=(7, 7)), TASKS, "random")
    train, test = split(20)
    terms = ("offset", "shared", "specific", "affinity", "size")
    model = HierarchicalPredictor(terms=terms).fit(affinity, frame[frame.group.isin(train)])
    kernel = model.predict(test, return_std=True).gain  # K(x, X) K⁻¹ y with the kernel matrix formed
    assert np.allclose(model.predict(test).gain, kernel, atol=1e-10)
    default = DefaultPredictor().fit(affinity, frame[frame.group.isin(train)])
    assert np.allclose(default.predict(test).gain, default.predict(test, return_std=True).gain, atol=1e-10)


def test_posterior_draws_have_the_closed_form_mean_and_covariance():
    rng = np.random.default_rng(5)
    frame = table(membership_effects(rng), noise=0.01)
    train, test = split(12)
    model = HierarchicalPredictor(terms=("offset", "specific")).fit(None, frame[frame.group.isin(train)])
    n = 20_000
    draws = model.sample(["t0", *test[:5]], draws=n, seed=0)
    first = draws[draws.draw == 0]
    assert (draws[draws.group == "t0"].gain == 0).all()
    values = draws.gain.to_numpy().reshape(-1, n)[1:]
    query = first[["group", "task"]].iloc[1:]
    mean, _, latent = weight_space(frame[frame.group.isin(train)], query, TASKS, model.variances(), latent=True)
    scale = np.sqrt(np.diag(latent)).max()
    assert np.abs(values.mean(axis=1) - mean).max() < 5 * scale / np.sqrt(n)
    assert np.abs(np.cov(values) - latent).max() < 5 * scale**2 * np.sqrt(2 / n)
    # the draws are joint: rows of one group are correlated as the closed form says, not independent
    assert np.abs(latent - np.diag(np.diag(latent))).max() > 20 * scale**2 * np.sqrt(2 / n)
    again = model.sample(["t0", *test[:5]], draws=n, seed=0)
    assert again.equals(draws)


def test_default_draws_centre_on_its_prediction():
    rng = np.random.default_rng(6)
    affinity = AffinityMatrix(rng.normal(size=(7, 7)), TASKS)
    frame = table(lambda g, t: 0.05 * affinity.incoming(g, t) + 0.01 * len(g), noise=0.01)
    train, test = split(12)
    model = DefaultPredictor().fit(affinity, frame[frame.group.isin(train)])
    n = 20_000
    draws = model.sample(test[:4], draws=n, seed=1)
    predicted = model.predict(test[:4], return_std=True)
    values = draws.gain.to_numpy().reshape(-1, n)
    assert np.abs(values.mean(axis=1) - predicted.gain.to_numpy()).max() < 5 * predicted.gain_std.max() / np.sqrt(n)
    # noise-free draws spread less than a measured gain would
    assert (values.std(axis=1) < predicted.gain_std.to_numpy()).all()
    with pytest.raises(ConfigError, match="draws"):
        model.sample(test[:1], draws=0)
    with pytest.raises(ConfigError, match="no posterior draws"):
        SurrogatePredictor().fit(None, frame[frame.group.isin(train)]).sample(test[:1])


def test_leave_group_out_matches_refitting_without_the_group():
    frame = table(lambda g, t: 0.1 * TASKS.index(t) - 0.02 * len(g), noise=0.01)
    train, _ = split(8)
    model = HierarchicalPredictor(terms=("offset", "specific")).fit(None, frame[frame.group.isin(train)])
    held = model.leave_group_out()
    rows = model.train_rows_
    for group in train[:3]:
        rest = rows[rows.group != group]
        query = rows[rows.group == group]
        # the closed form keeps the fitted variances and the centring on all training rows
        mean, std = weight_space(rest, query, TASKS, model.variances(), centre=rows.gain.mean())
        mine = held[held.group == group]
        assert np.allclose(mine.predicted, mean, atol=1e-8)
        assert np.allclose(mine.predicted_std, std, atol=1e-8)


def test_default_leans_on_membership_when_gains_are_membership_effects():
    rng = np.random.default_rng(1)
    frame = table(membership_effects(rng), noise=0.005)
    noise_affinity = AffinityMatrix(rng.normal(size=(7, 7)), TASKS)  # unrelated to the gains
    train, test = split(25)
    model = DefaultPredictor().fit(noise_affinity, frame[frame.group.isin(train)])
    assert sum(w for terms, w in model.mixture().items() if "affinity" in terms) <= 0.2
    merged = model.predict(test).merge(frame, on=["group", "task"], suffixes=("_pred", ""))
    surrogate = SurrogatePredictor().fit(None, frame[frame.group.isin(train)]).predict(test)
    merged_s = surrogate.merge(frame, on=["group", "task"], suffixes=("_pred", ""))
    r, r_s = (np.corrcoef(m.gain_pred, m.gain)[0, 1] for m in (merged, merged_s))
    assert r > 0.95 and r >= r_s - 0.02


def test_default_follows_the_affinity_when_gains_are_affinity_driven():
    rng = np.random.default_rng(2)
    affinity = AffinityMatrix(rng.normal(size=(7, 7)), TASKS)
    frame = table(lambda g, t: 0.1 * affinity.incoming(g, t), noise=0.005)
    train, test = split(10)
    model = DefaultPredictor().fit(affinity, frame[frame.group.isin(train)])
    assert sum(w for terms, w in model.mixture().items() if "affinity" in terms) >= 0.8
    merged = model.predict(test).merge(frame, on=["group", "task"], suffixes=("_pred", ""))
    assert np.corrcoef(merged.gain_pred, merged.gain)[0, 1] > 0.95
    # without the affinity the same draw is predicted far worse: the affinity carries the signal
    alone = DefaultPredictor().fit(None, frame[frame.group.isin(train)]).predict(test)
    alone = alone.merge(frame, on=["group", "task"], suffixes=("_pred", ""))
    assert np.corrcoef(alone.gain_pred, alone.gain)[0, 1] < 0.8


def test_predictive_std_is_calibrated_on_held_out_groups():
    rng = np.random.default_rng(3)
    offset = rng.normal(scale=0.1, size=7)
    frame = table(lambda g, t: offset[TASKS.index(t)], noise=0.02, seed=4)
    train, test = split(30)
    predicted = DefaultPredictor().fit(None, frame[frame.group.isin(train)]).predict(test, return_std=True)
    merged = predicted.merge(frame, on=["group", "task"], suffixes=("_pred", ""))
    z = np.abs(merged.gain - merged.gain_pred) / merged.gain_std
    assert 0.6 < np.mean(z <= 1) < 0.76 and np.mean(z <= 2) > 0.9


def test_one_training_group_uses_the_simplest_model_and_singletons_have_no_spread():
    frame = table(lambda g, t: 0.1 * TASKS.index(t))
    model = DefaultPredictor().fit(None, frame[frame.group == "|".join(TASKS)])
    assert model.mixture() == {"offset": 1.0, "offset+specific": 0.0, "offset+specific+size": 0.0}
    out = model.predict(["t0", "t0|t1"], return_std=True)
    assert out.gain_std.iloc[0] == 0.0 and out.gain.iloc[0] == 0.0 and (out.gain_std.iloc[1:] > 0).all()


def test_bad_hyperparameters_are_refused_when_built_and_inputs_they_need_in_fit():
    frame = table(lambda g, t: 0.0)
    for build, message in [(lambda: HierarchicalPredictor(terms=("offset", "bias")), "terms"),
                           (lambda: DefaultPredictor(candidates=()), "candidates"),
                           (lambda: DefaultPredictor(step=0.3), "step must be 1/k")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            build()
    for model, message in [(HierarchicalPredictor(terms=("affinity",)), "needs an affinity"),
                           (DefaultPredictor(candidates=(("affinity",),)), "no affinity")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            model.fit(None, frame)
        assert not hasattr(model, "tasks_")


def test_evidence_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    frame = table(membership_effects(rng), noise=0.01)
    train = frame[frame.group.isin(split(10)[0])]
    model = HierarchicalPredictor(terms=("offset", "shared", "specific")).fit(None, train)
    blocks = model._blocks(model.train_features_, model.train_features_)
    objective = functools.partial(_evidence, blocks, model.target_)
    theta = rng.normal(-2.0, 1.0, size=len(blocks) + 1)
    _, gradient = objective(theta)
    step = 1e-6
    numeric = [(objective(theta + step * e)[0] - objective(theta - step * e)[0]) / (2 * step)
               for e in np.eye(len(theta))]  # fmt: skip
    assert np.allclose(gradient, numeric, rtol=1e-5, atol=1e-6)
