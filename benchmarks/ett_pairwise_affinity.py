"""Why ETAP's pairwise affinity follows the ETTh1 pair gains less than TAG's: the variants of the score, measured.

ETAP paper Table 2 (ETTm1, Autoformer, SGD with momentum): ETAP r = 0.47, TAG 0.43. Their ETTm1
matrix is the momentum variant without the division by L_j (see /work/shared/notes/etap.md §1.2);
our forecaster trains with Adam. One all-channel run per seed with the `ett` protocol (the runs of
ett_affinity.py), four ETAP collectors attached at once (they leave the trajectory unchanged):

- ``etap``: z(i → j) = ⟨g_j, g_i⟩ / L_j (the committed ``ett_affinity_etap.csv``);
- ``etap_momentum``: ⟨g_j, u_i⟩ / L_j with u_i Adam's step for g_i from its current moments;
- ``etap_unnormalised`` and ``etap_momentum_unnormalised``: the same without the division by L_j.

Each is aggregated by time average ("steps") and validation weighting. For every matrix (these and
the committed TAG / PTG ones) the Pearson r of A[source, target] with the measured gain of target
in {source, target} (test and validation gains, seed means, 42 entries), per seed, Spearman, and
after removing each target's column mean (what is left when the per-target level, e.g. "OT is hurt
by every partner", is taken out). Also the reliability of the measured pair gains (agreement
between seeds) and the share of their variance that is between targets.

    TASKREL_DATA=../shared/external_data python benchmarks/ett_pairwise_affinity.py --seeds 3
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from taskrel.affinity import AffinityMatrix, EtapAffinity
from taskrel.data.ett import ETT_TASKS
from taskrel.gains import GainTable
from taskrel.problems.builtin import ett

from common import RESULTS, save_affinity_means, write_result

VARIANTS = {
    "etap": {},
    "etap_momentum": {"momentum": True},
    "etap_unnormalised": {"normalize": False},
    "etap_momentum_unnormalised": {"momentum": True, "normalize": False},
}
COMMITTED = ("tag", "tag_validation", "ptg", "ptg_validation")
WEIGHTINGS = {"steps": "", "validation": "_validation"}


def aligned(matrix: AffinityMatrix, tasks: list[str]) -> np.ndarray:
    index = [matrix.tasks.index(t) for t in tasks]
    return matrix.values[np.ix_(index, index)]


def agreement(values: np.ndarray, pair: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman r over the off-diagonal entries, and Pearson r with target column means removed."""
    off = ~np.eye(len(pair), dtype=bool)
    a, p = values[off], pair[off]

    def centred(m: np.ndarray) -> np.ndarray:
        masked = np.where(off, m, np.nan)
        return (masked - np.nanmean(masked, axis=0))[off]

    return {
        "pearson": float(np.corrcoef(a, p)[0, 1]),
        "spearman": float(stats.spearmanr(a, p)[0]),
        "pearson_target_centred": float(np.corrcoef(centred(values), centred(pair))[0, 1]),
    }


def ground_truth(table: GainTable) -> dict:
    """Seed-to-seed agreement of the measured pair gains and the share of their variance between targets."""
    frame = table.frame[table.frame["group"].str.count(r"\|") == 1]
    by_seed = frame.pivot_table(index=["group", "task"], columns="seed", values="gain")
    r = np.corrcoef(by_seed.to_numpy().T)[np.triu_indices(by_seed.shape[1], 1)]
    k = by_seed.shape[1]
    pair = table.pairwise()
    off = ~np.eye(len(pair), dtype=bool)
    masked = np.where(off, pair, np.nan)
    between = np.nanmean(masked, axis=0)
    return {
        "seed_to_seed_pearson": [float(x) for x in r],
        "reliability_of_seed_mean": float(k * r.mean() / (1 + (k - 1) * r.mean())),
        "between_target_variance_share": float(np.var(np.broadcast_to(between, pair.shape)[off]) / np.var(pair[off])),
        "target_mean_gain": dict(zip(table.tasks, map(float, between), strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    problem = ett()
    per_variant: dict[str, list[EtapAffinity]] = {name: [] for name in VARIANTS}
    runs = []
    for seed in range(args.seeds):
        collectors = {name: EtapAffinity(**options) for name, options in VARIANTS.items()}
        result = problem.train(problem.tasks, seed, callbacks=list(collectors.values()))
        runs.append({"seed": seed, "steps": result.steps, "epochs": result.epochs})
        for name, collector in collectors.items():
            per_variant[name].append(collector)
        print(f"seed {seed}: {result.steps} steps in {result.seconds:.0f} s", flush=True)
    save_affinity_means({k: v for k, v in per_variant.items() if k != "etap"}, "ett_affinity", "ETTh1")
    tasks = list(ETT_TASKS)
    committed = AffinityMatrix.read_csv(RESULTS / "ett_affinity_etap.csv", method="etap")
    rerun = AffinityMatrix.mean([c.matrix("steps") for c in per_variant["etap"]])
    difference = float(np.abs(aligned(rerun, tasks) - aligned(committed, tasks)).max())
    out: dict = {"seeds": args.seeds, "runs": runs, "etap_rerun_max_abs_difference_to_committed": difference}
    for split in ("test", "val"):
        table = GainTable.read_csv(RESULTS / "ett_gains.csv", tasks=ETT_TASKS, split=split)
        pair = table.pairwise()
        scores = {}
        for name, collectors in per_variant.items():
            for weighting, suffix in WEIGHTINGS.items():
                matrices = [c.matrix(weighting) for c in collectors]
                mean = aligned(AffinityMatrix.mean(matrices), tasks)
                scores[name + suffix] = {
                    **agreement(mean, pair),
                    "pearson_transposed": float(agreement(mean.T, pair)["pearson"]),
                    "pearson_per_seed": [agreement(aligned(m, tasks), pair)["pearson"] for m in matrices],
                }
        for name in COMMITTED:
            mean = aligned(AffinityMatrix.read_csv(RESULTS / f"ett_affinity_{name}.csv", method=name), tasks)
            scores[name] = {**agreement(mean, pair), "pearson_transposed": agreement(mean.T, pair)["pearson"]}
        out[split] = {"ground_truth": ground_truth(table), "affinity_vs_pair_gain": scores}
    path = write_result("ett_pairwise_affinity", {"problem": problem.fingerprint(), **out})
    for name, s in out["test"]["affinity_vs_pair_gain"].items():
        print(f"{name:34s}", {k: np.round(v, 3).tolist() for k, v in s.items()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
