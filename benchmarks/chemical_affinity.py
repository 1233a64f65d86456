"""Chemical affinity matrices: ETAP (with and without momentum), TAG and PTG from the same runs.

One all-task training run per seed under the full protocol (early stopping), with every collector
attached at once — they do not change the trajectory (trial steps are undone) — so all matrices
describe the same training. ETAP and TAG collect every step; PTG every `--ptg-every` steps.
Writes the seed-averaged matrices as ``results/chemical_affinity_<method>.csv`` (time average
over steps, ETAP eq. 6) and ``..._validation.csv`` (epochs weighted by the target's validation
improvement), row = source, column = target, with heat maps and the runs' timings.

    python benchmarks/chemical_affinity.py --seeds 3 --ptg-every 4
"""

from __future__ import annotations

import argparse

from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity
from taskrel.data import load_chemical
from taskrel.train import Trainer

from common import save_affinity_means, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ptg-every", type=int, default=4)
    args = parser.parse_args()
    dataset = load_chemical()
    per_method: dict[str, list] = {}
    runs = []
    for seed in range(args.seeds):
        collectors = {
            "etap": EtapAffinity(),
            "etap_momentum": EtapAffinity(momentum=True),
            "tag": TagAffinity(),
            "ptg": PtgTransferGain(every=args.ptg_every),
        }
        result = Trainer(dataset, dataset.task_names, seed=seed, callbacks=list(collectors.values())).fit()
        runs.append({"seed": seed, "steps": result.steps, "epochs": result.epochs, "train_seconds": result.seconds,
                     "collect_seconds": {name: c.seconds for name, c in collectors.items()}})  # fmt: skip
        for name, collector in collectors.items():
            per_method.setdefault(name, []).append(collector)
        print(f"seed {seed}: {result.steps} steps in {result.seconds:.0f} s", flush=True)
    save_affinity_means(per_method, "chemical_affinity", "Chemical")
    path = write_result("chemical_affinity", {"seeds": args.seeds, "ptg_every": args.ptg_every, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
