"""Group selection: which task groups to train, under a budget, solved exactly with HiGHS.

- `GroupingProblem` + `Constraints`: explicit candidates (from measured or predicted per-(group,
  task) gains, or any loss table) → `Selection` via an exact MILP (`taskrel.select.milp`).
- `PairwiseProblem`: PTG's compact program on a pairwise matrix ``S[source, target]`` for task
  sets too large to enumerate (`taskrel.select.compact`).
- `taskrel.select.scores`: group scores from pairwise data (PTG, TAG/ETAP, HOA rules).
- `taskrel.select.baselines`: the searches users compare against (TAG exhaustive, Standley's
  branch-and-bound, MTG-Net beam search, best random partition).
"""

from taskrel.select.candidates import Candidate, Constraints, Selection, candidate_for_group
from taskrel.select.compact import PairwiseProblem
from taskrel.select.program import GroupingProblem
from taskrel.select.scores import (
    RULES,
    group_score,
    group_values,
    pairwise_candidates,
    read_matrix_csv,
    write_matrix_csv,
)

__all__ = [
    "RULES",
    "Candidate",
    "Constraints",
    "GroupingProblem",
    "PairwiseProblem",
    "Selection",
    "candidate_for_group",
    "group_score",
    "group_values",
    "pairwise_candidates",
    "read_matrix_csv",
    "write_matrix_csv",
]
