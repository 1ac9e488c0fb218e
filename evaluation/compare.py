"""Table-2-style comparison of benchmark runs (markdown), optionally beside the paper's own numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from deepsight.tasks import TASK_TITLES, TASKS, ordered_tasks

PAPER_RESULTS_PATH = Path(__file__).resolve().parent / "paper_results.json"


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results.json of `deepsight eval benchmark` or a zeroshot.json of `deepsight eval zeroshot`
    (the file, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "results.json", path / "zeroshot.json"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        raise ValueError(f"results: {path} does not exist; expected a results.json (or zeroshot.json) from `deepsight eval`")
    results = json.loads(path.read_text())
    is_benchmark = isinstance(results, dict) and "tasks" in results and "average" in results
    is_zeroshot = isinstance(results, dict) and "top1" in results and "dataset" in results
    if not (is_benchmark or is_zeroshot):
        raise ValueError(
            f"results: {path} has neither 'tasks'/'average' (benchmark) nor 'top1'/'dataset' (zeroshot); "
            "expected a file written by `deepsight eval benchmark` or `deepsight eval zeroshot`"
        )
    results.setdefault("_path", str(path))
    return results


def is_zeroshot(results: dict[str, Any]) -> bool:
    return "top1" in results


def load_paper_rows() -> list[dict[str, Any]]:
    """The paper's Table 2 and Table 6 rows: {group, model, values (% per column)}."""
    data = json.loads(PAPER_RESULTS_PATH.read_text())
    return data["table2"] + data["table6"]


def run_setting(results: dict[str, Any]) -> str:
    """The protocol, with the question layout when it is not the paper's (results before it was recorded: union)."""
    layout = results.get("question_layout") or ("per_option" if results.get("distance_regions") else "union")
    return str(results.get("protocol", "?")) + (f", {layout}" if layout != "union" else "")


def _run_label(results: dict[str, Any]) -> str:
    name = Path(str(results.get("model", "?"))).name or str(results.get("model"))
    return f"{name} ({run_setting(results)})"


def _cell(entry: dict[str, Any] | None, show_ci: bool) -> str:
    if entry is None:
        return "-"
    text = f"{100 * entry['accuracy']:.2f}"
    if show_ci:
        low, high = entry["ci95"]
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    return text


def comparison_markdown(runs: list[dict[str, Any]], include_paper: bool = False, show_ci: bool = False) -> str:
    """One row per run (model and protocol), one column per task, then Avg.; accuracies in %.

    With `include_paper` the paper's rows come first, labelled with their table, as a reference:
    they were measured on the paper's benchmark, not necessarily the one the runs used.
    """
    if not runs and not include_paper:
        raise ValueError("runs: expected at least one results.json (or --paper)")
    tasks = ordered_tasks([t for run in runs for t in run["tasks"]] or TASKS)
    header = ["Model", "Source"] + [TASK_TITLES.get(t, t) for t in tasks] + ["Avg.", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(tasks) + 2)]
    if include_paper:
        for row in load_paper_rows():
            by_task = dict(zip(TASKS, row["values"][:-1]))
            cells = [f"{by_task[t]:.2f}" if t in by_task else "-" for t in tasks]
            lines.append(f"| {row['model']} | paper, {row['group']} | " + " | ".join(cells) + f" | {row['values'][-1]:.2f} | |")
    for run in runs:
        cells = [_cell(run["tasks"].get(t), show_ci) for t in tasks]
        source = "this run" + (f", {Path(str(run['benchmark'])).name}" if run.get("benchmark") else "")
        lines.append(
            f"| {_run_label(run)} | {source} | " + " | ".join(cells) + f" | **{100 * run['average']:.2f}** | {run['n']} |"
        )
    return "\n".join(lines) + "\n"


def zeroshot_comparison_markdown(runs: list[dict[str, Any]], include_paper: bool = False) -> str:
    """Table-3-style rows: top-1 zero-shot scene accuracy (%) per model on NYU-D / SUN-D."""
    columns = ["nyu", "sun"] + sorted({run["dataset"] for run in runs} - {"nyu", "sun"})
    titles = {"nyu": "NYU-D (%)", "sun": "SUN-D (%)"}
    header = ["Model", "Source"] + [titles.get(c, f"{c} (%)") for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(columns)]
    if include_paper:
        for row in json.loads(PAPER_RESULTS_PATH.read_text())["table3"]:
            cells = [f"{row[c]:.1f}" if c in row else "-" for c in columns]
            lines.append(f"| {row['model']} | paper, Table 3 | " + " | ".join(cells) + " |")
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_model.setdefault(Path(str(run["model"])).name or str(run["model"]), {})[run["dataset"]] = run
    for model, per_dataset in by_model.items():
        cells = []
        for column in columns:
            run = per_dataset.get(column)
            if run is None:
                cells.append("-")
            else:
                low, high = run["ci95"]
                cells.append(f"{100 * run['top1']:.1f} [{100 * low:.1f}, {100 * high:.1f}] (n={run['n']})")
        lines.append(f"| {model} | this run | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
