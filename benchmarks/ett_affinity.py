"""ETTh1 affinity matrices: ETAP, TAG and PTG from the same all-channel runs.

One all-channel training run per seed with the `ett` problem's protocol (early stopping), every
collector attached at once (they leave the trajectory unchanged), so all matrices describe the same
training. Writes the seed-averaged matrices A[source, target] as ``results/ett_affinity_<method>.csv``
(time average over steps, ETAP eq. 6) and ``..._validation.csv`` (epochs weighted by the target's
validation improvement), with heat maps and the runs' timings (``ett_affinity.json``, or
``ett_affinity_<methods>.json`` for a subset given by ``--methods``). ``ett_affinity_etap.csv`` is the
matrix the gain predictors use.

    TASKREL_DATA=../shared/external_data python benchmarks/ett_affinity.py --seeds 3 --ptg-every 4
"""

from __future__ import annotations

import argparse

from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity
from taskrel.problems.builtin import ett

from common import save_affinity_means, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ptg-every", type=int, default=4)
    parser.add_argument("--methods", default="etap,tag,ptg", help="collectors to attach (default etap,tag,ptg)")
    args = parser.parse_args()
    methods = args.methods.split(",")
    problem = ett()
    per_method: dict[str, list] = {}
    runs = []
    available = {"etap": EtapAffinity, "tag": TagAffinity, "ptg": lambda: PtgTransferGain(every=args.ptg_every)}
    for seed in range(args.seeds):
        collectors = {name: available[name]() for name in methods}
        result = problem.train(problem.tasks, seed, callbacks=list(collectors.values()))
        runs.append({"seed": seed, "steps": result.steps, "epochs": result.epochs, "train_seconds": result.seconds,
                     "collect_seconds": {name: c.seconds for name, c in collectors.items()}})  # fmt: skip
        for name, collector in collectors.items():
            per_method.setdefault(name, []).append(collector)
        print(f"seed {seed}: {result.steps} steps in {result.seconds:.0f} s", flush=True)
    save_affinity_means(per_method, "ett_affinity", "ETTh1")
    payload = {"problem": problem.fingerprint(), "seeds": args.seeds, "methods": methods, "runs": runs}
    name = "ett_affinity" if sorted(methods) == sorted(available) else "_".join(["ett_affinity", *methods])
    path = write_result(name, {**payload, "ptg_every": args.ptg_every})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
