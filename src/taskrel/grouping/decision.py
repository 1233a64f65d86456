"""One decision for every number of tasks: which new groups to train, and which model serves each task.

A *model* is one trained group, named by its canonical text: a task's own name is its single-task
(STL) model, the group of every task is the all-task model (ALL). Every decision is made on
validation losses (the seed mean of a run's per-task loss); test data only scores the outcome.
Gains follow gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t), positive = G helps t.

**The default D** serves every task with the same kind of model: its STL model ("STL") or the
all-task model ("ALL"). D is ALL unless STL's total validation loss Σ_t L(t) is lower *on evidence*:
with per-row validation losses, the paired difference Σ_t mean_rows(L_STL − L_ALL) must be
significantly negative (one-sided z-test at level `alpha`, its variance Σ_t var_t / n_t); without
them, STL's total must simply be lower. One model for every task is the simpler answer and a tie
on noisy validation rows goes to it. Without a measured all-task model, D is STL.

**`decide`: the new groups to train.** On offer at no cost are every trained model (each task's
STL model, ALL and every training group) with its measured losses: a task's free value is
v₀(t) = max(0, max over trained G ∋ t of L_D(t) − L_G(t)). An untrained candidate G, whose gains are
predicted, adds for each member t the value max(0, L_D(t) − L_STL(t)·(1 − ĝ(G → t)) − v₀(t)). The
exact MILP (HiGHS, `taskrel.select`) chooses at most `max_groups` candidates (and Σ|G| ≤ `budget`,
the training compute) maximising the total; groups may overlap, and a task is planned on the best
chosen group containing it, else on its best free model. The choice is optimal over the candidates
given, and the planned total validation loss is never above D's (so never above STL's or ALL's).

**`serve`: the model each task reads its predictions from.** Every task starts on D. Each task's
validation rows are split at random (seeded per task) into a selection half and a check half. First,
trained groups (of two or more tasks, not D's model) may take over from D for all their members: in
the order of their total improvement Σ_{t∈G} mean(L_D − L_G) over their members' selection halves,
the best group disjoint from those already taken serves its members if it beats D on their check
halves (the one-sided z-test of `total_p` at level `alpha` / 2) and on their whole validation rows;
the first group that fails ends the sequence (fixed-sequence testing: the order is set on the
selection halves, so a false take-over needs the first group no better than D to pass its own test).
A group pools its members' rows, so it can show an improvement that no single task's few rows can.
Then a task moves from its model (D's, or its group's) to another trained model containing it: for
a threshold c, to the model with the largest mean per-row improvement among those whose paired t
statistic exceeds c (none: it stays). c is chosen among `THRESHOLDS` by `FOLDS`-fold cross-validation
over each task's validation rows (the picks made on the other folds are scored on the fold left out);
the moves of the chosen c, made on all rows, are kept if their cross-validated improvement is
significant (`total_p` at level `alpha` / 2 / len(`THRESHOLDS`)) and their whole-validation loss is
lower than the tasks' models'; otherwise every task stays on its model. The served total validation
loss is therefore never above D's, and the chance that noise alone moves anything is at most `alpha`
(half for each stage).
Without per-row validation losses (a problem that does not report them) nothing moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from taskrel.errors import DataError
from taskrel.gains import GainTable
from taskrel.groups import SEPARATOR, Group, all_groups, group_name, parse_group
from taskrel.select import Constraints, GroupingProblem

#: Up to this many tasks, every group of two or more tasks is a candidate (2^n − n − 1 of them).
MAX_ENUMERATED_TASKS = 14
#: Family-wise level of the significance tests of `serve` (and of the choice of D).
ALPHA = 0.05
#: The thresholds on a task's paired per-row t statistic among which `serve`'s single-task stage chooses.
THRESHOLDS = (0.0, 1.0, 2.0, 3.0)
#: Folds of the cross-validation over each task's validation rows that chooses the threshold.
FOLDS = 5
DEFAULTS = ("STL", "ALL")
#: Per (group text, task): the seed-mean loss of every validation row of the task, in a fixed row order.
ValidationRows = Mapping[tuple[str, str], np.ndarray]


@dataclass(frozen=True)
class Decision:
    """New groups to train, with the plan that justified them (all on validation)."""

    default: str  # "STL" or "ALL"
    groups: list[Group]  # the new groups to train, at most max_groups, each of two or more tasks
    plan: dict[str, str]  # task → the model it is planned on (measured, or a chosen group's prediction)
    planned_loss: dict[str, float]  # task → its planned validation loss
    default_loss: dict[str, float]  # task → its validation loss on D
    text: str

    @property
    def reduction(self) -> float:
        """Planned total validation-loss reduction over D (≥ 0)."""
        return float(sum(self.default_loss[t] - self.planned_loss[t] for t in self.plan))


def candidate_groups(tasks: Sequence[str]) -> list[Group]:
    """Every group of two or more tasks (the candidates up to `MAX_ENUMERATED_TASKS` tasks)."""
    return list(all_groups(tasks, range(2, len(tasks) + 1)))


def validation_losses(table: GainTable) -> pd.Series:
    """Seed-mean validation loss per (group text, task)."""
    return table.frame.groupby(["group", "task"], sort=False)["val_loss"].mean()


def default_models(
    table: GainTable, rows: ValidationRows | None = None, *, alpha: float = ALPHA
) -> tuple[str, dict[str, str]]:
    """D's name ("STL" or "ALL") and the model (group text) it serves each task with (module docstring)."""
    tasks = list(table.tasks)
    loss = validation_losses(table)
    everything = group_name(tasks, tasks)
    stl = {t: t for t in tasks}
    if len(tasks) < 2 or not all((everything, t) in loss.index for t in tasks):
        return "STL", stl
    if rows is not None and all((g, t) in rows for t in tasks for g in (t, everything)):
        if stl_better_on_evidence([rows[(t, t)] - rows[(everything, t)] for t in tasks], alpha):
            return "STL", stl
    elif sum(loss[(t, t)] for t in tasks) < sum(loss[(everything, t)] for t in tasks):
        return "STL", stl
    return "ALL", dict.fromkeys(tasks, everything)


