"""Plots: real PNGs of the expected size and colours, drawn without touching the user's matplotlib state."""

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np

from taskrel.plots import heatmap

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_heatmap_colours_follow_the_sign_of_the_entries(tmp_path):
    values = np.array([[5.0, 1.0, -1.0], [1.0, 5.0, 0.0], [-1.0, 0.0, 5.0]])
    heatmap(values, ["a", "b", "c"], tmp_path / "h.png", annotate=False)
    image = matplotlib.image.imread(tmp_path / "h.png")
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 400
    reds = (image[..., 0] > 0.6) & (image[..., 2] < 0.4)
    blues = (image[..., 2] > 0.6) & (image[..., 0] < 0.4)
    assert reds.sum() > 1000 and blues.sum() > 1000  # positive entries red, negative blue (RdBu_r)


def test_plotting_leaves_the_users_backend_and_figures_alone(tmp_path):
    script = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
plt.figure()
from taskrel.plots import heatmap
heatmap([[1.0, -1.0], [-1.0, 1.0]], ["a", "b"], r"{tmp_path / 'h.png'}")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [1], plt.get_fignums()
"""
    subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": SRC}, check=True, timeout=120)
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
