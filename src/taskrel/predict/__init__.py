"""Predict the MTL gain of any task group from one affinity run and a few trained groups."""

from taskrel.predict.base import GainPredictor
from taskrel.predict.baselines import HoaPredictor, SurrogatePredictor, TagPredictor
from taskrel.predict.etap import EtapPredictor
from taskrel.predict.mtgnet import MtgNetPredictor

#: The methods of the evaluation protocol, by the names its JSON output uses.
PREDICTORS = {
    "etap": lambda: EtapPredictor(),
    "etap_stage1": lambda: EtapPredictor(residual=False),
    "affine": lambda: EtapPredictor(mapping="affine"),
    "tag": lambda: TagPredictor(),
    "hoa": lambda: HoaPredictor(),
    "surrogate": lambda: SurrogatePredictor(),
    "mtgnet": lambda: MtgNetPredictor(),
}

__all__ = [
    "PREDICTORS",
    "EtapPredictor",
    "GainPredictor",
    "HoaPredictor",
    "MtgNetPredictor",
    "SurrogatePredictor",
    "TagPredictor",
]
