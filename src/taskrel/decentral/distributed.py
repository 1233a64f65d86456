"""Real multi-process engine on ``torch.distributed`` (gloo): one process per agent.

Each process builds only its own agent and talks only to its graph neighbours with point-to-point
``isend``/``irecv`` pairs (per iteration: the adapted models ψ of the cooperative algorithms; at
each graph estimate: the current model, then one scalar per edge, and on real data a
max-consensus of one scalar for the normalisation). Two kinds of run:

* synthetic (`GMRFConfig`, `taskrel.decentral.agent.Agent`): the simulated world (graph, true
  models) is rebuilt in every process from the seed; an agent uses its own true model only to
  generate its data and to measure its own error. Every agent writes ``agent_<k>.npz``.
* real data (`run_spec`: a data source, a `RealConfig` and the communication graph,
  `taskrel.decentral.realdata.RealAgent`): agent k calls ``source.load(k)`` and nothing else, so it
  never holds another agent's rows; at the end rank 0 gathers each agent's test metric and row of
  L̂ (scalars only) and writes ``summary.json``, the same JSON as the in-process engine.

Launch
------
* by us: `launch` / `launch_real` (and ``taskrel gmrf run --engine dist``) start K local
  processes on 127.0.0.1 and hold the rendezvous store themselves;
* by torchrun, on one or several machines::

      torchrun --nnodes=N --node_rank=R --nproc_per_node=P --rdzv-backend=c10d \\
          --rdzv-endpoint=HOST:PORT -m taskrel.decentral.distributed --config run.json --out DIR --summary

  with ``N·P = K`` (reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; torchrun's agent holds the
  store). With a loopback MASTER_ADDR gloo is bound to the loopback interface (``lo``) unless
  GLOO_SOCKET_IFNAME says otherwise.

Stability: before any iteration every agent checks its own SGD step (``μ·tr(R̂_k) < 2``); with
synthetic data each also checks the oracle's diffusion bound; after graph learning each checks the
Gershgorin bound of its own row where L̂ is not normalised.

Faults: nobody hangs. Joining has a deadline (``timeout``) after which every agent names the agents
that never arrived. The start-up is agreed: each agent builds itself (loads its data, checks its
step size) and all share the outcome, so a missing or malformed file stops every agent with a
`DistributedError` naming that agent and the cause. Every exchange has the same deadline; a
neighbour that dies closes its connections, and the first agent to notice records "agent j was
lost" on the rendezvous store (which outlives every agent); an agent that stops on its own error
records that. Everyone else stopping later reports this first fault, so every rank names the agent
at the root and the cause, within about one timeout. `launch` also watches its children.
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
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from taskrel.decentral import algorithms as alg
from taskrel.decentral.agent import SHARED, Agent
from taskrel.decentral.estimators import neighbourhood_estimate, spectral_error
from taskrel.decentral.graphs import diameter, neighbours
from taskrel.decentral.realdata import REAL_ALGORITHMS, RealAgent, RealConfig, summarise
from taskrel.decentral.simulator import SimulationResult, global_ml_error
from taskrel.decentral.sources import source_from_spec
from taskrel.decentral.streams import chunk_sizes
from taskrel.decentral.world import GMRFConfig, build_world, graph_of
from taskrel.errors import ConfigError, DistributedError, NonFiniteError, SolverError, TaskrelError

#: Message tags: adapted models, models for graph learning, symmetrisation scalars, max-consensus.
TAG_PSI, TAG_MODEL, TAG_SCALAR, TAG_MAX = 1, 2, 3, 4
#: Exit code of an agent that stopped on a `TaskrelError` (its message is in ``error_<k>.json``).
EXIT_ERROR = 3

T = TypeVar("T")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Rendezvous:
    """This agent's handle on the run's store (held by the launcher or torchrun's agent, so it outlives agents).

    It records who arrived (to name the agents that never join) and the run's first fault.
    """

    def __init__(self, rank: int, world_size: int, timeout: float) -> None:
        self.rank, self.world_size, self.timeout = rank, world_size, timeout
        addr, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "0"))
        prefix = f"taskrel/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        try:
            store = dist.TCPStore(addr, port, is_master=False, timeout=timedelta(seconds=timeout))
            self.store = dist.PrefixStore(prefix, store)
            self.store.set(f"arrived/{rank}", "1")
        except (RuntimeError, TimeoutError, ValueError) as exc:
            raise DistributedError(f"agent {rank}: cannot reach the rendezvous store at {addr}:{port} "
                                   f"({_first_line(exc)})") from exc  # fmt: skip

    def join(self) -> None:
        """Join the gloo process group; `DistributedError` naming the absent agents after ``timeout``."""
        try:
            dist.init_process_group(
                "gloo", store=dist.PrefixStore("pg/", self.store), rank=self.rank, world_size=self.world_size,
                timeout=timedelta(seconds=self.timeout),
            )  # fmt: skip
        except (RuntimeError, ValueError, TimeoutError) as exc:
            missing = self.missing()
            if missing:
                raise DistributedError(f"agent {self.rank}: agent(s) {missing} never joined within "
                                       f"{self.timeout:g} s") from exc  # fmt: skip
            raise DistributedError(f"agent {self.rank}: could not join the process group ({_first_line(exc)})") from exc

    def missing(self) -> list[int]:
        with contextlib.suppress(RuntimeError):
            return [j for j in range(self.world_size) if not self.store.check([f"arrived/{j}"])]
        return []

    def fault(self, diagnosis: str) -> str:
        """Record `diagnosis` if it is the run's first fault; return the first fault (the root cause)."""
        try:
            if self.store.add("faults", 1) == 1:
                self.store.set("fault", diagnosis)
                return diagnosis
            self.store.wait(["fault"], timedelta(seconds=min(self.timeout, 10.0)))
            return self.store.get("fault").decode()
        except (RuntimeError, TimeoutError):  # the store is gone too: this agent's own view is all there is
            return diagnosis


class NeighbourLink:
    """Exchange equal-shaped float64 arrays with a fixed set of neighbours (isend/irecv pairs)."""

    def __init__(self, rank: int, neighbours: list[int], rendezvous: Rendezvous | None = None) -> None:
        self.rank, self.neighbours, self.rendezvous = rank, list(neighbours), rendezvous
        self.phase = "start-up"

    def exchange(self, array: np.ndarray, tag: int) -> list[np.ndarray]:
        """Send `array` to every neighbour and receive one array of the same shape from each."""
        return self.exchange_each([array] * len(self.neighbours), tag)

    def exchange_each(self, arrays: list[np.ndarray], tag: int) -> list[np.ndarray]:
        """Send ``arrays[j]`` to neighbour j and receive one array of that shape from it."""
        sends = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)) for x in arrays]
        bufs = [torch.empty_like(x) for x in sends]
        peer = None
        try:
            works = [(dist.irecv(buf, src=n, tag=tag), n) for buf, n in zip(bufs, self.neighbours, strict=True)]
            works += [(dist.isend(x, dst=n, tag=tag), n) for x, n in zip(sends, self.neighbours, strict=True)]
            for work, peer in works:  # noqa: B007  (`peer` names the neighbour whose transfer failed)
                work.wait()
        except (RuntimeError, ConnectionError, TimeoutError) as exc:  # gloo reports lost peers as RuntimeError
            who = f"agent {peer}" if peer is not None else f"one of agents {self.neighbours}"
            raise self.lost(f"{who} was lost during {self.phase} ({_first_line(exc)})") from exc
        return [buf.numpy() for buf in bufs]

    def lost(self, diagnosis: str) -> DistributedError:
        root = self.rendezvous.fault(diagnosis) if self.rendezvous is not None else diagnosis
        if root == diagnosis:
            return DistributedError(f"agent {self.rank}: {diagnosis}")
        return DistributedError(f"agent {self.rank}: stopped during {self.phase}, because {root}")

    def max_consensus(self, value: float, rounds: int) -> float:
        """The network's maximum of one scalar per agent: `rounds` (≥ the graph's diameter) neighbour rounds."""
        for _ in range(rounds):
            value = max([value, *(float(x[0]) for x in self.exchange(np.array([value]), TAG_MAX))])
        return value


