"""Gain predictors against closed forms and published reference estimates."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from taskrel.affinity import AffinityMatrix
from taskrel.data.location import data_file
from taskrel.data.published import mtgnet_table, tag_matrix
from taskrel.errors import ConfigError, DataError, NonFiniteError, UnknownTaskError
from taskrel.groups import all_groups, group_name
from taskrel.predict import (
    PREDICTORS,
    AymanPredictor,
    DefaultPredictor,
    EtapPredictor,
    HierarchicalPredictor,
    HoaPredictor,
    KernelSurrogatePredictor,
    MtgNetPredictor,
    SurrogatePredictor,
    TagPredictor,
)
from taskrel.predict.regression import (
    SPLINE_ALPHAS,
    SPLINE_DEGREES,
    fit_spline_ridge,
    group_folds,
    knot_grid,
    ridge_path,
    spline,
)

TASKS = tuple(f"t{i}" for i in range(7))


def synthetic(offsets=True, seed=0):
    """Gains that are a non-linear function of the group affinity plus a per-task offset."""
    rng = np.random.default_rng(seed)
    affinity = AffinityMatrix(rng.normal(size=(7, 7)), TASKS)
    offset = rng.normal(scale=0.05, size=7) if offsets else np.zeros(7)
    rows = []
    for g in all_groups(TASKS, range(2, 8)):
        for t in sorted(g):
            z = affinity.incoming(g, t)
            rows.append((group_name(g, TASKS), t, 0.1 * np.tanh(2 * z) - 0.02 * z**2 + offset[TASKS.index(t)]))
    return affinity, pd.DataFrame(rows, columns=["group", "task", "gain"])


def correlation(model, affinity, frame, train_groups, test_groups):
    model.fit(affinity, frame[frame.group.isin(train_groups)])
    predicted = model.predict(test_groups).merge(frame, on=["group", "task"], suffixes=("_pred", ""))
    return np.corrcoef(predicted.gain_pred, predicted.gain)[0, 1]


def test_etap_recovers_a_nonlinear_map_and_task_offsets():
    affinity, frame = synthetic()
    groups = list(dict.fromkeys(frame.group))
    rng = np.random.default_rng(1)
    order = rng.permutation(len(groups))
    train, test = [groups[i] for i in order[:30]], [groups[i] for i in order[30:]]
    full = correlation(EtapPredictor(), affinity, frame, train, test)
    stage1 = correlation(EtapPredictor(residual=False), affinity, frame, train, test)
    assert full > 0.97 and full > stage1 + 0.05  # the residual stage captures the task offsets
    _, no_offsets = synthetic(offsets=False)
    assert correlation(EtapPredictor(residual=False), affinity, no_offsets, train, test) > 0.97


def test_spline_choice_follows_the_one_standard_error_rule():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(8), 4)  # eight groups of four member rows: a small training set
    z = rng.uniform(-1, 1, groups.size)
    y = 0.05 * z + rng.normal(scale=0.02, size=z.size)
    fit = fit_spline_ridge(z, y, groups)
    # Reference: the CV error of every setting, computed here with sklearn on the same folds.
    folds = group_folds(groups)
    table = []
    for degree in SPLINE_DEGREES:
        for n_knots in knot_grid(z.size):
            for alpha in SPLINE_ALPHAS:
                mse = []
                for train, test in folds:
                    model = make_pipeline(spline(degree, n_knots), Ridge(alpha=alpha)).fit(z[train, None], y[train])
                    mse.append(np.mean((model.predict(z[test, None]) - y[test]) ** 2))
                table.append((np.mean(mse), np.std(mse, ddof=1) / np.sqrt(len(mse)), n_knots + degree - 1, alpha))
    best = min(table)
    eligible = [row for row in table if row[0] <= best[0] + best[1] + 1e-12]
    simplest = min(eligible, key=lambda row: (row[2], -row[3]))
    assert (fit["n_knots"] + fit["degree"] - 1, fit["alpha"]) == (simplest[2], simplest[3])


def test_etap_residual_stage_shares_member_effects_across_targets():
    """A task that lifts every partner is learned from few groups, also for targets seen rarely."""
    affinity = AffinityMatrix(np.zeros((7, 7)), TASKS)  # uninformative affinity: stage 2 must do the work
    helper = np.array([0.1, 0, 0, 0, 0, 0, 0])  # t0 in a group adds 0.1 to every other member's gain
    rows = [
        (group_name(g, TASKS), t, sum(helper[TASKS.index(i)] for i in g if i != t))
        for g in all_groups(TASKS, range(2, 8))
        for t in sorted(g)
    ]
    frame = pd.DataFrame(rows, columns=["group", "task", "gain"])
    groups = list(dict.fromkeys(frame.group))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(groups))
    train, test = [groups[i] for i in order[:12]], [groups[i] for i in order[12:]]

    def error(model):
        predicted = model.fit(affinity, frame[frame.group.isin(train)]).predict(test)
        predicted = predicted.merge(frame, on=["group", "task"], suffixes=("_pred", ""))
        return np.sqrt(np.mean((predicted.gain_pred - predicted.gain) ** 2))

    shared, per_task = error(EtapPredictor(mapping="affine")), error(SurrogatePredictor())
    assert shared < 0.015 and shared < per_task / 2  # per-target ridges learn t0's effect once per target


def test_tag_prediction_is_the_mean_incoming_affinity():
    affinity, frame = synthetic()
    out = TagPredictor().fit(affinity, frame).predict(["t0|t3|t5", "t2"])
    expected = [(affinity["t3", "t0"] + affinity["t5", "t0"]) / 2, (affinity["t0", "t3"] + affinity["t5", "t3"]) / 2,
                (affinity["t0", "t5"] + affinity["t3", "t5"]) / 2, 0.0]  # fmt: skip
    assert list(out.group) == ["t0|t3|t5"] * 3 + ["t2"] and np.allclose(out.gain, expected)


def test_hoa_reproduces_mtgnet_published_estimates():
    """MTG-Net's ETTm1_HOA.csv = mean of validation pair gains; ours from the validation table."""
    tasks, masks, val = mtgnet_table("ettm1", "val")
    _, _, published = mtgnet_table("ettm1", "hoa")
    rows = [
        (group_name([t for t, m in zip(tasks, mask, strict=True) if m], tasks), t, v)
        for mask, gains in zip(masks, val, strict=True)
        for t, v, m in zip(tasks, gains, mask, strict=True)
        if m
    ]
    frame = pd.DataFrame(rows, columns=["group", "task", "gain"])
    model = HoaPredictor().fit(None, frame)
    groups = [group_name([t for t, m in zip(tasks, mask, strict=True) if m], tasks) for mask in masks]
    predicted = model.predict(groups).set_index(["group", "task"]).gain
    for group, mask, row in zip(groups, masks, published, strict=True):
        for t, value, m in zip(tasks, row, mask, strict=True):
            if m and "|" in group:
                assert predicted[(group, t)] == pytest.approx(value, abs=1e-4)


