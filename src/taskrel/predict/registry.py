"""The predictors of the evaluation protocol, by the names its JSON output uses (`taskrel.choices.PREDICTORS`)."""

from __future__ import annotations

from collections.abc import Callable

from taskrel.predict.ayman import AymanPredictor
from taskrel.predict.base import GainPredictor
from taskrel.predict.baselines import HoaPredictor, KernelSurrogatePredictor, SurrogatePredictor, TagPredictor
from taskrel.predict.default import DefaultPredictor
from taskrel.predict.etap import EtapPredictor


def _mtgnet() -> GainPredictor:
    from taskrel.predict.mtgnet import MtgNetPredictor  # start-up: torch, only when MTG-Net is used

    return MtgNetPredictor()


#: A factory per predictor name, each returning a fresh, unfitted predictor.
PREDICTORS: dict[str, Callable[[], GainPredictor]] = {
    "default": DefaultPredictor,
    "etap": EtapPredictor,
    "etap_stage1": lambda: EtapPredictor(residual=False),
    "affine": lambda: EtapPredictor(mapping="affine"),
    "tag": TagPredictor,
    "hoa": HoaPredictor,
    "surrogate": SurrogatePredictor,
    "kernel_surrogate": KernelSurrogatePredictor,
    "mtgnet": _mtgnet,
    "ayman": AymanPredictor,
}