def agree(rank: int, world_size: int, build: Callable[[], T], label: Callable[[int], str]) -> T:
    """Build this agent (`build`: load its data, check its step) and share the outcome with every agent.

    All agents start, or all stop: with the agent's own `ConfigError` where it is the one at fault,
    otherwise a `DistributedError` naming the first failing agent (``label(j)``) and its error.
    """
    own_error, agent = None, None
    try:
        agent = build()
        status = None
    except TaskrelError as exc:
        own_error, status = exc, (type(exc).__name__, str(exc))
    features = getattr(agent, "features", None)
    statuses: list = [None] * world_size
    try:
        dist.all_gather_object(statuses, (status, features))
    except (RuntimeError, ConnectionError, TimeoutError) as exc:
        raise DistributedError(f"agent {rank}: the start-up exchange failed ({_first_line(exc)})") from exc
    failed = [(j, s) for j, (s, _) in enumerate(statuses) if s is not None]
    if failed:
        j, (kind, message) = failed[0]
        if j == rank and isinstance(own_error, ConfigError):
            raise own_error
        raise DistributedError(f"agent {j} ({label(j)}) could not start: {kind}: {message}")
    dims = {j: f for j, (_, f) in enumerate(statuses)}
    if len(set(dims.values())) > 1:
        j = next(j for j, f in dims.items() if f != dims[0])
        raise DistributedError(f"agents disagree on the number of features: agent 0 ({label(0)}) has {dims[0]}, "
                               f"agent {j} ({label(j)}) has {dims[j]}")  # fmt: skip
    return agent