def test_tag_predictor_reproduces_mtgnet_tag_hoa_on_taskonomy():
    _, matrix = tag_matrix("taskonomy", "affinity")  # S[source, target], TAG's loss order
    names = ("segmentation", "depth", "normals", "keypoints", "edges")
    affinity = AffinityMatrix(matrix, names)
    mtg_tasks, masks, _ = mtgnet_table("taskonomy", "hoa")
    tag_hoa = np.loadtxt(data_file("mtgnet_song2022/taskonomy/taskonomy_TAGHOA.csv"))
    model = TagPredictor().fit(affinity, pd.DataFrame({"group": ["depth|normals"], "task": ["depth"], "gain": [0.0]}))
    for mask, row in zip(masks, tag_hoa, strict=True):
        members = [t for t, m in zip(mtg_tasks, mask, strict=True) if m]
        if len(members) < 2:
            continue
        out = model.predict([frozenset(members)]).set_index("task").gain
        for t, value, m in zip(mtg_tasks, row, mask, strict=True):
            if m:
                assert out[t] == pytest.approx(value, abs=1e-4)


def test_surrogate_recovers_an_additive_model_exactly():
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(7, 7))
    rows = [(group_name(g, TASKS), t, 0.2 + sum(weights[TASKS.index(t), TASKS.index(u)] for u in g if u != t))
            for g in all_groups(TASKS, range(2, 8)) for t in sorted(g)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["group", "task", "gain"])
    model = SurrogatePredictor().fit(None, frame)
    predicted = model.predict(list(dict.fromkeys(frame.group))).merge(frame, on=["group", "task"])
    assert np.allclose(predicted.gain_x, predicted.gain_y, atol=1e-3)


