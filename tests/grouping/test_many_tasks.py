"""Many tasks end to end: 40 tasks in 4 planted clusters, a problem defined here with its own data.

Task t of cluster c has y = a_t · x·w_c + noise with few training rows, and the model's trunk is one
unit wide: a group of one cluster learns w_c from ten tasks' rows, a task alone from its own few
noisy rows, and the all-task model must squeeze four directions into one (two ReLU units
represent one linear direction). So grouping by cluster
beats both trivial answers, and the pipeline has to find the clusters among 2^40 groups.
"""

import numpy as np
import pytest
import torch
from torch import nn

from taskrel.data.dataset import MultiTaskDataset, Split, TaskData
from taskrel.grouping.pipeline import run_pipeline
from taskrel.models import MultiTaskModel
from taskrel.torch_problem import TorchProblem
from taskrel.train import TrainConfig

CLUSTERS, PER_CLUSTER, FEATURES = 4, 10, 8


def planted_problem() -> tuple[TorchProblem, dict[str, int]]:
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(FEATURES, CLUSTERS)))[0].T * np.sqrt(FEATURES)
    cluster = rng.permutation(np.repeat(np.arange(CLUSTERS), PER_CLUSTER))
    tasks = []
    for t, c in enumerate(cluster):
        scale = rng.uniform(0.7, 1.3)

        def split(n, c=c, scale=scale):
            x = rng.normal(size=(n, FEATURES)).astype(np.float32)
            y = scale * x @ directions[c] / np.sqrt(FEATURES) + 0.3 * rng.normal(size=n)
            return Split(x, y.astype(np.float32))

        tasks.append(TaskData(f"t{t}", split(12), split(60), split(200)))
    data = MultiTaskDataset("planted-clusters", "regression", tuple(tasks))
    config = TrainConfig(lr=0.02, optimizer="adam", batch_size=12, max_steps=400, patience=15, patience_steps=0)

    def narrow(group, seed):
        """A linear trunk of one unit (one direction of the inputs) and heads that all start at +1."""
        torch.manual_seed(seed)
        heads = {t: nn.Linear(1, 1) for t in group}
        for head in heads.values():
            nn.init.ones_(head.weight)
            nn.init.zeros_(head.bias)
        return MultiTaskModel(nn.Linear(FEATURES, 1), heads)

    problem = TorchProblem(data, narrow, name="planted-clusters", config=config)
    return problem, {f"t{t}": int(c) for t, c in enumerate(cluster)}


@pytest.mark.slow
def test_pipeline_beats_stl_and_all_on_planted_clusters(tmp_path):
    problem, cluster = planted_problem()
    result = run_pipeline(problem, tmp_path, train_groups=10, max_groups=4, progress=False)
    totals = result.totals()
    assert totals["selected"] < 0.8 * min(totals["stl"], totals["naive_mtl"])
    planted = [frozenset(t for t, c in cluster.items() if c == k) for k in range(CLUSTERS)]
    pool = set(result.predictions["group"])
    assert sum("|".join(t for t in problem.tasks if t in g) in pool for g in planted) >= 2  # from the affinity
    moved = [t for t, s in result.serving.tasks.items() if s.moved]
    assert moved and result.serving.accepted
