"""GMRF performance: per-round cost at K = 10, 100, 1000 agents, measured and extrapolated.

One round = one iteration of every agent: adapt (one SGD step), exchange ψ with the neighbours,
combine, for all four algorithms. Synthetic agents, M = 100, random graph of average degree 3.2,
μ = 0.005, η = 10⁻³ (small, so the L̂ learned after the few timed rounds is stable at any K).

1. Simulator (one process), K ∈ {10, 100, 1000}: seconds per round, vectorised (the combination
   is a dense (K, K) product: O(A K² M) per round) and per-agent (K `Agent` objects stepped one at
   a time: O(A K d̄ M) plus Python overhead per agent). Differential timing,
   ``(T(N₂) − T(N₁)) / (N₂ − N₁)``, cancels set-up and the one graph estimate both runs make.
2. Process engine (torch.distributed / gloo, one process per agent, all on this machine): seconds
   per round for K up to what the cores allow (default 10, 20, 32), next to a bare neighbour
   exchange of the same payload (3 × M float64 per neighbour); mean over agents of their own loop
   timings; start-up reported separately.
3. Extrapolation to K = 100 and 1000 with the formula stated in the JSON: the K processes take
   turns on the C₀ cores of this machine, so ``t(K) ≈ a + b·K``, fitted by least squares to the
   measured K (a: the per-round latency, b: one agent's compute + exchange per round over C₀). On
   C cores the K-proportional part shares out: ``t(K, C) ≈ a + b·K·C₀/C``; with one core per agent
   (C = K, many machines) ``t ≈ a + b·C₀``, whatever K. ``--refit`` recomputes this part of the
   committed JSON from its measured rows.

BLAS runs on one thread, as in every agent process (``OMP_NUM_THREADS=1``): on a shared 2-core
machine a multi-threaded BLAS made the (100, 100) products of the simulator 25× slower.

Run: PYTHONPATH=src python benchmarks/gmrf_performance.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from taskrel.decentral import GMRFConfig, simulate
from taskrel.decentral.distributed import launch

from common import RESULTS, write_result

DIM = 100
EXTRAPOLATE = (100, 1000)


def config(k: int, iters: int) -> GMRFConfig:
    """η is small so that the L̂ learned from the few timed rounds is stable at any K (η does not change the cost)."""
    return GMRFConfig(agents=k, dim=DIM, mu=0.005, eta=1e-3, iters=iters, switch=iters // 2, seed=0)


def seconds_per_round(k: int, rounds: tuple[int, int], vectorised: bool) -> float:
    times = []
    for n in rounds:
        start = time.perf_counter()
        simulate(config(k, n), vectorised=vectorised, reference=False)
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / (rounds[1] - rounds[0])


def engine_row(k: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        launch(config(k, rounds), tmp, timeout=300, startup=900, bare_rounds=rounds)
        wall = time.perf_counter() - start
        files = [np.load(Path(tmp) / f"agent_{r}.npz") for r in range(k)]
        loops = [float(f["loop_seconds"]) for f in files]
        degree = [len(f["neighbourhood"]) - 1 for f in files]
        bare = [json.loads((Path(tmp) / f"bare_{r}.json").read_text())["seconds_per_round"] for r in range(k)]
    return {"agents": k, "dim": DIM, "rounds": rounds, "seconds_per_round": float(np.mean(loops)) / rounds,
            "bare_exchange_seconds_per_round": float(np.mean(bare)), "max_degree": int(max(degree)),
            "mean_degree": float(np.mean(degree)), "wall_seconds_incl_startup": wall,
            "startup_and_bare_seconds": wall - float(np.mean(loops))}  # fmt: skip


def extrapolate(engine: list[dict], cores: int) -> dict:
    """Fit ``t(K) = a + b·K`` to the process engine's rounds; predict K = 100, 1000 (see module doc)."""
    ks = np.array([r["agents"] for r in engine], float)
    b, a = (float(c) for c in np.polyfit(ks, [r["seconds_per_round"] for r in engine], 1))
    predicted = {
        str(k): {"shared_cores_seconds_per_round": a + b * k, "one_core_per_agent_seconds_per_round": a + b * cores}
        for k in EXTRAPOLATE
    }
    return {"formula": "t(K, C) = a + b*K*C0/C seconds per round on C cores (C0 = cores measured on); "
                       "C = C0: a + b*K; one core per agent (C = K): a + b*C0",
            "a_seconds": a, "b_seconds_per_agent": b, "cores": cores, "fitted_on_agents": ks.tolist(),
            "predicted": predicted}  # fmt: skip


