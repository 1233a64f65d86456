"""Decentralised plots: the figure holds the run's own curves and edges; the user's matplotlib state is left alone."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from taskrel.decentral import GMRFConfig, simulate
from taskrel.decentral.algorithms import ALGORITHMS
from taskrel.decentral.plots import LABELS, graph_picture, msd_curves

from ..images import assert_drawn

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_importing_and_plotting_leave_the_users_backend_and_figures_alone(tmp_path):
    script = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
plt.figure()
import taskrel.decentral.plots as plots
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
plots.graph_picture([[0, 1], [1, 0]], r"{tmp_path / 'g.png'}")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [1], plt.get_fignums()
"""
    subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": SRC}, check=True, timeout=120)
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_msd_figure_draws_each_algorithms_mean_msd_and_marks_the_switch(tmp_path):
    result = simulate(GMRFConfig(agents=4, dim=6, iters=120, runs=2, switch=50))
    fig = msd_curves(result, tmp_path / "msd.png", smooth=50)  # 120 ≤ 4·50 iterations: drawn unsmoothed
    (ax,) = fig.axes
    curves = ax.get_lines()[: len(ALGORITHMS)]
    assert [line.get_label() for line in curves] == [LABELS[name] for name in ALGORITHMS]
    # the network MSD in dB, computed here from the raw per-run squared deviations
    expected_db = 10 * np.log10(result.msd.mean(axis=0))
    for line, row in zip(curves, expected_db, strict=True):
        assert np.allclose(line.get_ydata(), row)
        assert np.array_equal(line.get_xdata(), np.arange(1, 121))
    switch = ax.get_lines()[len(ALGORITHMS)]
    assert list(switch.get_xdata()) == [50, 50]
    assert ax.get_xlabel() == "iteration i" and ax.get_ylabel() == "network MSD (dB)"
    assert_drawn(tmp_path / "msd.png")


def test_graph_picture_draws_the_strongest_edges_between_the_right_nodes(tmp_path):
    weights = np.zeros((5, 5))
    for (i, j), w in {(0, 1): 3.0, (1, 2): 1.0, (3, 4): 2.0, (0, 4): 0.5}.items():
        weights[i, j] = weights[j, i] = w
    fig = graph_picture(weights, tmp_path / "g.png", labels=list("abcde"), top=2)
    (ax,) = fig.axes
    angle = 2 * np.pi * np.arange(5) / 5
    nodes = np.column_stack([np.cos(angle), np.sin(angle)])
    drawn = [np.column_stack([line.get_xdata(), line.get_ydata()]) for line in ax.get_lines()]
    assert len(drawn) == 2
    for segment, (i, j) in zip(drawn, [(0, 1), (3, 4)], strict=True):  # strongest first
        assert np.allclose(segment, nodes[[i, j]])
    assert np.allclose(ax.collections[0].get_offsets(), nodes)
    assert [t.get_text() for t in ax.texts] == list("abcde")
    assert_drawn(tmp_path / "g.png", min_painted=0.005)


@pytest.mark.parametrize("top", [None, 10])
def test_graph_picture_without_top_draws_every_positive_edge(tmp_path, top):
    weights = np.array([[0, 1, 0], [1, 0, 2], [0, 2, 0]], float)
    fig = graph_picture(weights, tmp_path / "g.png", top=top)
    assert len(fig.axes[0].get_lines()) == 2
