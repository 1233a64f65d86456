"""The pipeline's report: one Markdown and one HTML page with figures, every number sourced.

Groups are named so that a page stays readable at any number of tasks: the chosen groups are G1,
G2, … in the decision's order, the other trained groups T1, T2, … in training order (M1, … for any
other model serving a task); ALL is the group of every task and STL a task's own single-task model.
A name spells out a group's members when it has at most `SPELLED` of them ("G2: 3 tasks (a, b, c)"),
the missing tasks when it lacks at most `MISSING` ("G1: 43 tasks (ALL minus x, y)"), else only the
size ("T3: 17 tasks"); every member list is in the "Group members" section (collapsible in HTML).

Figures (PNG, next to the pages): per-task test loss relative to STL (losses.png; one row per task,
so its height grows with the tasks), which task is in which group and which model serves it
(membership.png, past `MEMBERSHIP_FROM` tasks), predicted vs measured gains and the affinity heat map.
The full per-task table is collapsed in HTML and at the end of the Markdown page.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taskrel import __version__
from taskrel.groups import SEPARATOR, group_name
from taskrel.plots import dot_rows, membership, scatter

#: A group name lists its members up to this many.
SPELLED = 6
#: A group lacking at most this many tasks is named "ALL minus …" them.
MISSING = 6
#: From this many tasks on, the report draws the task × group membership figure.
MEMBERSHIP_FROM = 11


# ---------------------------------------------------------------------------------------------- blocks
@dataclass
class _Table:
    header: list[str]
    rows: list[list]  # a cell is a string, a number or a _Fold


@dataclass
class _Fold:
    """Collapsible in HTML (<details>); in Markdown a cell shows the summary only, a block its summary and body."""

    summary: str
    body: str | _Table
    appendix: bool = False  # Markdown: moved to the end of the page, under the summary as heading


@dataclass
class _Items:
    items: list  # strings or _Folds


@dataclass
class _Image:
    src: str
    alt: str


# ----------------------------------------------------------------------------------------------- names
class _Names:
    """The report's names of models, given by group text (see the module docstring)."""

    def __init__(self, result) -> None:
        self.tasks = list(result.tasks)
        self.everything = group_name(self.tasks, self.tasks)
        self.labels: dict[str, str] = {}
        for text in result.chosen:
            self.labels.setdefault(text, f"G{len(self.labels) + 1}")
        count = 0
        for pick in result.training:
            text = group_name(pick.group, self.tasks)
            if len(pick.group) >= 2 and text != self.everything and text not in self.labels:
                count += 1
                self.labels[text] = f"T{count}"
        count = 0
        for s in result.serving.tasks.values():
            if SEPARATOR in s.model and s.model != self.everything and s.model not in self.labels:
                count += 1
                self.labels[s.model] = f"M{count}"

    def label(self, text: str) -> str:
        """G1, T2, ALL or STL."""
        if text == self.everything:
            return "ALL"
        return self.labels.get(text, "STL") if SEPARATOR in text else "STL"

    def name(self, text: str) -> str:
        """The compact name: the label and the members when few, else the size."""
        members = text.split(SEPARATOR)
        label = self.label(text)
        if label in ("ALL", "STL"):
            return label
        if len(members) <= SPELLED:
            return f"{label}: {len(members)} tasks ({', '.join(members)})"
        missing = [t for t in self.tasks if t not in set(members)]
        if len(missing) <= MISSING:
            return f"{label}: {len(members)} tasks (ALL minus {', '.join(missing)})"
        return f"{label}: {len(members)} tasks"

    def default(self, default: str) -> str:
        """D in words."""
        if default == "STL":
            return "STL (each task's own single-task model)"
        return f"ALL (one model of all {len(self.tasks)} tasks)"


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return f"{100 * value:+.1f}%"


def _listing(names: list[str], what: str) -> str | _Fold:
    """The names themselves when few, else a fold "k tasks" opening onto them."""
    if len(names) <= SPELLED:
        return ", ".join(names)
    return _Fold(f"{len(names)} {what}", ", ".join(names))


