"""The pipeline's report: one Markdown and one HTML page with figures, every number sourced.

Figures (PNG, next to the pages): the affinity heat map, predicted vs measured gains, and per-task
test losses of single-task learning, one all-task model and the selected groups.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np

from taskrel import __version__
from taskrel.pipeline import AFFINITY_TEXT
from taskrel.report.plots import grouped_bars, scatter


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return f"{100 * value:+.1f}%"


def _figures(result, out: Path) -> None:
    frame = result.per_task()
    series = {
        "STL": frame["stl_loss"],
        "one all-task model": frame["naive_mtl_loss"],
        "selected groups": frame["selected_loss"],
    }
    grouped_bars(list(frame["task"]), series, out / "losses.png", title=f"{result.dataset}: per-task test loss",
                 ylabel="test loss")  # fmt: skip
    cv = result.cross_validated
    chosen = frame[frame["serving_group"].str.contains("|", regex=False)]
    predicted = np.concatenate([cv["predicted"].to_numpy(), chosen["predicted_gain"].to_numpy()])
    measured = np.concatenate([cv["measured"].to_numpy(), chosen["realised_gain"].to_numpy()])
    kinds = ["training groups (held out)"] * len(cv) + ["chosen groups"] * len(chosen)
    if len(measured) >= 2:
        scatter(predicted, measured, out / "predicted_vs_measured.png", groups=kinds,
                title="predicted vs measured gain")  # fmt: skip


def _sections(result) -> list[tuple[str, list]]:
    """Report content as (heading, blocks); a block is a paragraph string or a table (header, rows)."""
    frame = result.per_task()
    totals = result.totals()
    seeds = len(result.seeds)
    chosen_rows = []
    for group in result.chosen:
        members = frame[frame["serving_group"] == group]
        if members.empty:  # trained, but every member is better served elsewhere on validation
            chosen_rows.append([group, "no task (each is better served by another model on validation)", "—", "—"])
            continue
        chosen_rows.append([group, ", ".join(members["task"]), _percent(members["predicted_gain"].mean()),
                            _percent(members["realised_gain"].mean())])  # fmt: skip
    summary = [
        ["single-task learning (STL)", _fmt(totals["stl"]), "—"],
        ["one all-task model (naive MTL)", _fmt(totals["naive_mtl"]),
         _percent((totals["stl"] - totals["naive_mtl"]) / totals["stl"])],
        [f"selected groups ({len(result.chosen)})", _fmt(totals["selected"]),
         _percent((totals["stl"] - totals["selected"]) / totals["stl"])],
    ]  # fmt: skip
    per_task = [
        [r.task, r.serving_group, r.why, _fmt(r.stl_loss), _fmt(r.naive_mtl_loss), _fmt(r.selected_loss),
         _percent(r.predicted_gain), _percent(r.realised_gain)]
        for r in frame.itertuples()
    ]  # fmt: skip
    safe = result.safe_on_test()
    cv = result.cross_validated
    cv_r = float(np.corrcoef(cv["predicted"], cv["measured"])[0, 1]) if len(cv) > 2 else float("nan")
    provenance = [
        ["command", result.command],
        ["taskrel version", __version__],
        ["problem", f"{result.dataset} ({len(result.tasks)} tasks: {', '.join(result.tasks)})"],
        ["run store", f"{result.store} (every training of this report; resumable)"],
        ["problem fingerprint", json.dumps(result.fingerprint)],
        ["seeds per group", f"{seeds} (losses are means over seeds; gains use the seed-mean STL loss)"],
        ["affinity", f"{AFFINITY_TEXT}; {result.affinity.steps} steps collected in {result.affinity.seconds:.1f} s; "
                     "affinity.csv (row = source, column = target)"],
        ["training groups", f"{len(result.training)}, sampling {result.sampling}; training_groups.json lists "
                            "each with why it was trained"],
        ["predictor", "DefaultPredictor: nested hierarchical Gaussian models (per-target offsets, target-specific "
         "member effects, the ETAP affinity feature) stacked by leave-one-group-out error"],
        ["selection", result.selection],
        ["losses", "mean per-row test loss of each task (BCE for binary tasks, MSE for regression)"],
        ["wall time", ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())],
        ["generated", time.strftime("%Y-%m-%d %H:%M:%S")],
    ]  # fmt: skip
    return [
        ("Outcome", [
            f"Total test loss over the {len(result.tasks)} tasks (lower is better; change relative to STL):",
            (["approach", "total test loss", "vs STL"], summary),
            "![per-task test losses](losses.png)",
        ]),
        ("Chosen groups", [
            "Gains are relative loss reductions over STL, gain = (L_STL − L_G) / L_STL; the realised gain is "
            "the test gain of the trained group; the predicted one is the predictor's validation gain before "
            "training it.",
            (["group", "serves", "mean predicted gain", "mean realised gain"], chosen_rows),
            "Each task is served by the model with the lowest validation loss among the chosen groups that "
            "contain it and its own STL model (trained anyway, so free to serve): never worse than STL on "
            f"validation. On test, {round(safe * len(result.tasks))} of {len(result.tasks)} tasks are served at or "
            "below their STL loss.",
            (["task", "serving model", "why", "STL loss", "all-task loss", "selected loss", "predicted gain",
              "realised gain"], per_task),
        ]),
        ("Training groups", [
            f"The {len(result.training)} groups trained to fit the gain predictor (sampling: {result.sampling}).",
            (["#", "group", "why"], [[i + 1, "|".join(sorted(p.group, key=result.tasks.index)), p.reason]
                                     for i, p in enumerate(result.training)]),
        ]),
        ("How well the gains were predicted", [
            "The predictor is fitted on validation gains (every decision is made on validation). Held-out "
            "training groups (leave-one-group-out refits) are compared with their validation gains, the chosen "
            f"groups with their test gains; Pearson r on the held-out training groups: {cv_r:.2f}.",
            "![predicted vs measured gains](predicted_vs_measured.png)",
        ]),
        ("Task affinity", [
            "ETAP affinity A[source, target] from one all-task training run: how much the source task's "
            "update lowers the target task's loss (positive = helps).",
            "![affinity heat map](affinity.png)",
        ]),
        ("Provenance", [(["item", "value"], provenance)]),
    ]  # fmt: skip


def _markdown(sections, title: str) -> str:
    lines = [f"# {title}", ""]
    for heading, blocks in sections:
        lines += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, str):
                lines += [block, ""]
            else:
                header, rows = block
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
                lines.append("")
    return "\n".join(lines)


def _html(sections, title: str) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, blocks in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            if isinstance(block, str):
                if block.startswith("!["):
                    alt, src = block[2:].split("](")
                    body.append(f'<p><img src="{html.escape(src[:-1])}" alt="{html.escape(alt)}"></p>')
                else:
                    body.append(f"<p>{html.escape(block)}</p>")
            else:
                header, rows = block
                head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:left;font-size:14px}th{background:#f3f3f3}img{max-width:100%}")  # fmt: skip
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")  # fmt: skip


def write_report(result, out: Path) -> None:
    """Write report.md, report.html and their figures into `out`."""
    out = Path(out)
    _figures(result, out)
    sections = _sections(result)
    title = f"taskrel grouping report — {result.dataset}"
    (out / "report.md").write_text(_markdown(sections, title))
    (out / "report.html").write_text(_html(sections, title))
