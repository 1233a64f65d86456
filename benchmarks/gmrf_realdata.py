"""GMRF benchmark 4: learned-graph cooperation on real data (one agent per task, data stays local).

* School: 139 schools, linear regression of (standardised) exam scores, 27 features + intercept;
  communication graph: a connected random graph with 4·K edges (average degree 8), unit weights.
* Landmine: 29 fields, logistic regression of mine / no mine, 9 features + intercept; complete graph.

Every agent runs SGD (μ = 0.01, 4000 steps, iterates averaged over the last 25 %); learned-graph
diffusion learns L̂ after 2000 steps with the CGL-constrained ML estimator on the graph's support
(combinatorial part, normalised to λ_max = 1) and η is chosen on the validation splits from
{0.3, 1, 3, 10, 30, 100}. Baselines: non-cooperative SGD, consensus (ATC, Metropolis weights) and one
pooled model trained centrally on all training data (scikit-learn Ridge / LogisticRegression).
Scores on the test splits, mean over tasks: MSE (School, standardised units; lower is better) and
AUC (Landmine; higher is better); mean ± standard error over 3 seeds (split and stream seeds).

Run: TASKREL_DATA=../shared/external_data PYTHONPATH=src python benchmarks/gmrf_realdata.py
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score

from taskrel.data.tabular import load_landmine, load_school
from taskrel.decentral.graphs import random_graph
from taskrel.decentral.plots import graph_picture
from taskrel.decentral.realdata import RealConfig, predict, run_real

from common import RESULTS, write_result

ETAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def score(loss: str, scores: list[np.ndarray], ys: list[np.ndarray]) -> float:
    if loss == "squared":
        return float(np.mean([np.mean((s - y) ** 2) for s, y in zip(scores, ys, strict=True)]))
    return float(np.mean([roc_auc_score(y, s) for s, y in zip(scores, ys, strict=True) if 0 < y.mean() < 1]))


def pooled(loss: str, tasks) -> list[np.ndarray]:
    x = np.concatenate([t.train.x for t in tasks])
    y = np.concatenate([t.train.y for t in tasks])
    if loss == "squared":
        model = Ridge(alpha=1.0).fit(x, y)
        return [model.predict(t.test.x) for t in tasks], [model.predict(t.val.x) for t in tasks]
    model = LogisticRegression(max_iter=2000).fit(x, y)
    return [model.decision_function(t.test.x) for t in tasks], [model.decision_function(t.val.x) for t in tasks]


def run(name: str, seeds: int) -> dict:
    loader, loss = (load_school, "squared") if name == "school" else (load_landmine, "logistic")
    better = min if loss == "squared" else max
    per_seed, graphs = [], []
    for seed in range(seeds):
        start = time.perf_counter()
        data = loader(split_seed=seed)
        k = len(data.tasks)
        adjacency = random_graph(k, edges=4 * k, weights=1.0, seed=seed) if name == "school" else 1.0 - np.eye(k)
        train = [(t.train.x, t.train.y) for t in data.tasks]
        result = run_real(train, adjacency, loss, RealConfig(mu=0.01, iters=4000, seed=seed), etas=ETAS)
        val = {m: score(loss, predict(w, [t.val.x for t in data.tasks]), [t.val.y for t in data.tasks])
               for m, w in result.models.items()}  # fmt: skip
        test = {m: score(loss, predict(w, [t.test.x for t in data.tasks]), [t.test.y for t in data.tasks])
                for m, w in result.models.items()}  # fmt: skip
        best = better((m for m in val if m.startswith("learned@")), key=val.get)
        pooled_test, pooled_val = pooled(loss, data.tasks)
        row = {"seed": seed, "best_eta": float(best.split("@")[1]),
               "test": {"noncoop": test["noncoop"], "consensus": test["consensus"], "learned": test[best],
                        "pooled": score(loss, pooled_test, [t.test.y for t in data.tasks])},
               "val": {**val, "pooled": score(loss, pooled_val, [t.val.y for t in data.tasks])},
               "seconds": time.perf_counter() - start}  # fmt: skip
        per_seed.append(row)
        graphs.append(result.learned_laplacian)
        print(name, row["test"], "η*", row["best_eta"], flush=True)
    methods = ("noncoop", "consensus", "learned", "pooled")
    values = {m: [r["test"][m] for r in per_seed] for m in methods}
    summary = {m: {"mean": float(np.mean(v)), "se": float(np.std(v) / np.sqrt(seeds))} for m, v in values.items()}
    weights = np.clip(-(graphs[0] - np.diag(np.diag(graphs[0]))), 0, None)
    labels = [t.name for t in loader(split_seed=0).tasks]
    terrain = (np.arange(len(labels)) >= 15).astype(int) if name == "landmine" else None
    title = f"{name}: learned task graph (seed 0)" + (", colour = terrain type" if name == "landmine" else "")
    graph_picture(weights, RESULTS / f"gmrf_realdata_{name}_graph.png", labels=labels, title=title,
                  top=None if name == "landmine" else 200, groups=terrain)  # fmt: skip
    out = {"metric": "test MSE (standardised)" if loss == "squared" else "test AUC", "summary": summary,
           "per_seed": per_seed}  # fmt: skip
    if name == "landmine":  # fields 1-15 and 16-29 are two terrain types
        group = np.arange(len(labels)) < 15
        same = group[:, None] == group[None, :]
        off = ~np.eye(len(labels), dtype=bool)
        out["learned_weight_share_within_terrain"] = float(weights[same & off].sum() / weights[off].sum())
        out["pair_share_within_terrain"] = float((same & off).sum() / off.sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["landmine", "school"])
    args = parser.parse_args()
    results = {name: run(name, args.seeds) for name in args.datasets}
    write_result("gmrf_realdata", {"setup": {"mu": 0.01, "iters": 4000, "switch": 2000, "etas": list(ETAS),
                                             "estimator": "CGL-constrained ML on the graph support",
                                             "seeds": args.seeds}, **results})  # fmt: skip


if __name__ == "__main__":
    main()
