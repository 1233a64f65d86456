"""Gain prediction and group selection on ETTh1 (the ETAP paper's ETTm1 protocol) from our own data.

Inputs: the measured ground truth ``results/ett_gains.csv`` (the `ett` sweep exported by
`taskrel gains`; test gains, seed means) and the affinity matrices of ett_affinity.py and
ett_pairwise_affinity.py. Outputs ``results/predictors_ett.json``: the correlation of every pairwise
affinity with the measured pair gains (paper Table 2, ETTm1: ETAP 0.47, TAG 0.43); Pearson r / R²
of every predictor of `taskrel.predict.PREDICTORS` (the default one included) on the fixed test
groups (Table 3), and ETAP's with each other affinity matrix (plot: ``predictors_ett.png``); the
realised test MSE of the groups selected from |G_train| = 10 for 2 / 3 / 4 groups against the
exhaustive optimum on test, the choice on measured validation gains, naive MTL and STL (Table 4;
plot: ``predictors_ett_selection.png``).

    python benchmarks/predictors_ett.py --repeats 10 --test-size 40
"""

from __future__ import annotations

import argparse

from taskrel.affinity import AffinityMatrix
from taskrel.data.ett import ETT_TASKS
from taskrel.gains import GainTable
from taskrel.plots import grouped_bars
from taskrel.predict import PREDICTORS
from taskrel.predict.evaluation import evaluate_predictors, pairwise_correlation, selection_benchmark

from common import RESULTS, correlation_curves, etap_with_other_affinities, write_result

AFFINITIES = ("etap", "etap_validation", "etap_momentum", "etap_momentum_validation", "tag", "tag_validation",
              "ptg", "ptg_validation")  # fmt: skip
PRIMARY = "etap"


def plot_selection(selection: dict, path) -> None:
    """Realised total test MSE of every choice, in % above the oracle (≤ k new groups chosen on test), per k."""
    optimum = selection["optimal"]
    rows = {name: {k: v["mean"] for k, v in by_k.items()} for name, by_k in selection["methods"].items()}
    rows["every group measured"] = dict.fromkeys(optimum, selection["measured_val"])
    rows["default D"] = dict.fromkeys(optimum, selection["default"])
    rows["STL"] = dict.fromkeys(optimum, selection["stl"])
    rows["naive MTL"] = dict.fromkeys(optimum, selection["naive_mtl"])
    series = {f"k = {k}": [100 * (row[k] / optimum[k] - 1) for row in rows.values()] for k in optimum}
    grouped_bars(list(rows), series, path, title="ETTh1: groups selected from |G_train| = 10 (mean of draws)",
                 ylabel="total test MSE, % above the optimum")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--test-size", type=int, default=40)
    parser.add_argument("--sizes", default="5,10,20")
    parser.add_argument("--selection-repeats", type=int, default=6)
    args = parser.parse_args()
    table = GainTable.read_csv(RESULTS / "ett_gains.csv", tasks=ETT_TASKS)
    groups = table.frame["group"].nunique()
    pool = sum(1 for g in table.groups() if len(g) > 1) - args.test_size
    sizes = [s for s in (int(s) for s in args.sizes.split(",")) if s <= pool]
    matrices = {
        m: AffinityMatrix.read_csv(RESULTS / f"ett_affinity_{m}.csv", method=m)
        for m in AFFINITIES
        if (RESULTS / f"ett_affinity_{m}.csv").exists()
    }
    affinity = matrices[PRIMARY]
    pairwise = {m: pairwise_correlation(table, a) for m, a in matrices.items()}
    result = evaluate_predictors(table, affinity, PREDICTORS, sizes, args.repeats, args.test_size, progress=False)
    by_affinity = etap_with_other_affinities(table, matrices, PRIMARY, sizes, args.repeats, args.test_size)
    selection = selection_benchmark(table, affinity, PREDICTORS, train_size=10, repeats=args.selection_repeats,
                                    test_size=args.test_size, progress=False)  # fmt: skip
    title = f"ETTh1 ({groups} groups measured): gain prediction on {args.test_size} test groups"
    correlation_curves(result, sizes, RESULTS / "predictors_ett.png", title, "Pearson r (mean ± sd over draws)")
    plot_selection(selection, RESULTS / "predictors_ett_selection.png")
    payload = {
        "gains": f"results/ett_gains.csv (test gains, seed means; {groups} of 127 groups)",
        "affinity": f"results/ett_affinity_{PRIMARY}.csv",
        "train_sizes": sizes,
        **result,
        "pairwise_affinity_vs_gain": pairwise,
        "etap_with_other_affinities": by_affinity,
        "selection": selection,
    }
    print(f"wrote {write_result('predictors_ett', payload)}")
    print("pairwise", {k: round(v, 3) for k, v in pairwise.items()})
    for name, by_size in result["methods"].items():
        print(f"{name:12s}", {s: (round(v["pearson"], 3), round(v["r2"], 3)) for s, v in by_size.items()})


if __name__ == "__main__":
    main()