def test_ridge_path_matches_sklearn_and_folds_keep_groups_whole():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    coef, intercept = ridge_path(x, y, [0.01, 1.0, 30.0])
    for k, alpha in enumerate([0.01, 1.0, 30.0]):
        reference = Ridge(alpha=alpha).fit(x, y)
        assert np.allclose(coef[k], reference.coef_) and intercept[k] == pytest.approx(reference.intercept_)
    groups = np.repeat(np.arange(6), 5)
    for train, test in group_folds(groups):
        assert not set(groups[train]) & set(groups[test])


def test_constructor_parameters_and_clone():
    model = EtapPredictor(mapping="affine", residual=False)
    assert model.get_params() == {"mapping": "affine", "residual": False, "max_splits": 5}
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "tasks_")


def test_bad_inputs():
    affinity, frame = synthetic()
    with pytest.raises(ConfigError, match="not fitted"):
        EtapPredictor().predict(["t0|t1"])
    with pytest.raises(ConfigError, match="needs an affinity"):
        EtapPredictor().fit(None, frame)
    with pytest.raises(ConfigError, match="mapping"):
        EtapPredictor(mapping="cubic").fit(affinity, frame)
    bad = frame.copy()
    bad.loc[3, "gain"] = np.nan
    with pytest.raises(NonFiniteError, match="not finite"):
        EtapPredictor().fit(affinity, bad)
    with pytest.raises(UnknownTaskError, match="'t9'"):
        EtapPredictor().fit(affinity, pd.DataFrame({"group": ["t0|t9"], "task": ["t0"], "gain": [0.1]}))
    with pytest.raises(DataError, match="not a member"):
        EtapPredictor().fit(affinity, pd.DataFrame({"group": ["t0|t1"], "task": ["t2"], "gain": [0.1]}))
    with pytest.raises(DataError, match="two or more tasks"):
        EtapPredictor().fit(affinity, pd.DataFrame({"group": ["t0"], "task": ["t0"], "gain": [0.0]}))
    with pytest.raises(DataError, match="pair 't0|t1'".replace("|", r"\|")):
        HoaPredictor().fit(None, frame[frame.group == "t0|t1|t2"]).predict(["t0|t1"])


def test_mtgnet_learns_membership_effects_and_is_seeded():
    rng = np.random.default_rng(5)
    bonus = rng.normal(scale=0.1, size=7)
    rows = [(group_name(g, TASKS), t, bonus[TASKS.index(t)] + 0.02 * len(g))
            for g in all_groups(TASKS, range(2, 8)) for t in sorted(g)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["group", "task", "gain"])
    groups = list(dict.fromkeys(frame.group))
    order = rng.permutation(len(groups))
    train, test = [groups[i] for i in order[:60]], [groups[i] for i in order[60:]]
    model = MtgNetPredictor(epochs=200)
    assert correlation(model, None, frame, train, test) > 0.9
    again = MtgNetPredictor(epochs=200).fit(None, frame[frame.group.isin(train)]).predict(test[:3])
    assert np.allclose(again.gain, model.predict(test[:3]).gain)


