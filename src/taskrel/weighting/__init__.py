"""Task weighting inside one group: Nash bargaining (Nash-MTL, AuxiNash) and the baselines.

`solve_bargaining` solves Gα = p/α for a Gram matrix G of task gradients; the methods plug into
any PyTorch loop through ``method.backward(losses, shared_parameters)`` (see `methods`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskrel.errors import ConfigError
from taskrel.weighting.auxinash import AuxiNash
from taskrel.weighting.bargaining import (
    BargainingSolution,
    NearStationaryWarning,
    relative_residual,
    solve_bargaining,
)
from taskrel.weighting.hypergradient import neumann_inverse_hvp, preference_hypergradient
from taskrel.weighting.methods import (
    GCS,
    LinearScalarisation,
    NashMTL,
    PCGrad,
    WeightingMethod,
    task_specific_parameters,
)

#: Methods by the name used on the command line and in result files.
METHODS: dict[str, type[WeightingMethod]] = {
    "ls": LinearScalarisation,
    "nash_mtl": NashMTL,
    "auxinash": AuxiNash,
    "gcs": GCS,
    "pcgrad": PCGrad,
}


def make_method(name: str, tasks: Sequence[str] | int, **options: Any) -> WeightingMethod:
    """Build a weighting method by name (one of `METHODS`) for `tasks`."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown weighting method {name!r}; available: {', '.join(METHODS)}") from None
    return cls(tasks, **options)


__all__ = [
    "GCS",
    "METHODS",
    "AuxiNash",
    "BargainingSolution",
    "LinearScalarisation",
    "NashMTL",
    "NearStationaryWarning",
    "PCGrad",
    "WeightingMethod",
    "make_method",
    "neumann_inverse_hvp",
    "preference_hypergradient",
    "relative_residual",
    "solve_bargaining",
    "task_specific_parameters",
]