def refit() -> None:
    """Recompute the extrapolation of the committed results from their measured rows."""
    path = RESULTS / "gmrf_performance.json"
    document = json.loads(path.read_text())
    document["extrapolation"] = extrapolate(document["engine"], document["machine"]["cpus"])
    document["refit_command"] = "python benchmarks/gmrf_performance.py --refit"
    path.write_text(json.dumps(document, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim-agents", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 20, 32], help="process engine K")
    parser.add_argument("--rounds", type=int, default=400, help="process engine rounds")
    parser.add_argument("--refit", action="store_true", help="only recompute the extrapolation of the saved results")
    args = parser.parse_args()
    if args.refit:
        refit()
        return
    simulator = []
    for k in args.sim_agents:
        short = 2000 // k + 20  # enough rounds to time, few enough for K = 1000
        row = {"agents": k, "dim": DIM,
               "vectorised_seconds_per_round": seconds_per_round(k, (short, 3 * short), True),
               "per_agent_seconds_per_round": seconds_per_round(k, (short // 2, short), False)}  # fmt: skip
        simulator.append(row)
        print(row, flush=True)
    engine = []
    for k in args.agents:
        engine.append(engine_row(k, args.rounds))
        print(engine[-1], flush=True)
    cores = os.cpu_count() or 1
    extrapolation = extrapolate(engine, cores)
    print(extrapolation, flush=True)
    a, b = extrapolation["a_seconds"], extrapolation["b_seconds_per_agent"]
    ks = np.array([r["agents"] for r in engine], float)
    t = np.array([r["seconds_per_round"] for r in engine])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sk = [r["agents"] for r in simulator]
    axes[0].loglog(sk, [1e3 * r["vectorised_seconds_per_round"] for r in simulator], "o-", label="vectorised")
    axes[0].loglog(sk, [1e3 * r["per_agent_seconds_per_round"] for r in simulator], "s-", label="per-agent loop")
    axes[0].set_xlabel("agents K")
    axes[0].set_ylabel("ms per round")
    axes[0].set_title(f"simulator (one process), M = {DIM}, 4 algorithms")
    axes[0].legend(frameon=False)
    axes[0].grid(alpha=0.3, which="both")
    axes[1].plot(ks, 1e3 * t, "o", label="measured round (adapt + exchange + combine)")
    axes[1].plot(ks, [1e3 * r["bare_exchange_seconds_per_round"] for r in engine], "s", label="bare neighbour exchange")
    grid = np.array([ks.min(), *EXTRAPOLATE])
    axes[1].plot(grid, 1e3 * (a + b * grid), "k--", lw=0.8, label=f"fit a + bK on {cores} cores")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("agents K (processes on one machine)")
    axes[1].set_ylabel("ms per round")
    axes[1].set_title(f"torch.distributed / gloo, M = {DIM}")
    axes[1].legend(frameon=False, fontsize=8)
    axes[1].grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(RESULTS / "gmrf_performance.png", dpi=130)
    write_result("gmrf_performance", {"simulator": simulator, "engine": engine, "extrapolation": extrapolation,
                                      "note": "all agent processes share this machine's CPU cores"})  # fmt: skip


if __name__ == "__main__":
    with threadpool_limits(limits=1):  # one BLAS thread, as in every agent process
        main()
