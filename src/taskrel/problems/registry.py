"""Finding a problem by name: specs, the built-in problems and the ``taskrel.problems`` entry points.

A *spec* names a problem so that another process (a sweep worker, a Ray task) can build it itself:
``pkg.module:attr``, ``path/to/file.py:attr`` (``attr`` is a `Problem` or a zero-argument callable
returning one), a built-in name (`BUILTIN_PROBLEMS`), or a name registered under the entry-point
group ``taskrel.problems``. Built-ins are named by "module:factory" text like entry points, so that
naming one costs no import of torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskrel.errors import ConfigError
from taskrel.problems.protocol import Problem, check_problem

#: Built-in problems by name: "module:factory", factory(data_dir=None, **train_options) -> Problem.
BUILTIN_PROBLEMS: dict[str, str] = {
    "chemical": "taskrel.problems.builtin:chemical",
    "school": "taskrel.problems.builtin:school",
    "landmine": "taskrel.problems.builtin:landmine",
    "parkinsons": "taskrel.problems.builtin:parkinsons",
    "ett": "taskrel.problems.builtin:ett",
    "etth2": "taskrel.problems.builtin:etth2",
}
ENTRY_POINT_GROUP = "taskrel.problems"


def registered_problems() -> dict[str, str]:
    """Every problem name a spec can use: the built-ins plus the ``taskrel.problems`` entry points."""
    names = dict(BUILTIN_PROBLEMS)
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(point.name, point.value)
    return names


def load_problem(spec: str | Problem, **options: Any) -> Problem:
    """Resolve a spec (see the module docstring) into a problem; a `Problem` is returned as is.

    `options` go to a built-in or registered factory (``data_dir=``, training options such as
    ``max_steps=``); for a user's ``module:attr`` spec they are passed to ``attr`` when it is
    callable. The returned problem remembers its spec (`problem_spec`), so workers can rebuild it.
    """
    if not isinstance(spec, str):
        if options:
            raise ConfigError(f"options {sorted(options)} only apply to a problem given by name or spec")
        return check_problem(spec, f"problem {type(spec).__name__}")
    registry = registered_problems()
    target = registry.get(spec, spec)
    if ":" not in target:
        raise ConfigError(
            f"unknown problem {spec!r}: use a built-in name ({', '.join(registry)}), "
            "pkg.module:attr or path/to/file.py:attr"
        )
    location, _, attr = target.rpartition(":")
    value = _import_attr(location, attr, spec)
    if isinstance(value, type) or (callable(value) and not hasattr(value, "train")):  # a factory or a class
        try:
            value = value(**options)
        except TypeError as exc:
            if options:
                raise ConfigError(f"problem {spec!r} does not take the options {sorted(options)} ({exc})") from None
            raise
    elif options:
        raise ConfigError(f"problem {spec!r} is an object, so options {sorted(options)} cannot be applied to it")
    problem = check_problem(value, f"problem {spec!r}")
    with contextlib.suppress(AttributeError):  # an object refusing new attributes is sent to workers as is
        problem.problem_spec = (_portable(spec, location, attr, registry), dict(options))
    return problem


def problem_spec(problem: Problem) -> tuple[str, dict] | None:
    """(spec, options) that rebuild `problem` in another process, if it was loaded from a spec."""
    return getattr(problem, "problem_spec", None)


def _portable(spec: str, location: str, attr: str, registry: Mapping[str, str]) -> str:
    """A spec another process can resolve from any working directory (file paths made absolute)."""
    if spec in registry or not location.endswith(".py"):
        return spec
    return f"{Path(location).resolve()}:{attr}"


def _import_attr(location: str, attr: str, spec: str) -> object:
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise ConfigError(f"problem {spec!r}: no file {path}")
        module_name = "taskrel_user_problem_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module = sys.modules.get(module_name)
        if module is None:
            folder = str(path.resolve().parent)
            if folder not in sys.path:  # as Python does for a script: modules beside the file import
                sys.path.insert(0, folder)
            loader = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[module_name] = module
            try:
                loader.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise ConfigError(f"problem {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                del sys.modules[module_name]
                raise
    else:
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"problem {spec!r}: cannot import module {location!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"problem {spec!r}: {location} has no attribute {attr!r}") from None
