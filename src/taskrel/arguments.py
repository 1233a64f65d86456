"""Checks of scalar arguments for the public constructors; each failure names the argument and its valid range.

Integers may be Python or NumPy integers (``np.int64(2)`` is 2); booleans are refused where a count
is asked for, and so are floats, even whole ones. Reals may be any finite Python or NumPy number.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from taskrel.errors import ConfigError


def _expected(kind: str, minimum: float | None, maximum: float | None, open_minimum: bool = False) -> str:
    """E.g. ``"an integer ≥ 2"``, ``"a finite number in (0, 1]"``."""
    low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (minimum, maximum))
    if minimum is not None and maximum is not None:
        return f"{kind} in {'(' if open_minimum else '['}{low}, {high}]"
    if minimum is not None:
        return f"{kind} {'>' if open_minimum else '≥'} {low}"
    return kind if maximum is None else f"{kind} ≤ {high}"


def integer(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an ``int`` when it is an integer (not a bool) within ``[minimum, maximum]``."""
    expected = _expected("an integer", minimum, maximum)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be {expected}, got {value}")
    return value


def real(
    name: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
) -> float:
    """`value` as a ``float`` when it is a finite number within the range (``minimum`` excluded if `open_minimum`)."""
    expected = _expected("a finite number", minimum, maximum, open_minimum)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    value = float(value)
    too_low = minimum is not None and (value <= minimum if open_minimum else value < minimum)
    if too_low or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    return value


def flag(name: str, value: object) -> bool:
    """`value` as a ``bool`` when it is one (Python or NumPy)."""
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)
