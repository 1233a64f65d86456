"""Published tables of measured group performance (`taskrel.select.published` turns them into selection problems).

- Standley et al. 2020 (``standley2020_taskonomy/``): per-task losses of every one of the 31
  groups of 5 Taskonomy tasks, plus five half-size single-task networks (cost 0.5; full-size
  networks cost 1), for validation, test and early-stopped training.
- MTG-Net (Song et al. 2022, ``mtgnet_song2022/``): per-task gains over single-task training for
  ETTm1 (7 tasks, all 127 groups), MIMIC-III (27 tasks, 3,185 groups), Taskonomy (5 tasks), on
  validation and test, plus the HOA estimate built from validation pairs.
- TAG (Fifty et al. 2021, ``tag_fifty2021/``): CelebA (9 tasks) and Taskonomy (5 tasks) pairwise
  matrices. The files store ``A[recipient][source]``; they are **transposed on load** to the
  library's ``S[source, target]``.
- Random partitions of the predecessor's datasets (``ayman2023/partitions/``).

Gains are positive when the group helps the task; losses are lower-is-better.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from taskrel.data.location import data_file
from taskrel.errors import ConfigError, DataError, NonFiniteError, ShapeError

#: Standley's Task Set 1, in the files' column order (semantic segmentation, depth, surface normals,
#: SURF keypoints, Canny edges; letters s, d, n, k, t).
STANDLEY_TASKS = ("segmentation", "depth", "normals", "keypoints", "edges")
STANDLEY_SETTINGS = {"small": "results", "large": "results_large", "small_data": "results_small_data"}
STANDLEY_EARLY = {"small": "_20", "large": "_20", "small_data": "_at4"}

ETTM1_TASKS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
MIMIC27_TASKS = (
    "icd_infection", "icd_neoplasms", "icd_endocrine", "icd_blood", "icd_mental", "icd_nervous",
    "icd_circulatory", "icd_respiratory", "icd_digestive", "icd_genitourinary", "icd_pregnancy",
    "icd_skin", "icd_musculoskeletal", "icd_congenital", "icd_ill_defined", "icd_injury", "disch_24h",
    "disch_48h", "mort_24h", "mort_48h", "long_los", "readmission_30", "final_acuity", "dnr_24h",
    "dnr_48h", "cmo_24h", "cmo_48h",
)  # fmt: skip
#: MTG-Net's Taskonomy column order (TAG's loss order ss, norm, depth, key, edge2d).
MTGNET_TASKONOMY_TASKS = ("segmentation", "normals", "depth", "keypoints", "edges")
MTGNET_FILES = {  # dataset -> (tasks, mask file, {split: value file}, mask separator)
    "ettm1": (ETTM1_TASKS, "ETTm1/ETTm1_x.csv",
              {"val": "ETTm1/ETTm1_val_y.csv", "test": "ETTm1/ETTm1_y.csv",
               "hoa": "ETTm1/ETTm1_HOA.csv"}, None),
    "mimic27": (MIMIC27_TASKS, "mimic27/mimic_x.csv",
                {"val": "mimic27/mimic_y_valid.csv", "test": "mimic27/mimic_y_test.csv",
                 "hoa": "mimic27/mimic_HOA.csv"}, None),
    "taskonomy": (MTGNET_TASKONOMY_TASKS, "taskonomy/taskonomy_x.csv",
                  {"val": "taskonomy/taskonomy.csv", "test": "taskonomy/taskonomy.csv",
                   "hoa": "taskonomy/taskonomy_HOA.csv"}, ","),
}  # fmt: skip
TAG_FILES = {
    ("celeba", "affinity"): "celeba_tag_affinity.csv",
    ("celeba", "cosine"): "celeba_cosine_similarity.csv",
    ("celeba", "pairwise"): "celeba_pairwise_val_accuracy.csv",
    ("taskonomy", "affinity"): "taskonomy_tag_affinity.csv",
    ("taskonomy", "cosine"): "taskonomy_cosine_similarity.csv",
    ("taskonomy", "pairwise"): "taskonomy_pairwise_val_loss.csv",
}
PARTITION_FILES = {
    "school": "School", "landmine": "Landmine", "parkinsons": "Parkinsons", "chemical": "Chemical",
}  # fmt: skip


def _choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; use one of {list(allowed)}")


def standley_table(
    setting: str = "small", split: str = "val", data_dir: str | os.PathLike | None = None
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Standley's network-selection table: the half-size single-task losses, and per group its members' losses.

    ``split``: ``"val"`` (selection), ``"test"`` (scoring) or ``"early"`` (the early-stopped table
    Standley's ESA baseline selects on). Tasks are `STANDLEY_TASKS`; a group's members are the tasks
    with a loss on its line.
    """
    _choice(setting, list(STANDLEY_SETTINGS), "Standley setting")
    _choice(split, ["val", "test", "early"], "split")
    suffix = {"val": "", "test": "_test", "early": STANDLEY_EARLY[setting]}[split]
    relpath = f"standley2020_taskonomy/{STANDLEY_SETTINGS[setting]}{suffix}.txt"
    path = data_file(relpath, data_dir)
    lines = path.read_text().splitlines()
    if len(lines) != 32:
        raise DataError(f"{path}: expected 32 lines (half-size singles + 31 groups), found {len(lines)}")
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("\t")
        if len(fields) != len(STANDLEY_TASKS):
            raise DataError(f"{path}: line {number} has {len(fields)} tab-separated fields, expected 5")
        values = {}
        for task, text in zip(STANDLEY_TASKS, fields, strict=True):
            if text.strip():
                try:
                    values[task] = float(text)
                except ValueError:
                    raise DataError(f"{path}: line {number}: {task} loss {text!r} is not a number") from None
        rows.append(values)
    if len(rows[0]) != len(STANDLEY_TASKS):
        raise DataError(f"{path}: line 1 must give all five half-size single-task losses")
    groups = rows[1:]
    if len({frozenset(g) for g in groups}) != len(groups):
        raise DataError(f"{path}: a group appears on two lines")
    return rows[0], groups


