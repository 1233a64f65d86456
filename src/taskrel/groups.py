"""Task groups: canonical names, parsing, bitmasks and enumeration.

A group is a `frozenset` of task names. Its canonical text form lists the members in the
dataset's task order joined by ``|`` (e.g. ``"83|78"``); every CSV file and CLI flag uses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

from taskrel.errors import DataError, UnknownTaskError

Group = frozenset[str]
SEPARATOR = "|"


def check_tasks(names: Iterable[str], tasks: Sequence[str], where: str = "") -> None:
    """Raise `UnknownTaskError` naming every entry of `names` that is not in `tasks`."""
    known = set(tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        place = f" in {where}" if where else ""
        raise UnknownTaskError(
            f"unknown task(s) {', '.join(map(repr, unknown))}{place}; known tasks: {', '.join(tasks)}"
        )


def make_group(names: Iterable[str], tasks: Sequence[str], where: str = "") -> Group:
    """Validate `names` against `tasks` and return them as a group (non-empty, no duplicates)."""
    names = list(names)
    check_tasks(names, tasks, where)
    if not names:
        raise DataError(f"empty task group{f' in {where}' if where else ''}")
    if len(set(names)) != len(names):
        raise DataError(f"task group {names} lists a task twice{f' in {where}' if where else ''}")
    return frozenset(names)


def group_name(group: Iterable[str], tasks: Sequence[str]) -> str:
    """Canonical text of a group: members in the order of `tasks`, joined by ``|``."""
    members = set(group)
    check_tasks(members, tasks)
    return SEPARATOR.join(t for t in tasks if t in members)


def parse_group(text: str, tasks: Sequence[str], where: str = "") -> Group:
    """Parse ``"a|c|d"`` into a group, checking every name against `tasks`."""
    names = [part.strip() for part in str(text).split(SEPARATOR)]
    if any(not n for n in names):
        raise DataError(f"malformed group {text!r}{f' in {where}' if where else ''}: empty member name")
    return make_group(names, tasks, where)


def ordered(group: Iterable[str], tasks: Sequence[str]) -> list[str]:
    """Members of `group` in the order of `tasks`."""
    members = set(group)
    return [t for t in tasks if t in members]


def to_mask(group: Iterable[str], tasks: Sequence[str]) -> int:
    """Bitmask of a group: bit i is set when ``tasks[i]`` is a member."""
    index = {t: i for i, t in enumerate(tasks)}
    members = list(group)
    check_tasks(members, tasks)
    return sum(1 << index[t] for t in members)


def from_mask(mask: int, tasks: Sequence[str]) -> Group:
    """Inverse of `to_mask`."""
    if mask <= 0 or mask >= 1 << len(tasks):
        raise DataError(f"group mask {mask} out of range for {len(tasks)} tasks")
    return frozenset(t for i, t in enumerate(tasks) if mask >> i & 1)


def all_groups(tasks: Sequence[str], sizes: Iterable[int] | None = None) -> Iterator[Group]:
    """Every group of the given sizes (default: all 2^n − 1), by size, then in task order."""
    n = len(tasks)
    for size in sorted(set(sizes)) if sizes is not None else range(1, n + 1):
        if not 1 <= size <= n:
            raise DataError(f"group size {size} out of range 1..{n}")
        for combo in itertools.combinations(tasks, size):
            yield frozenset(combo)