# ------------------------------------------------------------------------------------------------
# the synthetic run


def run_agent(rank: int, world_size: int, config: GMRFConfig, out_dir: str | os.PathLike,
              rendezvous: Rendezvous | None = None) -> Path:  # fmt: skip
    """Body of one synthetic agent process (process group initialised); writes ``agent_<rank>.npz``."""
    if world_size != config.agents:
        raise ConfigError(f"world size {world_size} ≠ number of agents K={config.agents}")
    sched = config.schedule

    def build() -> Agent:
        world = build_world(config, run=0)
        alg.check_stability(world.laplacian, sched.mu_coop, config.eta, what="L (true)")  # oracle, as in `simulate`
        return Agent(rank, config, world, run=0)

    agent = agree(rank, world_size, build, lambda j: f"of {world_size}")
    link = NeighbourLink(rank, agent.nbhd[1:], rendezvous)
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
                theirs = _edge_scalars(link, row)
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


def _edge_scalars(link: NeighbourLink, row: np.ndarray) -> np.ndarray:
    """One scalar per edge: ``L̂'_kl`` goes to l, ``L̂'_lk`` comes back (own slot 0 first)."""
    received = link.exchange_each([row[j : j + 1] for j in range(1, row.size)], TAG_SCALAR)
    return np.concatenate([[0.0], *received])


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
    return neighbourhood_estimate(models, adjacency, config.shrinkage, config.project_sign)


# ------------------------------------------------------------------------------------------------
# the real-data run


def run_spec(source, adjacency: np.ndarray, config: RealConfig) -> dict:
    """The JSON spec of a real-data run that every process receives (``--config``; also for torchrun)."""
    adjacency = np.asarray(adjacency, float)
    if adjacency.shape != (len(source.names), len(source.names)):
        raise ConfigError(f"the communication graph is {adjacency.shape}, the source has {len(source.names)} agents")
    return {"kind": "real", "source": source.spec(), "config": config.to_dict(), "adjacency": adjacency.tolist()}


def run_real_agent(rank: int, world_size: int, spec: dict, out_dir: str | os.PathLike,
                   rendezvous: Rendezvous | None = None) -> dict | None:  # fmt: skip
    """Body of one real-data agent process: loads only ``source.load(rank)``; rank 0 returns the summary."""
    source, config = source_from_spec(spec["source"]), RealConfig(**spec["config"])
    adjacency = np.asarray(spec["adjacency"], float)
    if world_size != len(source.names):
        raise ConfigError(f"world size {world_size} ≠ number of agents {len(source.names)} in the data source")
    agent = agree(rank, world_size, lambda: RealAgent(rank, source.load(rank), source.loss, adjacency, config),
                  lambda j: source.names[j])  # fmt: skip
    link = NeighbourLink(rank, agent.nbhd[1:], rendezvous)
    a, n_nbhd, m = len(REAL_ALGORITHMS), len(agent.nbhd), agent.features + 1
    rounds = diameter(adjacency)
    i = 0
    for n in chunk_sizes(config.iters):
        agent.begin_chunk(n)
        for _ in range(n):
            i += 1
            if i == config.switch_at + 1:
                link.phase = f"graph learning before iteration {i}"
                own = agent.graph_model()
                row = agent.estimate_row(np.stack([own, *link.exchange(own, TAG_MODEL)]))
                radius = agent.set_row(row, _edge_scalars(link, row))
                agent.normalise(link.max_consensus(radius, rounds))
            link.phase = f"iteration {i}"
            psi = agent.adapt()
            psi_nbhd = np.zeros((a, n_nbhd, m))
            psi_nbhd[:, 0] = psi[:, 0]
            for j, rows in enumerate(link.exchange(psi[1:, 0], TAG_PSI), start=1):
                psi_nbhd[1:, j] = rows
            agent.combine(i, psi_nbhd)
        agent.check_finite(i)
    # reporting: each agent's test metric and row of L̂ (scalars; the rows never left their agents)
    k = world_size
    mine = np.zeros(a + k)
    mine[:a] = agent.scores()
    mine[a + np.asarray(agent.nbhd)] = agent.row
    rows = [torch.zeros(a + k, dtype=torch.float64) for _ in range(k)]
    link.phase = "reporting"
    try:
        dist.all_gather(rows, torch.from_numpy(mine))
    except (RuntimeError, ConnectionError, TimeoutError) as exc:
        raise link.lost(f"an agent was lost during reporting ({_first_line(exc)})") from exc
    if rank != 0:
        return None
    table = torch.stack(rows).numpy()
    summary = summarise(source.loss, table[:, :a], table[:, a:])
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary))
    return summary


