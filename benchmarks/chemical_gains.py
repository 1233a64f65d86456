"""The Chemical ground truth: measured gains of every trained group, and their distribution.

Reads the run store filled by the ground-truth sweep (the command is recorded in the JSON), writes
``results/chemical_gains.csv`` (group, task, seed, val_loss, test_loss, gain; test gains) and a
plot of the gain distribution by group size, and summarises the sweep (runs, compute time).
``--previous CSV`` keeps the (group, seed) runs of an earlier export that the store lacks (the
losses are taken as exported; gains are recomputed against the STL runs of both).

The table was built in two sweeps; the first store was lost after its export, so the second
trained the groups the export lacked (``results/chemical_sweep_rest.txt``) and the two were joined:

    taskrel sweep --dataset chemical --groups size:2,3 --seeds 3 --store runs/chemical.db --workers 2
    taskrel sweep --dataset chemical --groups random:400 --seeds 3 --store runs/chemical.db --workers 2
    taskrel sweep --dataset chemical --groups all --seeds 3 --store runs/chemical.db --workers 2  (stopped)
    python benchmarks/chemical_gains.py --store runs/chemical.db
    taskrel sweep --dataset chemical --groups benchmarks/results/chemical_sweep_rest.txt --seeds 3 \
        --store runs/chemical_rest.db --workers 2
    python benchmarks/chemical_gains.py --store runs/chemical_rest.db --previous benchmarks/results/chemical_gains.csv
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from taskrel.data import CHEMICAL_TASKS
from taskrel.gains import GainTable
from taskrel.train.store import RunStore

from common import RESULTS, write_result

SWEEP_COMMANDS = [
    "taskrel sweep --dataset chemical --groups size:2,3 --seeds 3 --store runs/chemical.db --workers 2",
    "taskrel sweep --dataset chemical --groups random:400 --seeds 3 --store runs/chemical.db --workers 2",
    "taskrel sweep --dataset chemical --groups all --seeds 3 --store runs/chemical.db --workers 2",
    "taskrel sweep --dataset chemical --groups benchmarks/results/chemical_sweep_rest.txt --seeds 3 "
    "--store runs/chemical_rest.db --workers 2",
]


def previous_runs(path: str, have: set[tuple[str, int]]) -> list[tuple[str, int, dict, dict]]:
    """(group, seed, val losses, test losses) of an exported table, for the runs not in `have`."""
    frame = pd.read_csv(path, dtype={"group": str, "task": str})
    runs = []
    for (group, seed), rows in frame.groupby(["group", "seed"], sort=False):
        if (group, int(seed)) not in have:
            runs.append((group, int(seed), dict(zip(rows.task, rows.val_loss, strict=True)),
                         dict(zip(rows.task, rows.test_loss, strict=True))))  # fmt: skip
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="runs/chemical.db")
    parser.add_argument("--previous", help="an earlier chemical_gains.csv whose runs the store lacks")
    parser.add_argument("--wall-seconds", type=float, help="wall time of the sweep, if known")
    args = parser.parse_args()
    with RunStore.open(args.store, "chemical") as store:
        records = list(store.records("done"))
        counts = store.counts()
    runs = [(r.group, r.seed, r.val_loss, r.test_loss) for r in records]
    earlier = previous_runs(args.previous, {(r.group, r.seed) for r in records}) if args.previous else []
    table = GainTable.from_runs(runs + earlier, CHEMICAL_TASKS)
    table.to_csv(RESULTS / "chemical_gains.csv")
    means = table.mean()
    means["size"] = means["group"].str.count(r"\|") + 1
    sizes = sorted(means["size"].unique())
    fig, ax = plt.subplots(figsize=(8, 4.2))
    data = [means.loc[means["size"] == s, "gain"].to_numpy() for s in sizes]
    ax.boxplot(data, tick_labels=[str(s) for s in sizes], showfliers=True, flierprops={"markersize": 2})
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    counts_by_size = [means.loc[means["size"] == s, "group"].nunique() for s in sizes]
    for x, n in enumerate(counts_by_size, start=1):
        ax.text(x, ax.get_ylim()[1], f"{n} groups", ha="center", va="top", fontsize=7)
    ax.set_xlabel("group size")
    ax.set_ylabel("test gain over STL (mean of seeds)")
    ax.set_title("Chemical: per-task MTL gain by group size (positive = group helps the task)")
    fig.tight_layout()
    fig.savefig(RESULTS / "chemical_gains.png", dpi=130)
    by_size = {
        str(s): {"groups": n, "mean_gain": float(np.mean(v)), "share_positive": float(np.mean(v > 0))}
        for s, v, n in zip(sizes, data, counts_by_size, strict=True)
    }
    payload = {
        "sweep_commands": SWEEP_COMMANDS,
        "store_counts": counts,
        "runs_done": len(records),
        "runs_from_previous_export": len(earlier),
        "previous_export": args.previous,
        "groups": int(means["group"].nunique()),
        "seeds": sorted({r.seed for r in records}),
        "training_compute_seconds_this_store": float(sum(r.seconds for r in records)),
        "sweep_wall_seconds": args.wall_seconds,
        "by_size": by_size,
    }
    print(f"wrote {write_result('chemical_gains', payload)}")


if __name__ == "__main__":
    main()
