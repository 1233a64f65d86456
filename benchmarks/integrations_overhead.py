"""Wall time of training with taskrel's collectors inside Lightning and torchjd, relative to the same training
without them, side by side in one run; and the lines of user code of each integration's docs example.

Both trainings are the docs examples' (docs/integrations/): a shared MLP trunk over 12 hours × 7 channels
of ETTh1 and one linear head per task, here with every channel a task (K = 7) on the first `--rows` hours,
Adam, batches of 128.

* Lightning: `lightning.Trainer.fit` of the example's `Forecaster` for `--epochs` epochs, without a
  callback ("none"), with ``AffinityCallback(["etap"])`` ("etap") and with ETAP on every `--every`-th
  step only ("etap every=k", with the Pearson r of its off-diagonal entries against every step's matrix
  of the same trajectory); the fit's wall time.
* torchjd: the example's loop (``mtl_backward`` + UPGrad + ``jac_to_grad``) without a collector
  ("none"), with ETAP on torchjd's Jacobian (``step_context``, "etap") and with ETAP on the generic
  route (a `StepContext` before ``mtl_backward``: the collector's own K-row backward, "etap generic").

Every variant trains the same trajectory (collectors never change training). The variants are
interleaved within each repeat, one thread; a variant's ratio is the median over repeats of its time over
the same repeat's time without collectors. Run from the repository root:

    python benchmarks/integrations_overhead.py --repeats 9
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "integrations"
GOALS = {"lightning": 1.15, "torchjd": 1.05}


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MATRICES: dict[str, object] = {}  # variant -> the ETAP matrix of its last run


def lightning_fit(example, tasks, rows: int, epochs: int, every: int | None) -> float:
    """Seconds of `Trainer.fit`; `every`: ETAP collects every `every`-th step (None: no callback)."""
    import lightning as L

    from taskrel.integrations.lightning import AffinityCallback

    L.seed_everything(0, verbose=False)
    module, data = example.Forecaster(tasks), example.Windows(tasks, rows=rows)
    callbacks = [AffinityCallback(["etap"], every=every)] if every else []
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, num_sanity_val_steps=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - started
    if every:
        MATRICES[f"lightning etap every={every}"] = callbacks[0].matrices["etap"]
    return seconds


def torchjd_loop(example, tasks, rows: int, epochs: int, route: str | None) -> float:
    from torchjd.aggregation import UPGrad
    from torchjd.autojac import jac_to_grad, mtl_backward

    from taskrel.affinity import EtapAffinity
    from taskrel.integrations.torchjd import step_context
    from taskrel.train import StepContext

    torch.manual_seed(0)
    model = example.forecaster(tasks, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    aggregator, shared = UPGrad(), list(model.trunk.parameters())
    (x, y), _, _ = example.windows(tasks, rows)
    etap = EtapAffinity(weighting="steps")
    order = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=order).split(128):
            features = model.trunk(x[batch])
            losses = [nn.functional.mse_loss(model.head(t)(features)[:, 0], y[batch, k]) for k, t in enumerate(tasks)]
            optimizer.zero_grad()
            if route == "generic":
                etap.on_step(StepContext(tasks, losses, shared, optimizer))
            mtl_backward(losses, features)
            if route == "torchjd":
                etap.on_step(step_context(tasks, losses, shared, optimizer))
            jac_to_grad(shared, aggregator)
            optimizer.step()
    return time.perf_counter() - started


def user_lines(path: Path) -> dict:
    """Lines of code of an example (no blank, comment or docstring lines) and those that are taskrel's."""
    lines, in_docstring = [], False
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith('"""'):
            in_docstring = not (in_docstring or (text.count('"""') == 2 and len(text) > 3))
            continue
        if in_docstring or not text or text.startswith("#"):
            continue
        lines.append(text)
    return {"lines": len(lines), "taskrel_lines": sum("# taskrel" in line for line in lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12000, help="hours of ETTh1 (60%% of them train)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=4, help="Lightning's sparser variant: ETAP every k-th step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    lightning_example, torchjd_example = load("lightning_example"), load("torchjd_example")
    tasks = tuple(lightning_example.CHANNELS)
    runs = {
        ("lightning", "none"): lambda: lightning_fit(lightning_example, tasks, args.rows, args.epochs, None),
        ("lightning", "etap"): lambda: lightning_fit(lightning_example, tasks, args.rows, args.epochs, 1),
        ("lightning", f"etap every={args.every}"): lambda: lightning_fit(
            lightning_example, tasks, args.rows, args.epochs, args.every
        ),
        ("torchjd", "none"): lambda: torchjd_loop(torchjd_example, tasks, args.rows, args.epochs, None),
        ("torchjd", "etap"): lambda: torchjd_loop(torchjd_example, tasks, args.rows, args.epochs, "torchjd"),
        ("torchjd", "etap generic"): lambda: torchjd_loop(torchjd_example, tasks, args.rows, args.epochs, "generic"),
    }
    for run in runs.values():  # warm-up: imports, data reading, first-call costs
        run()
    seconds = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            seconds[key].append(run())
    median = {key: statistics.median(values) for key, values in seconds.items()}
    results = {}
    for framework, goal in GOALS.items():
        results[framework] = {
            "goal": goal,
            "seconds": {variant: median[(f, variant)] for f, variant in median if f == framework},
            "ratio": {  # the median over repeats of each repeat's ratio (runs of one repeat ran back to back)
                variant: statistics.median(v / b for v, b in zip(values, seconds[(framework, "none")], strict=True))
                for (f, variant), values in seconds.items()
                if f == framework
            },
            "all_seconds": {variant: seconds[(f, variant)] for f, variant in seconds if f == framework},
            "docs_example": user_lines(EXAMPLES / f"{framework}_example.py"),
        }
        results[framework]["met"] = {v: r <= goal for v, r in results[framework]["ratio"].items() if v != "none"}
        print(framework, {v: round(r, 3) for v, r in results[framework]["ratio"].items()}, "goal", goal,
              results[framework]["docs_example"])  # fmt: skip
    full, sparse = MATRICES["lightning etap every=1"], MATRICES[f"lightning etap every={args.every}"]
    off = ~np.eye(len(tasks), dtype=bool)
    results["lightning"][f"pearson_r every={args.every} vs every step"] = float(
        np.corrcoef(full.values[off], sparse.values[off])[0, 1]
    )
    print("lightning: Pearson r of ETAP's off-diagonal entries, every", args.every, "vs every step:",
          round(results["lightning"][f"pearson_r every={args.every} vs every step"], 3))  # fmt: skip
    path = write_result("integrations_overhead", {
        "tasks": list(tasks), "rows": args.rows, "epochs": args.epochs, "repeats": args.repeats,
        "threads": 1, "results": results,
    })  # fmt: skip
    print("wrote", path, file=sys.stderr)


if __name__ == "__main__":
    main()
