"""Decentralised multi-task learning over a learned task graph (GMRF prior, Laplacian diffusion).

Agents each learn their own model from data they cannot share. Their true models are modelled as
a Gaussian Markov random field whose precision is an unknown graph Laplacian L; the agents learn
L̂ from their current models and cooperate by Laplacian-regularised diffusion. Modules:

* `graphs`: topologies, GGL/CGL Laplacians, GMRF draws;  `estimators`: Laplacian estimators;
* `streams`: per-agent data;  `algorithms`: the shared update functions;  `agent`: one agent;
* `simulator`: vectorised Monte-Carlo engine;  `distributed`: torch.distributed engine;
* `realdata`: School / Landmine experiments;  `cli`: ``taskrel gmrf``.
"""

from taskrel.decentral.algorithms import ALGORITHMS, Schedule, check_stability
from taskrel.decentral.estimators import (
    block_trace_covariance,
    laplacian_ml,
    masked_inverse,
    neighbourhood_estimate,
    spectral_error,
)
from taskrel.decentral.graphs import draw_models, laplacian, make_graph, metropolis_weights
from taskrel.decentral.problem import GMRFConfig, build_world
from taskrel.decentral.simulator import SimulationResult, simulate

__all__ = [
    "ALGORITHMS",
    "GMRFConfig",
    "Schedule",
    "SimulationResult",
    "block_trace_covariance",
    "build_world",
    "check_stability",
    "draw_models",
    "laplacian",
    "laplacian_ml",
    "make_graph",
    "masked_inverse",
    "metropolis_weights",
    "neighbourhood_estimate",
    "simulate",
    "spectral_error",
]