# --------------------------------------------------------------------------------------------- figures
def _figures(result, names: _Names, out: Path) -> set[str]:
    """Draw the report's figures into `out`; the file names of the figures the pages may show."""
    frame = result.per_task()
    stl = frame["stl_loss"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        everything = np.where(stl > 0, frame["naive_mtl_loss"].to_numpy(float) / stl, np.nan)
        served = np.where(stl > 0, frame["selected_loss"].to_numpy(float) / stl, np.nan)
    moved = np.array([result.serving.tasks[t].moved for t in frame["task"]])
    order = np.lexsort((np.nan_to_num(everything, nan=np.inf), np.nan_to_num(served, nan=np.inf)))
    dot_rows(
        [frame["task"].iloc[i] for i in order],
        {"one all-task model (ALL)": everything[order],
         f"served, on D = {result.serving.default}": np.where(moved, np.nan, served)[order],
         "served, moved off D": np.where(moved, served, np.nan)[order]},
        out / "losses.png",
        title=f"{result.dataset}: per-task test loss relative to STL",
        xlabel="test loss / STL test loss (log scale; below 1 = better than STL)",
        reference=1.0, reference_label="STL (= 1)", log=True,
        stem=("served, on D = " + result.serving.default, "served, moved off D"),
        styles={"one all-task model (ALL)": {"marker": "^", "s": 34, "facecolors": "none", "edgecolors": "#e6550d"},
                f"served, on D = {result.serving.default}": {"marker": "o", "s": 16, "color": "#3182bd"},
                "served, moved off D": {"marker": "o", "s": 26, "color": "#31a354", "edgecolors": "black",
                                        "linewidths": 0.5}},
    )  # fmt: skip
    cv = result.cross_validated
    chosen = frame[frame["serving_group"].isin(set(result.chosen))]
    predicted = np.concatenate([cv["predicted"].to_numpy(), chosen["predicted_gain"].to_numpy()])
    measured = np.concatenate([cv["measured"].to_numpy(), chosen["realised_gain"].to_numpy()])
    kinds = ["training groups (held out)"] * len(cv) + ["chosen groups"] * len(chosen)
    drawn = {"losses.png"} | ({"affinity.png"} if (out / "affinity.png").exists() else set())
    if len(measured) >= 2:
        scatter(predicted, measured, out / "predicted_vs_measured.png", groups=kinds,
                title="predicted vs measured gain")  # fmt: skip
        drawn.add("predicted_vs_measured.png")
    if len(result.tasks) >= MEMBERSHIP_FROM:
        _membership(result, names, out / "membership.png")
        drawn.add("membership.png")
    return drawn


def _membership(result, names: _Names, path: Path) -> None:
    """Tasks × (chosen groups, training groups, ALL, STL): not a member, member, or served by it."""
    tasks = names.tasks
    groups = list(names.labels)
    columns = [names.labels[g] for g in groups] + [
        f"ALL{' = D' if result.serving.default == 'ALL' else ''}",
        f"STL{' = D' if result.serving.default == 'STL' else ''}",
    ]
    values = np.zeros((len(tasks), len(columns)), dtype=int)
    for i, task in enumerate(tasks):
        for j, g in enumerate(groups):
            values[i, j] = int(task in g.split(SEPARATOR))
        values[i, -2:] = 1
        model = result.serving.tasks[task].model
        column = groups.index(model) if model in groups else len(columns) - (2 if model == names.everything else 1)
        values[i, column] = 2
    served = values.argmax(axis=1)
    order = sorted(range(len(tasks)), key=lambda i: (served[i], tuple(-values[i, : len(groups)]), i))
    membership(
        values[order], [tasks[i] for i in order], columns, path,
        categories={0: ("#f0f0f0", "not a member"), 1: ("#9ecae1", "member"),
                    2: ("#08519c", "member, serves the task")},
        title=f"{result.dataset}: the groups of each task (rows sorted by serving model)",
    )  # fmt: skip


# -------------------------------------------------------------------------------------------- sections
def _figure(name: str, alt: str, drawn: set[str]) -> _Image | str:
    return _Image(name, alt) if name in drawn else f"({alt}: not drawn, too few values.)"


def _sections(result, names: _Names, drawn: set[str]) -> list[tuple[str, list]]:
    """Report content as (heading, blocks); a block is a paragraph string, a _Table, _Fold, _Items or _Image."""
    frame = result.per_task()
    totals = result.totals()
    tasks = names.tasks
    n = len(tasks)
    serving = result.serving
    moved = [t for t in tasks if serving.tasks[t].moved]
    default_name = names.default(serving.default)
    change = (totals["stl"] - totals["selected"]) / totals["stl"]
    summary = [
        ["single-task learning (STL)", _fmt(totals["stl"]), "—"],
        ["one all-task model (ALL, naive MTL)", _fmt(totals["naive_mtl"]),
         _percent((totals["stl"] - totals["naive_mtl"]) / totals["stl"])],
        [f"served: default {serving.default}, {len(moved)} task(s) moved, {len(result.chosen)} new group(s)",
         _fmt(totals["selected"]), _percent(change)],
    ]  # fmt: skip
    outcome = [
        f"D = {default_name}; {len(result.chosen)} new group(s) chosen and trained; {len(moved)} of the {n} "
        f"tasks moved off D on validation evidence. Served total test loss {_fmt(totals['selected'])} "
        f"({_percent(change)} vs STL).",
        _Table(["approach", "total test loss", "vs STL"], summary),
        "Per task, test loss divided by the task's STL test loss (log scale; left of the line at 1 is better "
        "than STL), rows sorted from the largest improvement down:",
        _Image("losses.png", "per-task test losses relative to STL"),
    ]

    chosen_rows = []
    for text in result.chosen:
        served = frame[frame["serving_group"] == text]
        if served.empty:  # trained, but every member is better served elsewhere on validation
            chosen_rows.append([names.name(text), "no task (each is better served by another model on validation)",
                                "—", "—"])  # fmt: skip
            continue
        chosen_rows.append([names.name(text), _listing(list(served["task"]), "tasks"),
                            _percent(served["predicted_gain"].mean()),
                            _percent(served["realised_gain"].mean())])  # fmt: skip
    header = ["group", "serves", "mean predicted gain", "mean realised gain"]
    chosen = [
        f"Decision: {result.decision.text}.",
        "Gains are relative loss reductions over STL, gain = (L_STL − L_G) / L_STL; the realised gain is the test "
        "gain of the trained group on the tasks it serves; the predicted one is the predictor's validation gain "
        "before training it.",
        _Table(header, chosen_rows) if chosen_rows else "No new group was chosen.",
    ]

    stl = frame.set_index("task")["stl_loss"]
    selected = frame.set_index("task")["selected_loss"]
    by_model: dict[str, list[str]] = {}
    for t in tasks:
        s = serving.tasks[t]
        key = "D" if not s.moved else s.model if SEPARATOR in s.model else "STL"  # STL: each its own model
        by_model.setdefault(key, []).append(t)
    others = sorted((k for k in by_model if k != "D"), key=lambda k: (-len(by_model[k]), names.name(k)))
    model_rows = []
    for key in ["D", *others] if "D" in by_model else others:
        members = by_model[key]
        loss, base = float(selected[members].sum()), float(stl[members].sum())
        model_rows.append([f"D = {serving.default}" if key == "D" else names.name(key), _listing(members, "tasks"),
                           _fmt(loss), _percent((base - loss) / base)])  # fmt: skip
    counts = ", ".join(f"{len(by_model[k])} to {names.name(k)}" for k in others)
    rejected = [t for t in tasks if not serving.tasks[t].moved and "not taken" in serving.tasks[t].evidence]
    safe = result.not_worse_than_default()
    serving_blocks = [
        f"Serving rule: {serving.text}.",
        f"{len(by_model.get('D', []))} of the {n} tasks stay on D = {default_name}"
        + (f"; {len(moved)} moved: {counts}." if moved else "; none moved."),
        _Table(["served by", "tasks", "total test loss", "vs STL on these tasks"], model_rows),
    ]
    test_loss = frame.set_index("task")["default_loss"]
    if moved:
        rows = []
        for group, evidence in serving.groups.items():  # a group that took over: one row for its members
            together = [t for t in moved if serving.tasks[t].model == group]
            rows.append([_listing(together, "tasks"), names.name(group), evidence,
                         f"{_fmt(test_loss[together].sum())} → {_fmt(selected[together].sum())}"])  # fmt: skip
        rows += [[t, names.name(serving.tasks[t].model), serving.tasks[t].evidence,
                  f"{_fmt(test_loss[t])} → {_fmt(selected[t])}"]
                 for key in others for t in by_model[key] if key not in serving.groups]  # fmt: skip
        serving_blocks += [
            f"The significant moves off D = {serving.default}, with their validation evidence:",
            _Table(["task", "moved to", "evidence (validation rows)", "test loss: D → served"], rows),
        ]  # fmt: skip
    if rejected:
        serving_blocks += [
            "Significant moves that were not taken (together they did not beat D on the check rows):",
            _Table(["task", "evidence (validation rows)"], [[t, serving.tasks[t].evidence] for t in rejected]),
        ]
    per_task = _Table(
        ["task", "serving model", "why", "STL loss", "all-task loss", "served loss", "predicted gain", "realised gain"],
        [[r.task, names.name(r.serving_group), r.why, _fmt(r.stl_loss), _fmt(r.naive_mtl_loss), _fmt(r.selected_loss),
          _percent(r.predicted_gain), _percent(r.realised_gain)] for r in frame.itertuples()],
    )  # fmt: skip
    serving_blocks += [
        f"On test, {round(safe * n)} of {n} tasks are served at or below their loss on D = {serving.default}.",
        _Fold(f"Every task: serving model, evidence and losses ({n} tasks)", per_task, appendix=True),
    ]

    training = _Table(["#", "group", "why"], [[i + 1, names.name(group_name(p.group, tasks)),
                                               p.reason] for i, p in enumerate(result.training)])  # fmt: skip
    member_items = [_Fold(names.name(text), ", ".join(text.split(SEPARATOR))) for text in names.labels]
    members = [
        f"G1, G2, … are the chosen groups, T1, T2, … the groups trained to fit the predictor; a name spells out "
        f"at most {SPELLED} members, or the at most {MISSING} tasks a group lacks (ALL minus …). ALL is the "
        "model of every task, STL each task's own model.",
        _Items(member_items) if member_items else "No group other than ALL was trained.",
    ]
    if n >= MEMBERSHIP_FROM:
        members += [
            "Which task is in which group (light) and which model serves it (dark), one row per task:",
            _Image("membership.png", "task × group membership"),
        ]

    cv = result.cross_validated
    cv_r = float(np.corrcoef(cv["predicted"], cv["measured"])[0, 1]) if len(cv) > 2 else float("nan")
    stages = sum(result.seconds.values())
    timing = _Table(["stage", "seconds", "share"],
                    [[stage, f"{value:.1f}", f"{100 * value / stages:.0f}%" if stages > 0 else "—"]
                     for stage, value in result.seconds.items()] + [["total", f"{stages:.1f}", ""]])  # fmt: skip
    provenance = [
        ["command", result.command],
        ["taskrel version", __version__],
        ["problem", result.dataset],
        ["tasks", _listing(tasks, "tasks")],
        ["run store", f"{result.store} (every training of this report; resumable)"],
        ["problem fingerprint", json.dumps(result.fingerprint)],
        ["seeds per group", f"{len(result.seeds)} (losses are means over seeds; gains use the seed-mean STL loss)"],
        ["affinity", f"{result.affinity_text}; {result.affinity.steps} steps collected in "
                     f"{result.affinity.seconds:.1f} s; affinity-{result.weighting}.csv (row = source, column = target)"
                     + _stalled(result.affinity.stalled)],
        ["training groups", f"{len(result.training)}, sampling {result.sampling}; training_groups.json lists "
                            "each with why it was trained"],
        ["predictor", "DefaultPredictor: nested hierarchical Gaussian models (per-target offsets, target-specific "
         "member effects, the ETAP affinity feature or a group-size slope) stacked by leave-one-group-out error"],
        ["losses", "mean per-row test loss of each task (BCE for binary tasks, MSE for regression)"],
        ["generated", time.strftime("%Y-%m-%d %H:%M:%S")],
    ]  # fmt: skip
    return [
        ("Outcome", outcome),
        ("Chosen groups", chosen),
        ("Serving", serving_blocks),
        ("Training groups", [
            f"The {len(result.training)} groups trained to fit the gain predictor (sampling: {result.sampling}).",
            training,
        ]),
        ("Group members", members),
        ("How well the gains were predicted", [
            "The predictor is fitted on validation gains (every decision is made on validation). Held-out "
            "training groups (leave-one-group-out predictions with the fitted variances and mixture weights) are "
            "compared with their validation gains, the chosen "
            f"groups with their test gains; Pearson r on the held-out training groups: {cv_r:.2f}.",
            _figure("predicted_vs_measured.png", "predicted vs measured gains", drawn),
        ]),
        ("Task affinity", [
            "ETAP affinity A[source, target] from one all-task training run: how much the source task's "
            "update lowers the target task's loss (positive = helps).",
            _figure("affinity.png", "affinity heat map", drawn),
        ]),
        ("Time per stage", [
            "Wall time of each pipeline stage, in seconds"
            + ("." if "report" in result.seconds else " (the report stage ends after this page is written)."),
            timing,
        ]),
        ("Provenance", [_Table(["item", "value"], provenance)]),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- rendering
def _md_cell(cell) -> str:
    text = cell.summary if isinstance(cell, _Fold) else str(cell)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: _Table) -> list[str]:
    return [
        "| " + " | ".join(table.header) + " |",
        "|" + "---|" * len(table.header),
        *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows),
        "",
    ]


