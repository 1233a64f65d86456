"""Selection problems from published tables (`taskrel.data.published` reads them).

- `standley_problem`: Standley et al.'s network selection (loss minimisation, half-size singles at cost 0.5).
- `mtgnet_problem`: an MTG-Net gain table (gain maximisation, uncovered tasks keep their single model).
- `tag_problem`: every group of a TAG matrix, scored as TAG's notebooks score them.
"""

from __future__ import annotations

import os

from taskrel.data.published import STANDLEY_TASKS, mtgnet_table, standley_table, tag_matrix
from taskrel.groups import group_name
from taskrel.select.candidates import Candidate, Constraints
from taskrel.select.program import GroupingProblem
from taskrel.select.scores import pairwise_candidates

#: Cost of one of Standley's half-size single-task networks (a full-size network costs 1).
HALF_SIZE_COST = 0.5


def standley_problem(
    setting: str = "small", split: str = "val", data_dir: str | os.PathLike | None = None
) -> GroupingProblem:
    """Standley's network-selection table as a loss-minimisation problem (every task covered).

    Candidates: ``half:<task>`` (half-size single-task network, cost 0.5) and one full-size network
    per group, id = canonical group name (cost 1). ``split``: see `standley_table`.
    """
    singles, groups = standley_table(setting, split, data_dir)
    candidates = [Candidate(f"half:{t}", frozenset([t]), {t: v}, {"cost": HALF_SIZE_COST}) for t, v in singles.items()]
    candidates += [Candidate(group_name(g, STANDLEY_TASKS), frozenset(g), g, {"cost": 1.0}) for g in groups]
    return GroupingProblem(STANDLEY_TASKS, tuple(candidates), "min", Constraints())


def mtgnet_problem(dataset: str, split: str = "val", data_dir: str | os.PathLike | None = None) -> GroupingProblem:
    """An MTG-Net gain table as a gain-maximisation problem, in MTG-Net's convention.

    Every group costs 1 network; a task no chosen group serves keeps its single-task model
    (``cover=False``, gain 0), and single-task groups have gain 0. Candidate ids are canonical
    group names. ``split``: ``"val"``, ``"test"`` or ``"hoa"`` (estimate from validation pairs).
    """
    tasks, masks, gains = mtgnet_table(dataset, split, data_dir)
    candidates = {}
    for mask, row in zip(masks, gains, strict=True):
        members = [t for t, m in zip(tasks, mask, strict=True) if m]
        values = {t: float(v) for t, v, m in zip(tasks, row, mask, strict=True) if m}
        candidate = Candidate(group_name(members, tasks), frozenset(members), values)
        candidates.setdefault(candidate.id, candidate)
    return GroupingProblem(tasks, tuple(candidates.values()), "max", Constraints(cover=False))


def tag_problem(dataset: str, kind: str = "affinity", data_dir: str | os.PathLike | None = None) -> GroupingProblem:
    """Every group of a TAG matrix as candidates, scored as TAG's notebooks score them.

    Affinity / cosine: the ``"tag"`` rule (mean incoming affinity from the other members, maximise;
    singletons 0, and TAG never uses them: ``min_size=2``). Pairwise measurements: Standley's
    ``"hoa"`` rule (maximise CelebA accuracy, minimise Taskonomy loss). Every task must be covered.
    """
    tasks, matrix = tag_matrix(dataset, kind, data_dir)
    if kind == "pairwise":
        sense = "max" if dataset == "celeba" else "min"
        return GroupingProblem(tuple(tasks), tuple(pairwise_candidates(matrix, tasks, "hoa")), sense, Constraints())
    candidates = pairwise_candidates(matrix, tasks, "tag")
    return GroupingProblem(tuple(tasks), tuple(candidates), "max", Constraints(min_size=2))