# ------------------------------------------------------------------------------------------------
# process entry point (torchrun or `launch`)


def worker_main(argv: list[str] | None = None) -> int:
    """Entry point of one agent process: reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT."""
    parser = argparse.ArgumentParser(prog="python -m taskrel.decentral.distributed")
    parser.add_argument("--config", required=True, help="JSON file or JSON text: a GMRFConfig or a real-data spec")
    parser.add_argument("--out", required=True, help="directory for the agents' files (rank 0: summary.json)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a silent neighbour is an error")
    parser.add_argument("--summary", action="store_true", help="rank 0 prints the JSON summary at the end")
    parser.add_argument("--bare-rounds", type=int, default=0, help="first time this many bare neighbour exchanges")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "-1"))
    out = Path(args.out)
    rendezvous = None
    try:
        world_size = int(os.environ["WORLD_SIZE"])
        text = Path(args.config).read_text() if not args.config.lstrip().startswith("{") else args.config
        spec = json.loads(text)
        out.mkdir(parents=True, exist_ok=True)
        if os.environ.get("MASTER_ADDR", "127.0.0.1") in ("127.0.0.1", "localhost", "::1"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # a local run stays on the loopback interface
        rendezvous = Rendezvous(rank, world_size, args.timeout)
        rendezvous.join()
        (out / f"joined_{rank}").touch()  # lets a supervisor see that start-up is over
        try:
            if spec.get("kind") == "real":
                summary = run_real_agent(rank, world_size, spec, out, rendezvous)
            else:
                config = GMRFConfig(**_config_kwargs(spec))
                _synthetic(rank, world_size, config, out, args.bare_rounds, rendezvous)
            try:
                dist.barrier()
            except RuntimeError as exc:
                raise DistributedError(f"agent {rank}: final barrier failed: {exc}") from exc
        except TaskrelError as exc:  # recorded while this agent's connections are still open
            if not isinstance(exc, DistributedError):
                rendezvous.fault(f"agent {rank} stopped: {type(exc).__name__}: {exc}")
            raise
        finally:
            with contextlib.suppress(RuntimeError):
                dist.destroy_process_group()
        if args.summary and rank == 0:
            print(json.dumps(summary if spec.get("kind") == "real" else collect(config, out).summary()))
        return 0
    except TaskrelError as exc:
        report = {"agent": rank, "type": type(exc).__name__, "message": str(exc)}
        with contextlib.suppress(OSError):
            (out / f"error_{rank}.json").write_text(json.dumps(report))
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def _synthetic(rank: int, world_size: int, config: GMRFConfig, out: Path, bare_rounds: int, rendezvous) -> None:
    if bare_rounds > 0:
        shape = (len(alg.ALGORITHMS) - 1, config.dim)
        seconds = bare_exchange(rank, neighbours(graph_of(config), rank), shape, bare_rounds)
        (out / f"bare_{rank}.json").write_text(json.dumps({"seconds_per_round": seconds}))
    run_agent(rank, world_size, config, out, rendezvous)


def _config_kwargs(data: dict) -> dict:
    data = dict(data)
    if "weights" in data:
        data["weights"] = tuple(data["weights"])
    return data


# ------------------------------------------------------------------------------------------------
# local launcher


_ERRORS = {"ConfigError": ConfigError, "NonFiniteError": NonFiniteError, "SolverError": SolverError}


class LocalRun:
    """Agent processes on this machine (ranks `ranks` of `world_size`) and the store they meet at.

    The store is held by this process, bound to 127.0.0.1, so it outlives every agent; each agent's
    stderr goes to ``out/stderr_<k>.txt``. Use as a context manager: leftovers are killed on exit.
    """

    def __init__(self, spec: dict, world_size: int, out: Path, *, timeout: float = 60.0,
                 ranks: Sequence[int] | None = None, bare_rounds: int = 0) -> None:  # fmt: skip
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(1024)
        port = int(self._socket.getsockname()[1])
        self.store = dist.TCPStore(
            "127.0.0.1", port, is_master=True, wait_for_workers=False, master_listen_fd=self._socket.fileno(),
            timeout=timedelta(seconds=timeout),
        )  # fmt: skip
        (self.out / "config.json").write_text(json.dumps(spec))
        self.procs: dict[int, subprocess.Popen] = {}
        for rank in range(world_size) if ranks is None else ranks:
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
                   "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}  # fmt: skip
            cmd = [sys.executable, "-m", "taskrel.decentral.distributed", "--config", str(self.out / "config.json"),
                   "--out", str(self.out), "--timeout", str(timeout), "--bare-rounds", str(bare_rounds)]  # fmt: skip
            with open(self.out / f"stderr_{rank}.txt", "w") as err:
                self.procs[rank] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)

    def __enter__(self) -> LocalRun:
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        self._socket.close()

    def wait(self, *, deadline: float, grace: float) -> None:
        """Wait for all agents; on the first failure give the rest `grace` seconds, then raise its error."""
        start = time.monotonic()
        failed_at = None
        procs = list(self.procs.values())
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
        raise self.first_error()

    def first_error(self) -> TaskrelError:
        """The root cause: an agent's own error other than a lost neighbour, else a killed agent, else any."""
        reports = {}
        for rank in self.procs:
            path = self.out / f"error_{rank}.json"
            if path.exists():
                reports[rank] = json.loads(path.read_text())
        for _, rep in sorted(reports.items()):
            if rep["type"] in _ERRORS:
                return _ERRORS[rep["type"]](rep["message"])
        silent = [r for r, p in self.procs.items() if p.returncode not in (0, EXIT_ERROR, None)]
        if silent:
            codes = {r: self.procs[r].returncode for r in silent}
            return DistributedError(f"agent(s) {silent} died without a report (exit codes {codes}); "
                                    f"{len(reports)} other agent(s) stopped with DistributedError")  # fmt: skip
        if reports:
            rank, rep = min(reports.items())
            return DistributedError(rep["message"])
        return DistributedError("agents stopped without reporting an error")