def stl_better_on_evidence(differences: Sequence[np.ndarray], alpha: float = ALPHA) -> bool:
    """Whether Σ_t mean(d_t) < 0 at one-sided level `alpha`, d_t the per-row L_STL − L_ALL of task t."""
    return total_p([-np.asarray(d, float) for d in differences]) < alpha


def free_values(
    table: GainTable, rows: ValidationRows | None = None
) -> tuple[str, dict[str, str], dict[str, float], pd.DataFrame]:
    """(D, D's model per task, D's loss per task, best trained model per task with its value v₀ ≥ 0)."""
    tasks = list(table.tasks)
    loss = validation_losses(table)
    name, models = default_models(table, rows)
    base = {t: float(loss[(models[t], t)]) for t in tasks}
    frame = loss.rename("loss").reset_index()
    frame["value"] = frame["task"].map(base) - frame["loss"]
    best = frame.sort_values("value", ascending=False, kind="stable").drop_duplicates("task").set_index("task")
    free = pd.DataFrame({"model": [models[t] for t in tasks], "value": 0.0}, index=pd.Index(tasks, name="task"))
    better = best.index[best["value"] > 0]
    free.loc[better, "model"] = best.loc[better, "group"]
    free.loc[better, "value"] = best.loc[better, "value"]
    return name, models, base, free


def marginal_values(table: GainTable, predicted: pd.DataFrame, rows: ValidationRows | None = None) -> pd.DataFrame:
    """Rows (group, task, loss, value) of the untrained candidates of `predicted` (columns group, task, gain).

    ``loss`` is the predicted validation loss L_STL(t)·(1 − min(ĝ, 1)) (a loss is never negative);
    ``value`` is what serving t by the group would add over the task's best free model (may be
    negative). Rows of groups already trained in `table` and of single tasks are dropped.
    """
    _, _, base, free = free_values(table, rows)
    return _values(table, predicted, base, free)


