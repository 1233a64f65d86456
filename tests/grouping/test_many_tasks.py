"""Many tasks end to end: 40 tasks in 4 planted clusters (`planted.py`), a problem with its own data and model."""

import pytest

from taskrel.grouping.pipeline import run_pipeline

from .planted import planted_problem

CLUSTERS, PER_CLUSTER = 4, 10


@pytest.mark.slow
def test_pipeline_beats_stl_and_all_on_planted_clusters(tmp_path):
    problem, cluster = planted_problem([PER_CLUSTER] * CLUSTERS, max_steps=400)
    result = run_pipeline(problem, tmp_path, train_groups=10, max_groups=4, progress=False)
    totals = result.totals()
    assert totals["selected"] < 0.8 * min(totals["stl"], totals["naive_mtl"])
    planted = [frozenset(t for t, c in cluster.items() if c == k) for k in range(CLUSTERS)]
    pool = set(result.predictions["group"])
    assert sum("|".join(t for t in problem.tasks if t in g) in pool for g in planted) >= 2  # from the affinity
    moved = [t for t, s in result.serving.tasks.items() if s.moved]
    assert moved and result.serving.accepted
