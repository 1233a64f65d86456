"""The default gain predictor against every baseline, on the tables a user is likely to have.

Tables (test groups: the default quarter of the measured multi-task groups; 10 draws of
|G_train| ∈ {5, 10, 20}; every method on the same draws):

- ``chemical_etap``: our Chemical table (``results/chemical_gains.csv``) with the plain ETAP
  affinity (``results/chemical_affinity_etap.csv``, the layout `taskrel affinity` writes);
- ``chemical_etap_validation``: the same table with the validation-weighted ETAP affinity (only
  the methods that read the affinity are rerun: the others see identical inputs);
- ``ettm1``: MTG-Net's published ETTm1 gains (all 127 groups; losses relative to STL = 1 − gain)
  with TAG's pairwise affinity read off its ``ETTm1_TAG_HOA.csv`` pair rows;
- ``taskonomy``: Standley's Taskonomy losses with TAG's published affinity.

    python benchmarks/predictors_default.py --table chemical_etap
    python benchmarks/predictors_default.py --table chemical_etap_validation
    python benchmarks/predictors_default.py --table ettm1
    python benchmarks/predictors_default.py --table taskonomy

Each run writes ``results/predictors_default_<table>.json`` and a plot of r against |G_train|.
"""

from __future__ import annotations

import argparse

import numpy as np

from predictors_published import standley_table
from taskrel.affinity import AffinityMatrix
from taskrel.data import CHEMICAL_TASKS
from taskrel.data.location import data_file
from taskrel.data.published import STANDLEY_TASKS, mtgnet_table, tag_matrix
from taskrel.gains import GainTable
from taskrel.groups import group_name
from taskrel.predict import PREDICTORS
from taskrel.predict.evaluation import evaluate_predictors

from common import RESULTS, correlation_curves, write_result

TABLES = ("chemical_etap", "chemical_etap_validation", "ettm1", "taskonomy")
AFFINITY_METHODS = ("default", "etap", "etap_stage1", "affine", "tag")


def ettm1() -> tuple[GainTable, AffinityMatrix]:
    """MTG-Net's ETTm1 gains as a gain table, and TAG's affinity A[source, target] from the pair rows."""
    tasks, masks, test = mtgnet_table("ettm1", "test")
    _, _, val = mtgnet_table("ettm1", "val")
    tag_hoa = np.loadtxt(data_file("mtgnet_song2022/ETTm1/ETTm1_TAG_HOA.csv"))  # pair row: A[other, task]
    matrix = np.zeros((len(tasks), len(tasks)))
    runs = []
    for mask, test_gain, val_gain, tag in zip(masks, test, val, tag_hoa, strict=True):
        members = np.flatnonzero(mask)
        if len(members) == 2:
            a, b = members
            matrix[b, a], matrix[a, b] = tag[a], tag[b]
        losses = [{tasks[i]: 1.0 - gains[i] for i in members} for gains in (val_gain, test_gain)]
        runs.append((group_name([tasks[i] for i in members], tasks), 0, *losses))
    return GainTable.from_runs(runs, tasks), AffinityMatrix(matrix, tasks, "tag")


def load(name: str) -> tuple[GainTable, AffinityMatrix, str]:
    if name.startswith("chemical"):
        method = name.removeprefix("chemical_")
        table = GainTable.read_csv(RESULTS / "chemical_gains.csv", tasks=CHEMICAL_TASKS)
        affinity = AffinityMatrix.read_csv(RESULTS / f"chemical_affinity_{method}.csv", method=method)
        return table, affinity, f"results/chemical_gains.csv (test gains), results/chemical_affinity_{method}.csv"
    if name == "ettm1":
        return *ettm1(), "MTG-Net ETTm1 test gains; TAG affinity from ETTm1_TAG_HOA.csv pair rows"
    _, matrix = tag_matrix("taskonomy", "affinity")
    affinity = AffinityMatrix(matrix, ("segmentation", "depth", "normals", "keypoints", "edges"), "tag")
    return standley_table(), affinity.subset(STANDLEY_TASKS), "Standley setting 1 test losses; TAG affinity"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", choices=TABLES, required=True)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sizes", default="5,10,20")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    table, affinity, source = load(args.table)
    names = AFFINITY_METHODS if args.table == "chemical_etap_validation" else PREDICTORS
    result = evaluate_predictors(table, affinity, {n: PREDICTORS[n] for n in names}, sizes, args.repeats,
                                 progress=False)  # fmt: skip
    correlation_curves(result, sizes, RESULTS / f"predictors_default_{args.table}.png",
                       f"{args.table}: gain prediction on {result['test_groups']} test groups",
                       "Pearson r (mean ± sd over draws)")  # fmt: skip
    path = write_result(f"predictors_default_{args.table}", {"table": args.table, "source": source, **result})
    print(f"wrote {path}")
    for name, by_size in result["methods"].items():
        print(f"{name:17s}", {s: (round(v["pearson"], 3), round(v["r2"], 3)) for s, v in by_size.items()})


if __name__ == "__main__":
    main()
