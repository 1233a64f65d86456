"""A GMRF run on the engine asked for (`taskrel.choices.GMRF_ENGINES`): one process per agent, or in this process.

``"sim"``: the vectorised simulator (synthetic agents) or `taskrel.decentral.realdata` (real data),
in this process. ``"dist"``: one process per agent on ``torch.distributed`` (gloo), each holding only
its own data (`taskrel.decentral.distributed`). Both give the same summary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from taskrel.decentral.distributed import launch, launch_real
from taskrel.decentral.graphs import make_graph, read_graph
from taskrel.decentral.realdata import RealConfig, run_source
from taskrel.decentral.simulator import SimulationResult, simulate
from taskrel.decentral.sources import DatasetSource, FileSource
from taskrel.decentral.world import GMRFConfig
from taskrel.errors import ConfigError


def open_source(
    dataset: str | None, data: str | os.PathLike | None, tasks: Sequence[str] | None, loss: str | None,
    split_seed: int = 0,
) -> DatasetSource | FileSource:  # fmt: skip
    """The agents' data: task k of a built-in `dataset` (all tasks, or `tasks`), or one file per agent in `data`.

    A dataset's loss follows its kind; `loss`, when given, must agree with it. Files take `loss` (default squared).
    """
    if dataset is not None:
        source = DatasetSource.open(dataset, tasks, split_seed=split_seed)
        if loss is not None and loss != source.loss:
            raise ConfigError(f"dataset {dataset!r} is learned with the {source.loss} loss, not {loss!r}")
        return source
    if tasks is not None:
        raise ConfigError("--tasks picks tasks of a --dataset; with --data every file in the directory is an agent")
    return FileSource.from_directory(data, loss or "squared", split_seed=split_seed)


def communication_graph(
    agents: int, graph: str | os.PathLike | None, topology: str, degree: float, seed: int
) -> np.ndarray:
    """The (K, K) weights of who talks to whom: read from the CSV `graph`, else drawn (unit weights)."""
    if graph is not None:
        return read_graph(graph, agents)
    return make_graph(topology, agents, average_degree=min(degree, agents - 1), weights=1.0, seed=seed)


def run_real(
    source: DatasetSource | FileSource, adjacency: np.ndarray, config: RealConfig, engine: str,
    out: str | os.PathLike | None = None, timeout: float = 60.0,
) -> dict:  # fmt: skip
    """Every algorithm on the agents' real data; the summary of `taskrel.decentral.realdata.summarise`."""
    if engine == "sim":
        return run_source(source, adjacency, config)
    return launch_real(source, adjacency, config, out, timeout=timeout)


def run_synthetic(
    config: GMRFConfig, engine: str, out: str | os.PathLike | None = None, timeout: float = 60.0,
    progress: bool = False,
) -> SimulationResult:  # fmt: skip
    """`config`'s simulated world: every Monte-Carlo run in-process, or one run with a process per agent."""
    if engine == "sim":
        return simulate(config, progress=progress)
    return launch(config, out, timeout=timeout)