def _md_block(block) -> list[str]:
    if isinstance(block, str):
        return [block, ""]
    if isinstance(block, _Image):
        return [f"![{block.alt}]({block.src})", ""]
    if isinstance(block, _Table):
        return _md_table(block)
    if isinstance(block, _Items):
        lines = [f"- {item.summary}: {item.body}" if isinstance(item, _Fold) else f"- {item}" for item in block.items]
        return [*lines, ""]
    return [f"**{block.summary}**", "", *_md_block(block.body)]  # _Fold


def _markdown(sections, title: str) -> str:
    lines = [f"# {title}", ""]
    appendix = []
    for heading, blocks in sections:
        lines += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, _Fold) and block.appendix:
                appendix.append(block)
                lines += [f"{block.summary}: see the end of this page.", ""]
            else:
                lines += _md_block(block)
    for block in appendix:
        lines += [f"## {block.summary}", "", *_md_block(block.body)]
    return "\n".join(lines)


def _html_inline(value) -> str:
    if isinstance(value, _Fold):
        return f"<details><summary>{html.escape(value.summary)}</summary>{_html_block(value.body)}</details>"
    return html.escape(str(value))


def _html_block(block) -> str:
    if isinstance(block, str):
        return f"<p>{html.escape(block)}</p>"
    if isinstance(block, _Image):
        src = html.escape(block.src)
        return f'<p class="figure"><a href="{src}"><img src="{src}" alt="{html.escape(block.alt)}"></a></p>'
    if isinstance(block, _Items):
        return "<ul>" + "".join(f"<li>{_html_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, _Fold):
        return (f'<details class="block"><summary>{html.escape(block.summary)}</summary>'
                f"{_html_block(block.body)}</details>")  # fmt: skip
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
    cells = "".join("<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _html(sections, title: str) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, blocks in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body += [_html_block(block) for block in blocks]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;"
             "line-height:1.4}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}th{background:#f3f3f3}"
             "img{max-width:100%}summary{cursor:pointer;color:#1a4f8b}details.block{margin:1em 0}"
             "details[open]>summary{margin-bottom:.4em}td details p{margin:.3em 0}li{margin:.2em 0}")  # fmt: skip
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")  # fmt: skip


def _stalled(tasks: tuple[str, ...]) -> str:
    if not tasks:
        return ""
    return (f"; the validation loss of task(s) {', '.join(tasks)} never improved in the all-task run, so their "
            "columns weight the epochs by collected steps")  # fmt: skip


def write_report(result, out: Path) -> None:
    """Write report.md, report.html and their figures into `out` (names and figures: module docstring)."""
    out = Path(out)
    names = _Names(result)
    sections = _sections(result, names, _figures(result, names, out))
    title = f"taskrel grouping report — {result.dataset}"
    (out / "report.md").write_text(_markdown(sections, title))
    (out / "report.html").write_text(_html(sections, title))