def test_kernel_surrogate_is_sklearn_kernel_ridge_with_the_cross_validated_setting():
    from sklearn.kernel_ridge import KernelRidge

    rng = np.random.default_rng(6)
    weights = rng.normal(scale=0.1, size=(7, 7))
    rows = [(group_name(g, TASKS), t, np.tanh(sum(weights[TASKS.index(t), TASKS.index(u)] for u in g)))
            for g in all_groups(TASKS, range(2, 8)) for t in sorted(g)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["group", "task", "gain"])
    train = frame[frame.group.isin(list(dict.fromkeys(frame.group))[::4])]
    gammas, alphas = (0.1, 1.0), (0.01, 1.0)
    model = KernelSurrogatePredictor(gammas=gammas, alphas=alphas).fit(None, train)
    mine = train[train.task == "t0"]
    x = np.array([[u in g.split("|") for u in TASKS] for g in mine.group], float)
    y = mine.gain.to_numpy()
    loo = {}
    for gamma in gammas:
        for alpha in alphas:
            errors = []
            for k in range(len(y)):
                keep = np.arange(len(y)) != k
                ref = KernelRidge(alpha=alpha, kernel="rbf", gamma=gamma).fit(x[keep], y[keep] - y[keep].mean())
                errors.append((ref.predict(x[k : k + 1])[0] + y[keep].mean() - y[k]) ** 2)
            loo[(gamma, alpha)] = np.sum(errors)
    gamma, alpha = min(loo, key=loo.get)
    assert (model.models_["t0"]["gamma"], model.models_["t0"]["alpha"]) == (gamma, alpha)
    reference = KernelRidge(alpha=alpha, kernel="rbf", gamma=gamma).fit(x, y - y.mean())
    test = [g for g in dict.fromkeys(frame.group) if "t0" in g.split("|")][:20]
    out = model.predict(test)
    out = out[out.task == "t0"]
    xq = np.array([[u in g.split("|") for u in TASKS] for g in out.group], float)
    assert np.allclose(out.gain, reference.predict(xq) + y.mean(), atol=1e-10)


def test_ayman_total_gain_features_from_measured_pairs():
    rng = np.random.default_rng(7)
    pair = rng.normal(scale=0.1, size=(7, 7))
    rows = [(group_name(g, TASKS), t, float(np.mean([pair[TASKS.index(t), TASKS.index(u)] for u in g if u != t])))
            for g in all_groups(TASKS, range(2, 8)) for t in sorted(g)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["group", "task", "gain"])
    model = AymanPredictor(epochs=50).fit(None, frame)
    totals = [(pair[a, b] + pair[b, a]) / 2 for a, b in [(0, 2), (0, 5), (2, 5)]]
    assert np.allclose(model._features(frozenset({"t0", "t2", "t5"})),
                       [3, np.mean(totals), np.var(totals), np.std(totals)])  # fmt: skip
    out = model.predict(["t0|t2|t5", "t1|t3"])
    assert out.gain.iloc[0] == out.gain.iloc[1] == out.gain.iloc[2] and out.gain.iloc[3] == out.gain.iloc[4]
    with pytest.raises(DataError, match="needs the measured gains of pair"):
        AymanPredictor(epochs=5).fit(None, frame[frame.group != "t0|t1"]).predict(["t0|t1|t2"])


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_every_predictor_clones_and_refuses_to_predict_unfitted(name):
    model = PREDICTORS[name]()
    copy = clone(model)
    assert copy.get_params() == model.get_params() and type(copy) is type(model)
    with pytest.raises(ConfigError, match="not fitted"):
        model.predict(["t0|t1"])


