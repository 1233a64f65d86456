"""What a test can check in a PNG a person would look at: it decodes, has the expected size and is not blank."""

from pathlib import Path

import matplotlib.image
import numpy as np


def assert_drawn(path: str | Path, min_pixels: int = 300, min_painted: float = 0.02, min_colours: int = 3):
    """Decode `path` with matplotlib and check its size, the share of non-white pixels and the number of colours."""
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_pixels, image.shape
    rgb = image[..., :3]
    painted = (rgb < 0.95).any(axis=-1).mean()
    assert painted >= min_painted, f"{path}: only {painted:.3%} of the pixels are not white"
    colours = {tuple(c) for c in np.round(rgb.reshape(-1, 3) * 8).astype(int)}
    assert len(colours) >= min_colours, f"{path}: {len(colours)} colours"
    return image
