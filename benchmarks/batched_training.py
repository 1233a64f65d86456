"""Batched training against one run at a time: runs per second and agreement of the recorded losses.

Workloads (seed 0, each problem's default protocol unless said):

* ``school_stl``: the single-task runs of all 139 School tasks;
* ``chemical``: 200 random Chemical groups (stratified over sizes 2..10) and the 10 single-task runs,
  with the committed ground truth's protocol (``stop_fraction=1``), so the gains can be compared with it;
* ``ett``: all 127 groups of ETTh1's 7 channels (single-input data).

Each workload is trained side by side in one run of this script:

* ``batched``: `TorchProblem.train_many` in this process (at most `GROUP_BATCH` members at once);
* ``one_at_a_time``: `TorchProblem.train` in this process, on every run (``--sample`` limits it to a
  random sample of runs; Chemical's default is 30 of its 210);
* with ``--sweeps PART …`` (default: School): ``pool_2_workers``, `run_sweep` with 2 workers and
  ``group_batch=1`` on the same runs, and ``batched_sweep_2_workers``, `run_sweep` with 2 workers and
  its default batching (what ``taskrel sweep --workers 2`` does).

Runs per second of each; the speedups divide the batched rate by the others, on the same runs where
every run is trained both ways. With a sample, the same ratios per training step are the fairer
figure (sampled runs may be longer or shorter than the average). The batched wall time cannot fall
below the longest run's own (its steps are sequential): ``longest_run_alone_seconds``. Agreement:
the relative gap of each compared run's test losses between batched and one-at-a-time training, and
the number whose early stopping ended at another step (a near-tie between two epochs' validation
losses falling the other way). Memory: the peak resident memory above the baseline during batched
training, per member.

    python benchmarks/batched_training.py                             # ~35 min on 2 cores
    python benchmarks/batched_training.py --parts ett --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from taskrel.gains import GainTable
from taskrel.groups import all_groups, group_name
from taskrel.problems.registry import load_problem
from taskrel.train.sweep import GROUP_BATCH, run_sweep, stratified_groups

from common import COMMIT, RESULTS, write_result

PAGE = os.sysconf("SC_PAGE_SIZE")
#: Chemical runs trained one at a time by default (all 210 would take ~20 min more)
CHEMICAL_SAMPLE = 30


class PeakMemory:
    """Peak resident memory of this process (sampled every 20 ms) above its level at the start."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def workload(name: str, device: str) -> tuple:
    """(problem, runs [(group, seed)]) of a workload."""
    if name == "school_stl":
        problem = load_problem("school")
        runs = [([t], 0) for t in problem.tasks]
    elif name == "chemical":
        problem = load_problem("chemical", stop_fraction=1.0)
        groups = stratified_groups(problem.tasks, 200, seed=0, sizes=range(2, len(problem.tasks) + 1))
        runs = [([t], 0) for t in problem.tasks] + [([t for t in problem.tasks if t in g], 0) for g in groups]
    elif name == "ett":
        problem = load_problem("ett")
        runs = [([t for t in problem.tasks if t in g], 0) for g in all_groups(problem.tasks)]
    else:
        raise SystemExit(f"unknown part {name!r}")
    problem.device = torch.device(device)
    return problem, runs


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def sweep_seconds(problem, runs, workers: int, group_batch: int) -> float:
    groups = list(dict.fromkeys(group_name(g, problem.tasks) for g, _ in runs))
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "runs.db"
        report, seconds = timed(lambda: run_sweep(problem, groups, [0], store, workers=workers,
                                                  group_batch=group_batch, progress=False))  # fmt: skip
    if report.failed:
        raise SystemExit(f"sweep failures: {report.failures[:3]}")
    return seconds, report.done


