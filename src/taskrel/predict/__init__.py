"""Predict the MTL gain of any task group from one affinity run and a few trained groups."""

from taskrel.predict.ayman import AymanPredictor
from taskrel.predict.base import GainPredictor
from taskrel.predict.baselines import HoaPredictor, KernelSurrogatePredictor, SurrogatePredictor, TagPredictor
from taskrel.predict.default import DefaultPredictor
from taskrel.predict.etap import EtapPredictor
from taskrel.predict.hierarchical import HierarchicalPredictor
from taskrel.predict.mtgnet import MtgNetPredictor

#: The methods of the evaluation protocol, by the names its JSON output uses.
PREDICTORS = {
    "default": lambda: DefaultPredictor(),
    "etap": lambda: EtapPredictor(),
    "etap_stage1": lambda: EtapPredictor(residual=False),
    "affine": lambda: EtapPredictor(mapping="affine"),
    "tag": lambda: TagPredictor(),
    "hoa": lambda: HoaPredictor(),
    "surrogate": lambda: SurrogatePredictor(),
    "kernel_surrogate": lambda: KernelSurrogatePredictor(),
    "mtgnet": lambda: MtgNetPredictor(),
    "ayman": lambda: AymanPredictor(),
}

__all__ = [
    "PREDICTORS",
    "AymanPredictor",
    "DefaultPredictor",
    "EtapPredictor",
    "GainPredictor",
    "HierarchicalPredictor",
    "HoaPredictor",
    "KernelSurrogatePredictor",
    "MtgNetPredictor",
    "SurrogatePredictor",
    "TagPredictor",
]
