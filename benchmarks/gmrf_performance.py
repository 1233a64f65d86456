"""GMRF performance: simulator throughput, and the real engine's time per communication round.

1. Simulator: agent-iterations per second (one agent-iteration = one agent's update of all four
   algorithms), vectorised over R runs vs the per-agent Python loop (the code each process of the
   real engine runs), K = 10, M = 100, same process, same configuration.
2. Real engine (torch.distributed / gloo, one process per agent, all on this machine): seconds per
   communication round (one iteration: adapt, exchange ψ with neighbours, combine) for
   K ∈ {10, 16, 24, 32}, M = 100, random graph of average degree 3.2, next to a bare neighbour
   exchange of the same payload (3 × M float64 per neighbour) measured the same way (the floor).
   Mean over agents of their own loop timings; start-up (process launch + imports + rendezvous)
   is reported separately.

Run: PYTHONPATH=src python benchmarks/gmrf_performance.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from taskrel.decentral import GMRFConfig, simulate
from taskrel.decentral.distributed import launch

from common import RESULTS, write_result


def throughput(config: GMRFConfig, vectorised: bool) -> dict:
    start = time.perf_counter()
    simulate(config, vectorised=vectorised)
    seconds = time.perf_counter() - start
    work = config.runs * config.agents * config.iters
    return {"runs": config.runs, "iters": config.iters, "seconds": seconds, "agent_iterations_per_s": work / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 16, 24, 32])
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    base = GMRFConfig(agents=10, dim=100, mu=0.005, iters=1000, switch=500, seed=0)
    sim = {
        "vectorised_R50": throughput(base.replace(runs=50), True),
        "vectorised_R1": throughput(base.replace(runs=1), True),
        "per_agent_loop_R1": throughput(base.replace(runs=1), False),
    }
    print(json.dumps(sim, indent=1), flush=True)
    engine = []
    for k in args.agents:
        config = GMRFConfig(agents=k, dim=100, mu=0.005, iters=args.rounds, switch=args.rounds // 2, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            launch(config, tmp, timeout=120, startup=600, bare_rounds=args.rounds)
            wall = time.perf_counter() - start
            loops = [float(np.load(Path(tmp) / f"agent_{r}.npz")["loop_seconds"]) for r in range(k)]
            bare = [json.loads((Path(tmp) / f"bare_{r}.json").read_text())["seconds_per_round"] for r in range(k)]
            degree = [len(np.load(Path(tmp) / f"agent_{r}.npz")["neighbourhood"]) - 1 for r in range(k)]
        per_round = float(np.mean(loops)) / args.rounds
        row = {"agents": k, "dim": 100, "rounds": args.rounds, "seconds_per_round": per_round,
               "bare_exchange_seconds_per_round": float(np.mean(bare)), "max_degree": int(max(degree)),
               "mean_degree": float(np.mean(degree)),
               "wall_seconds_incl_startup": wall,
               "startup_and_bare_seconds": wall - float(np.mean(loops))}  # fmt: skip
        engine.append(row)
        print(row, flush=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(sim)
    axes[0].bar(names, [sim[n]["agent_iterations_per_s"] for n in names], color=["C2", "C0", "C3"])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("agent-iterations / s")
    axes[0].set_title("simulator, K = 10, M = 100 (4 algorithms)")
    ks = [r["agents"] for r in engine]
    rounds = [1e3 * r["seconds_per_round"] for r in engine]
    axes[1].plot(ks, rounds, "o-", label="diffusion round (adapt + exchange + combine)")
    bare = [1e3 * r["bare_exchange_seconds_per_round"] for r in engine]
    axes[1].plot(ks, bare, "s--", label="bare neighbour exchange")
    axes[1].set_xlabel("agents K (processes on one machine)")
    axes[1].set_ylabel("ms per round")
    axes[1].set_title("torch.distributed / gloo, M = 100")
    axes[1].legend(frameon=False)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "gmrf_performance.png", dpi=130)
    write_result("gmrf_performance", {"simulator": sim, "engine": engine,
                                      "note": "all agent processes share this machine's CPU cores"})  # fmt: skip


if __name__ == "__main__":
    main()
