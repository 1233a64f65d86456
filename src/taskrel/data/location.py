"""Where dataset files live: ``data_dir=`` argument, else ``$TASKREL_DATA``, else a user cache.

Files are addressed by their path inside the data root (``etap/chemical_task_splits/83_X_train.npy``).
A file missing from the cache is downloaded from its public source; offline, that fails with a
message naming the file, the address and the ``TASKREL_DATA`` variable.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from taskrel.errors import DataError

ENV_VAR = "TASKREL_DATA"

# Public sources of the files the loaders read (pinned commits), by top-level folder.
SOURCES = {
    "etap/chemical_task_splits/": "https://raw.githubusercontent.com/aronlaszka/ETAP/ea7ce07/Dataset/CHEMICAL/Task_Splits/",
    "ayman2023/school/": "https://raw.githubusercontent.com/AfiyaAyman/Task-Grouping-for-Automated-Multi-Task-Machine-Learning-via-Task-Affinity-Prediction/7cc86e9/Dataset/SCHOOL/",
    "ayman2023/landmine/": "https://raw.githubusercontent.com/AfiyaAyman/Task-Grouping-for-Automated-Multi-Task-Machine-Learning-via-Task-Affinity-Prediction/7cc86e9/Dataset/LANDMINE/",
    "ayman2023/parkinsons/": "https://raw.githubusercontent.com/AfiyaAyman/Task-Grouping-for-Automated-Multi-Task-Machine-Learning-via-Task-Affinity-Prediction/7cc86e9/Dataset/PARKINSONS/",
    "standley2020_taskonomy/": "https://raw.githubusercontent.com/tstandley/taskgrouping/bb1496e/network_selection/",
    "ett/": "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4/ETT-small/",
    "mtgnet_song2022/": "https://raw.githubusercontent.com/ShawnKS/MTG-Net/dd361da/gain_collection/collected_gain/",
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taskrel"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder datasets are read from (see the module docstring for the order)."""
    if data_dir is None and not os.environ.get(ENV_VAR):
        return cache_dir()
    root = Path(data_dir if data_dir is not None else os.environ[ENV_VAR])
    if not root.is_dir():
        raise DataError(f"data folder {root} (from {_origin(data_dir)}) does not exist")
    return root


def data_file(relpath: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of a data file, downloading it into the cache when it is absent there."""
    root = data_root(data_dir)
    path = root / relpath
    if path.is_file():
        return path
    if data_dir is not None or os.environ.get(ENV_VAR):
        raise DataError(
            f"missing data file {relpath}: looked for {path} (data folder from {_origin(data_dir)}); "
            f"point {ENV_VAR} or data_dir= at a complete copy, or leave both unset to download into {cache_dir()}"
        )
    return _download(relpath, path)


def _origin(data_dir: str | os.PathLike | None) -> str:
    return "data_dir=" if data_dir is not None else f"${ENV_VAR}"


def _download(relpath: str, target: Path) -> Path:
    searched = f"missing data file {relpath}: not in the user cache {target} (${ENV_VAR} is not set)"
    prefix = next((p for p in SOURCES if relpath.startswith(p)), None)
    if prefix is None:
        raise DataError(f"{searched} and no public source is known for it")
    url = SOURCES[prefix] + relpath[len(prefix) :]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"{searched}, and downloading {url} failed ({reason}); set {ENV_VAR} to a folder holding the data"
        ) from exc
    partial.replace(target)
    return target