def _values(table: GainTable, predicted: pd.DataFrame, base: dict[str, float], free: pd.DataFrame) -> pd.DataFrame:
    """`marginal_values` given D's loss per task (`base`) and the free models' values (`free_values`)."""
    missing = [c for c in ("group", "task", "gain") if c not in predicted.columns]
    if missing:
        raise DataError(f"predicted gains lack column(s) {missing}")
    stl = table.with_split("val").stl_loss()
    lacking = sorted(set(predicted["task"]) - set(stl))
    if lacking:
        raise DataError(f"no STL run for task(s) {lacking}: predicted gains are relative to it")
    trained = set(table.frame["group"])
    frame = predicted[["group", "task", "gain"]].copy()
    frame["group"] = frame["group"].astype(str)
    frame = frame[frame["group"].str.contains("|", regex=False) & ~frame["group"].isin(trained)]
    frame = frame.assign(loss=frame["task"].map(stl) * (1.0 - np.minimum(frame["gain"], 1.0)))  # a loss is ≥ 0
    frame["value"] = frame["task"].map(base) - frame["loss"] - frame["task"].map(free["value"])
    if not np.isfinite(frame["value"].to_numpy(float)).all():
        bad = frame[~np.isfinite(frame["value"].to_numpy(float))].iloc[0]
        raise DataError(f"predicted gain of task {bad['task']!r} in group {bad['group']!r} is not finite")
    return frame.reset_index(drop=True)


def decide(
    table: GainTable,
    predicted: pd.DataFrame | None,
    *,
    max_groups: int,
    budget: float | None = None,
    time_limit: float | None = None,
    rows: ValidationRows | None = None,
) -> Decision:
    """Choose at most `max_groups` new groups among the candidates of `predicted` (see the module docstring).

    `table` holds every trained model's measured losses (STL runs required; the all-task group
    should be among them, else D is STL); `predicted` has columns group, task, gain (validation
    gains) for candidate groups, rows of trained groups being ignored (measured beats predicted);
    `rows` (per-row validation losses) make the choice of D robust to noise.
    """
    tasks = list(table.tasks)
    name, _, base, free = free_values(table, rows)
    plan = free["model"].to_dict()
    planned = {t: base[t] - float(free.loc[t, "value"]) for t in tasks}
    limits = f"at most {max_groups} new groups" + (f", Σ|G| ≤ {budget:g}" if budget is not None else "")
    values = _values(table, predicted, base, free) if predicted is not None else pd.DataFrame()
    pool = values["group"].nunique() if len(values) else 0
    text = (
        f"default D = {name} for every task (ALL unless STL is better on evidence); exact MILP (HiGHS) over {pool} "
        f"untrained candidate groups, {limits}, maximising the predicted validation-loss reduction over D "
        f"with every trained model (STL, ALL, {table.frame['group'].nunique() - len(tasks)} trained groups) "
        "free"
    )
    useful = values[values["value"] > 0] if len(values) else values
    if useful.empty:
        return Decision(name, [], plan, planned, base, text + "; no candidate is predicted to add anything")
    useful = useful.assign(size=useful["group"].map(lambda g: g.count("|") + 1))
    constraints = Constraints(max_groups=int(max_groups), cover=False,
                              budgets={"size": budget} if budget is not None else {})  # fmt: skip
    program = GroupingProblem.from_frame(
        useful[["group", "task", "value", "size"]], sense="max", constraints=constraints, tasks=tasks,
        cost_columns=["size"] if budget is not None else [], source="predicted gains",
    )  # fmt: skip
    selection = program.solve(time_limit=time_limit)
    serving = {t: g for t, g in selection.serving.items() if g is not None}
    chosen = [parse_group(g, tasks) for g in selection.selected if g in set(serving.values())]
    loss = useful.set_index(["group", "task"])["loss"]
    for task, group in serving.items():
        plan[task], planned[task] = group, float(loss[(group, task)])
    status = "optimal" if selection.status == "optimal" else f"{selection.status}, gap {selection.gap:.2%}"
    return Decision(name, chosen, plan, planned, base, f"{text} ({status})")


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskServing:
    """The model serving one task and the evidence for it."""

    model: str  # group text of the serving model
    default: str  # group text of D's model for this task
    val_loss: float  # full-validation loss of `model`
    default_val_loss: float
    options: int  # trained models other than D's that contain the task
    evidence: str

    @property
    def moved(self) -> bool:
        return self.model != self.default


