"""Real multi-process engine on ``torch.distributed`` (gloo): one process per agent.

Each process builds only its own agent (`taskrel.decentral.agent.Agent`): its data stream, its
models and its rows of the combination matrices, and talks only to its graph neighbours with
point-to-point ``isend``/``irecv`` pairs (per iteration: the adapted models ψ of the cooperative
algorithms; at each graph estimate: the current model, then one scalar per edge). The simulated
world (graph, true models) is rebuilt in every process from the seed; an agent uses its own true
model only to generate its data and to measure its own error.

Launch
------
* by us: `launch(config)` (and ``taskrel gmrf run --engine dist``) starts K local processes on
  127.0.0.1 with a free port and watches them;
* by torchrun, on one or several machines::

      torchrun --nproc_per_node=K [--nnodes ... --rdzv_endpoint host:port] \\
          -m taskrel.decentral.distributed --config config.json --out DIR

  (reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Every agent writes ``DIR/agent_<k>.npz``;
  rank 0 prints the run's JSON summary when DIR is shared (one machine or a shared file system).

Stability: no agent knows λ_max(L̂), so each checks the Gershgorin bound of its own row,
``μ'η Σ_l |L̂_kl| < 2`` (sufficient for ``μ'η λ_max(L̂) < 2``, the check the simulator makes
exactly); a failing agent stops with `ConfigError`, which `launch` re-raises.

Faults: every collective and point-to-point operation has a deadline (``timeout``); when a
neighbour dies, its TCP connection closes and the waiting agents raise `DistributedError`, which
makes their own neighbours fail the same way, so the whole network stops within about one
timeout. `launch` also watches its children and reports the first agent's error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from taskrel.decentral import algorithms as alg
from taskrel.decentral.agent import SHARED, Agent
from taskrel.decentral.estimators import spectral_error
from taskrel.decentral.problem import GMRFConfig, build_world, graph_of
from taskrel.decentral.simulator import SimulationResult, global_ml_error
from taskrel.decentral.streams import chunk_sizes
from taskrel.errors import ConfigError, DistributedError, NonFiniteError, SolverError, TaskrelError

#: Message tags: adapted models, models for graph learning, symmetrisation scalars.
TAG_PSI, TAG_MODEL, TAG_SCALAR = 1, 2, 3
#: Exit code of an agent that stopped on a `TaskrelError` (its message is in ``error_<k>.json``).
EXIT_ERROR = 3


class NeighbourLink:
    """Exchange equal-shaped float64 arrays with a fixed set of neighbours (isend/irecv pairs)."""

    def __init__(self, rank: int, neighbours: list[int]) -> None:
        self.rank, self.neighbours = rank, list(neighbours)
        self.phase = "start-up"

    def exchange(self, array: np.ndarray, tag: int) -> list[np.ndarray]:
        """Send `array` to every neighbour and receive one array of the same shape from each."""
        return self.exchange_each([array] * len(self.neighbours), tag)

    def exchange_each(self, arrays: list[np.ndarray], tag: int) -> list[np.ndarray]:
        """Send ``arrays[j]`` to neighbour j and receive one array of that shape from it."""
        import torch
        import torch.distributed as dist

        sends = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)) for x in arrays]
        bufs = [torch.empty_like(x) for x in sends]
        try:
            works = [dist.irecv(buf, src=n, tag=tag) for buf, n in zip(bufs, self.neighbours, strict=True)]
            works += [dist.isend(x, dst=n, tag=tag) for x, n in zip(sends, self.neighbours, strict=True)]
            for work in works:
                work.wait()
        except (RuntimeError, ConnectionError, TimeoutError) as exc:  # gloo reports lost peers as RuntimeError
            raise DistributedError(
                f"agent {self.rank}: exchange with neighbours {self.neighbours} failed during {self.phase}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        return [buf.numpy() for buf in bufs]


def run_agent(rank: int, world_size: int, config: GMRFConfig, out_dir: str | os.PathLike) -> Path:
    """Body of one agent process (process group already initialised); writes ``agent_<rank>.npz``."""
    if world_size != config.agents:
        raise ConfigError(f"world size {world_size} ≠ number of agents K={config.agents}")
    sched = config.schedule
    world = build_world(config, run=0)
    alg.check_stability(world.laplacian, sched.mu_coop, config.eta, what="L (true)")  # oracle, as in `simulate`
    agent = Agent(rank, config, world, run=0)
    link = NeighbourLink(rank, agent.nbhd[1:])
    a, n_nbhd, m = len(alg.ALGORITHMS), len(agent.nbhd), config.dim
    switch_model = None
    start = 0
    began = time.perf_counter()
    for n in chunk_sizes(sched.iters):
        agent.begin_chunk(n)
        for t in range(n):
            i = start + t + 1
            if sched.estimate_before(i):
                link.phase = f"graph learning before iteration {i}"
                own = agent.learned_model()
                if switch_model is None:
                    switch_model = own.copy()
                models = np.stack([own, *link.exchange(own, TAG_MODEL)])
                row = agent.estimate_row(models)
                # one scalar per edge: L̂'_kl goes to l, L̂'_lk comes back
                received = link.exchange_each([row[j : j + 1] for j in range(1, n_nbhd)], TAG_SCALAR)
                theirs = np.concatenate([[0.0], *received])
                agent.set_learned_row(row, theirs)
            link.phase = f"iteration {i}"
            psi = agent.adapt(i)
            psi_nbhd = np.zeros((a, n_nbhd, m))
            psi_nbhd[:, 0] = psi[:, 0]
            for j, rows in enumerate(link.exchange(psi[SHARED, 0], TAG_PSI), start=1):
                psi_nbhd[SHARED, j] = rows
            agent.combine(i, psi_nbhd)
        start += n
        agent.check_finite(start)
    path = Path(out_dir) / f"agent_{rank}.npz"
    np.savez(
        path, squared_error=np.stack(agent.squared_error), state=agent.state[:, 0], learned_row=agent.learned_row,
        neighbourhood=np.array(agent.nbhd), switch_model=switch_model, loop_seconds=time.perf_counter() - began,
    )  # fmt: skip
    return path


def bare_exchange(rank: int, neighbours: list[int], shape: tuple[int, ...], rounds: int) -> float:
    """Seconds per round of a bare neighbour exchange of float64 arrays of `shape` (the engine's floor)."""
    link = NeighbourLink(rank, neighbours)
    link.phase = "bare exchange"
    payload = np.zeros(shape)
    link.exchange(payload, TAG_PSI)  # warm-up: first contact opens the pairs
    began = time.perf_counter()
    for _ in range(rounds):
        link.exchange(payload, TAG_PSI)
    return (time.perf_counter() - began) / max(rounds, 1)


def collect(config: GMRFConfig, out_dir: str | os.PathLike) -> SimulationResult:
    """Assemble the agents' files into a one-run `SimulationResult` (reporting; needs the true world)."""
    world = build_world(config, run=0)
    k = config.agents
    files = [np.load(Path(out_dir) / f"agent_{r}.npz") for r in range(k)]
    msd = np.mean([f["squared_error"] for f in files], axis=0).T[None]  # (1, A, N)
    lap = np.zeros((k, k))
    for r, f in enumerate(files):
        lap[r, f["neighbourhood"]] = f["learned_row"]
    switch_models = np.stack([f["switch_model"] for f in files])
    first_lap = _first_estimate(config, switch_models, world.adjacency)
    return SimulationResult(
        config, msd, np.array([spectral_error(first_lap, world.laplacian)]),
        np.array([global_ml_error(switch_models, world)]), lap[None],
        np.stack([f["state"] for f in files], axis=1)[:, None], world.models[None], world.adjacency, world.laplacian,
    )  # fmt: skip


def _first_estimate(config: GMRFConfig, models: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    from taskrel.decentral.estimators import neighbourhood_estimate

    return neighbourhood_estimate(models, adjacency, config.shrinkage, config.project_sign)


# ------------------------------------------------------------------------------------------------
# process entry point (torchrun or `launch`)


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of one agent process: reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT."""
    parser = argparse.ArgumentParser(prog="python -m taskrel.decentral.distributed")
    parser.add_argument("--config", required=True, help="JSON file or JSON text of a GMRFConfig")
    parser.add_argument("--out", required=True, help="directory for agent_<k>.npz (shared by all agents)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a silent neighbour is an error")
    parser.add_argument("--summary", action="store_true", help="rank 0 prints the JSON summary at the end")
    parser.add_argument("--bare-rounds", type=int, default=0, help="first time this many bare neighbour exchanges")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "-1"))
    out = Path(args.out)
    try:
        world_size = int(os.environ["WORLD_SIZE"])
        text = Path(args.config).read_text() if not args.config.lstrip().startswith("{") else args.config
        config = GMRFConfig(**_config_kwargs(json.loads(text)))
        out.mkdir(parents=True, exist_ok=True)
        import torch.distributed as dist

        try:
            dist.init_process_group(
                "gloo", init_method="env://", rank=rank, world_size=world_size, timeout=timedelta(seconds=args.timeout)
            )
        except (RuntimeError, ValueError, TimeoutError) as exc:
            raise DistributedError(f"agent {rank}: could not join the process group: {exc}") from exc
        (out / f"joined_{rank}").touch()  # lets a supervisor see that start-up is over
        try:
            if args.bare_rounds > 0:
                from taskrel.decentral.graphs import neighbours

                shape = (len(alg.ALGORITHMS) - 1, config.dim)
                seconds = bare_exchange(rank, neighbours(graph_of(config), rank), shape, args.bare_rounds)
                (out / f"bare_{rank}.json").write_text(json.dumps({"seconds_per_round": seconds}))
            run_agent(rank, world_size, config, out)
            try:
                dist.barrier()
            except RuntimeError as exc:
                raise DistributedError(f"agent {rank}: final barrier failed: {exc}") from exc
        finally:
            with contextlib.suppress(RuntimeError):
                dist.destroy_process_group()
        if args.summary and rank == 0:
            print(json.dumps(collect(config, out).summary()))
        return 0
    except TaskrelError as exc:
        report = {"agent": rank, "type": type(exc).__name__, "message": str(exc)}
        (out / f"error_{rank}.json").write_text(json.dumps(report))
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def _config_kwargs(data: dict) -> dict:
    data = dict(data)
    if "weights" in data:
        data["weights"] = tuple(data["weights"])
    return data


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_ERRORS = {"ConfigError": ConfigError, "NonFiniteError": NonFiniteError, "SolverError": SolverError}


def launch(
    config: GMRFConfig, out_dir: str | os.PathLike | None = None, *, timeout: float = 60.0, startup: float = 120.0,
    bare_rounds: int = 0,
) -> SimulationResult:
    """Run `config` with K local agent processes and return the assembled one-run result.

    Raises the first agent's error (`ConfigError`, `NonFiniteError`, `SolverError` as such,
    anything else as `DistributedError`). If an agent dies without a message (killed), the others
    are given ``timeout`` seconds to notice and stop on their own; survivors after that are killed.
    """
    if config.runs != 1:
        raise ConfigError(f"the distributed engine runs one Monte-Carlo run at a time, got runs={config.runs}")
    with contextlib.ExitStack() as stack:
        out = Path(out_dir) if out_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out.mkdir(parents=True, exist_ok=True)
        procs = spawn_agents(config, out, timeout=timeout, bare_rounds=bare_rounds)
        try:
            deadline = startup + timeout + (config.iters + bare_rounds) * 0.05
            wait_agents(procs, out, deadline=deadline, grace=timeout + 10)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return collect(config, out)


def spawn_agents(
    config: GMRFConfig, out: Path, *, timeout: float = 60.0, port: int | None = None, bare_rounds: int = 0
) -> list:
    """Start K agent processes (ranks 0..K-1) on 127.0.0.1; their stderr goes to ``out/stderr_<k>.txt``."""
    port = free_port() if port is None else port
    (out / "config.json").write_text(json.dumps(config.to_dict()))
    procs = []
    for rank in range(config.agents):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(config.agents),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
        cmd = [sys.executable, "-m", "taskrel.decentral.distributed", "--config", str(out / "config.json"),
               "--out", str(out), "--timeout", str(timeout), "--bare-rounds", str(bare_rounds)]  # fmt: skip
        with open(out / f"stderr_{rank}.txt", "w") as err:
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err))
    return procs


def wait_agents(procs: list, out: Path, *, deadline: float, grace: float) -> None:
    """Wait for all agents; on the first failure give the rest `grace` seconds, then raise its error."""
    start = time.monotonic()
    failed_at = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c == 0 for c in codes):
            return
        if failed_at is None and any(c not in (None, 0) for c in codes):
            failed_at = time.monotonic()
        if all(c is not None for c in codes) or (failed_at is not None and time.monotonic() - failed_at > grace):
            break
        if time.monotonic() - start > deadline:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
            raise DistributedError(f"distributed run exceeded its deadline of {deadline:.0f} s; agents killed")
        time.sleep(0.05)
    raise _first_error(procs, out)


def _first_error(procs: list, out: Path) -> TaskrelError:
    """The root cause: an agent's own error other than a lost neighbour, else a killed agent, else any."""
    reports = {}
    for rank in range(len(procs)):
        path = out / f"error_{rank}.json"
        if path.exists():
            reports[rank] = json.loads(path.read_text())
    for _, rep in sorted(reports.items()):
        if rep["type"] in _ERRORS:
            return _ERRORS[rep["type"]](rep["message"])
    silent = [r for r, p in enumerate(procs) if p.returncode not in (0, EXIT_ERROR, None)]
    if silent:
        codes = {r: procs[r].returncode for r in silent}
        return DistributedError(f"agent(s) {silent} died without a report (exit codes {codes}); "
                                f"{len(reports)} other agent(s) stopped with DistributedError")  # fmt: skip
    if reports:
        rank, rep = min(reports.items())
        return DistributedError(rep["message"])
    return DistributedError("agents stopped without reporting an error")


if __name__ == "__main__":
    sys.exit(worker_main())
