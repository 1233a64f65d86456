"""Auxiliary learning on a user's problem: the main task alone (STL) against the main task trained with
auxiliaries under linear scalarisation, AuxiNash and other weightings (`taskrel auxinash run`).

Every method is one run of `taskrel.weighting.weighted.train_weighted` with the same seed: STL is the
group of the main task alone; the others train the main task and its auxiliaries with early stopping
and the restored best weights watching the main task's validation loss. Preferences are reported
normalised to sum 1 over the group (uniform = 1/K); the reported preferences are AuxiNash's last.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskrel.choices import AUXILIARY_METHODS
from taskrel.choices import DEFAULT_AUXILIARY_METHODS as DEFAULT_METHODS
from taskrel.errors import ConfigError, UnknownTaskError
from taskrel.groups import ordered
from taskrel.problems.protocol import Problem, check_fingerprint
from taskrel.problems.registry import load_problem
from taskrel.weighting.weighted import WeightedRun, WeightingSpec, train_weighted


@dataclass
class AuxiliaryComparison:
    """The runs of one comparison by method; `group` is the main task and its auxiliaries in task order."""

    problem: str
    main: str
    group: tuple[str, ...]
    seed: int
    runs: dict[str, WeightedRun]

    @property
    def auxiliaries(self) -> tuple[str, ...]:
        return tuple(t for t in self.group if t != self.main)

    def main_test_loss(self) -> dict[str, float]:
        """The main task's test loss by method."""
        return {m: float(r.result.test_loss[self.main]) for m, r in self.runs.items()}

    def main_test_metric(self) -> dict[str, float] | None:
        """The main task's test metric by method (None where the problem reports none)."""
        if any(r.result.test_metric is None for r in self.runs.values()):
            return None
        return {m: float(r.result.test_metric[self.main]) for m, r in self.runs.items()}

    def preferences(self) -> dict[str, float] | None:
        """AuxiNash's final preference of every auxiliary (the group's preferences sum to 1), if it ran."""
        run = self.runs.get("auxinash")
        if run is None:
            return None
        final = run.final_preferences
        return {t: final[t] for t in self.auxiliaries}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `taskrel auxinash run --json` prints."""
        auxinash = self.runs.get("auxinash")
        return {
            "problem": self.problem,
            "main": self.main,
            "auxiliaries": list(self.auxiliaries),
            "seed": self.seed,
            "preferences": self.preferences(),
            "main_preference": None if auxinash is None else auxinash.final_preferences[self.main],
            "main_test_loss": self.main_test_loss(),
            "main_test_metric": self.main_test_metric(),
            "steps": {m: r.result.steps for m, r in self.runs.items()},
            "seconds_per_step": {m: r.seconds_per_step for m, r in self.runs.items()},
        }


def compare_auxiliary(
    problem: Problem | str,
    main: str,
    auxiliaries: Sequence[str] | None = None,
    *,
    seed: int = 0,
    methods: Sequence[str] = DEFAULT_METHODS,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    meta: str = "train",
) -> AuxiliaryComparison:
    """Train the main task alone and with its `auxiliaries` (default: every other task) under `methods`.

    `options` maps a method to its constructor options (e.g. ``{"auxinash": {"meta_lr": 0.05}}``);
    `meta` is AuxiNash's meta data (`WeightingSpec.meta`).
    """
    problem = load_problem(problem)
    tasks = list(problem.tasks)
    if main not in tasks:
        raise UnknownTaskError(f"main task {main!r} is not a task of the problem; tasks: {tasks}")
    auxiliaries = [t for t in tasks if t != main] if auxiliaries is None else list(auxiliaries)
    unknown = [t for t in auxiliaries if t not in tasks]
    if unknown:
        raise UnknownTaskError(f"auxiliary task(s) {unknown} are not tasks of the problem; tasks: {tasks}")
    if main in auxiliaries or not auxiliaries or len(set(auxiliaries)) != len(auxiliaries):
        raise ConfigError(f"auxiliaries must be distinct tasks other than the main task {main!r}, got {auxiliaries}")
    bad = [m for m in methods if m.replace("_", "-") not in AUXILIARY_METHODS]
    if bad or not methods:
        raise ConfigError(f"unknown method(s) {bad}; use some of {', '.join(AUXILIARY_METHODS)}")
    options = dict(options or {})
    group = tuple(ordered([main, *auxiliaries], tasks))
    runs = {}
    for method in dict.fromkeys(m.replace("_", "-") for m in methods):
        members = [main] if method == "stl" else list(group)
        spec = WeightingSpec("ls" if method == "stl" else method, main, options.get(method, {}), meta)
        runs[method] = train_weighted(problem, members, seed, spec)
    name = str(check_fingerprint(problem).get("name", "problem"))
    return AuxiliaryComparison(name, main, group, seed, runs)


def plot_preferences(comparison: AuxiliaryComparison, path: str | os.PathLike) -> None:
    """AuxiNash's preferences over training (one line per task, summing to 1) as a PNG at `path`."""
    from taskrel.plots import save, subplots  # start-up: matplotlib, only when preferences are drawn

    run = comparison.runs.get("auxinash")
    if run is None or run.history is None:
        raise ConfigError("no AuxiNash run to plot: include auxinash in the methods")
    history = run.history
    fig, ax = subplots(figsize=(6.5, 4))
    for k, task in enumerate(run.method.tasks):
        values = [p[k] for p in history.preferences]
        style = {"lw": 2.2, "color": "k"} if task == comparison.main else {"lw": 1.3}
        ax.plot(history.steps, values, label=f"{task} (main)" if task == comparison.main else task, **style)
    ax.axhline(1 / len(run.method.tasks), color="grey", ls=":", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("preference (sums to 1)")
    ax.set_title(f"AuxiNash preferences: {comparison.problem}, main task {comparison.main}")
    ax.legend(fontsize=8)
    save(fig, path)
