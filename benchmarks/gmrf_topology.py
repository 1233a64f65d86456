"""GMRF benchmark 2: Laplacian error for regular vs Erdős–Rényi vs hub graphs at equal average degree.

K = 20 agents, average degree 4 (40 edges in each graph), unit weights, V = I; non-cooperative
LMS with μ = 0.05 and normalised regressors (σ_u² = 1/M), σ_v = 0.3, 4·M/μ Phase-I iterations.
Also reports the topology sensitivity index TSI(L) = Σ_k ‖L_{N_k,N_k}‖₂⁴ (large for hubs), the
quantity the error bound of the decentralised estimator scales with.

Run: PYTHONPATH=src python benchmarks/gmrf_topology.py [--runs 20]
"""

from __future__ import annotations

import argparse
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from taskrel.decentral import GMRFConfig, block_trace_covariance, laplacian_ml, neighbourhood_estimate, spectral_error
from taskrel.decentral.graphs import neighbourhood
from taskrel.decentral.simulator import phase_one_models

from common import RESULTS, write_result

TOPOLOGIES = ("regular", "erdos_renyi", "hub")
DIMS = (40, 80, 160, 320)


def tsi(lap: np.ndarray, adjacency: np.ndarray) -> float:
    """Topology sensitivity index Σ_k ‖L_{N_k,N_k}‖₂⁴."""
    return float(sum(np.linalg.norm(lap[np.ix_(idx, idx)], 2) ** 4
                     for idx in (neighbourhood(adjacency, k) for k in range(lap.shape[0]))))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    mu, rows, graphs_info = 0.05, [], {}
    for topology in TOPOLOGIES:
        for m in DIMS:
            config = GMRFConfig(agents=20, dim=m, mu=mu, runs=args.runs, seed=0, topology=topology, average_degree=4.0,
                                weights=(1.0,), sigma_u=1 / math.sqrt(m), sigma_v=0.3, iters=2, switch=1)  # fmt: skip
            start = time.perf_counter()
            models, worlds = phase_one_models(config, iters=math.ceil(4 * m / mu))
            local, glob = [], []
            for w, world in zip(models, worlds, strict=True):
                local.append(spectral_error(neighbourhood_estimate(w, world.adjacency), world.laplacian))
                fit = laplacian_ml(block_trace_covariance(w), "ggl", support=world.adjacency)
                glob.append(spectral_error(fit.laplacian, world.laplacian))
            a = worlds[0].adjacency
            graphs_info[topology] = {"edges": int((a > 0).sum() // 2), "max_degree": int((a > 0).sum(1).max()),
                                     "tsi": tsi(worlds[0].laplacian, a),
                                     "laplacian_norm": float(np.linalg.norm(worlds[0].laplacian, 2))}  # fmt: skip
            rows.append({"topology": topology, "M": m, "neighbourhood": float(np.mean(local)),
                         "neighbourhood_se": float(np.std(local) / np.sqrt(len(local))),
                         "global_ml": float(np.mean(glob)), "global_ml_se": float(np.std(glob) / np.sqrt(len(glob))),
                         "seconds": time.perf_counter() - start})  # fmt: skip
            print(rows[-1], flush=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "neighbourhood", "neighbourhood (decentralised)"),
                           (axes[1], "global_ml", "global ML (GGL)")):  # fmt: skip
        for c, topology in enumerate(TOPOLOGIES):
            sel = [r for r in rows if r["topology"] == topology]
            info = graphs_info[topology]
            ax.errorbar([r["M"] for r in sel], [r[key] for r in sel], yerr=[r[key + "_se"] for r in sel], fmt="o-",
                        color=f"C{c}", capsize=3,
                        label=f"{topology} (max deg {info['max_degree']}, TSI {info['tsi']:.3g})")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("model dimension M")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("‖L̂ − L‖₂²")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"K = 20, average degree 4, unit weights, V = I, μ = {mu}, {args.runs} runs")
    fig.tight_layout()
    fig.savefig(RESULTS / "gmrf_topology.png", dpi=130)
    write_result("gmrf_topology", {"setup": {"agents": 20, "average_degree": 4, "mu": mu, "sigma_u2": "1/M",
                                             "sigma_v": 0.3, "runs": args.runs, "phase_one_iters": "4·M/μ"},
                                   "graphs": graphs_info, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
