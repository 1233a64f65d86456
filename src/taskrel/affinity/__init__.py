"""Task affinity measured during one training run: ETAP score, TAG lookahead, PTG transfer gain.

Every matrix is oriented A[source, target]: row i, column j = effect of task i's update on task j.
"""

from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.etap import EtapAffinity
from taskrel.affinity.lookahead import TagAffinity
from taskrel.affinity.matrix import AffinityMatrix
from taskrel.affinity.transfer_gain import PtgTransferGain
from taskrel.affinity.updates import parameter_directions, trial_parameters, update_directions

COLLECTORS = {"etap": EtapAffinity, "tag": TagAffinity, "ptg": PtgTransferGain}

__all__ = [
    "COLLECTORS",
    "AffinityCollector",
    "AffinityMatrix",
    "EtapAffinity",
    "PtgTransferGain",
    "TagAffinity",
    "parameter_directions",
    "trial_parameters",
    "update_directions",
]