def _numeric_table(path, sep: str | None, columns: int) -> np.ndarray:
    try:
        table = np.loadtxt(path, delimiter=sep, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric table ({exc})") from exc
    if table.shape[1] != columns:
        raise ShapeError(f"{path}: expected {columns} columns, found {table.shape[1]}")
    if not np.isfinite(table).all():
        row = int(np.argwhere(~np.isfinite(table))[0, 0])
        raise NonFiniteError(f"{path}: row {row + 1} has a non-finite entry")
    return table


def mtgnet_table(
    dataset: str, split: str = "val", data_dir: str | os.PathLike | None = None
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(tasks, masks (G, n) bool, gains (G, n)) of an MTG-Net table; row r of both = group r."""
    _choice(dataset, list(MTGNET_FILES), "MTG-Net dataset")
    tasks, mask_file, value_files, sep = MTGNET_FILES[dataset]
    _choice(split, list(value_files), "split")
    mask_path = data_file(f"mtgnet_song2022/{mask_file}", data_dir)
    value_path = data_file(f"mtgnet_song2022/{value_files[split]}", data_dir)
    masks = _numeric_table(mask_path, sep, len(tasks))
    gains = _numeric_table(value_path, None, len(tasks))
    if masks.shape != gains.shape:
        raise ShapeError(f"{value_path}: {gains.shape[0]} rows, but {mask_path} has {masks.shape[0]}")
    if not np.isin(masks, (0, 1)).all() or (masks.sum(axis=1) == 0).any():
        raise DataError(f"{mask_path}: rows must be non-empty 0/1 membership masks")
    return tasks, masks.astype(bool), gains


def mtgnet_pair_matrix(
    dataset: str, split: str = "val", data_dir: str | os.PathLike | None = None
) -> tuple[tuple[str, ...], np.ndarray]:
    """``S[source, target]`` = measured gain of the target when trained with the source (diagonal 0)."""
    tasks, masks, gains = mtgnet_table(dataset, split, data_dir)
    n = len(tasks)
    matrix = np.full((n, n), np.nan)
    np.fill_diagonal(matrix, 0.0)
    for mask, row in zip(masks, gains, strict=True):
        members = np.flatnonzero(mask)
        if len(members) == 2:
            a, b = members
            matrix[a, b], matrix[b, a] = row[b], row[a]
    if np.isnan(matrix).any():
        raise DataError(f"MTG-Net {dataset}: the table lacks some task pairs")
    return tasks, matrix


def tag_matrix(
    dataset: str, kind: str = "affinity", data_dir: str | os.PathLike | None = None
) -> tuple[list[str], np.ndarray]:
    """A TAG matrix as ``S[source, target]`` (the published ``[recipient][source]`` transposed).

    ``kind``: ``"affinity"`` (TAG lookahead affinity, accumulated over training), ``"cosine"``
    (gradient cosine similarity), ``"pairwise"`` (measured: CelebA validation accuracy in %, higher
    is better; Taskonomy validation loss; entry = the target's value when trained with the source,
    diagonal = single-task value).
    """
    _choice(dataset, ["celeba", "taskonomy"], "TAG dataset")
    _choice(kind, ["affinity", "cosine", "pairwise"], "TAG matrix kind")
    path = data_file(f"tag_fifty2021/{TAG_FILES[dataset, kind]}", data_dir)
    frame = pd.read_csv(path, index_col=0)
    tasks = [str(c) for c in frame.columns]
    if [str(r) for r in frame.index] != tasks:
        raise DataError(f"{path}: row tasks {list(frame.index)} differ from column tasks {tasks}")
    recipient_source = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(recipient_source).all():
        raise NonFiniteError(f"{path}: non-finite entry")
    return tasks, recipient_source.T.copy()


def random_partitions(dataset: str, data_dir: str | os.PathLike | None = None) -> list[list[list[str]]]:
    """The predecessor's random partitions of all tasks (task names as the dataset loaders use them)."""
    _choice(dataset, list(PARTITION_FILES), "dataset")
    path = data_file(f"ayman2023/partitions/{PARTITION_FILES[dataset]}_Random_Task_Groups.csv", data_dir)
    frame = pd.read_csv(path)
    if "Task_Groups" not in frame.columns:
        raise DataError(f"{path}: missing column 'Task_Groups'")
    out = []
    for row, text in enumerate(frame["Task_Groups"], start=2):
        try:
            groups = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise DataError(f"{path}: row {row}: Task_Groups is not a dict literal ({exc})") from exc
        if not isinstance(groups, dict) or not groups:
            raise DataError(f"{path}: row {row}: Task_Groups must be a non-empty dict")
        out.append([[str(t) for t in members] for members in groups.values()])
    return out