def launch(
    config: GMRFConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    timeout: float = 60.0,
    startup: float = 120.0,
    bare_rounds: int = 0,
) -> SimulationResult:
    """Run the synthetic `config` with K local agent processes and return the assembled one-run result.

    Raises the first agent's error (`ConfigError`, `NonFiniteError`, `SolverError` as such,
    anything else as `DistributedError`). If an agent dies without a message (killed), the others
    are given ``timeout`` seconds to notice and stop on their own; survivors after that are killed.
    """
    if config.runs != 1:
        raise ConfigError(f"the distributed engine runs one Monte-Carlo run at a time, got runs={config.runs}")
    world = build_world(config, run=0)  # refuse an unstable oracle before starting any process
    alg.check_stability(world.laplacian, config.schedule.mu_coop, config.eta, what="L (true)")
    with contextlib.ExitStack() as stack:
        out = Path(out_dir) if out_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        with LocalRun(config.to_dict(), config.agents, out, timeout=timeout, bare_rounds=bare_rounds) as run:
            run.wait(deadline=startup + timeout + (config.iters + bare_rounds) * 0.05, grace=timeout + 10)
        return collect(config, out)


def launch_real(
    source,
    adjacency: np.ndarray,
    config: RealConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    timeout: float = 60.0,
    startup: float = 120.0,
) -> dict:
    """Run real-data agents, one local process each (agent k loads only its own data); the run's summary.

    The summary is `taskrel.decentral.realdata.run_source`'s JSON. Errors as in `launch`.
    """
    spec = run_spec(source, adjacency, config)
    with contextlib.ExitStack() as stack:
        out = Path(out_dir) if out_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        with LocalRun(spec, len(source.names), out, timeout=timeout) as run:
            run.wait(deadline=startup + timeout + config.iters * 0.05, grace=timeout + 10)
        return json.loads((out / "summary.json").read_text())


if __name__ == "__main__":
    sys.exit(worker_main())
