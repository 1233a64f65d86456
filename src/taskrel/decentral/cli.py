"""Sub-command `gmrf`: decentralised multi-task learning over a learned task graph.

``taskrel gmrf simulate`` runs the vectorised simulator (many Monte-Carlo runs);
``taskrel gmrf run --engine dist`` runs one run with one real process per agent. Both print the
same JSON with ``--json``: ``{"laplacian_error", "laplacian_error_global", "msd_db": {"noncoop",
"consensus", "learned", "true"}}`` (spectral norm squared of L̂ - L; MSD in dB over the last 10 %
of iterations).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from taskrel.decentral.graphs import TOPOLOGIES
from taskrel.decentral.problem import GMRFConfig
from taskrel.errors import TaskrelError


def _add_common(p: argparse.ArgumentParser) -> None:
    d = GMRFConfig()
    p.add_argument("--agents", "-K", type=int, default=d.agents, help="number of agents K (≥ 2)")
    p.add_argument("--dim", "-M", type=int, default=d.dim, help="model dimension M (≥ 1)")
    p.add_argument("--mu", type=float, default=d.mu, help="Phase-I / non-cooperative step size μ (> 0)")
    p.add_argument("--mu-coop", type=float, default=None, help="cooperative step size μ' (default μ)")
    p.add_argument("--eta", type=float, default=d.eta, help="Laplacian coupling η (> 0)")
    p.add_argument("--iters", type=int, default=d.iters, help="iterations N")
    p.add_argument("--switch", type=int, default=None, help="last non-cooperative iteration (default N/2)")
    p.add_argument("--update-every", type=int, default=None, help="re-estimate L̂ every T_upd iterations")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--topology", choices=TOPOLOGIES, default=d.topology)
    p.add_argument("--degree", type=float, default=d.average_degree, help="average degree of the graph")
    p.add_argument("--graph", default=None, help="CSV file with the (K, K) weight matrix instead of --topology")
    p.add_argument("--self-loops", type=float, default=d.self_loops, help="V = v·I (0: combinatorial Laplacian)")
    p.add_argument("--sigma-u", type=float, default=d.sigma_u, help="regressor standard deviation σ_u")
    p.add_argument("--sigma-v", type=float, default=d.sigma_v, help="noise standard deviation σ_v")
    p.add_argument("--shrinkage", type=float, default=0.0, help="shrink local covariances toward the diagonal")
    p.add_argument("--project-sign", action="store_true", help="clip positive off-diagonal L̂ entries to 0")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.add_argument("--plot", default=None, help="write the MSD curves (dB) to this PNG")
    p.add_argument("--quiet", action="store_true")


def config_from_args(args: argparse.Namespace, runs: int = 1) -> GMRFConfig:
    return GMRFConfig(
        agents=args.agents, dim=args.dim, mu=args.mu, mu_coop=args.mu_coop, eta=args.eta, iters=args.iters,
        switch=args.switch, update_every=args.update_every, runs=runs, seed=args.seed, topology=args.topology,
        average_degree=args.degree, graph=args.graph, self_loops=args.self_loops, sigma_u=args.sigma_u,
        sigma_v=args.sigma_v, shrinkage=args.shrinkage, project_sign=args.project_sign,
    )  # fmt: skip


def _report(result, args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    summary = result.summary()
    if args.plot:
        from taskrel.decentral.plots import msd_curves

        msd_curves(result, args.plot)
    if args.json:
        emit_json(summary)
    else:
        err, err_global = summary["laplacian_error"], summary["laplacian_error_global"]
        print(f"‖L̂ − L‖² neighbourhood {err:.4g}   global ML {err_global:.4g}")
        for name, value in summary["msd_db"].items():
            print(f"MSD {name:>10s} {value:8.2f} dB")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    config = config_from_args(args, runs=args.runs)  # validated (step-size bounds) before the engine loads
    from taskrel.decentral.simulator import simulate

    return _report(simulate(config, progress=not (args.quiet or args.json)), args)


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.engine == "sim":
        from taskrel.decentral.simulator import simulate

        return _report(simulate(config), args)
    from taskrel.decentral.distributed import launch

    return _report(launch(config, args.out, timeout=args.timeout), args)


def register(subparsers) -> None:
    parser = subparsers.add_parser("gmrf", help="decentralised MTL over a learned task graph (GMRF)")
    sub = parser.add_subparsers(dest="gmrf_command", metavar="ACTION", required=True)
    sim = sub.add_parser("simulate", help="vectorised Monte-Carlo simulation of all algorithms")
    _add_common(sim)
    sim.add_argument("--runs", type=int, default=1, help="Monte-Carlo runs R")
    sim.set_defaults(func=_simulate)
    run = sub.add_parser("run", help="one run with real processes (one per agent, torch.distributed/gloo)")
    _add_common(run)
    run.add_argument("--engine", choices=("dist", "sim"), default="dist")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds before a silent neighbour is an error")
    run.add_argument("--out", default=None, help="keep the agents' files in this directory")
    run.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``taskrel gmrf ...`` on its own parser: the same commands and errors as `taskrel.cli.main`,
    without importing the other capabilities (torch, scikit-learn), so bad arguments fail at once."""
    parser = argparse.ArgumentParser(prog="taskrel")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TaskrelError as exc:
        print(f"taskrel {args.command}: error: {exc}", file=sys.stderr)
        return 2
