"""Our measured ETTh1 gains against MTG-Net's measured ETTm1 gains, group by group.

Both tables give, for every group of the seven channels and every member channel, the gain
(L_STL − L_G) / L_STL (positive = the group helps the channel). Ours: `benchmarks/results/ett_gains.csv`
(the window forecaster, mean over seeds, test and validation). MTG-Net's: `mtgnet_song2022/ETTm1/`
(Autoformer on the 15-minute series, one run per group). Per group size: the Pearson and Spearman
correlation of the per-(group, channel) gains, the same for the group totals (sum over members), and
each table's mean gain and share of positive entries; over all groups, per channel (its mean gain in
each table and their correlation) and within channels (each channel's mean removed from both).

    TASKREL_DATA=../shared/external_data python benchmarks/ett_vs_mtgnet.py
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from taskrel.data.ett import ETT_TASKS
from taskrel.data.published import mtgnet_table
from taskrel.gains import GainTable
from taskrel.groups import group_name

from common import RESULTS, write_result


def published(split: str) -> dict[tuple[str, str], float]:
    tasks, masks, gains = mtgnet_table("ettm1", split)
    out = {}
    for mask, row in zip(masks, gains, strict=True):
        members = [t for t, m in zip(tasks, mask, strict=True) if m]
        for t, v, m in zip(tasks, row, mask, strict=True):
            if m:
                out[(group_name(members, tasks), t)] = float(v)
    return out


def correlations(ours: np.ndarray, theirs: np.ndarray) -> dict:
    if len(ours) < 3:
        return {"n": len(ours)}
    return {
        "n": len(ours),
        "pearson": float(stats.pearsonr(ours, theirs)[0]),
        "spearman": float(stats.spearmanr(ours, theirs)[0]),
    }


def compare(table: GainTable, split: str) -> dict:
    means = table.with_split(split).mean()
    ours = {(g, t): v for g, t, v in zip(means["group"], means["task"], means["gain"], strict=True)}
    theirs = published(split)
    keys = [k for k in ours if k in theirs and "|" in k[0]]
    sizes = sorted({k[0].count("|") + 1 for k in keys})
    out = {}
    for size in sizes:
        chosen = [k for k in keys if k[0].count("|") + 1 == size]
        a = np.array([ours[k] for k in chosen])
        b = np.array([theirs[k] for k in chosen])
        groups = sorted({k[0] for k in chosen})
        totals_a = np.array([sum(ours[k] for k in chosen if k[0] == g) for g in groups])
        totals_b = np.array([sum(theirs[k] for k in chosen if k[0] == g) for g in groups])
        out[str(size)] = {
            "entries": correlations(a, b),
            "group_totals": correlations(totals_a, totals_b),
            "ours_mean_gain": float(a.mean()),
            "mtgnet_mean_gain": float(b.mean()),
            "ours_positive_share": float((a > 0).mean()),
            "mtgnet_positive_share": float((b > 0).mean()),
        }
    a = np.array([ours[k] for k in keys])
    b = np.array([theirs[k] for k in keys])
    channel = np.array([k[1] for k in keys])
    masks = {t: channel == t for t in table.tasks}
    by_channel = {t: {"ours_mean_gain": float(a[m].mean()), "mtgnet_mean_gain": float(b[m].mean()),
                      **correlations(a[m], b[m])} for t, m in masks.items()}  # fmt: skip
    centred = [x - np.array([x[masks[t]].mean() for t in channel]) for x in (a, b)]
    out["all"] = {"entries": correlations(a, b), "within_channel": correlations(*centred), "by_channel": by_channel}
    return {"by_size": out, "points": (a, b, [k[0].count("|") + 1 for k in keys])}


def main() -> None:
    table = GainTable.read_csv(RESULTS / "ett_gains.csv", ETT_TASKS)
    results = {split: compare(table, split) for split in ("test", "val")}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, split in zip(axes, ("test", "val"), strict=True):
        a, b, sizes = results[split].pop("points")
        scatter = ax.scatter(b, a, c=sizes, cmap="viridis", s=14)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        r = results[split]["by_size"]["all"]["entries"]
        ax.set_title(f"{split} gains: r = {r.get('pearson', float('nan')):.2f}, {r['n']} (group, channel) entries")
        ax.set_xlabel("MTG-Net ETTm1 gain (Autoformer)")
        ax.set_ylabel("our ETTh1 gain (window forecaster)")
    fig.colorbar(scatter, ax=axes, label="group size")
    fig.savefig(RESULTS / "ett_vs_mtgnet.png", dpi=120, bbox_inches="tight")
    groups = table.frame["group"].nunique()
    seeds = int(table.frame["seed"].nunique())
    by_split = {split: r["by_size"] for split, r in results.items()}
    path = write_result("ett_vs_mtgnet", {"our_groups": int(groups), "our_seeds": seeds, **by_split})
    for size, row in results["test"]["by_size"].items():
        print(size, row)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
