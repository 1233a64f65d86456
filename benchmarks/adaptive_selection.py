"""Adaptive vs random choice of the training groups, and safe serving, replayed on complete ground truths.

The pipeline's decision loop (`taskrel.grouping.sampling.training_groups`, `taskrel.grouping.decision`)
runs unchanged, except that "training" a group reads its measured losses (seed means of 3 seeds)
from the committed table, so hundreds of pipelines cost minutes. Every decision uses validation
gains; the served models are scored on test (`taskrel.predict.evaluation.realise`: the decision's
plan on measured validation means, since the tables hold no per-row losses). Per table, number of
trained groups N and draw: realised total test loss for random and adaptive sampling; references
STL, one all-task model, the decision with every group measured on validation (what unlimited
training would choose), and the oracle (the same decision on test losses, ≤ k new groups). An
adaptive trajectory is grown to the largest N once per draw and read at every N (its prefixes are
exactly the shorter runs).

Rows are appended to ``results/adaptive_selection.jsonl`` as they finish, so an interrupted run
continues where it stopped (same command); the JSON and the plot are rewritten from all rows.

Run: PYTHONPATH=src python benchmarks/adaptive_selection.py [--tables chemical ett] [--draws 20]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from taskrel.affinity import AffinityMatrix
from taskrel.gains import GainTable
from taskrel.grouping.decision import candidate_groups, decide, default_models
from taskrel.grouping.sampling import training_groups
from taskrel.groups import group_name
from taskrel.predict import DefaultPredictor
from taskrel.predict.evaluation import realise, realise_oracle, trained_runs

from common import RESULTS, command, machine, write_result

TABLES = {
    "chemical": ("chemical_gains.csv", "chemical_affinity_etap_validation.csv"),
    "ett": ("ett_gains.csv", "ett_affinity_etap_validation.csv"),
}
SIZES = (5, 10, 20, 40)
MAX_GROUPS = 3
BATCH = 2  # the pool of the 2-core machine the README's figures come from
ROWS = RESULTS / "adaptive_selection.jsonl"


class Replay:
    """One ground truth: measured validation gains for the decisions, test losses for the score."""

    def __init__(self, table: str) -> None:
        gains, affinity = TABLES[table]
        self.name = table
        self.val = GainTable.read_csv(RESULTS / gains, split="val")
        self.test = GainTable.read_csv(RESULTS / gains)
        self.tasks = list(self.val.tasks)
        self.affinity = AffinityMatrix.read_csv(RESULTS / affinity)
        self.val_gains = self.val.mean()[["group", "task", "gain"]]
        self.stl = self.val.stl_loss()
        self.test_loss = self.test.mean().set_index(["group", "task"])["test_loss"]
        self.stl_test = self.test.stl_loss()

    def measure(self, groups) -> pd.DataFrame:
        self.trained = list(groups)
        names = {group_name(g, self.tasks) for g in groups}
        return self.val_gains[self.val_gains["group"].isin(names)]

    def decide(self, gains: pd.DataFrame) -> list:
        return decide(trained_runs(self.val, self.trained), gains, max_groups=MAX_GROUPS).groups

    def fit(self, gains: pd.DataFrame) -> DefaultPredictor:
        return DefaultPredictor().fit(self.affinity, gains)

    def picks(self, count: int, sampling: str, seed: int) -> list:
        self.trained = []
        return training_groups(self.tasks, count, sampling, measure=self.measure, fit=self.fit, decide=self.decide,
                               stl=self.stl, batch=BATCH, seed=seed)  # fmt: skip

    def decision(self, groups: list) -> dict:
        """Fit on `groups`, decide over every group, serve and score on test."""
        predicted = self.fit(self.measure(groups)).predict(candidate_groups(self.tasks))
        outcome = realise(self.test, groups, predicted, MAX_GROUPS)
        loss = outcome["per_task"]
        return {"chosen": outcome["groups"], "default": outcome["default"], "test_loss": outcome["realised_loss"],
                "tasks_at_or_below_stl_on_test": sum(loss[t] <= self.stl_test[t] for t in self.tasks)}  # fmt: skip

    def references(self) -> dict:
        everything = group_name(self.tasks, self.tasks)
        every = [g for g in self.test.groups() if len(g) >= 2]
        on_validation = realise(self.test, every, None, 1)  # every group measured: the ceiling on validation
        return {
            "validation_choice": on_validation["realised_loss"],
            "default": float(sum(self.test_loss[(g, t)] for t, g in default_models(self.test)[1].items())),
            "stl": float(sum(self.stl_test.values())),
            "naive_mtl": float(sum(self.test_loss[(everything, t)] for t in self.tasks)),
            "oracle_test": realise_oracle(self.test, MAX_GROUPS),
        }


def done_rows() -> list[dict]:
    return [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.exists() else []


def run(tables: list[str], draws: int) -> None:
    rows = done_rows()
    have = {(r["table"], r["sampling"], r["draw"]) for r in rows}
    for table in tables:
        replay = None
        for draw in range(draws):
            for sampling in ("random", "adaptive"):
                if (table, sampling, draw) in have:
                    continue
                replay = replay or Replay(table)
                if sampling == "adaptive":
                    trajectory = [p.group for p in replay.picks(max(SIZES), sampling, draw)]
                per_size = {}
                for n in SIZES:
                    if sampling == "random":
                        trajectory = [p.group for p in replay.picks(n, sampling, draw)]
                    per_size[n] = replay.decision(trajectory[:n])
                row = {"table": table, "sampling": sampling, "draw": draw, "sizes": per_size}
                with ROWS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                totals = ", ".join(f"{n}: {v['test_loss']:.4f}" for n, v in per_size.items())
                print(f"{table} {sampling} draw {draw}: {totals}", flush=True)
    summarise(tables)


def summarise(tables: list[str]) -> None:
    rows = done_rows()
    out = {"command": command(), "machine": machine(), "sizes": list(SIZES), "max_groups": MAX_GROUPS,
           "batch": BATCH, "tables": {}}  # fmt: skip
    figure = Figure(figsize=(5.5 * len(tables), 4.2), layout="constrained")
    axes = figure.subplots(1, len(tables), squeeze=False)[0]
    for ax, table in zip(axes, tables, strict=True):
        refs = Replay(table).references()
        entry = {"references": refs, "draws": {}, "sampling": {}}
        for sampling in ("random", "adaptive"):
            mine = [r for r in rows if r["table"] == table and r["sampling"] == sampling]
            entry["draws"][sampling] = len(mine)
            stats = {}
            for n in SIZES:
                values = np.array([r["sizes"][str(n)]["test_loss"] for r in mine])
                if not len(values):
                    continue
                stats[n] = {
                    "mean_test_loss": float(values.mean()), "std_test_loss": float(values.std()),
                    "vs_stl": float((refs["stl"] - values.mean()) / refs["stl"]),
                    "ratio_to_oracle": float(values.mean() / refs["oracle_test"]),
                    "tasks_at_or_below_stl_on_test": float(np.mean(
                        [r["sizes"][str(n)]["tasks_at_or_below_stl_on_test"] for r in mine])),
                    "worse_than_stl_total": int(sum(v > refs["stl"] for v in values)),
                }  # fmt: skip
            entry["sampling"][sampling] = stats
            if stats:
                xs = list(stats)
                mean = np.array([stats[n]["mean_test_loss"] for n in xs])
                sem = np.array([stats[n]["std_test_loss"] for n in xs]) / np.sqrt(max(len(mine), 1))
                ax.errorbar(xs, mean, yerr=sem, marker="o", capsize=3, label=f"{sampling} ({len(mine)} draws)")
        for key, style, label in (("stl", ":", "STL"), ("naive_mtl", "-.", "one all-task model"),
                                  ("validation_choice", (0, (5, 1, 1, 1)), "all groups measured, chosen on val"),
                                  ("oracle_test", "--", f"oracle (≤ {MAX_GROUPS} groups, test)")):  # fmt: skip
            ax.axhline(refs[key], linestyle=style, color="grey", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(SIZES), [str(n) for n in SIZES])
        ax.set_xlabel("trained groups N")
        ax.set_ylabel("total test loss of the served models")
        ax.set_title(f"{table}: ≤ {MAX_GROUPS} new groups, STL and ALL free, served on validation")
        ax.legend(fontsize=8)
        out["tables"][table] = entry
    figure.savefig(RESULTS / "adaptive_selection.png", dpi=120)
    write_result("adaptive_selection", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--summary-only", action="store_true", help="rewrite the JSON and plot from the rows")
    args = parser.parse_args()
    if args.summary_only:
        summarise(args.tables)
    else:
        run(args.tables, args.draws)


if __name__ == "__main__":
    main()
