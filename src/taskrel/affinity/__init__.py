"""Task affinity measured during one training run: ETAP score, TAG lookahead, PTG transfer gain.

Every matrix is oriented A[source, target]: row i, column j = effect of task i's update on task j.
The names below are imported on first use (`taskrel.lazy`), so `AffinityMatrix` loads without torch.
"""

from taskrel.lazy import lazy_exports

_EXPORTS = {
    "AffinityCollector": "collector", "EtapAffinity": "etap", "TagAffinity": "lookahead",
    "AffinityMatrix": "matrix", "PtgTransferGain": "transfer_gain", "COLLECTORS": "measure",
    "parameter_directions": "updates", "trial_parameters": "updates", "update_directions": "updates",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