@dataclass(frozen=True)
class Serving:
    """Per task, the model serving it; `cross_validated` is the single-task moves' cross-validated improvement
    over the tasks' models; `groups` maps each trained group that serves all its members in D's place to its
    evidence."""

    default: str
    tasks: dict[str, TaskServing]
    accepted: bool
    cross_validated: float
    text: str
    groups: dict[str, str] = field(default_factory=dict)

    def models(self) -> dict[str, str]:
        return {t: s.model for t, s in self.tasks.items()}


def serve(table: GainTable, rows: ValidationRows | None, *, alpha: float = ALPHA, seed: int = 0) -> Serving:
    """Serve every task from D unless another trained model in `table` is better on evidence (module docstring)."""
    tasks = list(table.tasks)
    loss = validation_losses(table)
    name, models = default_models(table, rows, alpha=alpha)
    trained = list(dict.fromkeys(table.frame["group"]))
    halves = {} if rows is None else _halves(rows, models, tasks, seed)
    stage = alpha / 2  # two stages of moves (a group, then single tasks), each tested at half the level
    blocks = _block_moves(trained, models, rows, halves, stage) if rows is not None else []
    homes = dict(models)
    joined = {}
    for block in blocks:
        homes.update(dict.fromkeys(block.members, block.group))
        joined.update(dict.fromkeys(block.members, block.evidence + "; "))
    differences = {}
    served = {}
    for task in tasks:
        home, default, prefix = homes[task], models[task], joined.get(task, "")
        options = [g for g in trained if g != home and (g, task) in loss.index]
        keep = dict(model=home, default=default, val_loss=float(loss[(home, task)]),
                    default_val_loss=float(loss[(default, task)]), options=len(options))  # fmt: skip
        if not options:
            served[task] = TaskServing(**keep, evidence=prefix + "no other trained model contains it")
        elif rows is None or (home, task) not in rows:
            served[task] = TaskServing(**keep, evidence="no per-row validation losses: nothing can move")
        elif len(rows[(home, task)]) < FOLDS:
            served[task] = TaskServing(**keep, evidence=prefix + f"{len(rows[(home, task)])} validation rows: too few")
        else:
            served[task] = TaskServing(**keep, evidence=prefix)
            reference = np.asarray(rows[(home, task)], float)
            differences[task] = {g: reference - _rows_of(rows, g, task, len(reference), home)
                                 for g in options if (g, task) in rows}  # fmt: skip
    level = stage / len(THRESHOLDS)
    c, held_out, p = cross_validated_threshold(differences, seed, tasks)
    picks = {t: g for t, d in differences.items()
             if d and (g := threshold_pick(d, np.arange(len(next(iter(d.values())))), c)) is not None}  # fmt: skip
    gain = sum(served[t].val_loss - float(loss[(g, t)]) for t, g in picks.items())
    accepted = bool(picks) and p < level and gain > 0
    found = (f"the moves of threshold t > {c:g} beat the tasks' models by {held_out:.4g} in {FOLDS}-fold "
             f"cross-validation, p = {p:.2g}")  # fmt: skip
    for task in differences:
        s = served[task]
        if task not in picks:
            served[task] = replace(s, evidence=s.evidence + f"no model better than its own at t > {c:g}")
            continue
        group = picks[task]
        d = differences[task][group]
        why = (f"validation loss {-100 * d.mean() / np.mean(rows[(s.model, task)]):+.1f} % vs "
               f"{'D' if s.model == s.default else 'its group'} (t = {_t_statistic(d):.2g}); {found}")  # fmt: skip
        if accepted:
            served[task] = TaskServing(group, s.default, float(loss[(group, task)]), s.default_val_loss, s.options,
                                       s.evidence + why)  # fmt: skip
        else:
            served[task] = replace(s, evidence=s.evidence + why + f"; not taken: not below {level:.2g}")
    text = (
        f"every task starts on D = {name}; "
        + _blocks_text(blocks, stage)
        + "then a task moves to the trained model with the largest mean improvement among those whose paired "
        f"per-row t statistic exceeds a threshold chosen among {', '.join(f'{t:g}' for t in THRESHOLDS)} by "
        f"{FOLDS}-fold cross-validation over the validation rows, if the moves' cross-validated improvement is "
        f"significant (level {stage:g}/{len(THRESHOLDS)}) and their whole-validation loss lower: "
        + (f"{len(picks)} moves at t > {c:g}, " + ("kept" if accepted else "not taken") + f" ({found})"
           if picks else "none proposed")
    )
    return Serving(name, served, accepted or not picks, held_out, text, {b.group: b.evidence for b in blocks})


