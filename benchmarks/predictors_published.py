"""Gain predictors on published tables: Taskonomy (TAG's affinity + Standley's measured losses) and
CelebA (TAG's affinity vs measured pair accuracies; pairs only).

Taskonomy: Standley et al.'s 31 groups of 5 tasks (setting 1: validation and test losses; the
full-size single-task networks are the STL reference) with TAG's published Taskonomy affinity as
the affinity source; the ETAP protocol with a 10-group test set, |G_train| ∈ {5, 10}. CelebA: only
pairs were published, so only the correlation of pairwise affinity with the measured pair gain
(error = 100 − accuracy as the loss) is reported, for TAG's affinity and its cosine similarity.

    python benchmarks/predictors_published.py --repeats 10
"""

from __future__ import annotations

import argparse

import numpy as np

from taskrel.affinity import AffinityMatrix
from taskrel.data.published import STANDLEY_TASKS, tag_matrix
from taskrel.gains import GainTable
from taskrel.predict import PREDICTORS
from taskrel.predict.evaluation import evaluate_predictors
from taskrel.select.published import standley_problem

from common import RESULTS, correlation_curves, write_result


def standley_table(setting: str = "small") -> GainTable:
    """Standley's full-size networks as one 'seed' of runs: validation and test loss per task."""
    val = {c.id: dict(c.values) for c in standley_problem(setting, "val").candidates if not c.id.startswith("half:")}
    test = {c.id: dict(c.values) for c in standley_problem(setting, "test").candidates if not c.id.startswith("half:")}
    return GainTable.from_runs([(group, 0, val[group], test[group]) for group in val], STANDLEY_TASKS)


def celeba_pairwise() -> dict:
    """Correlation of TAG's CelebA matrices with measured pair gains, in both orientations.

    The published files are documented as [recipient][source] (transposed on load to
    A[source, target]); for CelebA that orientation was inferred, not verified, so the transpose
    is reported too.
    """
    tasks, accuracy = tag_matrix("celeba", "pairwise")  # S[source, target] = target's accuracy with source
    error = 100.0 - accuracy
    gain = (np.diag(error)[None, :] - error) / np.diag(error)[None, :]  # gain of the target in the pair
    mask = ~np.eye(len(tasks), dtype=bool)
    out = {}
    for kind in ("affinity", "cosine"):
        _, matrix = tag_matrix("celeba", kind)
        out[kind] = {"documented_orientation": float(np.corrcoef(matrix[mask], gain[mask])[0, 1]),
                     "transposed": float(np.corrcoef(matrix.T[mask], gain[mask])[0, 1])}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    _, matrix = tag_matrix("taskonomy", "affinity")  # TAG's loss order: seg, depth, normals, keypoints, edges
    affinity = AffinityMatrix(matrix, ("segmentation", "depth", "normals", "keypoints", "edges"), "tag")
    affinity = affinity.subset(STANDLEY_TASKS)
    table = standley_table()
    result = evaluate_predictors(table, affinity, PREDICTORS, train_sizes=(5, 10), repeats=args.repeats,
                                 test_size=10, progress=False)  # fmt: skip
    sizes = [5, 10]
    correlation_curves(result, sizes, RESULTS / "predictors_taskonomy.png", "Taskonomy (Standley): gain prediction",
                       "Pearson r on 10 test groups")  # fmt: skip
    payload = {
        "taskonomy": {"affinity": "TAG published (transposed to A[source, target])",
                      "gains": "Standley setting 1 (small network), test losses; full-size singles = STL", **result},
        "celeba_pairwise_correlation": celeba_pairwise(),
    }  # fmt: skip
    print(f"wrote {write_result('predictors_published', payload)}")
    for name, by_size in result["methods"].items():
        print(name, {s: round(v["pearson"], 3) for s, v in by_size.items()})
    print("pairwise", round(result["pairwise_affinity_vs_gain"], 3), "celeba", payload["celeba_pairwise_correlation"])


if __name__ == "__main__":
    main()
