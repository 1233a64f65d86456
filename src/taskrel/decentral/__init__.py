"""Decentralised multi-task learning over a learned task graph (GMRF prior, Laplacian diffusion).

Agents each learn their own model from data they cannot share. Their true models are modelled as
a Gaussian Markov random field whose precision is an unknown graph Laplacian L; the agents learn
L̂ from their current models and cooperate by Laplacian-regularised diffusion. Modules:

* `graphs`: topologies, GGL/CGL Laplacians, GMRF draws;  `estimators`: Laplacian estimators;
* `streams`: synthetic per-agent streams;  `sources`: per-agent real data (built-in datasets, files);
* `algorithms`: the shared update functions and stability bounds;  `agent`: one agent;
* `simulator`: vectorised Monte-Carlo engine;  `distributed`: torch.distributed engine;
* `realdata`: the in-process engine on real data;  `cli`: ``taskrel gmrf``.

Names are imported on first use, so ``taskrel gmrf`` can check its arguments before SciPy loads.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ALGORITHMS": "algorithms", "Schedule": "algorithms", "check_stability": "algorithms",
    "block_trace_covariance": "estimators", "laplacian_ml": "estimators", "masked_inverse": "estimators",
    "neighbourhood_estimate": "estimators", "spectral_error": "estimators",
    "draw_models": "graphs", "laplacian": "graphs", "make_graph": "graphs", "metropolis_weights": "graphs",
    "GMRFConfig": "problem", "build_world": "problem",
    "SimulationResult": "simulator", "simulate": "simulator",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
