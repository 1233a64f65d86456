"""Predict the MTL gain of any task group from one affinity run and a few trained groups.

The names below are imported on first use (`taskrel.lazy`); only MTG-Net needs torch.
"""

from taskrel.lazy import lazy_exports

_EXPORTS = {
    "PREDICTORS": "registry", "AymanPredictor": "ayman", "DefaultPredictor": "default", "EtapPredictor": "etap",
    "GainPredictor": "base", "HierarchicalPredictor": "hierarchical", "HoaPredictor": "baselines",
    "KernelSurrogatePredictor": "baselines", "MtgNetPredictor": "mtgnet", "SurrogatePredictor": "baselines",
    "TagPredictor": "baselines",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
