"""The pipeline report read as a person would: compact group names, charts sized to the tasks, serving summarised.

The problem is the planted-cluster problem of `planted.py` (one cluster small), scaled to any number
of tasks and trained for a few steps only. The checks parse the written HTML with `html.parser` and
decode the PNGs; they do not call the report's own helpers.
"""

import re
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pytest

from taskrel.grouping.pipeline import run_pipeline
from taskrel.problems.torch_problem import TorchProblem

from .planted import planted_problem as planted


def planted_problem(n_tasks: int, *, clusters: int = 4, max_steps: int = 40, seed: int = 0) -> TorchProblem:
    """`n_tasks` tasks in `clusters` planted clusters; the first cluster holds only a few tasks."""
    small = min(4, n_tasks // clusters)
    sizes = [small] + [len(part) for part in np.array_split(np.arange(n_tasks - small), clusters - 1)]
    return planted(sizes, max_steps=max_steps, test_rows=100, seed=seed)[0]


class Page(HTMLParser):
    """The parts of an HTML page a reader sees before opening any <details>: text, table cells and tables."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.folds: list[bool] = []  # one per open <details>: True while inside its <summary>
        self.cell: list[str] | None = None
        self.cells: list[str] = []  # visible text of every td/th
        self.visible: list[str] = []
        self.tables: list[dict] = []  # rows, and whether the table sits inside a closed <details>
        self.open_tables: list[dict] = []
        self.feed(text)

    @property
    def shown(self) -> bool:
        return all(self.folds)

    def handle_starttag(self, tag, attrs):
        if tag == "details":
            self.folds.append(False)
        elif tag == "summary" and self.folds:
            self.folds[-1] = True
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "table":
            self.open_tables.append({"rows": 0, "folded": not self.shown})
        elif tag == "tr" and self.open_tables:
            self.open_tables[-1]["rows"] += 1

    def handle_endtag(self, tag):
        if tag == "details":
            self.folds.pop()
        elif tag == "summary" and self.folds:
            self.folds[-1] = False
        elif tag in ("td", "th") and self.cell is not None:
            self.cells.append("".join(self.cell))
            self.cell = None
        elif tag == "table":
            self.tables.append(self.open_tables.pop())

    def handle_data(self, data):
        if self.shown:
            self.visible.append(data)
            if self.cell is not None:
                self.cell.append(data)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Pipeline runs at 8 and 45 tasks (few training steps), each with its output folder."""
    runs = {}
    for n in (8, 45):
        out = tmp_path_factory.mktemp(f"report{n}")
        result = run_pipeline(planted_problem(n, max_steps=40), out, train_groups=2, max_groups=3, time_limit=10,
                              progress=False)  # fmt: skip
        runs[n] = (result, out)
    return runs


def test_groups_have_compact_names_and_no_long_member_list_is_shown_unfolded(reports):
    result, out = reports[45]
    tasks = list(result.tasks)
    assert result.decision.groups, "the planted clusters should give the decision something to choose"
    page = Page((out / "report.html").read_text())
    visible = " ".join(page.visible)
    task_name = re.compile(r"\bt\d+\b")
    for cell in page.cells:
        assert not re.search(r"[^\s|,()]+(\|[^\s|,()]+){6,}", cell), cell  # no |-joined group of more than 6 tasks
        assert len(set(task_name.findall(cell))) <= 6, cell
    for i, group in enumerate(result.decision.groups, start=1):
        members = [t for t in tasks if t in group]
        name = f"G{i}: {len(members)} tasks"
        if len(members) <= 6:
            name += f" ({', '.join(members)})"
        assert name in visible
        assert name in (out / "report.md").read_text()
    for text in ["|".join(t for t in tasks if t in p.group) for p in result.training if 2 <= len(p.group) < len(tasks)]:
        members = text.split("|")  # every member list of a training group is somewhere on the page, folded
        assert ", ".join(members) in (out / "report.html").read_text()


def test_serving_is_summarised_and_every_stage_is_timed(reports):
    result, out = reports[45]
    page = Page((out / "report.html").read_text())
    visible = " ".join(page.visible)
    assert result.serving.text in visible and result.decision.text in visible
    for task, s in result.serving.tasks.items():
        if s.model in result.serving.groups:  # moved with a group: one row for all its members
            assert result.serving.groups[s.model] in page.cells and task in (out / "report.html").read_text()
        elif s.moved:
            assert s.evidence in page.cells and task in page.cells
    long = [t for t in page.tables if t["rows"] > 20]
    assert long and all(t["folded"] for t in long)  # the per-task table (one row per task) is folded
    for stage, seconds in result.seconds.items():  # "report" is timed after the page is written
        assert stage == "report" or (stage in page.cells and f"{seconds:.1f}" in page.cells)
    stay = sum(not s.moved for s in result.serving.tasks.values())
    assert f"{stay} of the {len(result.tasks)} tasks stay on D" in visible
    markdown = (out / "report.md").read_text()
    for text in (f"{result.totals()['selected']:.4f}", "Provenance", "Training groups", "every task starts on D"):
        assert text in markdown and text in visible
    assert markdown.index("## Every task") > markdown.index("## Provenance")  # the long table last


def test_loss_chart_grows_with_the_tasks_and_membership_is_drawn(reports):
    heights = {n: matplotlib.image.imread(out / "losses.png").shape[0] for n, (_, out) in reports.items()}
    assert (heights[45] - heights[8]) / (45 - 8) >= 15  # pixels per added task: room for one label each
    for path in (reports[8][1] / "losses.png", reports[45][1] / "losses.png", reports[45][1] / "membership.png"):
        pixels = matplotlib.image.imread(path)[::3, ::3, :3]
        assert (pixels < 0.95).any(axis=-1).mean() > 0.02  # not blank
        assert len(np.unique(np.round(pixels * 8).reshape(-1, 3), axis=0)) >= 3  # markers in several colours
    assert not (reports[8][1] / "membership.png").exists()  # tasks × groups, drawn past ~10 tasks only
