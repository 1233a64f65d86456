"""Packages that re-export their submodules' names on first use (PEP 562).

A package whose submodules import torch re-exports lazily, so that a light submodule (a training
configuration, a list of names) is importable alone: the command line builds every parser from
light modules and answers ``--help`` without importing torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for `package`: ``name`` is ``package.<exports[name]>.name``, imported on first use."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    return __getattr__
