"""The docs' integration examples (docs/integrations/*_example.py), imported by path as a user runs them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrations"


def load_example(name: str) -> ModuleType:
    """docs/integrations/<name>.py as a module (imported once)."""
    key = f"taskrel_docs_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, DOCS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
