"""Gain prediction on Chemical (the ETAP paper's protocol, Tables 2–5 and 7–10) from our own data.

Inputs: the measured ground truth ``results/chemical_gains.csv`` (see chemical_gains.py) and the
affinity matrices of chemical_affinity.py (``results/chemical_affinity_<method>.csv``, seed means).
Outputs ``results/predictors_chemical.json`` and two plots: correlation vs |G_train| with spread,
and predicted vs measured gains of the test groups for one ETAP fit.

    python benchmarks/predictors_chemical.py --repeats 10 --test-size 230
"""

from __future__ import annotations

import argparse

import numpy as np

from taskrel.affinity import AffinityMatrix
from taskrel.data import CHEMICAL_TASKS
from taskrel.gains import GainTable
from taskrel.plots import scatter
from taskrel.predict import PREDICTORS, EtapPredictor
from taskrel.predict.evaluation import (
    draw_training,
    evaluate_predictors,
    pairwise_correlation,
    selection_benchmark,
    split_groups,
)

from common import RESULTS, correlation_curves, etap_with_other_affinities, write_result

AFFINITIES = ("etap_validation", "etap", "etap_momentum_validation", "tag_validation", "tag", "ptg_validation", "ptg")
PRIMARY = "etap_validation"  # ETAP score, epochs weighted by the targets' validation improvement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--test-size", type=int, default=230)
    parser.add_argument("--sizes", default="5,10,20,40")
    parser.add_argument("--selection-repeats", type=int, default=6)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    table = GainTable.read_csv(RESULTS / "chemical_gains.csv", tasks=CHEMICAL_TASKS)
    matrices = {m: AffinityMatrix.read_csv(RESULTS / f"chemical_affinity_{m}.csv", method=m) for m in AFFINITIES}
    affinity = matrices[PRIMARY]
    pairwise = {m: pairwise_correlation(table, a) for m, a in matrices.items()}
    result = evaluate_predictors(table, affinity, PREDICTORS, sizes, args.repeats, args.test_size, progress=False)
    by_affinity = etap_with_other_affinities(table, matrices, PRIMARY, sizes, args.repeats, args.test_size)
    selection = selection_benchmark(table, affinity, PREDICTORS, train_size=10, repeats=args.selection_repeats,
                                    test_size=args.test_size, progress=False)  # fmt: skip
    title = f"Chemical: gain prediction on {args.test_size} test groups"
    correlation_curves(result, sizes, RESULTS / "predictors_chemical.png", title, "Pearson r (mean ± sd over draws)")
    pool, test = split_groups(table, args.test_size)
    drawn = draw_training(pool, 10, np.random.default_rng([0, 10, 0]))
    measured = table.mean()
    train = measured[measured["group"].isin({"|".join(t for t in CHEMICAL_TASKS if t in g) for g in drawn})]
    predicted = EtapPredictor().fit(affinity, train[["group", "task", "gain"]]).predict(test)
    merged = predicted.merge(measured, on=["group", "task"], suffixes=("_pred", ""))
    scatter(merged["gain_pred"], merged["gain"], RESULTS / "predictors_chemical_scatter.png",
            title="ETAP, |G_train| = 10, test groups")  # fmt: skip
    payload = {
        "gains": "results/chemical_gains.csv (test gains, seed means)",
        "affinity": f"results/chemical_affinity_{PRIMARY}.csv",
        "pairwise_affinity_vs_gain": pairwise,
        **result,
        "etap_with_other_affinities": by_affinity,
        "selection": selection,
    }
    print(f"wrote {write_result('predictors_chemical', payload)}")
    print("pairwise", {k: round(v, 3) for k, v in pairwise.items()})
    for name, by_size in result["methods"].items():
        print(f"{name:12s}", {s: (round(v["pearson"], 3), round(v["r2"], 3)) for s, v in by_size.items()})


if __name__ == "__main__":
    main()
