"""A many-task problem with planted clusters, defined here with its own data and model, for the grouping tests.

Task t of cluster c has y = a_t · x·w_c + noise (w_c orthonormal directions, a_t ∈ [0.7, 1.3]) and 12
training rows. The model's trunk is one linear unit and every head starts at +1: a group of one
cluster learns w_c from all its tasks' rows, a task alone from its own few noisy rows, and a group
mixing clusters must squeeze several directions into one. So grouping by cluster beats STL and ALL.
"""

import numpy as np
import torch
from torch import nn

from taskrel.data.dataset import MultiTaskDataset, Split, TaskData
from taskrel.models import MultiTaskModel
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import TrainConfig

FEATURES = 8


def planted_problem(
    sizes: list[int], *, max_steps: int, test_rows: int = 200, seed: int = 0
) -> tuple[TorchProblem, dict[str, int]]:
    """Clusters of the given sizes (tasks in random order); returns the problem and each task's cluster."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(FEATURES, len(sizes))))[0].T * np.sqrt(FEATURES)
    cluster = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    tasks = []
    for t, c in enumerate(cluster):
        scale = rng.uniform(0.7, 1.3)

        def split(n, c=c, scale=scale):
            x = rng.normal(size=(n, FEATURES)).astype(np.float32)
            y = scale * x @ directions[c] / np.sqrt(FEATURES) + 0.3 * rng.normal(size=n)
            return Split(x, y.astype(np.float32))

        tasks.append(TaskData(f"t{t}", split(12), split(60), split(test_rows)))
    data = MultiTaskDataset("planted-clusters", "regression", tuple(tasks))
    config = TrainConfig(lr=0.02, optimizer="adam", batch_size=12, max_steps=max_steps, patience=15,
                         patience_steps=0)  # fmt: skip

    def narrow(group, seed):
        """A linear trunk of one unit (one direction of the inputs) and heads that all start at +1."""
        torch.manual_seed(seed)
        heads = {t: nn.Linear(1, 1) for t in group}
        for head in heads.values():
            nn.init.ones_(head.weight)
            nn.init.zeros_(head.bias)
        return MultiTaskModel(nn.Linear(FEATURES, 1), heads)

    problem = TorchProblem(data, narrow, name=f"planted-{len(tasks)}", config=config)
    return problem, {f"t{t}": int(c) for t, c in enumerate(cluster)}