def measure(name: str, sample: int | None, device: str, with_sweeps: bool) -> dict:
    problem, runs = workload(name, device)
    rng = np.random.default_rng(0)
    picked = list(range(len(runs))) if sample is None or sample >= len(runs) else sorted(
        rng.choice(len(runs), sample, replace=False).tolist()
    )
    print(f"[{name}] {len(runs)} runs; batched …", flush=True)
    with PeakMemory() as memory:
        batched, batched_seconds = timed(lambda: problem.train_many(runs, max_batch=GROUP_BATCH))
    failed = [(runs[i], repr(r)) for i, r in enumerate(batched) if isinstance(r, Exception)]
    if failed:
        raise SystemExit(f"batched failures: {failed[:3]}")
    print(f"[{name}] batched {batched_seconds:.1f} s; one at a time on {len(picked)} runs …", flush=True)
    alone, alone_seconds = timed(lambda: [problem.train(*runs[i]) for i in picked])
    gaps = [max(abs(a.test_loss[t] - batched[i].test_loss[t]) / abs(a.test_loss[t]) for t in a.test_loss)
            for i, a in zip(picked, alone, strict=True)]  # fmt: skip
    steps_batched = sum(r.steps for r in batched)
    steps_alone = sum(a.steps for a in alone)
    rates = {"batched": len(runs) / batched_seconds, "one_at_a_time": len(picked) / alone_seconds}
    step_rates = {"batched": steps_batched / batched_seconds, "one_at_a_time": steps_alone / alone_seconds}
    seconds = {"batched": batched_seconds, "one_at_a_time": alone_seconds}
    if with_sweeps:
        chosen = [runs[i] for i in picked]
        print(f"[{name}] pool of 2, one at a time, on {len(chosen)} runs …", flush=True)
        seconds["pool_2_workers"], done = sweep_seconds(problem, chosen, 2, 1)
        rates["pool_2_workers"] = done / seconds["pool_2_workers"]
        print(f"[{name}] batched sweep with 2 workers on {len(runs)} runs …", flush=True)
        seconds["batched_sweep_2_workers"], done = sweep_seconds(problem, runs, 2, GROUP_BATCH)
        rates["batched_sweep_2_workers"] = done / seconds["batched_sweep_2_workers"]
    out = {
        "runs": len(runs),
        "compared_runs": len(picked),
        "seconds": seconds,
        "runs_per_second": rates,
        "steps": {"batched": steps_batched, "one_at_a_time": steps_alone},
        "steps_per_second": step_rates,
        "speedup_vs_one_at_a_time": rates["batched"] / rates["one_at_a_time"],
        "speedup_per_step_vs_one_at_a_time": step_rates["batched"] / step_rates["one_at_a_time"],
        "longest_run_steps": max(r.steps for r in batched),
        "longest_run_alone_seconds": max(a.seconds for a in alone) if len(picked) == len(runs) else None,
        "peak_memory_per_member_mb": (memory.peak - memory.base) / min(len(runs), GROUP_BATCH) / 2**20,
        "agreement": {
            "max_relative_test_loss_gap": max(gaps),
            "median_relative_test_loss_gap": float(np.median(gaps)),
            "runs_stopping_at_another_step": sum(
                a.steps != batched[i].steps for i, a in zip(picked, alone, strict=True)
            ),
        },
    }
    if with_sweeps:
        out["speedup_vs_pool_2_workers"] = rates["batched"] / rates["pool_2_workers"]
        out["batched_sweep_2_workers_vs_pool_2_workers"] = rates["batched_sweep_2_workers"] / rates["pool_2_workers"]
    if name == "chemical":
        out["ground_truth"] = against_ground_truth(problem, runs, batched)
    print(f"[{name}] {json.dumps({k: v for k, v in out.items() if 'speedup' in k})}", flush=True)
    return out


def against_ground_truth(problem, runs, results) -> dict:
    """Batched test gains (seed 0) against the committed table: its seed-0 gains and its spread over seeds."""
    truth = GainTable.read_csv(RESULTS / "chemical_gains.csv").frame
    ours = GainTable.from_runs(
        [(group_name(g, problem.tasks), s, r.val_loss, r.test_loss) for (g, s), r in zip(runs, results, strict=True)],
        problem.tasks,
    ).frame
    merged = ours.merge(truth[truth.seed == 0], on=["group", "task"], suffixes=("", "_truth"))
    spread = truth.groupby(["group", "task"]).gain.std().rename("seed_std").reset_index()
    merged = merged.merge(spread, on=["group", "task"])
    merged = merged[merged.group.str.contains("|", regex=False)]
    delta = (merged.gain - merged.gain_truth).abs()
    return {
        "entries": len(merged),
        "mean_abs_gain_gap_vs_seed0": float(delta.mean()),
        "median_abs_gain_gap_vs_seed0": float(delta.median()),
        "mean_seed_std_of_gain": float(merged.seed_std.mean()),
        "share_within_one_seed_std": float((delta <= merged.seed_std).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["school_stl", "chemical", "ett"])
    parser.add_argument("--sample", type=int, help="runs trained one at a time per workload (default: all; "
                        f"Chemical {CHEMICAL_SAMPLE})")  # fmt: skip
    parser.add_argument("--sweeps", nargs="*", default=["school_stl"], help="parts that also run the 2-worker sweeps")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    name = "batched_training" if args.device == "cpu" else f"batched_training_{args.device.split(':')[0]}"
    path = RESULTS / f"{name}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    parts = {k: previous[k] for k in ("school_stl", "chemical", "ett") if k in previous and k not in args.parts}
    for part in args.parts:  # written after every workload: a stopped run keeps what it measured
        sample = args.sample if args.sample is not None else CHEMICAL_SAMPLE if part == "chemical" else None
        parts[part] = {"commit": COMMIT, **measure(part, sample, args.device, part in args.sweeps)}
        write_result(name, {"group_batch": GROUP_BATCH, "device": args.device, **parts})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
