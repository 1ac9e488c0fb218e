"""Table-2-style comparison of benchmark runs (markdown), optionally beside the paper's own numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evaluation.runner import PAPER_TASKS, TASK_TITLES, ordered_tasks

PAPER_RESULTS_PATH = Path(__file__).resolve().parent / "paper_results.json"


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results.json written by `deepsight eval benchmark` (the file, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise ValueError(f"results: {path} does not exist; expected a results.json from `deepsight eval benchmark`")
    results = json.loads(path.read_text())
    if not isinstance(results, dict) or "tasks" not in results or "average" not in results:
        raise ValueError(f"results: {path} has no 'tasks'/'average'; expected a results.json from `deepsight eval benchmark`")
    results.setdefault("_path", str(path))
    return results


def load_paper_rows() -> list[dict[str, Any]]:
    """The paper's Table 2 and Table 6 rows: {group, model, values (% per column)}."""
    data = json.loads(PAPER_RESULTS_PATH.read_text())
    return data["table2"] + data["table6"]


def _run_label(results: dict[str, Any]) -> str:
    name = Path(str(results.get("model", "?"))).name or str(results.get("model"))
    return f"{name} ({results.get('protocol', '?')})"


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
    tasks = ordered_tasks([t for run in runs for t in run["tasks"]] or PAPER_TASKS)
    header = ["Model", "Source"] + [TASK_TITLES.get(t, t) for t in tasks] + ["Avg.", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(tasks) + 2)]
    if include_paper:
        for row in load_paper_rows():
            by_task = dict(zip(PAPER_TASKS, row["values"][:-1]))
            cells = [f"{by_task[t]:.2f}" if t in by_task else "-" for t in tasks]
            lines.append(f"| {row['model']} | paper, {row['group']} | " + " | ".join(cells) + f" | {row['values'][-1]:.2f} | |")
    for run in runs:
        cells = [_cell(run["tasks"].get(t), show_ci) for t in tasks]
        source = "this run" + (f", {Path(str(run['benchmark'])).name}" if run.get("benchmark") else "")
        lines.append(
            f"| {_run_label(run)} | {source} | " + " | ".join(cells) + f" | **{100 * run['average']:.2f}** | {run['n']} |"
        )
    return "\n".join(lines) + "\n"
