"""GMRF benchmark 3: network MSD (dB) over iterations, two-phase and multi-phase, and where cooperation pays.

K = 10 agents, random graph (weights {1, 5}, V = I), M = 50, σ_u = 1, μ = μ' = 0.01, Phase I for
half of the iterations. MSD is against the TRUE models W°, mean over Monte-Carlo runs; steady state
= mean over the last 10 % of iterations.

* regime A (gradient noise dominates: σ_v = 4, η = 0.1 ≈ μσ_v²/σ_u²/1.6): two-phase, and
  multi-phase with T_upd ∈ {1000, 500, 250} (a run whose re-estimated L̂ fails the stability
  check is reported as stopped, with the check's message);
* regime B (bias dominates: σ_v = 0.5, η = 1): the Laplacian prior shrinks too hard and
  cooperation hurts even with the true L;
* a (σ_v, η) grid of steady-state gains of learned-L̂ and true-L diffusion over non-cooperative LMS.

Run: PYTHONPATH=src python benchmarks/gmrf_msd.py [--runs 40]
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from taskrel.decentral import ALGORITHMS, GMRFConfig, simulate
from taskrel.decentral.plots import LABELS, STYLES
from taskrel.errors import ConfigError

from common import RESULTS, write_result

SIGMA_V = (0.5, 1.0, 2.0, 4.0, 8.0)
ETA = (0.03, 0.1, 0.3, 1.0)


def smooth(y: np.ndarray, n: int = 50) -> np.ndarray:
    """Moving average over n iterations, padded at the ends with the first / last raw values."""
    inner = np.convolve(y, np.ones(n) / n, mode="valid")
    return np.concatenate([y[: (n - 1) // 2], inner, y[len(y) - n // 2:]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--iters", type=int, default=6000)
    args = parser.parse_args()
    base = GMRFConfig(agents=10, dim=50, mu=0.01, sigma_u=1.0, iters=args.iters, runs=args.runs, seed=0)
    curves, summary = {}, {}
    regimes = {
        "A_two_phase": base.replace(sigma_v=4.0, eta=0.1),
        "A_multi_phase_T1000": base.replace(sigma_v=4.0, eta=0.1, update_every=1000),
        "A_multi_phase_T500": base.replace(sigma_v=4.0, eta=0.1, update_every=500),
        "A_multi_phase_T250": base.replace(sigma_v=4.0, eta=0.1, update_every=250),
        "B_two_phase": base.replace(sigma_v=0.5, eta=1.0),
    }
    for name, config in regimes.items():
        start = time.perf_counter()
        try:
            result = simulate(config)
        except ConfigError as exc:  # re-estimating from already-smoothed iterates can run away: reported
            summary[name] = {"config": config.to_dict(), "stopped": str(exc)}
            print(name, "stopped:", exc, flush=True)
            continue
        curves[name] = result.msd_db()
        summary[name] = {"config": config.to_dict(), "steady_state_db": result.steady_state_db(),
                         "laplacian_error": float(result.laplacian_error.mean()),
                         "seconds": time.perf_counter() - start}  # fmt: skip
        print(name, summary[name]["steady_state_db"], flush=True)
    grid = []
    for sv in SIGMA_V:
        for eta in ETA:
            r = simulate(base.replace(sigma_v=sv, eta=eta, runs=max(4, args.runs // 4), iters=4000))
            ss = r.steady_state_db()
            gains = {"gain_learned_db": ss["noncoop"] - ss["learned"], "gain_true_db": ss["noncoop"] - ss["true"]}
            grid.append({"sigma_v": sv, "eta": eta, **{f"msd_db_{k}": v for k, v in ss.items()}, **gains})
            print(grid[-1], flush=True)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    x = np.arange(1, args.iters + 1)
    ax = axes[0]
    a_curves = curves["A_two_phase"]
    for a, name in enumerate(ALGORITHMS):
        colour, style = STYLES[name]
        ax.plot(x, smooth(a_curves[a]), color=colour, ls=style, lw=1.3, label=LABELS[name] + " (two-phase)")
    for key, colour in (("A_multi_phase_T1000", "C4"), ("A_multi_phase_T500", "C1"), ("A_multi_phase_T250", "C8")):
        if key not in curves:
            continue
        ax.plot(x, smooth(curves[key][ALGORITHMS.index("learned")]), color=colour, lw=1.1,
                label=f"learned L̂, multi-phase T_upd={regimes[key].update_every}")  # fmt: skip
    ax.set_title("A: gradient noise dominates (σ_v = 4, η = 0.1)")
    ax.set_ylim(top=max(12.0, float(a_curves.max()) + 1) if "A_multi_phase_T500" not in curves else 16.0)
    ax = axes[1]
    for a, name in enumerate(ALGORITHMS):
        colour, style = STYLES[name]
        ax.plot(x, smooth(curves["B_two_phase"][a]), color=colour, ls=style, lw=1.3, label=LABELS[name])
    ax.set_title("B: prior bias dominates (σ_v = 0.5, η = 1)")
    for ax in axes[:2]:
        ax.axvline(base.schedule.switch, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("iteration i")
        ax.set_ylabel("network MSD (dB)")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7)
    gain = np.array([[g["gain_learned_db"] for g in grid if g["sigma_v"] == sv] for sv in SIGMA_V])
    bound = np.abs(gain).max()
    im = axes[2].imshow(gain, cmap="RdBu", vmin=-bound, vmax=bound, origin="lower")
    for i in range(len(SIGMA_V)):
        for j in range(len(ETA)):
            axes[2].text(j, i, f"{gain[i, j]:+.1f}", ha="center", va="center", fontsize=8)
    axes[2].set_xticks(range(len(ETA)), [str(e) for e in ETA])
    axes[2].set_yticks(range(len(SIGMA_V)), [str(s) for s in SIGMA_V])
    axes[2].set_xlabel("η")
    axes[2].set_ylabel("σ_v")
    axes[2].set_title("gain of learned-L̂ diffusion over non-coop (dB)")
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    fig.tight_layout()
    fig.savefig(RESULTS / "gmrf_msd.png", dpi=130)
    write_result("gmrf_msd", {"regimes": summary, "grid": grid, "grid_runs": max(4, args.runs // 4),
                              "grid_iters": 4000})  # fmt: skip


if __name__ == "__main__":
    main()
