"""From gains to the groups to train and the model that serves each task, STL always a free option.

Every task's single-task (STL) model is trained before any group, so serving it costs nothing
more: a group is worth only its improvement over STL. `choose_groups` therefore maximises the
predicted loss reduction Σ_t L_STL(t)·ĝ(G_t → t) over the tasks t it serves, where each task is
served by the best chosen group containing it, or by its STL model when none helps it (and
then scores 0). Chosen groups have two or more tasks; ``max_groups`` and ``budget`` (Σ|G|, the
training compute) count only those. Gains follow gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t),
positive = the group helps t.

`serve` is the same rule on measured losses: each task is read from the model, among its chosen
groups and its STL model, with the lowest validation loss. The outcome is therefore never worse
than STL on validation; on test it is what the report and the benchmarks measure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from taskrel.errors import UnknownTaskError
from taskrel.gains import GainTable
from taskrel.groups import Group, all_groups, group_name, parse_group
from taskrel.select import Constraints, GroupingProblem, PairwiseProblem

#: Above this many tasks, candidate groups are too many to enumerate: pairwise gains are predicted
#: and the compact pairwise program (PTG) partitions the tasks.
MAX_ENUMERATED_TASKS = 14


@dataclass(frozen=True)
class Choice:
    """Groups chosen by a selection program, with its predicted loss reduction and how it was made."""

    groups: list[Group]
    reduction: float  # predicted Σ_t L_STL(t)·ĝ over the tasks the groups serve (loss units, ≥ 0)
    text: str


def candidate_groups(tasks: Sequence[str]) -> list[Group]:
    """Every group of two or more tasks (the candidates of `choose_groups`)."""
    return list(all_groups(tasks, range(2, len(tasks) + 1)))


def choose_groups(
    gains: pd.DataFrame,
    tasks: Sequence[str],
    stl: Mapping[str, float],
    *,
    max_groups: int,
    budget: float | None = None,
) -> Choice:
    """The exact MILP (HiGHS) over the candidate groups of `gains` (columns group, task, gain).

    `stl`: every task's STL loss (the scale of its gain). Rows of single tasks are ignored.
    """
    frame = gains[gains["group"].astype(str).str.contains("|", regex=False)][["group", "task", "gain"]].copy()
    missing = sorted(set(tasks) - set(stl))
    if missing:
        raise UnknownTaskError(f"no STL loss for task(s) {missing}")
    frame["value"] = frame["task"].map(stl) * frame["gain"]
    frame["size"] = frame["group"].map(lambda g: len(str(g).split("|")))
    limits = f"at most {max_groups} groups" + (f", Σ|G| ≤ {budget:g}" if budget is not None else "")
    text = (
        f"exact MILP (HiGHS) over all {frame['group'].nunique()} groups of two or more tasks, {limits}, maximising "
        "the predicted loss reduction over STL Σ L_STL(t)·ĝ(G → t); a task no chosen group helps keeps its STL model"
    )
    # Exact reduction: a task is never served by a group that does not help it, and a group that helps
    # none of its tasks is never worth choosing, so those rows and groups leave the program.
    frame = frame[frame["value"] > 0]
    if frame.empty:
        return Choice([], 0.0, text)
    constraints = Constraints(
        max_groups=int(max_groups), cover=False, budgets={"size": budget} if budget is not None else {}
    )
    program = GroupingProblem.from_frame(
        frame[["group", "task", "value", "size"]], sense="max", constraints=constraints, tasks=tasks,
        cost_columns=["size"] if budget is not None else [], source="predicted gains",
    )  # fmt: skip
    selection = program.solve()
    served = set(selection.serving.values())
    chosen = [parse_group(g, tasks) for g in selection.selected if g in served]
    return Choice(chosen, float(selection.objective), text)


def choose_partition(
    pair_gains: pd.DataFrame,
    tasks: Sequence[str],
    stl: Mapping[str, float],
    *,
    max_groups: int,
    time_limit: float = 60.0,
    seed: int = 0,
) -> Choice:
    """The compact pairwise program (PTG) for many tasks: a partition into at most `max_groups` groups.

    `pair_gains` holds ĝ({s, t} → t) for pairs; a group's value is Σ_t mean_(s ∈ G, s ≠ t) L_STL(t)·ĝ({s, t} → t).
    The program does not see the STL option (serving does), so a chosen group may hold a task it hurts.
    """
    index = {t: i for i, t in enumerate(tasks)}
    reduction = np.zeros((len(tasks), len(tasks)))  # S[source, target]: predicted loss reduction of the target
    for group, task, gain in pair_gains[["group", "task", "gain"]].itertuples(index=False):
        source = next(t for t in str(group).split("|") if t != task)
        reduction[index[source], index[task]] = stl[task] * gain
    program = PairwiseProblem(
        tuple(tasks), reduction, rule="tag", sense="max", constraints=Constraints(partition=True, max_groups=max_groups)
    )
    selection = program.solve(time_limit=time_limit, gap=0.01, seed=seed)
    chosen = [parse_group(g, tasks) for g in selection.selected]
    text = (
        f"compact pairwise program (PTG) over {len(tasks)} tasks: partition into at most {max_groups} groups "
        f"maximising the predicted loss reduction Σ_k mean_(i∈G, i≠k) L_STL(k)·ĝ(i,k → k) from "
        f"{len(pair_gains) // 2} predicted pair gains; {selection.status}, proven gap {selection.gap:.2%} in "
        f"{selection.seconds:.1f} s"
    )
    return Choice(chosen, float(selection.objective), text)


@dataclass(frozen=True)
class Serving:
    """Which model serves a task, and the validation losses that decided it."""

    group: str  # canonical group text; the task's own name when its STL model serves it
    val_loss: float
    stl_val_loss: float
    options: int  # chosen groups that contain the task (its STL model is one more option)

    @property
    def reason(self) -> str:
        if self.options == 0:
            return "no chosen group contains it"
        if "|" not in self.group:
            what = "the chosen group" if self.options == 1 else f"each of its {self.options} chosen groups"
            return f"{what} is worse than STL on validation"
        change = 100 * (self.stl_val_loss - self.val_loss) / self.stl_val_loss
        return f"lowest validation loss of its {self.options + 1} options ({change:+.1f} % vs STL)"


def serve(table: GainTable, chosen: Sequence[Group | str]) -> dict[str, Serving]:
    """Per task, the model among its chosen groups and its STL model with the lowest mean validation loss.

    A `GainTable` always holds every task's STL run (its constructors refuse one without).
    """
    tasks = list(table.tasks)
    names = [g if isinstance(g, str) else group_name(g, tasks) for g in chosen]
    loss = table.mean().set_index(["group", "task"])["val_loss"]
    out = {}
    for task in tasks:
        options = [g for g in names if (g, task) in loss.index]
        best = min([task, *options], key=lambda g: loss[(g, task)])  # a tie keeps STL
        out[task] = Serving(best, float(loss[(best, task)]), float(loss[(task, task)]), len(options))
    return out


__all__ = [
    "MAX_ENUMERATED_TASKS",
    "Choice",
    "Serving",
    "candidate_groups",
    "choose_groups",
    "choose_partition",
    "serve",
]
