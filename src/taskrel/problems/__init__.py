"""Problems: what every stage of taskrel runs on.

- `taskrel.problems.protocol`: the `Problem` protocol, `GroupResult` and the checks of what a problem returns.
- `taskrel.problems.registry`: finding a problem by spec or name (built-ins, entry points, files).
- `taskrel.problems.torch_problem`: `TorchProblem`, a problem trained by taskrel's own loop.
- `taskrel.problems.builtin`: the built-in datasets as `TorchProblem`s.

This package imports only the light modules (no torch), so that naming a problem is cheap.
"""

from taskrel.problems.protocol import GroupResult, Problem, check_result
from taskrel.problems.registry import BUILTIN_PROBLEMS, load_problem, problem_spec, registered_problems

__all__ = [
    "BUILTIN_PROBLEMS",
    "GroupResult",
    "Problem",
    "check_result",
    "load_problem",
    "problem_spec",
    "registered_problems",
]
