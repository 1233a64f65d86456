"""One exception hierarchy for taskrel.

Every failure a user can cause (bad data, bad arguments, infeasible constraints, a solver that
does not converge, a store that belongs to another sweep) raises a subclass of `TaskrelError`
whose message names what was wrong and where. Subclasses also derive from the matching builtin
(`ValueError`, `KeyError`, ...) so generic handlers keep working.
"""

from __future__ import annotations


class TaskrelError(Exception):
    """Base class of every error raised on purpose by taskrel."""


class DataError(TaskrelError, ValueError):
    """A data file or array is missing, malformed, or inconsistent (names the file/array and row)."""


class ShapeError(DataError):
    """An array or matrix has the wrong shape."""


class NonFiniteError(TaskrelError, FloatingPointError):
    """A loss, gradient, matrix or table entry is NaN or infinite (names the task or entry)."""


class UnknownTaskError(TaskrelError, KeyError):
    """A task name is not part of the dataset, matrix or table at hand."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class ModelError(TaskrelError, ValueError):
    """A model does not fit what is asked of it (e.g. no shared parameters, a missing head)."""


class ConfigError(TaskrelError, ValueError):
    """An argument or configuration value is out of its allowed range."""


class InfeasibleError(TaskrelError):
    """A selection problem has no feasible solution; `constraint` names the culprit."""

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class SolverError(TaskrelError, RuntimeError):
    """A numerical solver failed or did not converge within its limits."""


class StoreError(TaskrelError):
    """A run store is corrupt, foreign, or belongs to another dataset/configuration."""


class DistributedError(TaskrelError, RuntimeError):
    """A decentralised run lost an agent or could not communicate with its neighbours."""