@dataclass(frozen=True)
class _Block:
    """A trained group that serves all its members in place of D (`serve`'s first stage)."""

    group: str
    members: tuple[str, ...]
    p: float
    gain: float  # Σ over the members of the mean full-validation improvement over D

    @property
    def evidence(self) -> str:
        return f"moved with its group of {len(self.members)} tasks (check rows p = {self.p:.2g})"


def _blocks_text(blocks: list[_Block], level: float) -> str:
    tested = (f"the trained groups, best first by their total improvement over D on their members' selection halves "
              f"and disjoint from those already taken, take over from D for all their members while each beats D "
              f"on its members' check halves (level {level:g}) and whole validation rows: ")  # fmt: skip
    if not blocks:
        return tested + "none does; "
    taken = ", ".join(f"{len(b.members)} tasks (p = {b.p:.2g}, validation total {b.gain:.4g} lower)" for b in blocks)
    return tested + f"{len(blocks)} group(s) took over: {taken}; "


def _halves(rows: ValidationRows, models: dict[str, str], tasks: list[str], seed: int) -> dict:
    """Per task with rows under D: its validation rows split at random (seeded per task) into selection and check."""
    halves = {}
    for index, task in enumerate(tasks):
        if (models[task], task) in rows:
            order = np.random.default_rng([seed, index]).permutation(len(rows[(models[task], task)]))
            halves[task] = (order[: len(order) // 2], order[len(order) // 2 :])
    return halves


def _rows_of(rows: ValidationRows, group: str, task: str, count: int, home: str) -> np.ndarray:
    """The per-row losses of `task` under `group`, refused when they are not the `count` rows of its `home`."""
    values = np.asarray(rows[(group, task)], float)
    if values.shape != (count,):
        raise DataError(
            f"validation rows of task {task!r}: {count} under {home!r}, {len(values)} under {group!r}; "
            "runs of one problem must score the same rows"
        )
    return values


def _block_moves(trained: list[str], models: dict[str, str], rows: ValidationRows, halves: dict, level: float
                 ) -> list[_Block]:  # fmt: skip
    """The trained groups (two or more tasks) that take over from D, in turn (fixed-sequence testing).

    Candidates are ordered by their total improvement over D on their members' selection halves; the
    best one disjoint from those taken is tested on its members' check halves (and must improve on
    the whole validation rows); the sequence stops at the first that fails. Each test is at `level`:
    a false take-over needs the first group that is no better than D to pass its own test.
    """
    candidates = []
    for group in trained:
        members = tuple(group.split(SEPARATOR))
        if len(members) < 2 or all(models[t] == group for t in members):
            continue
        if not all(t in halves and (group, t) in rows for t in members):
            continue
        differences = [rows[(models[t], t)] - _rows_of(rows, group, t, len(rows[(models[t], t)]), models[t])
                       for t in members]  # fmt: skip
        gain = sum(float(d[halves[t][0]].mean()) for d, t in zip(differences, members, strict=True))
        if gain > 0:
            candidates.append((gain, group, members, differences))
    candidates.sort(key=lambda c: -c[0])
    taken: list[_Block] = []
    covered: set[str] = set()
    for _, group, members, differences in candidates:
        if covered & set(members):
            continue
        p = total_p([d[halves[t][1]] for d, t in zip(differences, members, strict=True)])
        full = float(sum(d.mean() for d in differences))
        if not (p < level and full > 0):
            break
        taken.append(_Block(group, members, p, full))
        covered |= set(members)
    return taken


def total_p(differences: Sequence[np.ndarray]) -> float:
    """p-value of the one-sided z-test that Σ_t mean(d_t) > 0 (variance Σ_t var(d_t) / n_t)."""
    total = float(sum(np.mean(d) for d in differences))
    variance = float(sum(np.var(d, ddof=1) / len(d) for d in differences if len(d) > 1))
    if variance == 0.0:
        return 0.0 if total > 0 else 1.0
    return float(stats.norm.sf(total / np.sqrt(variance)))


def _t_statistic(difference: np.ndarray) -> float:
    """The paired t statistic of the per-row differences (±inf when they are all equal)."""
    spread = float(difference.std(ddof=1)) if len(difference) > 1 else 0.0
    if spread == 0.0:
        return np.inf if difference.mean() > 0 else -np.inf
    return float(difference.mean() / (spread / np.sqrt(len(difference))))


def threshold_pick(differences: dict[str, np.ndarray], rows: np.ndarray, threshold: float) -> str | None:
    """On `rows`, the model with the largest mean improvement among those with t > `threshold` (None: stay)."""
    best = None
    for group, d in differences.items():
        if _t_statistic(d[rows]) > threshold and (best is None or d[rows].mean() > best[1]):
            best = (group, float(d[rows].mean()))
    return None if best is None else best[0]


def cross_validated_threshold(differences: dict[str, dict[str, np.ndarray]], seed: int, tasks: list[str]
                              ) -> tuple[float, float, float]:  # fmt: skip
    """(threshold, its cross-validated total improvement, its p-value): the threshold of `THRESHOLDS` whose picks,
    made on `FOLDS` − 1 folds of each task's rows (seeded per task) and scored on the fold left out, improve most."""
    if not differences:
        return THRESHOLDS[-1], 0.0, 1.0
    held_out: dict[float, list[np.ndarray]] = {c: [] for c in THRESHOLDS}
    for task, by_model in differences.items():
        if not by_model:
            continue
        n = len(next(iter(by_model.values())))
        fold = np.random.default_rng([seed, tasks.index(task)]).permutation(n) % FOLDS
        for c in THRESHOLDS:
            scored = np.zeros(n)
            for f in range(FOLDS):
                group = threshold_pick(by_model, np.flatnonzero(fold != f), c)
                if group is not None:
                    scored[fold == f] = by_model[group][fold == f]
            held_out[c].append(scored)
    estimate = {c: float(sum(h.mean() for h in held_out[c])) for c in THRESHOLDS}
    best = max(THRESHOLDS, key=estimate.__getitem__)
    return best, estimate[best], total_p(held_out[best])


__all__ = [
    "ALPHA",
    "DEFAULTS",
    "FOLDS",
    "MAX_ENUMERATED_TASKS",
    "THRESHOLDS",
    "Decision",
    "Serving",
    "TaskServing",
    "ValidationRows",
    "candidate_groups",
    "cross_validated_threshold",
    "decide",
    "default_models",
    "free_values",
    "marginal_values",
    "serve",
    "stl_better_on_evidence",
    "threshold_pick",
    "total_p",
    "validation_losses",
]