def test_a_failed_fit_leaves_the_estimator_unfitted():
    affinity, frame = synthetic()
    frame = frame[frame.group.isin(list(dict.fromkeys(frame.group))[:12])]
    for model in (EtapPredictor(), KernelSurrogatePredictor(), MtgNetPredictor(epochs=2, ensemble=1)):
        model.fit(affinity, frame)
        bad = {"EtapPredictor": {"mapping": "cubic"}, "KernelSurrogatePredictor": {"gammas": (-1.0,)},
               "MtgNetPredictor": {"dim": 3}}[type(model).__name__]  # fmt: skip
        model.set_params(**bad)
        with pytest.raises(ConfigError, match=next(iter(bad))):
            model.fit(affinity, frame)
        assert not hasattr(model, "tasks_")
        with pytest.raises(ConfigError, match="not fitted"):
            model.predict(["t0|t1"])


def test_mtgnet_leaves_torch_global_generator_alone():
    import torch

    affinity, frame = synthetic()
    frame = frame[frame.group.isin(list(dict.fromkeys(frame.group))[:12])]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MtgNetPredictor(epochs=2, ensemble=2).fit(affinity, frame)
    assert torch.equal(torch.rand(3), expected)


BAD_HYPERPARAMETERS = [
    (EtapPredictor, {"max_splits": 1}, r"max_splits must be an integer ≥ 2, got 1"),
    (EtapPredictor, {"max_splits": 2.5}, r"max_splits must be an integer ≥ 2, got 2.5"),
    (EtapPredictor, {"residual": "yes"}, r"residual must be True or False"),
    (EtapPredictor, {"mapping": "cubic"}, r"mapping must be one of"),
    (MtgNetPredictor, {"dim": 15}, r"dim must be an even integer ≥ 2 \(the attention has two heads\), got 15"),
    (MtgNetPredictor, {"dim": 0}, r"dim must be an integer ≥ 2, got 0"),
    (MtgNetPredictor, {"epochs": True}, r"epochs must be an integer ≥ 1, got True"),
    (MtgNetPredictor, {"lr": 0.0}, r"lr must be a finite number > 0, got 0.0"),
    (MtgNetPredictor, {"weight_decay": float("nan")}, r"weight_decay must be a finite number ≥ 0, got nan"),
    (MtgNetPredictor, {"ensemble": 0}, r"ensemble must be an integer ≥ 1"),
    (AymanPredictor, {"hidden": ()}, r"hidden must be a non-empty tuple"),
    (AymanPredictor, {"hidden": (20, 0)}, r"hidden\[1\] must be an integer ≥ 1, got 0"),
    (AymanPredictor, {"seed": -1}, r"seed must be an integer in \[0, 4294967295\], got -1"),
    (AymanPredictor, {"epochs": 0}, r"epochs must be an integer ≥ 1, got 0"),
    (KernelSurrogatePredictor, {"gammas": ()}, r"gammas must be a non-empty sequence"),
    (KernelSurrogatePredictor, {"alphas": (1.0, -1.0)}, r"alphas\[1\] must be a finite number > 0, got -1.0"),
    (HierarchicalPredictor, {"terms": "offset"}, r"terms must be distinct names"),
    (DefaultPredictor, {"step": 0.0}, r"step must be a finite number in \(0, 1\], got 0.0"),
]


@pytest.mark.parametrize(("cls", "bad", "message"), BAD_HYPERPARAMETERS)
def test_hyperparameters_out_of_range_are_refused_when_built_and_when_fitted(cls, bad, message):
    """The constructor names the argument and its range; so does fit after `set_params` (sklearn's route)."""
    with pytest.raises(ConfigError, match=message):
        cls(**bad)
    model = cls().set_params(**bad)  # set_params stores as given, like every sklearn estimator
    affinity, frame = synthetic()
    with pytest.raises(ConfigError, match=message):
        model.fit(affinity, frame)
    assert not hasattr(model, "tasks_")


def test_numpy_integers_are_accepted_as_counts():
    affinity, frame = synthetic()
    model = EtapPredictor(max_splits=np.int64(3)).fit(affinity, frame)
    reference = EtapPredictor(max_splits=3).fit(affinity, frame)
    assert np.array_equal(model.predict(["t0|t1|t2"]).gain, reference.predict(["t0|t1|t2"]).gain)
