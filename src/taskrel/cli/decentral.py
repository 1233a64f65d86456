"""Command `gmrf`: decentralised multi-task learning over a learned task graph.

Synthetic agents (LMS streams from a simulated GMRF world): ``taskrel gmrf simulate`` runs the
vectorised simulator (many Monte-Carlo runs); ``taskrel gmrf run --engine dist`` runs one run with
one real process per agent. Both print the same JSON with ``--json``: ``{"laplacian_error",
"laplacian_error_global", "msd_db": {"noncoop", "consensus", "learned", "true"}}`` (spectral norm
squared of L̂ - L; MSD in dB over the last 10 % of iterations).

Real data: ``taskrel gmrf run --dataset school|landmine|parkinsons [--tasks a,b,…]`` (agent k =
task k) or ``--data DIR`` (one ``.npz`` / ``.csv`` file per agent), ``--engine dist`` (one process
per agent, each loading only its own data) or ``sim`` (in-process); the same JSON for both:
``{"algorithms": {"noncoop" | "consensus" | "learned": {"test_mse" | "test_auc": mean over agents}},
"laplacian": rows of the learned L̂}``. ``--out DIR`` saves ``learned_laplacian.csv`` and
``learned_graph.png``; ``--spec FILE`` writes the run's spec for torchrun instead of running.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from taskrel.choices import GMRF_ENGINES
from taskrel.cli.common import emit_json
from taskrel.decentral.graphs import TOPOLOGIES
from taskrel.decentral.world import GMRFConfig


def _add_common(p: argparse.ArgumentParser) -> None:
    d = GMRFConfig()
    p.add_argument("--agents", "-K", type=int, default=d.agents, help="number of agents K (≥ 2)")
    p.add_argument("--dim", "-M", type=int, default=d.dim, help="model dimension M (≥ 1)")
    p.add_argument("--mu", type=float, default=d.mu, help="(Phase-I / non-cooperative) step size μ (> 0)")
    p.add_argument("--mu-coop", type=float, default=None, help="cooperative step size μ' (default μ)")
    p.add_argument("--eta", type=float, default=None, help=f"Laplacian coupling η (> 0; default {d.eta}, real data 1)")
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
        agents=args.agents, dim=args.dim, mu=args.mu, mu_coop=args.mu_coop,
        eta=GMRFConfig.eta if args.eta is None else args.eta, iters=args.iters,
        switch=args.switch, update_every=args.update_every, runs=runs, seed=args.seed, topology=args.topology,
        average_degree=args.degree, graph=args.graph, self_loops=args.self_loops, sigma_u=args.sigma_u,
        sigma_v=args.sigma_v, shrinkage=args.shrinkage, project_sign=args.project_sign,
    )  # fmt: skip


def _report(result, args: argparse.Namespace) -> int:
    summary = result.summary()
    if args.plot:
        from taskrel.decentral.plots import msd_curves  # start-up: matplotlib

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
    config = config_from_args(args, runs=args.runs)  # validated (step-size bounds) before the engines load
    from taskrel.decentral.engines import run_synthetic  # start-up: SciPy, torch

    return _report(run_synthetic(config, "sim", progress=not (args.quiet or args.json)), args)


def _run_real(args: argparse.Namespace) -> int:
    # start-up: SciPy, torch
    from taskrel.decentral.distributed import run_spec
    from taskrel.decentral.engines import communication_graph, open_source, run_real
    from taskrel.decentral.realdata import RealConfig

    config = RealConfig(
        mu=args.mu, eta=1.0 if args.eta is None else args.eta, iters=args.iters, switch=args.switch,
        estimator="neighbourhood", normalise="gershgorin", shrinkage=args.shrinkage, seed=args.seed,
    )  # fmt: skip
    tasks = None if args.tasks is None else [t.strip() for t in args.tasks.split(",") if t.strip()]
    source = open_source(args.dataset, args.data, tasks, args.loss, split_seed=args.split_seed)
    adjacency = communication_graph(len(source.names), args.graph, args.topology, args.degree, args.seed)
    if args.spec is not None:
        Path(args.spec).write_text(json.dumps(run_spec(source, adjacency, config)))
        return 0
    summary = run_real(source, adjacency, config, args.engine, args.out, timeout=args.timeout)
    if args.out:
        from taskrel.decentral.plots import save_learned_graph  # start-up: matplotlib

        save_learned_graph(summary["laplacian"], source.names, args.out, title=_title(args, source))
    if args.json:
        emit_json(summary)
    else:
        for name, scores in summary["algorithms"].items():
            ((metric, value),) = scores.items()
            print(f"{name:>10s} {metric} {value:.4f}")
    return 0


def _title(args: argparse.Namespace, source) -> str:
    what = args.dataset if args.dataset is not None else args.data
    return f"learned task graph: {what}, {len(source.names)} agents"


def _run(args: argparse.Namespace) -> int:
    if args.dataset is not None or args.data is not None:
        return _run_real(args)
    config = config_from_args(args)
    from taskrel.decentral.engines import run_synthetic  # start-up: SciPy, torch

    return _report(run_synthetic(config, args.engine, args.out, timeout=args.timeout), args)


def register(subparsers) -> None:
    parser = subparsers.add_parser("gmrf", help="decentralised MTL over a learned task graph (GMRF)")
    sub = parser.add_subparsers(dest="gmrf_command", metavar="ACTION", required=True)
    sim = sub.add_parser("simulate", help="vectorised Monte-Carlo simulation of all algorithms")
    _add_common(sim)
    sim.add_argument("--runs", type=int, default=1, help="Monte-Carlo runs R")
    sim.set_defaults(func=_simulate)
    run = sub.add_parser("run", help="one run with real processes (one per agent, torch.distributed/gloo)")
    _add_common(run)
    run.add_argument("--engine", choices=GMRF_ENGINES, default="dist")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds before a silent neighbour is an error")
    run.add_argument("--out", default=None, help="keep the agents' files (real data: and the learned graph) here")
    data = run.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=("school", "landmine", "parkinsons"), default=None,
                      help="real data: agent k = task k of this built-in dataset")  # fmt: skip
    data.add_argument("--data", default=None, help="real data: a directory with one .npz / .csv file per agent")
    run.add_argument("--tasks", default=None, help="comma-separated tasks of --dataset, one agent each (default all)")
    run.add_argument("--loss", choices=("squared", "logistic"), default=None,
                     help="loss of --data (default squared; a --dataset's loss follows its kind)")  # fmt: skip
    run.add_argument("--split-seed", type=int, default=0, help="seed of the train / test split of the agents' rows")
    run.add_argument("--spec", default=None, help="real data: write the run's spec (JSON) for torchrun and exit")
    run.set_defaults(func=_run)
