"""Which groups to train to fit the gain predictor: drawn at random, or chosen for the decision.

Each trained group is the expensive unit of the method, so `training_groups` decides which ones:

- ``random``: the all-task group, then groups drawn at random, spread evenly over the sizes
  2 … n − 1 (`taskrel.train.sweep.stratified_groups`; with fewer groups than sizes, the sizes are
  spaced evenly over the range, so about half the groups hold n/2 tasks or more).
- ``adaptive``: the all-task group and `ADAPTIVE_START` random ones; then, `batch` groups at a time
  (the number of workers, so the pool stays busy), Thompson sampling of the decision: the
  predictor is refitted on every group trained so far, each joint posterior draw of the gains
  (`GainPredictor.sample`) is pushed through the selection program, and the groups a draw
  chooses that are not trained yet are trained next. When `MAX_DRAWS` draws propose fewer than
  `batch` new groups (the decision is settled), the rest are the untrained candidates whose
  predicted loss reduction varies most across the draws.

The caller provides the three expensive steps as functions, so the same loop runs in the
pipeline (training through the run store) and in a replay on a measured ground truth.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from taskrel.choices import SAMPLINGS
from taskrel.errors import ConfigError, DataError
from taskrel.grouping.decision import MAX_ENUMERATED_TASKS, candidate_groups
from taskrel.groups import Group, group_name, parse_group
from taskrel.predict.base import GainPredictor
from taskrel.train.sweep import stratified_groups

#: Random groups that join the all-task group before adaptive sampling starts.
ADAPTIVE_START = 3
#: Posterior draws per adaptive batch, at most.
MAX_DRAWS = 16


@dataclass(frozen=True)
class Pick:
    """A training group and why it was trained."""

    group: Group
    reason: str


def training_groups(
    tasks: Sequence[str],
    count: int,
    sampling: str,
    *,
    measure: Callable[[list[Group]], pd.DataFrame],
    fit: Callable[[pd.DataFrame], GainPredictor],
    decide: Callable[[pd.DataFrame], list[Group]],
    stl: dict[str, float],
    candidates: Sequence[Group] | None = None,
    batch: int = 1,
    seed: int = 0,
    done: Sequence[Pick] = (),
    record: Callable[[list[Pick]], None] | None = None,
) -> list[Pick]:
    """Choose, and have `measure` train, `count` groups of two or more tasks; returns them in order.

    `measure(groups)` trains the groups not yet trained and returns the measured gains (columns
    group, task, gain) of every group given; `fit(gains)` returns a fitted predictor that can
    `sample`; `decide(gains)` returns the groups the selection program chooses for gains of every
    candidate. `candidates`: the groups adaptive sampling draws from (default: every group, which
    needs at most `MAX_ENUMERATED_TASKS` tasks; `taskrel.grouping.pool` builds them beyond).
    `done`: picks of an earlier, interrupted call (from `read_plan`), kept as they are;
    `record(picks)` is called whenever picks are added, before they are trained.
    """
    if sampling not in SAMPLINGS:
        raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if count < 1 or batch < 1:
        raise ConfigError(f"count and batch must be ≥ 1, got {count} and {batch}")
    tasks = list(tasks)
    picks = list(done)[:count]

    def add(new: list[Pick]) -> None:
        picks.extend(new)
        if record is not None:
            record(list(picks))

    if not picks:
        add([Pick(frozenset(tasks), "all tasks (always trained: the naive-MTL reference)")])
    start = count if sampling == "random" else min(count, 1 + ADAPTIVE_START)
    if len(picks) < start and len(tasks) > 2:
        taken = {p.group for p in picks}
        drawn = stratified_groups(tasks, start - 1, seed, range(2, len(tasks)))
        add([Pick(g, "random, stratified by size") for g in drawn if g not in taken][: start - len(picks)])
    if sampling == "adaptive" and len(picks) < count and candidates is None:
        if len(tasks) > MAX_ENUMERATED_TASKS:
            raise ConfigError(
                f"adaptive sampling over every group needs at most {MAX_ENUMERATED_TASKS} tasks, got {len(tasks)}: "
                "give it candidates (taskrel.grouping.pool.candidate_pool)"
            )
        candidates = candidate_groups(tasks)
    while sampling == "adaptive" and len(picks) < count:
        gains = measure([p.group for p in picks])
        trained = {p.group for p in picks}
        new = thompson_picks(
            fit(gains), candidates, trained, decide, stl, min(batch, count - len(picks)), seed=[seed, len(picks)]
        )
        if not new:
            break  # every candidate is trained
        add(new)
    measure([p.group for p in picks])
    return picks


def thompson_picks(
    model: GainPredictor,
    candidates: Sequence[Group],
    trained: set[Group],
    decide: Callable[[pd.DataFrame], list[Group]],
    stl: dict[str, float],
    count: int,
    seed: int | Sequence[int] = 0,
    draws: int = MAX_DRAWS,
) -> list[Pick]:
    """Up to `count` untrained candidates: those chosen under posterior draws, then the most uncertain."""
    untrained = [g for g in candidates if g not in trained]
    if not untrained:
        return []
    tasks = list(model.tasks_)
    samples = model.sample(candidates, draws=draws, seed=seed)
    picks: list[Pick] = []
    for d, gains in samples.groupby("draw", sort=True):
        for group in decide(gains):
            if group not in trained and all(p.group != group for p in picks):
                picks.append(Pick(group, f"chosen by the selection under posterior draw {d}"))
        if len(picks) >= count:
            return picks[:count]
    value = samples.assign(reduction=samples["task"].map(stl) * samples["gain"])
    spread = value.groupby(["group", "draw"])["reduction"].sum().groupby(level="group").std()
    taken = {p.group for p in picks}
    ranked = sorted((g for g in untrained if g not in taken), key=lambda g: -float(spread[group_name(g, tasks)]))
    picks += [Pick(g, f"most uncertain predicted loss reduction ({draws} draws)") for g in ranked[: count - len(picks)]]
    return picks


def write_plan(path: str | os.PathLike, sampling: str, seed: int, picks: Sequence[Pick], tasks: Sequence[str]) -> None:
    """Save the training groups (atomically) so an interrupted run continues with the same ones."""
    path = Path(path)
    document = {"sampling": sampling, "seed": seed,
                "groups": [{"group": group_name(p.group, tasks), "reason": p.reason} for p in picks]}  # fmt: skip
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(document, indent=1) + "\n")
    part.replace(path)


def read_plan(path: str | os.PathLike, sampling: str, seed: int, tasks: Sequence[str]) -> list[Pick]:
    """The picks saved by `write_plan` ([] when the file is absent); refused if made another way."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text())
        made = (document["sampling"], document["seed"])
        picks = [Pick(parse_group(e["group"], tasks, str(path)), str(e["reason"])) for e in document["groups"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a training plan ({type(exc).__name__}: {exc}); remove it") from exc
    if made != (sampling, seed):
        raise ConfigError(
            f"{path} holds groups sampled with --sampling {made[0]} --seed {made[1]}, not {sampling} {seed}; "
            "remove it (or the output folder) to sample again"
        )
    return picks


__all__ = ["ADAPTIVE_START", "MAX_DRAWS", "SAMPLINGS", "Pick", "read_plan", "thompson_picks", "training_groups",
           "write_plan"]  # fmt: skip
