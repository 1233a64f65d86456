"""The names and defaults a user chooses among, defined once and importable without torch.

Every command's parser lists its choices from here, and the library modules that implement them
import them from here, so ``taskrel COMMAND --help`` answers without loading the implementations.
"""

#: Affinity collectors (`taskrel.affinity.measure.COLLECTORS` maps each to its class).
AFFINITY_COLLECTORS = ("etap", "tag", "ptg")
#: `measure_affinity`'s methods: a collector, or "none" (the plain all-task run).
AFFINITY_METHODS = (*AFFINITY_COLLECTORS, "none")
#: How a collector aggregates its steps: uniformly over steps, or by each target's validation improvement.
AFFINITY_WEIGHTINGS = ("steps", "validation")
#: PTG's reference step (`taskrel.affinity.transfer_gain`).
PTG_REFERENCES = ("doubled", "single")

#: The gain predictors of the evaluation protocol (`taskrel.predict.registry.PREDICTORS`), by the names its JSON uses.
PREDICTORS = (
    "default", "etap", "etap_stage1", "affine", "tag", "hoa", "surrogate", "kernel_surrogate", "mtgnet", "ayman",
)  # fmt: skip
#: Share of the measured multi-task groups held out as test groups by `evaluate_predictors`.
TEST_FRACTION = 0.25

#: Group scores from a pairwise matrix (`taskrel.select.scores`).
SELECTION_RULES = ("ptg", "tag", "hoa")
#: Resource charged when a candidate names no cost: one unit per trained network.
DEFAULT_RESOURCE = "cost"

#: How the pipeline chooses its training groups (`taskrel.grouping.sampling`).
SAMPLINGS = ("random", "adaptive")
#: How the pipeline's affinity run aggregates ETAP's steps by default: by each target's validation
#: improvement, the variant whose scores predicted measured gains (docs/benchmarks.md).
PIPELINE_WEIGHTING = "validation"

#: Task weightings of a run of two or more tasks (`taskrel.weighting.weighted`).
TASK_WEIGHTINGS = ("ls", "nash-mtl", "auxinash", "gcs", "pcgrad")
#: Where AuxiNash draws the main task's meta batches: training rows, or the validation rows early stopping watches.
META_DATA = ("train", "val")
#: What `taskrel auxinash run` can compare: the main task alone ("stl") and every task weighting.
AUXILIARY_METHODS = ("stl", *TASK_WEIGHTINGS)
#: What `taskrel auxinash run` compares by default.
DEFAULT_AUXILIARY_METHODS = ("stl", "ls", "auxinash")
#: AuxiNash's meta learning rate on its toy problem (`taskrel auxinash toy`): the toy's hypergradients are
#: small, so the reference's 5e-3 moves the preferences too slowly to matter before training reaches the
#: Pareto front.
TOY_META_LR = 5e-2

#: Where sweeps run: a local process pool, or Ray.
EXECUTORS = ("local", "ray")
#: Most runs a sweep trains at once as one batched model, by default.
GROUP_BATCH = 256

#: Where a GMRF run executes: one process per agent (torch.distributed), or in this process.
GMRF_ENGINES = ("dist", "sim")
