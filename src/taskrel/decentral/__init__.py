"""Decentralised multi-task learning over a learned task graph (GMRF prior, Laplacian diffusion).

Agents each learn their own model from data they cannot share. Their true models are modelled as
a Gaussian Markov random field whose precision is an unknown graph Laplacian L; the agents learn
L̂ from their current models and cooperate by Laplacian-regularised diffusion. Modules:

* `graphs`: topologies, GGL/CGL Laplacians, GMRF draws;  `estimators`: Laplacian estimators;
* `streams`: synthetic per-agent streams;  `sources`: per-agent real data (built-in datasets, files);
* `algorithms`: the shared update functions and stability bounds;  `agent`: one agent;
* `simulator`: vectorised Monte-Carlo engine;  `distributed`: torch.distributed engine;
* `realdata`: the in-process engine on real data;  `world`: a simulated experiment's configuration and world.

Names are imported on first use (`taskrel.lazy`).
"""

from taskrel.lazy import lazy_exports

_EXPORTS = {
    "ALGORITHMS": "algorithms", "Schedule": "algorithms", "check_stability": "algorithms",
    "block_trace_covariance": "estimators", "laplacian_ml": "estimators", "masked_inverse": "estimators",
    "neighbourhood_estimate": "estimators", "spectral_error": "estimators",
    "draw_models": "graphs", "laplacian": "graphs", "make_graph": "graphs", "metropolis_weights": "graphs",
    "GMRFConfig": "world", "build_world": "world",
    "SimulationResult": "simulator", "simulate": "simulator",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
