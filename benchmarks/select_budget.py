"""Budget curves: objective vs budget (Standley, networks' inference cost) and vs number of groups (ETTm1).

Selection is made on validation and scored on test (each task served by its best chosen
network). Standley: setting 1 losses, half-size single-task networks cost 0.5, full-size 1; the
baseline is Standley's branch-and-bound. ETTm1: MTG-Net's gains (uncovered tasks keep STL); the
baseline is MTG-Net's beam search.

Run: TASKREL_DATA=../shared/external_data PYTHONPATH=src python benchmarks/select_budget.py
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from taskrel.select.baselines import beam_search, standley_branch_and_bound
from taskrel.select.published import mtgnet_problem, standley_problem

from common import RESULTS, write_result


def standley() -> list[dict]:
    val, test = standley_problem("small", "val"), standley_problem("small", "test")
    rows = []
    for budget in np.arange(1.0, 5.01, 0.5):
        selection = val.with_constraints(budgets={"cost": float(budget)}).solve()
        reference, _ = standley_branch_and_bound(val, float(budget))
        rows.append(
            {
                "budget": float(budget),
                "selected": list(selection.selected),
                "val_loss": selection.objective,
                "test_loss": test.evaluate(selection.selected).objective,
                "branch_and_bound_test_loss": test.evaluate(reference).objective,
                "seconds": selection.seconds,
            }
        )
    return rows


def ettm1() -> list[dict]:
    val, test = mtgnet_problem("ettm1", "val"), mtgnet_problem("ettm1", "test")
    n = len(val.tasks)
    rows = []
    for k in range(1, n + 1):
        selection = val.with_constraints(max_groups=k).solve()
        beam, _ = beam_search(val, k)
        rows.append(
            {
                "k": k,
                "selected": list(selection.selected),
                "val_avg_gain": selection.objective / n,
                "test_avg_gain": test.evaluate(selection.selected).objective / n,
                "beam_test_avg_gain": test.evaluate(beam).objective / n,
                "seconds": selection.seconds,
            }
        )
    return rows


def plot(left: list[dict], right: list[dict]) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([r["budget"] for r in left], [r["val_loss"] for r in left], "o-", label="MILP, validation")
    a.plot([r["budget"] for r in left], [r["test_loss"] for r in left], "s-", label="MILP choice, test")
    a.plot(
        [r["budget"] for r in left],
        [r["branch_and_bound_test_loss"] for r in left],
        "x--",
        label="branch-and-bound choice, test",
    )
    a.set(
        xlabel="inference budget (full-size networks)",
        ylabel="total loss (5 tasks)",
        title="Standley Taskonomy, setting 1",
    )
    b.plot([r["k"] for r in right], [r["val_avg_gain"] for r in right], "o-", label="MILP, validation")
    b.plot([r["k"] for r in right], [r["test_avg_gain"] for r in right], "s-", label="MILP choice, test")
    b.plot(
        [r["k"] for r in right],
        [r["beam_test_avg_gain"] for r in right],
        "x--",
        label="beam search choice, test",
    )
    b.set(xlabel="number of groups k", ylabel="average gain over STL", title="ETTm1 (MTG-Net table)")
    for axis in (a, b):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "select_budget.png", dpi=120)


def main() -> None:
    left, right = standley(), ettm1()
    plot(left, right)
    write_result("select_budget", {"standley_small": left, "ettm1": right})


if __name__ == "__main__":
    main()
