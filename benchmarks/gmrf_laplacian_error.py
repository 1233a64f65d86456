"""GMRF benchmark 1: Laplacian estimation error ‖L̂ - L‖₂² against model dimension M.

K = 10 agents on a connected random graph (max degree 8), weights from {1, 5}, V = I; true models
W° ~ N(0, L⁻¹ ⊗ I_M); non-cooperative LMS with μ ∈ {0.2, 0.1, 0.05, 0.01}. Regressors are
normalised (σ_u² = 1/M, so E‖u‖² = 1 and μ is an NLMS-type step: stable for every M), noise
σ_v² = 0.09, Phase I long enough to reach steady state (``--settle`` · M/μ iterations, default 8;
with 4, the μ = 0.01 cells were still measurably above their steady state). L̂ from the final
iterates: neighbourhood estimator (decentralised) and global GGL-constrained ML on the known
support; reference: the global ML from the TRUE models (no SGD noise: the concentration floor).

Run: PYTHONPATH=src python benchmarks/gmrf_laplacian_error.py [--runs 10]
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
from taskrel.decentral.simulator import phase_one_models

from common import RESULTS, write_result

MUS = (0.2, 0.1, 0.05, 0.01)
DIMS = (20, 40, 80, 160, 320)
MAX_ITERS = 130_000  # cells needing more Phase-I iterations than this are skipped (and listed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sigma-v", type=float, default=0.3)
    parser.add_argument("--settle", type=float, default=8.0, help="Phase-I iterations in units of M/μ")
    args = parser.parse_args()
    rows, skipped = [], []
    for m in DIMS:
        base = GMRFConfig(agents=10, dim=m, runs=args.runs, seed=0, sigma_u=1 / math.sqrt(m), sigma_v=args.sigma_v,
                          weights=(1.0, 5.0), self_loops=1.0, average_degree=3.2, iters=2, switch=1)  # fmt: skip
        for mu in MUS:
            iters = math.ceil(args.settle * m / mu)
            if iters > MAX_ITERS:
                skipped.append({"M": m, "mu": mu, "iters": iters})
                continue
            start = time.perf_counter()
            models, worlds = phase_one_models(base.replace(mu=mu), iters=iters)
            local, glob, oracle = [], [], []
            for w, world in zip(models, worlds, strict=True):
                local.append(spectral_error(neighbourhood_estimate(w, world.adjacency), world.laplacian))
                fit = laplacian_ml(block_trace_covariance(w), "ggl", support=world.adjacency)
                glob.append(spectral_error(fit.laplacian, world.laplacian))
                if mu == MUS[0]:
                    ref = laplacian_ml(block_trace_covariance(world.models), "ggl", support=world.adjacency)
                    oracle.append(spectral_error(ref.laplacian, world.laplacian))
            row = {"M": m, "mu": mu, "iters": iters, "neighbourhood": float(np.mean(local)),
                   "neighbourhood_se": float(np.std(local) / np.sqrt(len(local))), "global_ml": float(np.mean(glob)),
                   "global_ml_se": float(np.std(glob) / np.sqrt(len(glob))),
                   "seconds": time.perf_counter() - start}  # fmt: skip
            if oracle:
                row["global_ml_true_models"] = float(np.mean(oracle))
            rows.append(row)
            print(row, flush=True)
    lam = float(np.linalg.eigvalsh(worlds[0].laplacian).max())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = (("neighbourhood", "neighbourhood (decentralised)"), ("global_ml", "global ML (GGL)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for c, mu in enumerate(MUS):
            sel = [r for r in rows if r["mu"] == mu]
            ax.loglog([r["M"] for r in sel], [r[key] for r in sel], "o-", color=f"C{c}", label=f"μ = {mu}")
        ref = [r for r in rows if "global_ml_true_models" in r]
        ax.loglog([r["M"] for r in ref], [r["global_ml_true_models"] for r in ref], "k--", label="ML from true w°")
        ms = np.array(DIMS, float)
        ax.loglog(ms, ref[0]["global_ml_true_models"] * ms[0] / ms, ":", color="grey", label="∝ 1/M")
        ax.set_xlabel("model dimension M")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("‖L̂ − L‖₂²")
    axes[1].legend(frameon=False, fontsize=8)
    fig.suptitle(f"K = 10, weights {{1, 5}}, V = I, ‖L‖₂ = {lam:.1f}, σ_v² = {args.sigma_v**2:g}, {args.runs} runs")
    fig.tight_layout()
    fig.savefig(RESULTS / "gmrf_laplacian_error.png", dpi=130)
    write_result("gmrf_laplacian_error", {
        "setup": {"agents": 10, "weights": [1, 5], "self_loops": 1.0, "sigma_u2": "1/M", "sigma_v": args.sigma_v,
                  "phase_one_iters": f"{args.settle:g}·M/μ", "runs": args.runs,
                  "graph_edges": int((worlds[0].adjacency > 0).sum() // 2),
                  "laplacian_norm": lam, "support": "known (communication graph)"},
        "rows": rows, "skipped": skipped,
    })  # fmt: skip


if __name__ == "__main__":
    main()
